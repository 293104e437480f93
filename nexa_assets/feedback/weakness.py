"""Weak cells and the loop's stop rules: which (domain, task_type, metric) cells of a checkpoint fall short,
and whether the data bought for last round's weak cells lifted them beyond noise.

A *loop* is a run of rounds under one set of thresholds and stop rules (`loop_id` is their hash):
raising a threshold (or setting a budget) starts a new loop, with its own round cap, improvement history and spend.

Stop reasons, first match wins (STOP_ORDER): what this round showed first (every cell passes; the focus cells did
not improve), then the round cap, then the money rules, which only decide whether a round the other rules would
launch is worth paying for: the last round's lift per $ fell below the floor; the next round's estimate would take
the loop past its budget.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import polars as pl

from nexa_assets.feedback.lift import CELL_KEYS, Cell, Lift, cell_changes, paired_lift
from nexa_core.text import content_hash
from nexa_resources.tables.feedback import WEAKNESS_SCHEMA

ALL_CELLS_PASS, ROUND_CAP, NO_IMPROVEMENT = "all_cells_pass", "round_cap", "no_improvement"
LOW_GAIN_PER_DOLLAR, BUDGET_EXHAUSTED = "low_gain_per_dollar", "budget_exhausted"
STOP_ORDER: tuple[str, ...] = (ALL_CELLS_PASS, NO_IMPROVEMENT, ROUND_CAP, LOW_GAIN_PER_DOLLAR, BUDGET_EXHAUSTED)
# How "improved" is decided; part of loop_id, so a loop judged under another rule is another loop.
IMPROVEMENT_RULE = "paired-t95"


@dataclass(frozen=True)
class LoopRules:
    """Thresholds per metric (1–5 scale) and the rules that stop the loop."""

    default_threshold: float = 3.5
    thresholds: Mapping[str, float] = field(default_factory=dict)  # metric → threshold, overrides the default
    max_rounds: int = 3  # feedback rounds a loop may launch; at this loop round it stops
    # The focus cells improved when the paired lift's 95% interval lies above 0 AND its mean exceeds this
    # floor (mean score points, 1–5 scale); 0 leaves the interval alone to decide.
    min_improvement: float = 0.0
    # USD one loop may spend, its first round included: stop (budget_exhausted) when what it spent plus the next
    # round's estimate would exceed it, or cannot be known. None: no budget.
    budget_usd: float | None = None
    # Floor on the last round's focus lift per USD it cost (score points per $): stop (low_gain_per_dollar) below
    # it, or when that round's $ is unknown. None: no floor.
    min_gain_per_usd: float | None = None

    def threshold(self, metric: str) -> float:
        return float(self.thresholds.get(metric, self.default_threshold))

    @property
    def loop_id(self) -> str:
        spec: dict[str, Any] = {
            "default_threshold": self.default_threshold,
            "thresholds": dict(sorted(self.thresholds.items())),
            "max_rounds": self.max_rounds,
            "min_improvement": self.min_improvement,
            "improvement_rule": IMPROVEMENT_RULE,
        }
        # The money rules join the hash only when set, so a loop without them keeps the id it had before they existed.
        for name in ("budget_usd", "min_gain_per_usd"):
            if getattr(self, name) is not None:
                spec[name] = getattr(self, name)
        return "loop-" + content_hash(json.dumps(spec, sort_keys=True))[:10]


@dataclass(frozen=True)
class RoundVerdict:
    cells: pl.DataFrame  # WEAKNESS_SCHEMA rows, every cell of the round
    stop_reason: str | None
    loop_round: int
    focus_lift: Lift | None  # paired lift of last round's weak cells vs last round's checkpoint; None: no previous round
    improved: bool | None  # focus_lift's interval above 0 (and mean above min_improvement); None: nothing to compare
    largest_other_drop: dict[str, Any] | None  # the most negative paired change of a non-focus cell, None: no drop

    @property
    def weak(self) -> pl.DataFrame:
        return self.cells.filter(pl.col("status") == "weak")

    def stopped(self, reason: str) -> RoundVerdict:
        """This verdict with `reason` as its stop reason (a money rule applied after judge_round)."""
        cells = self.cells.with_columns(pl.lit(reason, dtype=pl.String).alias("stop_reason"))
        return replace(self, cells=cells, stop_reason=reason)


def classify_cells(metrics: pl.DataFrame, model_id: str, rules: LoopRules) -> pl.DataFrame:
    """Every scored cell of `model_id` with its threshold, gap and status (weak | pass), and clearly_weak.

    weak: the cell's mean is below its threshold (where the loop buys data). clearly_weak: its whole 95%
    interval is below the threshold, a shortfall that is not noise. A cell the judge could not score at all
    (n = 0) is weak with the whole threshold as its gap (unknown; buying data is how it gets measured), but
    not clearly weak. The change columns stay null until judge_round pairs it with the previous round.
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
                "clearly_weak": score is not None and row["ci_high"] is not None and row["ci_high"] < threshold,
                "focus": False,
                "targeted": False,
                "stop_reason": None,
                "loop_id": rules.loop_id,
                "loop_round": 0,
            }
        )
    return pl.DataFrame(rows, schema=WEAKNESS_SCHEMA)


