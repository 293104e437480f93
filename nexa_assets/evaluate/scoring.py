"""Judge verdicts → eval/scores rows, and scores → eval/metrics rows (mean, n, 95% CI per cell)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from nexa_core.rubric import JudgeVerdict
from nexa_assets.evaluate.stats import mean_ci
from nexa_resources.tables.eval import METRIC_SCHEMA, SCORE_SCHEMA

PREDICTION_FAILED = "prediction_failed"


def judge_items(predictions: pl.DataFrame, prompts: pl.DataFrame) -> list[dict[str, Any]]:
    """What the judge sees for each answered prediction: task type, instruction, context, answer."""
    joined = predictions.join(
        prompts.select("prompt_id", "instruction", "context"), on="prompt_id", how="left", validate="m:1"
    )
    missing = joined.filter(pl.col("instruction").is_null())
    if missing.height:
        raise ValueError(
            f"{missing.height} predictions have no eval prompt (e.g. prompt_id {missing['prompt_id'][0]}): "
            "re-materialize eval/prompts"
        )
    return [
        {
            "owner": f"eval/scores:{row['model_id']}/{row['prompt_id']}",
            "task_type": row["task_type"],
            "instruction": row["instruction"],
            "context": row["context"],
            "answer": row["prediction"],
            "finish_reason": row["finish_reason"],
        }
        for row in joined.iter_rows(named=True)
    ]


def teacher_references(predictions: pl.DataFrame, prompts: pl.DataFrame) -> tuple[str | None, list[dict[str, Any]]]:
    """(reference model, rows with keys prompt_id, task_type, instruction, context, reference, finish_reason): the
    teacher row's answers (model_kind 'teacher', answered) among `predictions`, which should be one eval set's.
    With several teacher rows, the one that answered the most prompts (ties: the newest, then the name); (None, [])
    with none."""
    teachers = predictions.filter((pl.col("model_kind") == "teacher") & pl.col("error").is_null())
    if teachers.is_empty():
        return None, []
    newest = pl.col("created_at").max() if "created_at" in teachers.columns else pl.lit(None)
    ranked = teachers.group_by("model_id").agg(pl.len().alias("n"), newest.alias("newest"))
    model_id = ranked.sort(["n", "newest", "model_id"], descending=True, nulls_last=True)["model_id"][0]
    mine = teachers.filter(pl.col("model_id") == model_id).select(
        "prompt_id", "task_type", pl.col("prediction").alias("reference"), "finish_reason"
    )
    rows = mine.join(prompts.select("prompt_id", "instruction", "context"), on="prompt_id", how="inner")
    return model_id, rows.to_dicts()


def judge_per_model(
    judge: Callable[[list[dict[str, Any]], list[dict[str, Any]]], list[JudgeVerdict]],
    answered: pl.DataFrame,
    prompts: pl.DataFrame,
    judged_before: pl.DataFrame,
) -> list[JudgeVerdict]:
    """Verdicts for the answered predictions, in their order, judged one model at a time with
    `judge(items, corpus)`: the corpus is that model's answers in `judged_before` (already scored), so an
    answer a model gives to many prompts is seen even when only some were judged in this run."""
    verdicts: dict[tuple[str, str], JudgeVerdict] = {}
    for model_id in answered["model_id"].unique(maintain_order=True).to_list():
        mine = answered.filter(pl.col("model_id") == model_id)
        earlier = judged_before.filter((pl.col("model_id") == model_id) & pl.col("error").is_null())
        earlier = earlier.join(mine.select("prompt_id"), on="prompt_id", how="anti")
        judged = judge(judge_items(mine, prompts), judge_items(earlier, prompts) if earlier.height else [])
        verdicts.update(zip(zip(mine["model_id"], mine["prompt_id"]), judged, strict=True))
    return [verdicts[key] for key in zip(answered["model_id"], answered["prompt_id"])]


def score_rows(
    predictions: pl.DataFrame,
    verdicts: Sequence[JudgeVerdict | None],
    *,
    metrics: Sequence[str],
    judge_model: str,
    rubric_version: str,
) -> pl.DataFrame:
    """One row per (prediction, metric). A prediction that failed, or a verdict the judge could not give,
    becomes rows with a null score and the reason in `error`: recorded, never a 0 averaged in."""
    if len(verdicts) != predictions.height:
        raise ValueError(f"{len(verdicts)} verdicts for {predictions.height} predictions")
    rows: list[dict[str, Any]] = []
    for prediction, verdict in zip(predictions.iter_rows(named=True), verdicts, strict=True):
        if prediction["error"] is not None or verdict is None:
            error: str | None = f"{PREDICTION_FAILED}: {prediction['error'] or 'no answer'}"
            scores: dict[str, int] | None = None
            lacking: dict[str, str] = {}
            verdict = None
        else:
            error, scores, lacking = verdict.error, verdict.scores, verdict.lacking
        for metric, cost in zip(metrics, split_cost(verdict, len(metrics)), strict=True):
            rows.append(
                {
                    "model_id": prediction["model_id"],
                    "prompt_id": prediction["prompt_id"],
                    "metric": metric,
                    "domain": prediction["domain"],
                    "task_type": prediction["task_type"],
                    "judge_model": judge_model,
                    "rubric_version": rubric_version,
                    "score": scores.get(metric) if scores else None,
                    "rationale": lacking.get(metric),
                    "error": None if scores else (error or "judge_unparsable: no scores"),
                    "truncated": prediction["finish_reason"] == "length",
                    "eval_set": prediction["eval_set"],
                    **cost,
                }
            )
    return pl.DataFrame(rows, schema=SCORE_SCHEMA)


def split_cost(verdict: JudgeVerdict | None, parts: int) -> list[dict[str, Any]]:
    """One verdict's tokens and $ over its `parts` metric rows, so that their sums are the verdict's (tables/eval.py)."""
    prompt, completion = (verdict.prompt_tokens, verdict.completion_tokens) if verdict else (0, 0)
    usd = verdict.cost_usd if verdict else 0.0
    return [
        {
            "judge_prompt_tokens": prompt // parts + (i < prompt % parts),
            "judge_completion_tokens": completion // parts + (i < completion % parts),
            "judge_cost_usd": None if usd is None else usd / parts,
        }
        for i in range(parts)
    ]


def cell_metrics(scores: pl.DataFrame, models: pl.DataFrame, scale: tuple[int, int] = (1, 5)) -> pl.DataFrame:
    """Aggregate scores per (model_id, domain, task_type, metric).

    `models` maps model_id to model_kind and checkpoint_id. Failed verdicts count in `judge_failures`, not
    in the mean; `truncation_rate` is the share of the cell's predictions cut at max_tokens.
    """
    keys = ["model_id", "domain", "task_type", "metric"]
    rows: list[dict[str, Any]] = []
    kinds = {r["model_id"]: r for r in models.iter_rows(named=True)}
    for group in scores.partition_by(keys, maintain_order=True):
        first = group.row(0, named=True)
        valid = group["score"].drop_nulls().cast(pl.Float64).to_list()
        stats = mean_ci(valid, (float(scale[0]), float(scale[1])))
        model = kinds.get(first["model_id"], {})
        rows.append(
            {
                **{k: first[k] for k in keys},
                "model_kind": model.get("model_kind"),
                "model_label": model.get("model_label"),
                "checkpoint_id": model.get("checkpoint_id"),
                "mean": stats.mean,
                "n": stats.n,
                "std": stats.std,
                "ci_low": stats.ci_low,
                "ci_high": stats.ci_high,
                "judge_failures": group["score"].null_count(),
                "truncation_rate": float(group["truncated"].mean() or 0.0),
                "judge_model": first["judge_model"],
                "rubric_version": first["rubric_version"],
                "eval_set": first["eval_set"],
            }
        )
    return pl.DataFrame(rows, schema=METRIC_SCHEMA)


def by_round(frame: pl.DataFrame, trained: pl.DataFrame, run_round: int) -> dict[int, pl.DataFrame]:
    """eval/metrics rows per round: a checkpoint's rows carry the round it was trained in (`trained`:
    checkpoint_id, round), reference models' the run's round."""
    rounds = {r["checkpoint_id"]: r["round"] for r in trained.iter_rows(named=True)} if trained.height else {}
    tagged = frame.with_columns(
        pl.col("model_id").replace_strict(rounds, default=run_round, return_dtype=pl.Int64).alias("_round")
    )
    return {int(r): part.drop("_round") for (r,), part in tagged.partition_by("_round", as_dict=True).items()}
