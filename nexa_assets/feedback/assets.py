"""feedback/weaknesses, feedback/requests and feedback/rounds (group `feedback`): the cells that fall short, the
data bought for them, and what each round cost against its estimate. One op writes the three tables before any
materialization is reported, so the feedback sensor, which reacts to feedback/weaknesses, never sees a round whose
requests or next-round estimate are not written yet."""

from collections.abc import Iterator
from dataclasses import fields

import dagster as dg
from pydantic import Field

from nexa_core.rubric import load_rubric
from nexa_assets.feedback.round import Buying, RoundError, judge_feedback_round
from nexa_assets.feedback.summary import requests_metadata, round_log, rounds_metadata, weaknesses_metadata
from nexa_assets.feedback.weakness import LoopRules
from nexa_assets.metadata import materialization
from nexa_assets.rounds import resolve_round
from nexa_assets.train.registry import newest_checkpoint
from nexa_resources.judge import JudgeResource
from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.tables import asset_key

# The tables whose cost columns the ledger sums.
COST_SOURCES = ["distill/completions", "distill/pairs", "train/checkpoints", "eval/predictions", "eval/scores"]
DESCRIPTIONS = {
    "feedback/weaknesses": (
        "Every cell (domain, task_type, metric) of the newest checkpoint in a round: score with "
        "its 95% interval, threshold, gap, status weak|pass (weak: the mean is below the threshold, where "
        "the loop buys data) and clearly_weak (the whole interval is below it: a shortfall, not noise); "
        "the paired change vs the previous round's checkpoint on the same prompts with its interval; and "
        "the round's stop reason, first match wins (all_cells_pass | no_improvement: the focus cells' paired "
        "lift has a 95% interval that does not lie above 0 | round_cap | low_gain_per_dollar: the last "
        "round's lift per $ is below min_gain_per_usd | budget_exhausted: the next round's estimate would "
        "take the loop past budget_usd; null while the loop goes on). Its metadata carries the next round's "
        "estimated $ (nexa/estimated_cost_usd). The feedback sensor watches this asset."
    ),
    "feedback/requests": (
        "New prompts to buy for the next round per weak (domain, task_type), in proportion to "
        "its gap, with hints from what the judge found lacking; raw/prompts fulfils the open ones."
    ),
    "feedback/rounds": (
        "The loop's ledger, one row per round (key round): its teacher, judge, GPU and evaluation "
        "$ measured from the lake's cost columns (null: a price is unknown, never $0) beside the estimate made "
        "for it before it ran, the loop's spend so far and budget, the focus lift per $, the next round's "
        "estimate with how it was made, and the stop reason with the money rules' figures."
    ),
}
# What each table is computed from.
UPSTREAM = {
    "feedback/weaknesses": ["eval/metrics"],
    "feedback/requests": ["eval/scores"],
    "feedback/rounds": COST_SOURCES,
}


def _spec(table: str, deps: list[str]) -> dg.AssetSpec:
    """One of the three tables the feedback op writes, in group `feedback`."""
    return dg.AssetSpec(
        asset_key(table),
        deps=[asset_key(d) for d in deps],
        description=DESCRIPTIONS[table],
        group_name="feedback",
        kinds={"polars", "deltalake"},
    )


RULES = LoopRules()