def judge_round(
    cells: pl.DataFrame,
    previous: pl.DataFrame | None,
    rules: LoopRules,
    before: pl.DataFrame | None = None,
    after: pl.DataFrame | None = None,
) -> RoundVerdict:
    """Pair this round with the previous one and apply the stop rules.

    `previous`: the previous round's feedback/weaknesses rows (or None); `before` / `after`: eval/scores rows
    of the previous round's checkpoint and of this one, same judge, rubric and eval set (None: no pairing).
    Every cell gets its paired change; the focus cells (weak last round) get a pooled lift over prompts.
    Stop reasons, first match wins: every cell passes; within one loop, the focus lift's 95% interval does
    not lie above 0 (or its mean is not above `min_improvement`); the loop has run `max_rounds` rounds.
    With nothing to pair (no scores of the previous checkpoint on this eval set) no_improvement cannot fire.
    The money rules come after these (`spending_stop`), once the next round's cost is estimated.
    """
    prev = previous if previous is not None and not previous.is_empty() else None
    same_loop = prev is not None and prev["loop_id"][0] == rules.loop_id
    loop_round = int(prev["loop_round"][0]) + 1 if same_loop and prev is not None else 0
    focus = _bought_for(prev) if prev is not None else []
    lift: Lift | None = None
    changes = None
    if prev is not None and before is not None and after is not None:
        changes = cell_changes(before, after)
        lift = paired_lift(before, after, focus) if focus else None
    improved: bool | None = None
    if lift is not None and lift.mean is not None:
        improved = lift.significant and lift.mean > rules.min_improvement

    stop: str | None = None
    if cells.is_empty() or cells.filter(pl.col("status") == "weak").is_empty():
        stop = ALL_CELLS_PASS
    else:
        if same_loop and improved is False:
            stop = NO_IMPROVEMENT
        if stop is None and loop_round >= rules.max_rounds:
            stop = ROUND_CAP
    cells = _with_changes(cells, focus, changes).with_columns(
        pl.lit(lift.mean if lift is not None else None, dtype=pl.Float64).alias("focus_lift"),
        pl.lit(lift.ci_low if lift is not None else None, dtype=pl.Float64).alias("focus_lift_ci_low"),
        pl.lit(lift.ci_high if lift is not None else None, dtype=pl.Float64).alias("focus_lift_ci_high"),
        pl.lit(lift.n if lift is not None else None, dtype=pl.Int64).alias("focus_lift_n"),
        pl.lit(improved, dtype=pl.Boolean).alias("improved"),
        pl.lit(stop, dtype=pl.String).alias("stop_reason"),
        pl.lit(loop_round, dtype=pl.Int64).alias("loop_round"),
    ).select(list(WEAKNESS_SCHEMA)).sort(list(CELL_KEYS))
    return RoundVerdict(cells, stop, loop_round, lift, improved, largest_other_drop(cells))


def _bought_for(prev: pl.DataFrame) -> list[Cell]:
    """The cells the previous round bought prompts for: its focus, whose lift this round measures."""
    # Rounds judged before `targeted` existed (or that bought nothing) count their weak cells as the focus.
    marked = "targeted" in prev.columns and bool(prev["targeted"].fill_null(False).any())
    bought = pl.col("targeted") if marked else pl.col("status") == "weak"
    return [(d, t, m) for d, t, m in prev.filter(bought.fill_null(False)).select(*CELL_KEYS).iter_rows()]


def _with_changes(cells: pl.DataFrame, focus: list[Cell], changes: pl.DataFrame | None) -> pl.DataFrame:
    """The cells with their focus flag and, when paired, their change since the previous round."""
    keys = list(CELL_KEYS)
    focus_frame = pl.DataFrame(focus, schema=dict.fromkeys(CELL_KEYS, pl.String()), orient="row").with_columns(
        pl.lit(True).alias("_focus")
    )
    cells = (
        cells.drop("focus", strict=False)
        .join(focus_frame, on=keys, how="left")
        .with_columns(pl.col("_focus").fill_null(False).alias("focus"))
    )
    if changes is not None:
        cells = cells.drop("change", "change_ci_low", "change_ci_high", "change_n", strict=False).join(
            changes.select(
                *keys,
                pl.col("change"),
                pl.col("ci_low").alias("change_ci_low"),
                pl.col("ci_high").alias("change_ci_high"),
                pl.col("n").alias("change_n"),
            ),
            on=keys,
            how="left",
        )
    return cells


