"""Judging the current eval set: which predictions to judge, against which teacher answers, and what it cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from nexa_core.reference import ReferenceSet
from nexa_core.rubric import JudgeVerdict
from nexa_assets.evaluate.scoring import judge_items, judge_per_model, teacher_references
from nexa_assets.metadata import counts, preview
from nexa_resources.judge import JudgeCache, JudgeResource
from nexa_resources.lake import LakeResource


def reference_rows(
    judge: JudgeResource, predictions: pl.DataFrame, prompts: pl.DataFrame
) -> tuple[str | None, list[dict[str, Any]]]:
    """(teacher model, its answers) to judge one eval set's predictions against when the judge's `reference`
    option is on; (None, []) when it is off."""
    if not judge.reference:
        return None, []
    model, rows = teacher_references(predictions, prompts)
    if model is None:
        raise dg.Failure(
            "judge reference is on but eval/predictions has no teacher answers on this eval set: materialize "
            "eval/predictions with include_teacher: true, or turn the judge's reference option off"
        )
    return model, rows


@dataclass(frozen=True)
class EvalSet:
    """The current eval set's prompts and predictions, and the rubric version the judge scores them under."""

    prompts: pl.DataFrame
    predictions: pl.DataFrame
    reference_model: str | None
    teacher_rows: list[dict[str, Any]]
    rubric_version: str

    @classmethod
    def read(cls, lake: LakeResource, judge: JudgeResource) -> EvalSet:
        prompts = lake.read("eval/prompts")
        predictions = lake.read("eval/predictions").filter(pl.col("eval_set") == prompts["eval_set"][0])
        reference_model, teacher_rows = reference_rows(judge, predictions, prompts)
        return cls(prompts, predictions, reference_model, teacher_rows, judge.eval_rubric_version(reference_model))

    @property
    def eval_set(self) -> str:
        return self.prompts["eval_set"][0]

    def references(self) -> ReferenceSet | None:
        return ReferenceSet.build(self.teacher_rows) if self.reference_model is not None else None


def unscored(predictions: pl.DataFrame, scores: pl.DataFrame, judge_model: str, rubric_version: str) -> pl.DataFrame:
    """The predictions this judge and rubric have no score for yet."""
    if scores.is_empty():
        return predictions
    done = (
        scores.filter(
            (pl.col("judge_model") == judge_model)
            & (pl.col("rubric_version") == rubric_version)
            & pl.col("score").is_not_null()
        )
        .select("model_id", "prompt_id")
        .unique()
    )
    return predictions.join(done, on=["model_id", "prompt_id"], how="anti")


def judge_predictions(
    judge: JudgeResource,
    todo: pl.DataFrame,
    evals: EvalSet,
    references: ReferenceSet | None,
    cache: JudgeCache,
    log: Any,
) -> tuple[list[JudgeVerdict], list[JudgeVerdict | None]]:
    """(the verdicts paid or cached for todo's answered predictions, a verdict or None for each row of todo)."""
    answered = todo.filter(pl.col("error").is_null())
    verdicts = (
        judge_per_model(
            lambda items, corpus: judge.judge_many(items, log, corpus, cache=cache, references=references),
            answered,
            evals.prompts,
            evals.predictions,
        )
        if answered.height
        else []
    )
    by_key = dict(zip(zip(answered["model_id"], answered["prompt_id"]), verdicts))
    return verdicts, [by_key.get((m, p)) for m, p in zip(todo["model_id"], todo["prompt_id"])]


def scores_metadata(
    judge_model: str,
    rows: pl.DataFrame,
    todo: pl.DataFrame,
    verdicts: list[JudgeVerdict],
    evals: EvalSet,
    references: ReferenceSet | None,
) -> dict[str, Any]:
    """What one eval/scores run judged, with which references, and at what cost."""
    answered = todo.filter(pl.col("error").is_null())
    failures = rows.filter(pl.col("score").is_null())
    return {
        "judge_model": judge_model,
        "rubric_version": evals.rubric_version,
        "reference_model": evals.reference_model or "none",
        "judged_with_reference": 0
        if references is None
        else sum(references.text(i) is not None for i in judge_items(answered, evals.prompts)),
        "judged_this_run": todo.height,
        "judge_requests_paid": sum(1 for v in verdicts if v.prompt_tokens > 0),
        "judge_tokens": int(rows["judge_prompt_tokens"].sum() + rows["judge_completion_tokens"].sum()),
        "judge_cost_usd": "unknown"
        if rows["judge_cost_usd"].null_count()
        else round(float(rows["judge_cost_usd"].sum()), 6),
        "judge_failures_this_run": failures.select("model_id", "prompt_id").unique().height,
        "failure_kinds": counts(
            failures.with_columns(pl.col("error").str.extract(r"^([a-z_]+)").alias("kind")), ["kind"]
        ),
        "preview": preview(rows, ["model_id", "prompt_id", "metric", "score", "rationale", "error"]),
    }
