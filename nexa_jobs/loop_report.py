"""Per-round tables of the feedback loop, read from the lake (the demo and bench/loop.py print them)."""

from __future__ import annotations

import polars as pl

from nexa_resources.lake import LakeResource


def cell_scores_by_round(lake: LakeResource) -> pl.DataFrame:
    """One row per cell (domain, task_type, metric), one column per round: the evaluated checkpoint's mean
    score, marked `*` when the cell was weak that round (the numbers are eval.metrics' means)."""
    weaknesses = lake.read("feedback/weaknesses", missing_ok=True)
    if weaknesses.is_empty():
        return pl.DataFrame()
    marked = weaknesses.sort("round").with_columns(
        (
            pl.col("score").round(2).cast(pl.String).fill_null("–")
            + pl.when(pl.col("status") == "weak").then(pl.lit("*")).otherwise(pl.lit(""))
        ).alias("cell"),
        ("round " + pl.col("round").cast(pl.String)).alias("round_name"),
    )
    table = marked.pivot(on="round_name", index=["domain", "task_type", "metric"], values="cell", sort_columns=False)
    return table.sort("domain", "task_type", "metric")


def rounds_summary(lake: LakeResource) -> pl.DataFrame:
    """One row per round: checkpoint, threshold, weak cells, mean score, stop reason, and the teacher's
    requests, tokens and $ spent in that round (from distill.completions' round lineage)."""
    weaknesses = lake.read("feedback/weaknesses", missing_ok=True)
    if weaknesses.is_empty():
        return pl.DataFrame()
    per_round = (
        weaknesses.group_by("round")
        .agg(
            pl.col("model_id").first().alias("checkpoint"),
            (pl.col("status") == "weak").sum().alias("weak_cells"),
            pl.len().alias("cells"),
            pl.col("score").mean().round(3).alias("mean_score"),
            pl.col("stop_reason").first().alias("stop_reason"),
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
        .join(bought, on="round", how="left")
        .with_columns(pl.col("stop_reason").fill_null("—"), pl.col("new_prompts").fill_null(0))
    )
