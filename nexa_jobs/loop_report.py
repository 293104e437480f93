"""Per-round tables of the feedback loop, read from the lake (the demo and bench/loop.py print them).

Changes are paired (the same prompts scored before and after) with 95% Student-t intervals, so a reader
can tell a lift from noise: with ~12 prompts per cell a mean moves by several tenths by chance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from nexa_assets.evaluate.judge_costs import format_usd, judge_spend
from nexa_assets.feedback.lift import format_change
from nexa_assets.feedback.spend import ledger_view
from nexa_assets.feedback.weakness import largest_other_drop
from nexa_resources.lake import LakeResource
from nexa_resources.tables.feedback import WEAKNESS_SCHEMA


def _weaknesses(lake: LakeResource) -> pl.DataFrame:
    """feedback/weaknesses, with the columns an older table lacks added as nulls."""
    frame = lake.read("feedback/weaknesses", missing_ok=True)
    if frame.is_empty():
        return frame
    missing = [pl.lit(None, dtype=dtype).alias(c) for c, dtype in WEAKNESS_SCHEMA.items() if c not in frame.columns]
    return frame.with_columns(missing) if missing else frame


def _half(low: float | None, high: float | None) -> float | None:
    return (high - low) / 2 if low is not None and high is not None else None


def _cell_text(row: dict[str, Any]) -> str:
    """'3.10** (+0.65±0.40)': the mean, * weak / ** clearly weak, and the paired change vs the previous round."""
    score = row["score"]
    text = "–" if score is None else f"{score:.2f}"
    if row["status"] == "weak":
        text += "**" if row["clearly_weak"] else "*"
    if row["change"] is not None:
        half = _half(row["change_ci_low"], row["change_ci_high"])
        spread = f"±{half:.2f}" if half is not None else f", n={row['change_n']}"
        text += f" ({row['change']:+.2f}{spread})"
    return text


def cell_scores_by_round(lake: LakeResource) -> pl.DataFrame:
    """One row per cell (domain, task_type, metric), one column per round: the evaluated checkpoint's mean
    score (eval.metrics), `*` when the cell was weak that round (mean below threshold), `**` when clearly
    weak (its whole 95% interval below), and in brackets the paired change vs the previous round's checkpoint
    ± the half-width of its 95% interval (a change within ± of 0 is noise); `n`: scored prompts, last round."""
    weaknesses = _weaknesses(lake)
    if weaknesses.is_empty():
        return pl.DataFrame()
    ordered = weaknesses.sort("round")
    marked = ordered.with_columns(
        pl.Series("cell", [_cell_text(r) for r in ordered.iter_rows(named=True)], dtype=pl.String),
        ("round " + pl.col("round").cast(pl.String)).alias("round_name"),
    )
    keys = ["domain", "task_type", "metric"]
    table = marked.pivot(on="round_name", index=keys, values="cell", sort_columns=False)
    n = ordered.group_by(keys).agg(pl.col("n").last())
    return table.join(n, on=keys, how="left").select(*keys, "n", pl.exclude(*keys, "n")).sort(keys)


def _drop_text(drop: dict[str, Any] | None) -> str:
    if drop is None:
        return "—"
    return f"{format_change(drop['change'], drop['ci_low'], drop['ci_high'])} {drop['cell']}"


def _lift_rows(weaknesses: pl.DataFrame) -> pl.DataFrame:
    """Per round: the focus lift with its interval, improved, and the largest drop of a non-focus cell."""
    rows = []
    for (round_,), part in weaknesses.group_by("round"):
        first = part.row(0, named=True)
        rows.append(
            {
                "round": round_,
                "focus_lift": format_change(first["focus_lift"], first["focus_lift_ci_low"], first["focus_lift_ci_high"]),
                "improved": first["improved"],
                "largest_other_drop": _drop_text(largest_other_drop(part)),
            }
        )
    schema = {"round": weaknesses.schema["round"], "focus_lift": pl.String, "improved": pl.Boolean,
              "largest_other_drop": pl.String}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def rounds_summary(lake: LakeResource) -> pl.DataFrame:
    """One row per round: checkpoint, weak (and clearly weak) cells, mean score, the focus cells' paired lift
    '+0.42 [+0.10, +0.74]' (95% interval), improved (interval above 0), the largest drop of another cell,
    the stop reason, the teacher's requests, tokens and $ spent in that round (distill.completions), the
    judge's (distill.pairs and eval.scores; `judge_usd` "unknown" when a paid verdict has no known price), and the
    round's whole $ estimated before and measured after with the next round's estimate (feedback.rounds)."""
    weaknesses = _weaknesses(lake)
    if weaknesses.is_empty():
        return pl.DataFrame()
    per_round = (
        weaknesses.group_by("round")
        .agg(
            pl.col("model_id").first().alias("checkpoint"),
            (pl.col("status") == "weak").sum().alias("weak_cells"),
            pl.col("clearly_weak").fill_null(False).sum().alias("clearly_weak"),
            pl.len().alias("cells"),
            pl.col("score").mean().round(3).alias("mean_score"),
            pl.col("stop_reason").first().alias("stop_reason"),
        )
        .join(_lift_rows(weaknesses), on="round", how="left")
        .select(
            "round", "checkpoint", "weak_cells", "clearly_weak", "cells", "mean_score", "focus_lift", "improved",
            "largest_other_drop", "stop_reason",
        )
        .sort("round")
    )
    completions = lake.read(
        "distill/completions", columns=["round", "prompt_tokens", "completion_tokens", "cost_usd"], missing_ok=True
    )
    if completions.is_empty():
        spend = pl.DataFrame(schema={"round": pl.Int64, "teacher_requests": pl.UInt32})
    else:
        spend = completions.group_by("round").agg(
            pl.len().alias("teacher_requests"),
            (pl.col("prompt_tokens") + pl.col("completion_tokens")).sum().alias("teacher_tokens"),
            pl.col("cost_usd").sum().round(6).alias("teacher_usd"),
        )
    prompts = lake.read("raw/prompts", columns=["round", "origin"], missing_ok=True)
    bought = (
        prompts.filter(pl.col("origin") == "feedback").group_by("round").agg(pl.len().alias("new_prompts"))
        if prompts.height
        else pl.DataFrame(schema={"round": pl.Int64, "new_prompts": pl.UInt32})
    )
    return (
        per_round.join(spend, on="round", how="left")
        .join(judge_by_round(lake), on="round", how="left")
        .join(bought, on="round", how="left")
        .join(ledger_by_round(lake), on="round", how="left")
        .with_columns(pl.col("stop_reason").fill_null("—"), pl.col("new_prompts").fill_null(0))
    )


def ledger_by_round(lake: LakeResource) -> pl.DataFrame:
    """Per round, from feedback.rounds: the $ estimated before it ran and measured after (all parts), and the next
    round's estimate, as text ("unknown" for a price the lake does not know, "—" where no estimate was made)."""
    view = ledger_view(lake.read("feedback/rounds", missing_ok=True))
    return view.select(
        "round", pl.col("estimated").alias("usd_estimated"), pl.col("measured").alias("usd_measured"),
        pl.col("next_estimate").alias("next_usd_estimated"),
    )


