"""The eval layer: held-out prompts, every model's answers, the judge's scores and cache, and per-cell metrics."""

from __future__ import annotations

import polars as pl

from nexa_resources.tables.raw import PROMPT_SCHEMA

# The held-out prompts (raw split `eval`), with the hash of the whole set they belong to.
EVAL_PROMPT_SCHEMA: dict[str, pl.DataType] = {
    **{c: PROMPT_SCHEMA[c] for c in ("prompt_id", "domain", "task_type", "instruction", "context", "source", "origin")},
    "eval_set": pl.String(),  # hash of every eval prompt_id: metrics are comparable only within one set
}

# What a model_id is: a trained student, the student before any training, the teacher answering with its
# own settings, or another OpenAI-compatible model (reference rows on the leaderboard).
MODEL_KINDS: tuple[str, ...] = ("checkpoint", "base", "teacher", "external")

# One answer per (model_id, prompt_id); model_label is the readable name ("round 1 student", "base …").
PREDICTION_SCHEMA: dict[str, pl.DataType] = {
    "model_id": pl.String(),
    "prompt_id": pl.String(),
    "model_kind": pl.String(),
    "model_label": pl.String(),
    "checkpoint_id": pl.String(),  # null for external models
    "domain": pl.String(),
    "task_type": pl.String(),
    "prediction": pl.String(),
    "finish_reason": pl.String(),
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "latency_ms": pl.Float64(),
    "cost_usd": pl.Float64(),
    "error": pl.String(),
    "eval_set": pl.String(),
}

# What judging a row cost, on distill/pairs (one verdict per row) and eval/scores (one verdict per answer, split
# evenly over its metric rows: tokens by integer division, the remainder on the first rows; $ divided, so every
# sum over rows is what was paid). 0 / 0 / $0 for the structural judge and for rows not judged (a failed
# prediction, a pair rejected by a filter); the $ is null when the judge model has no known price (shown as
# "unknown", never $0). A verdict served from the request cache (eval/judge_requests) costs nothing again: it
# carries the $ it was bought for only on the row that bought it, every other row gets 0.
JUDGE_COST_SCHEMA: dict[str, pl.DataType] = {
    "judge_prompt_tokens": pl.Int64(),
    "judge_completion_tokens": pl.Int64(),
    "judge_cost_usd": pl.Float64(),
}

# The LLM judge's request cache, one row per answered judge request: request_id = hash(judge model, messages,
# sampling); `owner` is the row that bought it ("distill/pairs:<request_id>", "eval/scores:<model>/<prompt>").
# Only answered requests are cached (a transport failure is asked again); an unparsable or refused verdict is an
# answer, and is not paid for twice.
JUDGE_REQUEST_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "judge_model": pl.String(),
    "owner": pl.String(),
    "content": pl.String(),
    "refusal": pl.String(),
    "finish_reason": pl.String(),
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "cost_usd": pl.Float64(),  # null: no known price for the judge model
    "latency_ms": pl.Float64(),
    "attempts": pl.Int64(),
}

# One judge verdict per (model_id, prompt_id, metric). `score` is null when the judge failed
# (`error` says why, e.g. "judge_unparsable: …"); failures are never averaged in as scores.
SCORE_SCHEMA: dict[str, pl.DataType] = {
    "model_id": pl.String(),
    "prompt_id": pl.String(),
    "metric": pl.String(),
    "domain": pl.String(),
    "task_type": pl.String(),
    "judge_model": pl.String(),
    "rubric_version": pl.String(),
    "score": pl.Int64(),
    "rationale": pl.String(),  # what the judge found lacking for this metric (null when nothing)
    "error": pl.String(),
    "truncated": pl.Boolean(),  # the prediction stopped at max_tokens (finish_reason == "length")
    "eval_set": pl.String(),
    **JUDGE_COST_SCHEMA,
}

# One row per (model_id, domain, task_type, metric): mean score over judged prompts with a 95% CI.
METRIC_SCHEMA: dict[str, pl.DataType] = {
    "model_id": pl.String(),
    "domain": pl.String(),
    "task_type": pl.String(),
    "metric": pl.String(),
    "model_kind": pl.String(),
    "model_label": pl.String(),
    "checkpoint_id": pl.String(),
    "mean": pl.Float64(),
    "n": pl.Int64(),  # scored prompts (judge failures excluded)
    "std": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "judge_failures": pl.Int64(),  # prompts the judge could not score, reported apart from the mean
    "truncation_rate": pl.Float64(),  # share of this cell's predictions cut at max_tokens
    "judge_model": pl.String(),
    "rubric_version": pl.String(),
    "eval_set": pl.String(),
}
