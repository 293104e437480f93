"""What judging cost, from the judge cost columns of distill/pairs and eval/scores (schema.JUDGE_COST_SCHEMA)."""

from __future__ import annotations

import polars as pl

from nexa_assets.evaluate.scoring import PREDICTION_FAILED
from nexa_resources.tables.eval import JUDGE_COST_SCHEMA

JUDGE_SPEND_SCHEMA: dict[str, pl.DataType] = {
    "round": pl.Int64(),
    "judge_model": pl.String(),
    "table": pl.String(),  # distill.pairs | eval.scores
    "verdicts": pl.UInt32(),  # rows (pairs) or answers (scores) the judge gave a verdict on, paid or cached
    "requests": pl.UInt32(),  # verdicts paid for (a verdict from the request cache is not)
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "cost_usd": pl.Float64(),  # null: some paid verdict has no known price
}


def _costed(frame: pl.DataFrame) -> pl.DataFrame:
    """Judged rows with the cost columns an older table lacks: the structural judge's 0, else unknown (null)."""
    judged = frame.filter(pl.col("judge_model").is_not_null())
    missing = [pl.lit(None, dtype).alias(name) for name, dtype in JUDGE_COST_SCHEMA.items() if name not in judged.columns]
    free = pl.col("judge_model").str.starts_with("structural")
    cost = pl.col("judge_cost_usd")
    return judged.with_columns(missing).with_columns(
        pl.col("judge_prompt_tokens", "judge_completion_tokens").fill_null(0),
        pl.when(free).then(cost.fill_null(0.0)).otherwise(cost).alias("judge_cost_usd"),
    )


def _spend(verdicts: pl.DataFrame, table: str) -> pl.DataFrame:
    """One verdict per row in, totals per (round, judge_model) out."""
    cost = pl.col("judge_cost_usd")
    return (
        verdicts.group_by("round", "judge_model")
        .agg(
            pl.len().alias("verdicts"),
            (pl.col("judge_prompt_tokens") > 0).sum().alias("requests"),
            pl.col("judge_prompt_tokens").sum().alias("prompt_tokens"),
            pl.col("judge_completion_tokens").sum().alias("completion_tokens"),
            pl.when(cost.null_count() > 0).then(None).otherwise(cost.sum()).alias("cost_usd"),
        )
        .with_columns(pl.lit(table).alias("table"))
        .select(list(JUDGE_SPEND_SCHEMA))
        .cast(JUDGE_SPEND_SCHEMA)  # type: ignore[arg-type]
    )


def judge_spend(pairs: pl.DataFrame, scores: pl.DataFrame) -> pl.DataFrame:
    """Judge verdicts, requests paid, tokens and $ by (round, judge_model, table); $ null when unknown."""
    parts = []
    if not pairs.is_empty():
        parts.append(_spend(_costed(pairs), "distill.pairs"))
    if not scores.is_empty():
        answered = scores.filter(~pl.col("error").fill_null("").str.starts_with(PREDICTION_FAILED))
        per_answer = _costed(answered).group_by("round", "judge_model", "model_id", "prompt_id").agg(
            pl.col("judge_prompt_tokens", "judge_completion_tokens").sum(),
            pl.when(pl.col("judge_cost_usd").null_count() > 0).then(None)
            .otherwise(pl.col("judge_cost_usd").sum()).alias("judge_cost_usd"),
        )
        parts.append(_spend(per_answer, "eval.scores"))
    if not parts:
        return pl.DataFrame(schema=JUDGE_SPEND_SCHEMA)
    return pl.concat(parts).sort("round", "table", "judge_model")


def format_usd(value: float | None, digits: int = 6) -> str:
    """A judge $ for a report: 'unknown' when null, never $0."""
    return "unknown" if value is None else f"{value:.{digits}f}"
