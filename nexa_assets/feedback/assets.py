"""feedback/weaknesses and feedback/requests (group `feedback`): the cells that fall short and the data
bought for them. One op writes both tables before either materialization is reported, so the feedback
sensor, which reacts to feedback/weaknesses, never sees a round whose requests are not written yet."""

import json
from collections.abc import Iterator
from dataclasses import replace

import dagster as dg
import polars as pl
from pydantic import Field

from nexa_assets.evaluate.assets import newest_checkpoint
from nexa_assets.evaluate.report import cell_heatmap_markdown
from nexa_assets.evaluate.rubric import load_rubric
from nexa_assets.feedback.requests import build_requests
from nexa_assets.feedback.weakness import (
    target,
    LoopRules,
    classify_cells,
    focus_cells,
    judge_round,
)
from nexa_assets.metadata import markdown_table
from nexa_assets.rounds import resolve_round
from nexa_resources.judge import JudgeResource
from nexa_resources.lake import LakeResource, Lineage

METRICS = dg.AssetKey(["eval", "metrics"])
SCORES = dg.AssetKey(["eval", "scores"])
WEAKNESSES = dg.AssetKey(["feedback", "weaknesses"])
REQUESTS = dg.AssetKey(["feedback", "requests"])


class FeedbackConfig(dg.Config):
    """Thresholds per metric, the loop's stop rules, and how many prompts a round may buy."""

    round: int | None = Field(
        default=None,
        description="The round being judged; unset: the run's nexa/round tag, else the latest round (a manual "
        "run re-judges the current round, e.g. with new thresholds).",
    )
    default_threshold: float = Field(default=3.5, ge=1, le=5, description="Pass mark of every metric (1–5 scale).")
    thresholds: dict[str, float] = Field(default_factory=dict, description="Per-metric pass marks (override).")
    max_rounds: int = Field(default=3, ge=0, description="Feedback rounds one loop may launch (the round cap).")
    min_improvement: float = Field(
        default=0.0,
        ge=0,
        description="Floor on the focus cells' paired mean lift (score points) on top of its 95% interval lying "
        "above 0; 0: the interval alone decides. Stop (no_improvement) when either fails.",
    )
    prompts_per_round: int = Field(default=24, ge=1, description="New prompts bought per round, over the focus cells.")
    max_focus_cells: int = Field(
        default=2,
        ge=0,
        description="Buy for at most this many weak (domain, task_type) cells per round, largest gap first (0 = all): "
        "a budget spread over every weak cell moves none of them measurably.",
    )
    min_per_cell: int = Field(default=1, ge=0, description="Prompts every weak (domain, task_type) gets first.")

    def rules(self, metrics: tuple[str, ...]) -> LoopRules:
        unknown = sorted(set(self.thresholds) - set(metrics))
        if unknown:
            raise ValueError(f"unknown metrics in thresholds: {unknown}; valid values are {', '.join(metrics)}")
        return LoopRules(self.default_threshold, dict(self.thresholds), self.max_rounds, self.min_improvement)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            WEAKNESSES,
            deps=[METRICS],
            description="Every cell (domain, task_type, metric) of the newest checkpoint in a round: score with "
            "its 95% interval, threshold, gap, status weak|pass (weak: the mean is below the threshold, where "
            "the loop buys data) and clearly_weak (the whole interval is below it: a shortfall, not noise); "
            "the paired change vs the previous round's checkpoint on the same prompts with its interval; and "
            "the round's stop reason (all_cells_pass | no_improvement: the focus cells' paired lift has a 95% "
            "interval that does not lie above 0 | round_cap; null while the loop goes on). The feedback sensor "
            "watches this asset.",
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
    ],
)
def feedback_loop(
    context: dg.AssetExecutionContext, config: FeedbackConfig, lake: LakeResource, judge: JudgeResource
) -> Iterator[dg.MaterializeResult]:
    """Find the weak cells of the newest checkpoint, apply the stop rules, and request targeted prompts."""
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
    focus = focus_cells(weak, config.max_focus_cells) if verdict.stop_reason is None else []
    verdict = replace(verdict, cells=target(verdict.cells, focus))
    targeted = verdict.cells.filter(pl.col("targeted"))
    lineage = Lineage(run_id=context.run.run_id, round=round_)
    requests = (
        build_requests(targeted, scores, budget=config.prompts_per_round, for_round=round_ + 1, min_per_cell=config.min_per_cell)
        if verdict.stop_reason is None
        else None
    )
    # Requests first: once feedback/weaknesses is reported, the sensor may launch the next round at once.
    # A re-judged round replaces its own open requests (e.g. after a threshold change).
    if lake.exists("feedback/requests"):
        # A re-judged round (e.g. with new thresholds) replaces the open requests it made before.
        lake.delta_table("feedback/requests").delete(f"round = {int(round_)} AND status = 'open'")
    wrote_requests = None
    if requests is not None and requests.height:
        wrote_requests = lake.write("feedback/requests", requests, mode="merge", lineage=lineage)
    written = lake.write(
        "feedback/weaknesses",
        verdict.cells,
        mode="merge",
        lineage=lineage,
    )
    stop = verdict.stop_reason
    lift = verdict.focus_lift
    drop = verdict.largest_other_drop
    context.log.info(
        f"round {round_} ({rules.loop_id}, loop round {verdict.loop_round}): {weak.height} of {cells.height} cells "
        f"weak ({int(verdict.cells['clearly_weak'].sum())} clearly); "
        + (f"focus lift {lift} over {lift.n} prompts, improved: {verdict.improved}; " if lift is not None else "")
        + (f"loop stops: {stop}" if stop else f"requesting {requests.height if requests is not None else 0} "
                     f"cells for round {round_ + 1}: {', '.join(focus)}")
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


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


ASSETS = [feedback_loop]