def gain_per_usd(lift: float | None, usd: float | None) -> float | None:
    """Focus lift (score points) per USD of the round that bought it; None without a lift, with an unknown $,
    or for a free round (a $0 round has no price to weigh)."""
    if lift is None or usd is None or usd <= 0:
        return None
    return lift / usd


def spending_stop(
    rules: LoopRules,
    *,
    loop_round: int,
    lift: float | None,
    round_usd: float | None,
    round_unknown: tuple[str, ...] = (),
    spent_usd: float | None,
    next_usd: float | None,
    next_unknown: tuple[str, ...] = (),
) -> tuple[str, str] | None:
    """The money rules, for a round the other rules let go on: (stop reason, why) or None.

    low_gain_per_dollar (a floor is set; within one loop, after a round whose focus lift was measured): the
    round's lift / its $ is below `min_gain_per_usd`. budget_exhausted (a budget is set): `spent_usd` (this loop's
    rounds, this one included) + `next_usd` (the next round's estimate) exceeds `budget_usd`. A $ that is unknown
    (None) with its rule set stops the loop too: an unknown price never passes as $0, and the reason says which
    part is unknown. A free loop ($0) never triggers either rule.
    """
    floor = rules.min_gain_per_usd
    if floor is not None and loop_round > 0 and lift is not None:
        if round_usd is None:
            return LOW_GAIN_PER_DOLLAR, (
                f"the lift per $ cannot be checked: this round's $ is unknown ({', '.join(round_unknown) or '?'} "
                "without a price); set the model's price (`prices`) or unset min_gain_per_usd"
            )
        gain = gain_per_usd(lift, round_usd)
        if gain is not None and gain < floor:
            return LOW_GAIN_PER_DOLLAR, (
                f"focus lift {lift:+.3f} for ${round_usd:,.4f} = {gain:.4g} points/$, below the floor {floor:g}"
            )
    budget = rules.budget_usd
    if budget is not None:
        if spent_usd is None or next_usd is None:
            what = "the loop's spend so far" if spent_usd is None else "the next round's estimate"
            unknown = round_unknown if spent_usd is None else next_unknown
            return BUDGET_EXHAUSTED, (
                f"the budget ${budget:,.2f} cannot be checked: {what} is unknown ({', '.join(unknown) or 'an earlier round'} "
                "without a price or evidence); set the model's price (`prices`) or unset budget_usd"
            )
        if spent_usd + next_usd > budget:
            return BUDGET_EXHAUSTED, (
                f"spent ${spent_usd:,.4f} of ${budget:,.2f}; the next round's estimate ${next_usd:,.4f} would make "
                f"${spent_usd + next_usd:,.4f}"
            )
    return None


def largest_other_drop(cells: pl.DataFrame) -> dict[str, Any] | None:
    """The most negative paired change among non-focus cells of one round's rows: cell, change, interval, n."""
    drops = cells.filter(~pl.col("focus").fill_null(False) & (pl.col("change") < 0)).sort("change", *CELL_KEYS)
    if drops.is_empty():
        return None
    row = drops.row(0, named=True)
    return {
        "cell": f"{row['domain']}/{row['task_type']}/{row['metric']}",
        "change": row["change"],
        "ci_low": row["change_ci_low"],
        "ci_high": row["change_ci_high"],
        "n": row["change_n"],
    }


def target(cells: pl.DataFrame, focus: list[str]) -> pl.DataFrame:
    """`targeted` set on the weak cells whose 'domain/task_type' is in `focus` (the cells prompts are bought for)."""
    return cells.with_columns(
        ((pl.col("status") == "weak") & (pl.col("domain") + "/" + pl.col("task_type")).is_in(focus)).alias("targeted")
    )


def focus_cells(weak: pl.DataFrame, limit: int = 0) -> list[str]:
    """The weak (domain, task_type) cells as 'domain/task_type', largest summed gap first (the first `limit`
    of them when limit > 0)."""
    if weak.is_empty():
        return []
    ranked = (
        weak.group_by("domain", "task_type")
        .agg(pl.col("gap").sum())
        .sort(["gap", "domain", "task_type"], descending=[True, False, False])
    )
    names = [f"{d}/{t}" for d, t in ranked.select("domain", "task_type").iter_rows()]
    return names[:limit] if limit > 0 else names