def judge_by_round(lake: LakeResource) -> pl.DataFrame:
    """Per round: judge requests paid, tokens, and $ as text ("unknown" when any paid verdict has no price)."""
    spend = judge_spend(
        lake.read("distill/pairs", missing_ok=True), lake.read("eval/scores", missing_ok=True)
    ).group_by("round").agg(
        pl.col("requests").sum().alias("judge_requests"),
        (pl.col("prompt_tokens") + pl.col("completion_tokens")).sum().alias("judge_tokens"),
        pl.when(pl.col("cost_usd").null_count() > 0).then(None).otherwise(pl.col("cost_usd").sum()).alias("usd"),
    )
    usd = [format_usd(v) for v in spend["usd"].to_list()]
    return spend.with_columns(pl.Series("judge_usd", usd, dtype=pl.String)).drop("usd")


def stage_seconds(instance: Any, rounds: list[dict[str, Any]], stages: Mapping[str, str]) -> pl.DataFrame:
    """Wall seconds per stage (op name prefix → stage) and round, from each round run's step stats; asset-check
    steps (e.g. sft__examples_sft_decontamination) count with their asset."""
    rows = []
    for r in rounds:
        by_stage: dict[str, float] = {}
        for stat in instance.get_run_step_stats(str(r["run_id"])):
            if stat.start_time and stat.end_time:
                op = next((k for k in stages if stat.step_key.startswith(k)), stat.step_key)
                stage = stages.get(op, op)
                by_stage[stage] = by_stage.get(stage, 0.0) + stat.end_time - stat.start_time
        rows.append({"round": int(r["round"]), **{k: round(by_stage.get(k, 0.0), 1) for k in dict.fromkeys(stages.values())},
                     "round_wall_s": round(float(r["wall_s"]), 1)})
    return pl.DataFrame(rows)
