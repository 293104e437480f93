"""Weak cells and the loop's stop rules: which (domain, task_type, metric) cells of a checkpoint fall short.

A *loop* is a run of rounds under one set of thresholds and stop rules (`loop_id` is their hash):
raising a threshold starts a new loop, with its own round cap and improvement history.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from nexa_assets.feedback.schema import WEAKNESS_SCHEMA
from nexa_assets.text import content_hash

ALL_CELLS_PASS, ROUND_CAP, NO_IMPROVEMENT = "all_cells_pass", "round_cap", "no_improvement"


@dataclass(frozen=True)
class LoopRules:
    """Thresholds per metric (1–5 scale) and the rules that stop the loop."""

    default_threshold: float = 3.5
    thresholds: Mapping[str, float] = field(default_factory=dict)  # metric → threshold, overrides the default
    max_rounds: int = 3  # feedback rounds a loop may launch; at this loop round it stops
    min_improvement: float = 0.05  # focus cells must rise by more than this (mean score) per round

    def threshold(self, metric: str) -> float:
        return float(self.thresholds.get(metric, self.default_threshold))

    @property
    def loop_id(self) -> str:
        spec = {
            "default_threshold": self.default_threshold,
            "thresholds": dict(sorted(self.thresholds.items())),
            "max_rounds": self.max_rounds,
            "min_improvement": self.min_improvement,
        }
        return "loop-" + content_hash(json.dumps(spec, sort_keys=True))[:10]


@dataclass(frozen=True)
class RoundVerdict:
    cells: pl.DataFrame  # WEAKNESS_SCHEMA rows, every cell of the round
    stop_reason: str | None
    loop_round: int
    improvement: float | None  # mean rise of the focus cells since the loop's previous round

    @property
    def weak(self) -> pl.DataFrame:
        return self.cells.filter(pl.col("status") == "weak")


def classify_cells(metrics: pl.DataFrame, model_id: str, rules: LoopRules) -> pl.DataFrame:
    """Every scored cell of `model_id` with its threshold, gap and status (weak | pass).

    A cell the judge could not score at all (n = 0) is weak with the whole threshold as its gap: it is
    unknown, and buying data for it is how it gets measured.
    """
    rows: list[dict[str, Any]] = []
    for row in metrics.filter(pl.col("model_id") == model_id).sort("domain", "task_type", "metric").iter_rows(named=True):
        threshold = rules.threshold(row["metric"])
        score = row["mean"]
        gap = threshold - (score if score is not None else 0.0)
        weak = score is None or score < threshold
        rows.append(
            {
                "domain": row["domain"],
                "task_type": row["task_type"],
                "metric": row["metric"],
                "model_id": model_id,
                "score": score,
                "n": row["n"],
                "ci_low": row["ci_low"],
                "ci_high": row["ci_high"],
                "threshold": threshold,
                "gap": max(gap, 0.0) if weak else 0.0,
                "status": "weak" if weak else "pass",
                "stop_reason": None,
                "loop_id": rules.loop_id,
                "loop_round": 0,
            }
        )
    return pl.DataFrame(rows, schema=WEAKNESS_SCHEMA)


def judge_round(cells: pl.DataFrame, previous: pl.DataFrame | None, rules: LoopRules) -> RoundVerdict:
    """Apply the stop rules to this round's cells, given the same loop's previous round (or None).

    Stop reasons, first match wins: every cell passes; the focus cells (weak last round) rose by no more
    than `min_improvement` on average; the loop has run `max_rounds` feedback rounds.
    """
    same_loop = previous is not None and not previous.is_empty() and previous["loop_id"][0] == rules.loop_id
    loop_round = int(previous["loop_round"][0]) + 1 if same_loop else 0
    improvement: float | None = None
    stop: str | None = None
    if cells.is_empty() or cells.filter(pl.col("status") == "weak").is_empty():
        stop = ALL_CELLS_PASS
    else:
        if same_loop:
            improvement = focus_improvement(cells, previous)  # type: ignore[arg-type]
            if improvement is not None and improvement <= rules.min_improvement:
                stop = NO_IMPROVEMENT
        if stop is None and loop_round >= rules.max_rounds:
            stop = ROUND_CAP
    cells = cells.with_columns(
        pl.lit(stop, dtype=pl.String).alias("stop_reason"),
        pl.lit(loop_round, dtype=pl.Int64).alias("loop_round"),
    )
    return RoundVerdict(cells, stop, loop_round, improvement)


def focus_improvement(cells: pl.DataFrame, previous: pl.DataFrame) -> float | None:
    """Mean score change of the cells that were weak in `previous` (None when none can be compared)."""
    keys = ["domain", "task_type", "metric"]
    focus = previous.filter(pl.col("status") == "weak").select(*keys, pl.col("score").alias("before"))
    joined = focus.join(cells.select(*keys, pl.col("score").alias("after")), on=keys, how="inner").drop_nulls()
    if joined.is_empty():
        return None
    return float((joined["after"] - joined["before"]).mean())  # type: ignore[arg-type]


def focus_cells(weak: pl.DataFrame) -> list[str]:
    """The weak (domain, task_type) cells as 'domain/task_type', largest summed gap first."""
    if weak.is_empty():
        return []
    ranked = (
        weak.group_by("domain", "task_type")
        .agg(pl.col("gap").sum())
        .sort(["gap", "domain", "task_type"], descending=[True, False, False])
    )
    return [f"{d}/{t}" for d, t in ranked.select("domain", "task_type").iter_rows()]
