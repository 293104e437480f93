"""The distill layer: teacher answers, their filter and judge verdicts, and the teacher's token probabilities."""

from __future__ import annotations

import polars as pl

from nexa_core.rubric import load_rubric
from nexa_resources.tables.eval import JUDGE_COST_SCHEMA

# The rubric's metrics, in its order: distill/pairs has one score_<metric> column each.
METRICS: tuple[str, ...] = load_rubric().metrics

COMPLETION_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),  # hash(prompt, model, template, sampling, sample index)
    "prompt_id": pl.String(),
    "teacher_model": pl.String(),
    "template_version": pl.String(),
    "system_prompt": pl.String(),
    "user_prompt": pl.String(),
    "completion": pl.String(),
    "finish_reason": pl.String(),
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "latency_ms": pl.Float64(),
    "cost_usd": pl.Float64(),
    "attempts": pl.Int64(),
    "error": pl.String(),
    "regenerated_from": pl.String(),
    "sample_index": pl.Int64(),
    "worked_examples": pl.Int64(),
}

PAIR_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "prompt_id": pl.String(),
    "domain": pl.String(),
    "task_type": pl.String(),
    "passed": pl.Boolean(),
    "reject_reasons": pl.List(pl.String()),
    "judge_model": pl.String(),
    "rubric_version": pl.String(),
    **{f"score_{m}": pl.Int64() for m in METRICS},
    "judge_mean": pl.Float64(),
    "lacking": pl.String(),
    "judge_error": pl.String(),
    "regenerated_from": pl.String(),
    "sample_index": pl.Int64(),
    "chosen": pl.Boolean(),  # the prompt's selected sample: passed, best judge mean (ties: lower sample index)
    **JUDGE_COST_SCHEMA,  # this row's verdict; 0 when a filter rejected it before the judge
}

LOGPROBS_SCHEMA: dict[str, pl.DataType] = {
    "request_id": pl.String(),
    "position": pl.Int64(),  # index of the answer token (0 = first completion token)
    "token": pl.String(),  # the answer's token at this position, as text
    "token_id": pl.Int64(),  # its id in `tokenizer` (null when an endpoint's token text maps to no single id)
    "logprob": pl.Float64(),  # the teacher's log-probability of that token
    "top_tokens": pl.List(pl.String()),  # the teacher's k most likely tokens here, most likely first
    "top_token_ids": pl.List(pl.Int64()),  # their ids (null entries where no single id matches)
    "top_logprobs": pl.List(pl.Float64()),  # their log-probabilities (over the full vocabulary)
    "top_k": pl.Int64(),
    "tokenizer": pl.String(),  # tokenizer_identity(): vocabulary size and hash, or endpoint:<model> when unknown
    "tokenizer_name": pl.String(),
    "teacher_model": pl.String(),
    "source": pl.String(),  # "endpoint" (returned with the answer) | "scored" (computed in-process)
}
