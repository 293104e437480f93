"""What eval/predictions and eval/metrics report: answers per model, the overall leaderboard, the weakest cells."""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl

from nexa_assets.evaluate.answering import Answerer
from nexa_assets.evaluate.report import cell_heatmap_markdown
from nexa_assets.evaluate.stats import mean_ci
from nexa_assets.metadata import markdown_table, preview, rounded_table


def overall_by_model(scores: pl.DataFrame, metrics: pl.DataFrame) -> pl.DataFrame:
    """Per model: label, mean over answers (each answer's metric scores averaged first: the five scores of one
    answer are not independent samples) with its 95% interval, answers, and truncation rate."""
    rows = []
    per_answer = scores.drop_nulls("score").group_by("model_id", "prompt_id").agg(pl.col("score").mean())
    for (model_id,), part in per_answer.group_by("model_id"):
        stats = mean_ci(part["score"].to_list())
        rows.append(
            {
                "model_id": model_id,
                "overall": stats.mean,
                "ci_low": stats.ci_low,
                "ci_high": stats.ci_high,
                "answers": stats.n,
            }
        )
    labels = metrics.group_by("model_id").agg(pl.col("model_label").first(), pl.col("truncation_rate").mean())
    return (
        pl.DataFrame(rows)
        .join(labels, on="model_id", how="left")
        .select(
            "model_id",
            "model_label",
            *(pl.col(c).round(3) for c in ("overall", "ci_low", "ci_high")),
            "answers",
            pl.col("truncation_rate").round(3),
        )
    )


def predictions_metadata(
    table: pl.DataFrame, answers: Answerer, checkpoint: dict[str, Any], answered_on: str
) -> dict[str, Any]:
    """Which checkpoint answered where, and each model's answers, errors and truncation."""
    ckpt_id = checkpoint["checkpoint_id"]
    summary = pl.DataFrame([{"model_id": m, **s} for m, s in answers.stats.items()])
    return {
        "checkpoint_id": ckpt_id,
        "checkpoint_round": checkpoint.get("round"),
        "checkpoint_answered_on": answered_on,
        **({"eval_job": dg.MetadataValue.json(answers.ran)} if answers.ran else {}),
        "eval_prompts": answers.prompts.height,
        "requests_sent": int(summary["sent"].sum()),
        "by_model": dg.MetadataValue.md(markdown_table(summary, rows=summary.height)),
        "preview": preview(
            table.filter(pl.col("model_id") == ckpt_id),
            ["prompt_id", "domain", "task_type", "finish_reason", "completion_tokens", "prediction"],
        ),
    }


def metrics_metadata(eval_set: str, newest: str, frame: pl.DataFrame, overall: pl.DataFrame) -> dict[str, Any]:
    """The leaderboard (`overall_by_model`), and the newest checkpoint's cells, weakest first."""
    mine = frame.filter(pl.col("model_id") == newest)
    return {
        "eval_set": eval_set,
        "checkpoint_id": newest,
        "overall_by_model": dg.MetadataValue.md(markdown_table(overall.sort("overall", descending=True), rows=50)),
        "cell_scores": dg.MetadataValue.md(cell_heatmap_markdown(mine, f"{newest}: mean score per cell")),
        "weakest_cells": rounded_table(
            mine.sort("mean", nulls_last=False),
            ["domain", "task_type", "metric", "mean", "n", "ci_low", "ci_high", "judge_failures"],
            rounded=("mean", "ci_low", "ci_high"),
            rows=10,
        ),
    }
