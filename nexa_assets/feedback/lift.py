"""Paired score changes between two models judged on the same eval prompts, with 95% Student-t intervals.

Plain polars in, plain values out (no Dagster). `before` and `after` are eval/scores rows (SCORE_SCHEMA:
one row per model_id, prompt_id, metric; `score` a nullable 1–5 integer) of one model each, filtered by
the caller to one judge_model, rubric_version and eval_set. A change is paired: the same prompt's score
after minus before, so the prompts' own difficulty cancels out. The answer, not the metric score, is the
unit of noise: the metrics of one answer move together, so a pooled lift first averages each prompt's
differences into one number, and its interval is over prompts (n = prompts, never prompts × metrics).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import polars as pl

from nexa_assets.evaluate.stats import t_critical_95

CELL_KEYS: tuple[str, str, str] = ("domain", "task_type", "metric")
Cell = tuple[str, str, str]  # (domain, task_type, metric)

# cell_changes' columns: one row per cell with at least one paired prompt.
CHANGE_SCHEMA: dict[str, pl.DataType] = {
    "domain": pl.String(),
    "task_type": pl.String(),
    "metric": pl.String(),
    "before": pl.Float64(),  # mean score before, over the paired prompts
    "after": pl.Float64(),  # mean score after, over the same prompts
    "change": pl.Float64(),  # after - before (the mean paired difference)
    "ci_low": pl.Float64(),  # 95% Student-t interval of the change; null when n < 2
    "ci_high": pl.Float64(),
    "n": pl.Int64(),  # paired prompts (both scores non-null)
}


@dataclass(frozen=True)
class Lift:
    """A mean paired change (after − before) over n answers with its 95% t-interval (None bounds when n < 2)."""

    mean: float | None
    n: int
    ci_low: float | None
    ci_high: float | None

    @property
    def significant(self) -> bool:
        """True when the whole 95% interval lies above zero: a lift, not noise."""
        return self.ci_low is not None and self.ci_low > 0

    def __str__(self) -> str:
        return format_change(self.mean, self.ci_low, self.ci_high)


def format_change(mean: float | None, low: float | None, high: float | None, digits: int = 2) -> str:
    """A signed change with its interval, e.g. '+0.42 [+0.10, +0.74]'; '—' without a mean, no bounds when unknown."""
    if mean is None:
        return "—"
    text = f"{mean:+.{digits}f}"
    if low is None or high is None:
        return text
    return f"{text} [{low:+.{digits}f}, {high:+.{digits}f}]"


def lift_of(differences: Sequence[float]) -> Lift:
    """The mean of per-answer differences with its 95% Student-t interval."""
    n = len(differences)
    if n == 0:
        return Lift(None, 0, None, None)
    mean = math.fsum(differences) / n
    if n == 1:
        return Lift(mean, 1, None, None)
    sd = math.sqrt(math.fsum((d - mean) ** 2 for d in differences) / (n - 1))
    half = t_critical_95(n - 1) * sd / math.sqrt(n)
    return Lift(mean, n, mean - half, mean + half)


def paired_scores(before: pl.DataFrame, after: pl.DataFrame, cells: Iterable[Cell] | None = None) -> pl.DataFrame:
    """Rows (domain, task_type, metric, prompt_id, before, after, diff) scored on both sides, in the given cells."""
    _check_one_model(before, "before")
    _check_one_model(after, "after")
    left = before.select(*CELL_KEYS, "prompt_id", pl.col("score").cast(pl.Float64).alias("before"))
    right = after.select("prompt_id", "metric", pl.col("score").cast(pl.Float64).alias("after"))
    if cells is not None:
        wanted = pl.DataFrame(list(cells), schema=dict.fromkeys(CELL_KEYS, pl.String()), orient="row")
        left = left.join(wanted, on=list(CELL_KEYS), how="semi")
    return (
        left.join(right, on=["prompt_id", "metric"], how="inner")
        .drop_nulls(["before", "after"])
        .with_columns((pl.col("after") - pl.col("before")).alias("diff"))
    )


def paired_lift(before: pl.DataFrame, after: pl.DataFrame, cells: Iterable[Cell] | None = None) -> Lift:
    """Mean change over prompts of the given cells (all when None), each prompt's metric differences averaged first."""
    pairs = paired_scores(before, after, cells)
    per_answer = pairs.group_by("prompt_id").agg(pl.col("diff").mean()).sort("prompt_id")
    return lift_of(per_answer["diff"].to_list())


def cell_changes(before: pl.DataFrame, after: pl.DataFrame) -> pl.DataFrame:
    """Per (domain, task_type, metric): paired mean before and after, the change, its 95% interval and n (CHANGE_SCHEMA)."""
    pairs = paired_scores(before, after)
    rows = []
    for (domain, task_type, metric), part in pairs.group_by(list(CELL_KEYS)):
        lift = lift_of(part["diff"].to_list())
        rows.append(
            {
                "domain": domain,
                "task_type": task_type,
                "metric": metric,
                "before": part["before"].mean(),
                "after": part["after"].mean(),
                "change": lift.mean,
                "ci_low": lift.ci_low,
                "ci_high": lift.ci_high,
                "n": lift.n,
            }
        )
    return pl.DataFrame(rows, schema=CHANGE_SCHEMA).sort(list(CELL_KEYS))


def _check_one_model(scores: pl.DataFrame, side: str) -> None:
    if scores.select("prompt_id", "metric").is_duplicated().any():
        raise ValueError(
            f"{side} has several scores per (prompt_id, metric): filter it to one model_id, judge_model, "
            "rubric_version and eval_set"
        )