class FeedbackConfig(dg.Config):
    """Thresholds per metric, the loop's stop rules (defaults: LoopRules'), and how many prompts a round may buy."""

    round: int | None = Field(
        default=None,
        description="The round being judged; unset: the run's nexa/round tag, else the latest round (a manual "
        "run re-judges the current round, e.g. with new thresholds).",
    )
    default_threshold: float = Field(
        default=RULES.default_threshold, ge=1, le=5, description="Pass mark of every metric (1–5 scale)."
    )
    thresholds: dict[str, float] = Field(default_factory=dict, description="Per-metric pass marks (override).")
    max_rounds: int = Field(
        default=RULES.max_rounds, ge=0, description="Feedback rounds one loop may launch (the round cap)."
    )
    min_improvement: float = Field(
        default=RULES.min_improvement,
        ge=0,
        description="Floor on the focus cells' paired mean lift (score points) on top of its 95% interval lying "
        "above 0; 0: the interval alone decides. Stop (no_improvement) when either fails.",
    )
    prompts_per_round: int = Field(default=40, ge=1, description="New prompts bought per round, over the focus cells.")
    max_focus_cells: int = Field(
        default=2,
        ge=0,
        description="Buy for at most this many weak (domain, task_type) cells per round, largest gap first (0 = all): "
        "a budget spread over every weak cell moves none of them measurably.",
    )
    min_per_cell: int = Field(default=1, ge=0, description="Prompts every weak (domain, task_type) gets first.")
    budget_usd: float | None = Field(
        default=RULES.budget_usd,
        ge=0,
        description="USD the loop may spend (teacher, judge, GPU and evaluation, its first round included). Stop "
        "(budget_exhausted) when what it spent plus the next round's estimate would exceed it, or when either is "
        "unknown (a model without a price). Unset: no budget.",
    )
    min_gain_per_usd: float | None = Field(
        default=RULES.min_gain_per_usd,
        ge=0,
        description="Floor on the last round's focus lift (score points, 1–5 scale) per USD it cost. Stop "
        "(low_gain_per_dollar) below it, or when that round's $ is unknown; a free round never stops. Unset: no floor.",
    )

    def rules(self, metrics: tuple[str, ...]) -> LoopRules:
        unknown = sorted(set(self.thresholds) - set(metrics))
        if unknown:
            raise ValueError(f"unknown metrics in thresholds: {unknown}; valid values are {', '.join(metrics)}")
        return LoopRules(**{f.name: getattr(self, f.name) for f in fields(LoopRules)})

    def buying(self) -> Buying:
        return Buying(**{f.name: getattr(self, f.name) for f in fields(Buying)})


@dg.multi_asset(specs=[_spec(table, deps) for table, deps in UPSTREAM.items()])
def feedback_loop(
    context: dg.AssetExecutionContext, config: FeedbackConfig, lake: LakeResource, judge: JudgeResource
) -> Iterator[dg.MaterializeResult]:
    """Find the weak cells of the newest checkpoint, apply the stop rules, request targeted prompts, and record
    what the round cost and what the next one is estimated to cost."""
    rubric_metrics = load_rubric(judge.rubric).metrics
    try:
        rules = config.rules(rubric_metrics)
    except ValueError as exc:
        raise dg.Failure(str(exc)) from None
    model_id = newest_checkpoint(lake)["checkpoint_id"]
    round_ = resolve_round(context, config.round, lake)
    try:
        judged = judge_feedback_round(lake, judge.judge_model, model_id, round_, rules, config.buying())
    except RoundError as exc:
        raise dg.Failure(str(exc)) from None
    lineage = Lineage.from_context(context, round_)
    # Requests first: once feedback/weaknesses is reported, the sensor may launch the next round at once.
    if lake.exists("feedback/requests"):
        # A re-judged round (e.g. with new thresholds) replaces the open requests it made before.
        lake.delete("feedback/requests", f"round = {int(round_)} AND status = 'open'", lineage=lineage)
    requests = judged.requests
    wrote_requests = None
    if requests is not None and requests.height:
        wrote_requests = lake.write("feedback/requests", requests, mode="merge", lineage=lineage)
    row = judged.ledger_row(lake.read("feedback/rounds", missing_ok=True))
    wrote_round = lake.write("feedback/rounds", row, mode="merge", lineage=lineage)
    written = lake.write("feedback/weaknesses", judged.verdict.cells, mode="merge", lineage=lineage)
    context.log.info(round_log(judged))
    yield materialization("feedback/weaknesses", written, lake, **weaknesses_metadata(judged, rubric_metrics))
    yield materialization("feedback/requests", wrote_requests, lake, **requests_metadata(judged))
    ledger = lake.read("feedback/rounds")
    yield materialization("feedback/rounds", wrote_round, lake, **rounds_metadata(judged, ledger))


ASSETS = [feedback_loop]
