"""feedback/weaknesses, feedback/requests and feedback/rounds (group `feedback`): the cells that fall short, the
data bought for them, and what each round cost against its estimate. One op writes the three tables before any
materialization is reported, so the feedback sensor, which reacts to feedback/weaknesses, never sees a round whose
requests or next-round estimate are not written yet."""

import json
from collections.abc import Iterator
from dataclasses import fields, replace

import dagster as dg
import polars as pl
from pydantic import Field

from nexa_assets.train.registry import newest_checkpoint
from nexa_assets.evaluate.report import cell_heatmap_markdown
from nexa_assets.evaluate.rubric import load_rubric
from nexa_assets.feedback.requests import build_requests
from nexa_assets.feedback.spend import (
    CostTables,
    Estimate,
    estimate_made_for,
    estimate_next,
    ledger_row,
    ledger_view,
    measured,
    round_costs,
    spent,
    usd_tag,
)
from nexa_assets.feedback.weakness import (
    target,
    LoopRules,
    classify_cells,
    focus_cells,
    gain_per_usd,
    judge_round,
    spending_stop,
)
from nexa_assets.metadata import markdown_table
from nexa_assets.rounds import ESTIMATE_TAG, resolve_round
from nexa_resources.judge import JudgeResource
from nexa_resources.lake import LakeResource, Lineage

