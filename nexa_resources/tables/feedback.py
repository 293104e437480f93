"""The feedback layer: weak cells per round, the prompts bought for them, and the loop's ledger."""

from __future__ import annotations

import polars as pl

# Every cell (domain, task_type, metric) of the evaluated checkpoint in a round, weak or not.
# `round` (a lineage column) is the round whose checkpoint was evaluated.
WEAKNESS_SCHEMA: dict[str, pl.DataType] = {
    "domain": pl.String(),
    "task_type": pl.String(),
    "metric": pl.String(),
    "model_id": pl.String(),
    "score": pl.Float64(),  # the cell's mean in eval/metrics
    "n": pl.Int64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "threshold": pl.Float64(),
    "gap": pl.Float64(),  # threshold - score when weak, else 0
    "status": pl.String(),  # "weak" (score below threshold: the loop buys data for it) | "pass"
    "clearly_weak": pl.Boolean(),  # ci_high < threshold: the shortfall is beyond the 95% interval, not noise
    # Paired change vs the previous round's checkpoint on the same prompts (null in a round with no previous
    # round, or when that checkpoint has no scores on this eval set by this judge and rubric).
    "change": pl.Float64(),  # mean over paired prompts of score - previous score
    "change_ci_low": pl.Float64(),  # 95% Student-t interval of the change (null when fewer than 2 pairs)
    "change_ci_high": pl.Float64(),
    "change_n": pl.Int64(),  # paired prompts
    "focus": pl.Boolean(),  # the cell was targeted in the previous round: this round's data was bought for it
    "targeted": pl.Boolean(),  # weak, and in a (domain, task_type) this round buys prompts for
    # The round's pooled lift of the focus cells (same on every row of the round): per prompt, its focus
    # metrics' changes averaged, then the mean over prompts with its 95% interval. Null without a pairing.
    "focus_lift": pl.Float64(),
    "focus_lift_ci_low": pl.Float64(),
    "focus_lift_ci_high": pl.Float64(),
    "focus_lift_n": pl.Int64(),  # paired prompts of the focus cells
    "improved": pl.Boolean(),  # focus_lift_ci_low > 0 and focus_lift > min_improvement; null: nothing to compare
    "stop_reason": pl.String(),  # the round's stop reason (same on every row of the round), null = loop goes on
    "loop_id": pl.String(),  # hash of the thresholds and stop rules: changing them starts a new loop
    "loop_round": pl.Int64(),  # rounds since this loop started (the round cap counts these)
}

# Targeted prompts bought for a weak (domain, task_type) in the next round. `round` (lineage) is the
# round that found the weakness; `for_round` is the round whose raw/prompts run fulfils it.
REQUEST_SCHEMA: dict[str, pl.DataType] = {
    "domain": pl.String(),
    "task_type": pl.String(),
    "for_round": pl.Int64(),
    "n_prompts": pl.Int64(),
    "gap": pl.Float64(),  # summed gap of the cell's weak metrics
    "metrics": pl.List(pl.String()),  # the weak metrics
    "hints": pl.List(pl.String()),  # what the judge found lacking, most frequent first
    "status": pl.String(),  # "open" | "done"
    "fulfilled_by": pl.String(),  # run_id of the raw/prompts run that generated them
    "prompt_ids": pl.List(pl.String()),  # the prompts generated for it
}

# The loop's ledger, one row per round (key: `round`, the lineage column): what the round cost, measured after it
# ran from the lake's cost columns, next to the estimate made for it before it ran, and the estimate for the next
# round. $ are USD; null is unknown (a model without a price), never $0.
ROUND_SCHEMA: dict[str, pl.DataType] = {
    "loop_id": pl.String(),
    "loop_round": pl.Int64(),
    "checkpoint_id": pl.String(),  # the round's evaluated checkpoint
    # Measured: rows of this round in distill.completions (teacher), distill.pairs + eval.scores (judge),
    # train.checkpoints (gpu), eval.predictions (eval: priced reference models' answers).
    "teacher_usd": pl.Float64(),
    "judge_usd": pl.Float64(),
    "gpu_usd": pl.Float64(),
    "eval_usd": pl.Float64(),
    "total_usd": pl.Float64(),
    "cost_known": pl.Boolean(),  # every part has a known price
    # Estimated before the round ran (the previous round's next_*); all null when none was made (round 0).
    "estimated_teacher_usd": pl.Float64(),
    "estimated_judge_usd": pl.Float64(),
    "estimated_gpu_usd": pl.Float64(),
    "estimated_eval_usd": pl.Float64(),
    "estimated_usd": pl.Float64(),
    "estimate_basis": pl.String(),  # how that estimate was made; null: none was made
    "spent_usd": pl.Float64(),  # total_usd of this loop's rounds so far, this one included
    "budget_usd": pl.Float64(),  # the loop's budget (null: none)
    "focus_lift": pl.Float64(),  # the focus cells' paired mean lift over the previous round (score points)
    "gain_per_usd": pl.Float64(),  # focus_lift / total_usd; null: no lift measured, $ unknown, or a free round
    "min_gain_per_usd": pl.Float64(),  # the floor (null: none)
    # The next round, estimated before it runs; null when the loop stopped before an estimate was needed.
    "next_prompts": pl.Int64(),  # prompts it buys
    "next_teacher_usd": pl.Float64(),
    "next_judge_usd": pl.Float64(),
    "next_gpu_usd": pl.Float64(),
    "next_eval_usd": pl.Float64(),
    "next_estimate_usd": pl.Float64(),
    "next_estimate_basis": pl.String(),
    "stop_reason": pl.String(),  # as in feedback/weaknesses; null = the loop goes on
    "stop_detail": pl.String(),  # why a money rule stopped the loop (figures, or which price is unknown)
}

STATUSES: tuple[str, ...] = ("open", "done")
# In the order the rules are applied (first match wins; see weakness.STOP_ORDER).
STOP_REASONS: tuple[str, ...] = (
    "all_cells_pass",
    "no_improvement",
    "round_cap",
    "low_gain_per_dollar",
    "budget_exhausted",
)