METRICS = dg.AssetKey(["eval", "metrics"])
SCORES = dg.AssetKey(["eval", "scores"])
WEAKNESSES = dg.AssetKey(["feedback", "weaknesses"])
REQUESTS = dg.AssetKey(["feedback", "requests"])
ROUNDS = dg.AssetKey(["feedback", "rounds"])
# The tables whose cost columns the ledger sums.
COST_SOURCES = [
    dg.AssetKey(["distill", "completions"]),
    dg.AssetKey(["distill", "pairs"]),
    dg.AssetKey(["train", "checkpoints"]),
    dg.AssetKey(["eval", "predictions"]),
    SCORES,
]


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


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            WEAKNESSES,
            deps=[METRICS],
            description="Every cell (domain, task_type, metric) of the newest checkpoint in a round: score with "
            "its 95% interval, threshold, gap, status weak|pass (weak: the mean is below the threshold, where "
            "the loop buys data) and clearly_weak (the whole interval is below it: a shortfall, not noise); "
            "the paired change vs the previous round's checkpoint on the same prompts with its interval; and "
            "the round's stop reason, first match wins (all_cells_pass | no_improvement: the focus cells' paired "
            "lift has a 95% interval that does not lie above 0 | round_cap | low_gain_per_dollar: the last "
            "round's lift per $ is below min_gain_per_usd | budget_exhausted: the next round's estimate would "
            "take the loop past budget_usd; null while the loop goes on). Its metadata carries the next round's "
            "estimated $ (nexa/estimated_cost_usd). The feedback sensor watches this asset.",
            group_name="feedback",
            kinds={"polars", "deltalake"},
        ),
        dg.AssetSpec(
            REQUESTS,
            deps=[SCORES],
            description="New prompts to buy for the next round per weak (domain, task_type), in proportion to "
            "its gap, with hints from what the judge found lacking; raw/prompts fulfils the open ones.",
            group_name="feedback",
            kinds={"polars", "deltalake"},
        ),
        dg.AssetSpec(
            ROUNDS,
            deps=COST_SOURCES,
            description="The loop's ledger, one row per round (key round): its teacher, judge, GPU and evaluation "
            "$ measured from the lake's cost columns (null: a price is unknown, never $0) beside the estimate made "
            "for it before it ran, the loop's spend so far and budget, the focus lift per $, the next round's "
            "estimate with how it was made, and the stop reason with the money rules' figures.",
            group_name="feedback",
            kinds={"polars", "deltalake"},
        ),
    ],
)
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
    checkpoint = newest_checkpoint(lake)
    model_id = checkpoint["checkpoint_id"]
    metrics = lake.read("eval/metrics").filter(pl.col("judge_model") == judge.judge_model)
    cells = classify_cells(metrics, model_id, rules)
    if cells.is_empty():
        raise dg.Failure(f"eval/metrics has no rows for checkpoint {model_id}: materialize the evaluate group first")
    round_ = resolve_round(context, config.round, lake)
    history = lake.read("feedback/weaknesses", missing_ok=True)
    previous = history.filter(pl.col("round") == round_ - 1) if history.height else None

    # Pair this checkpoint's scores with the previous round's checkpoint's, on the judge, rubric and eval
    # set that this round's eval/metrics rows come from.
    judged = lake.read("eval/scores").filter(pl.col("judge_model") == judge.judge_model)
    scores = judged.filter(pl.col("model_id") == model_id)
    mine = metrics.filter(pl.col("model_id") == model_id)
    comparable = judged.filter(
        (pl.col("rubric_version") == mine["rubric_version"][0]) & (pl.col("eval_set") == mine["eval_set"][0])
    )
    before = after = None
    if previous is not None and previous.height:
        previous_model = previous["model_id"][0]
        before = comparable.filter(pl.col("model_id") == previous_model)
        after = comparable.filter(pl.col("model_id") == model_id)
    verdict = judge_round(cells, previous, rules, before, after)
    weak = verdict.weak
    lift = verdict.focus_lift

    # What this round cost (measured) and the loop so far: rounds round_ - loop_round .. round_ are this loop's.
    tables = CostTables.read(lake)
    costs = round_costs(tables)
    cost = measured(costs, round_)
    spent_usd = spent(costs, round_ - verdict.loop_round, round_)
    lift_mean = lift.mean if lift is not None else None
    gain = gain_per_usd(lift_mean, cost.total_usd)

    focus = focus_cells(weak, config.max_focus_cells) if verdict.stop_reason is None else []
    targeted = target(verdict.cells, focus).filter(pl.col("targeted"))
    requests = (
        build_requests(targeted, scores, budget=config.prompts_per_round, for_round=round_ + 1, min_per_cell=config.min_per_cell)
        if verdict.stop_reason is None
        else None
    )
    # The next round's $, estimated before it runs from this round's unit costs; then the money rules.
    next_round: Estimate | None = None
    stop_detail: str | None = None
    if requests is not None:
        next_round = estimate_next(tables, costs, round_, model_id, int(requests["n_prompts"].sum()))
        money = spending_stop(
            rules,
            loop_round=verdict.loop_round,
            lift=lift_mean,
            round_usd=cost.total_usd,
            round_unknown=cost.unknown,
            spent_usd=spent_usd,
            next_usd=next_round.total_usd,
            next_unknown=next_round.cost.unknown,
        )
        if money is not None:
            reason, stop_detail = money
            verdict, focus, requests = verdict.stopped(reason), [], None
    verdict = replace(verdict, cells=target(verdict.cells, focus))
    lineage = Lineage(run_id=context.run.run_id, round=round_)
    # Requests first: once feedback/weaknesses is reported, the sensor may launch the next round at once.
    # A re-judged round replaces its own open requests (e.g. after a threshold change).
    if lake.exists("feedback/requests"):
        # A re-judged round (e.g. with new thresholds) replaces the open requests it made before.
        lake.delete("feedback/requests", f"round = {int(round_)} AND status = 'open'", lineage=lineage)
    wrote_requests = None
    if requests is not None and requests.height:
        wrote_requests = lake.write("feedback/requests", requests, mode="merge", lineage=lineage)
    ledger = lake.read("feedback/rounds", missing_ok=True)
    stop = verdict.stop_reason
    row = ledger_row(
        loop_id=rules.loop_id,
        loop_round=verdict.loop_round,
        checkpoint_id=model_id,
        cost=cost,
        estimated=estimate_made_for(ledger, round_),
        spent_usd=spent_usd,
        budget_usd=rules.budget_usd,
        focus_lift=lift_mean,
        gain_per_usd=gain,
        min_gain_per_usd=rules.min_gain_per_usd,
        next_round=next_round,
        stop_reason=stop,
        stop_detail=stop_detail,
    )
    wrote_round = lake.write("feedback/rounds", row, mode="merge", lineage=lineage)
    written = lake.write(
        "feedback/weaknesses",
        verdict.cells,
        mode="merge",
        lineage=lineage,
    )
    drop = verdict.largest_other_drop
    estimate_text = usd_tag(next_round.total_usd) if next_round is not None else ""
    context.log.info(
        f"round {round_} ({rules.loop_id}, loop round {verdict.loop_round}): {weak.height} of {cells.height} cells "
        f"weak ({int(verdict.cells['clearly_weak'].sum())} clearly); "
        + (f"focus lift {lift} over {lift.n} prompts, improved: {verdict.improved}; " if lift is not None else "")
        + f"cost {cost}, loop spent {usd_tag(spent_usd)}"
        + (f" of budget {rules.budget_usd:g}" if rules.budget_usd is not None else "")
        + "; "
        + (f"loop stops: {stop}" + (f" ({stop_detail})" if stop_detail else "") if stop
           else f"requesting {requests.height if requests is not None else 0} cells for round {round_ + 1}: "
                f"{', '.join(focus)}, estimated $ {estimate_text} ({next_round.basis if next_round else ''})")
    )
    thresholds = {m: rules.threshold(m) for m in rubric_metrics}
    yield dg.MaterializeResult(
        asset_key=WEAKNESSES,
        metadata={
            **written.metadata(),
            "dagster/row_count": lake.read("feedback/weaknesses", columns=["metric"]).height,
            "round": round_,
            "checkpoint_id": model_id,
            "weak_cells": weak.height,
            "cells": cells.height,
            "focus_cells": dg.MetadataValue.json(focus),
            "stop_reason": stop or "",
            "loop_id": rules.loop_id,
            "loop_round": verdict.loop_round,
            "clearly_weak_cells": int(verdict.cells["clearly_weak"].sum()),
            "focus_lift": _rounded(lift.mean) if lift is not None else None,
            "focus_lift_ci": dg.MetadataValue.json([_rounded(lift.ci_low), _rounded(lift.ci_high)])
            if lift is not None and lift.ci_low is not None
            else None,
            "focus_lift_n": lift.n if lift is not None else None,
            "improved": verdict.improved,
            # The next round's estimated $ as the sensor copies it into the run's tags ('unknown' when a price
            # is; empty when the loop stopped before estimating).
            ESTIMATE_TAG: dg.MetadataValue.text(estimate_text),
            "round_usd": _rounded(cost.total_usd),
            "loop_spent_usd": _rounded(spent_usd),
            "largest_other_drop": dg.MetadataValue.json(
                {k: _rounded(v) if isinstance(v, float) else v for k, v in drop.items()}
            )
            if drop is not None
            else None,
            "thresholds": dg.MetadataValue.json(thresholds),
            "cell_scores": dg.MetadataValue.md(
                cell_heatmap_markdown(
                    metrics.filter(pl.col("model_id") == model_id), f"round {round_}: weak cells outlined", thresholds
                )
            ),
            "weak": dg.MetadataValue.md(
                markdown_table(
                    weak.sort("gap", descending=True).select(
                        "domain", "task_type", "metric", pl.col("score").round(3), "n", pl.col("ci_high").round(3),
                        "threshold", pl.col("gap").round(3), "clearly_weak", pl.col("change").round(3),
                        pl.col("change_ci_low").round(3), pl.col("change_ci_high").round(3),
                    ),
                    rows=20,
                )
            ),
        },
    )
    table = lake.read("feedback/requests", missing_ok=True)
    yield dg.MaterializeResult(
        asset_key=REQUESTS,
        metadata={
            **(wrote_requests.metadata() if wrote_requests else {"delta_version": lake.version("feedback/requests")}),
            "dagster/row_count": table.height,
            "round": round_,
            "for_round": round_ + 1,
            "requested_prompts": int(requests["n_prompts"].sum()) if requests is not None and requests.height else 0,
            "stop_reason": stop or "",
            "requests": dg.MetadataValue.md(
                markdown_table(
                    requests.select("domain", "task_type", "n_prompts", pl.col("gap").round(3), "hints")
                    if requests is not None
                    else pl.DataFrame(),
                    rows=20,
                )
            ),
            "focus": dg.MetadataValue.text(json.dumps(focus)),
        },
    )
    ledger = lake.read("feedback/rounds")
    yield dg.MaterializeResult(
        asset_key=ROUNDS,
        metadata={
            **wrote_round.metadata(),
            "dagster/row_count": ledger.height,
            "round": round_,
            "round_usd": _rounded(cost.total_usd),
            "cost_known": not cost.unknown,
            "loop_spent_usd": _rounded(spent_usd),
            "budget_usd": rules.budget_usd,
            "gain_per_usd": _rounded(gain),
            ESTIMATE_TAG: dg.MetadataValue.text(estimate_text),
            "stop_reason": stop or "",
            "stop_detail": stop_detail or "",
            "ledger": dg.MetadataValue.md(
                markdown_table(ledger_view(ledger).tail(20), rows=20)
            ),
        },
    )


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


ASSETS = [feedback_loop]
