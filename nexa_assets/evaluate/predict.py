"""Answers of a model (a trained checkpoint or an external OpenAI-compatible model) to the eval prompts.

The request is formatted exactly as the teacher's was (same system prompt and task template), so a
student is asked in the format it was trained on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl
from tqdm.auto import tqdm

from nexa_assets.distill.task import format_messages, messages, parse_answer
from nexa_core.pricing import cost_usd
from nexa_core.text import content_hash
from nexa_resources.llm_client import ChatClient, SamplingParams
from nexa_resources.tables.eval import MODEL_KINDS, PREDICTION_SCHEMA


def eval_set_hash(prompt_ids: Sequence[str]) -> str:
    """The identity of an eval set: metrics are comparable only when computed on the same one."""
    return "es-" + content_hash(*sorted(prompt_ids))[:12]


def pending_prompts(prompts: pl.DataFrame, answered: pl.DataFrame, model_id: str) -> pl.DataFrame:
    """Eval prompts this model has no successful answer for yet (re-runs send only those)."""
    if answered.is_empty():
        return prompts
    done = answered.filter((pl.col("model_id") == model_id) & pl.col("error").is_null())["prompt_id"]
    return prompts.filter(~pl.col("prompt_id").is_in(done.implode()))


def _answer(row: dict[str, Any], result: Any, price: tuple[float, float] | None) -> dict[str, Any]:
    """A prediction row's prompt, answer, usage and cost columns (the model's come apart)."""
    text, error = parse_answer(result)
    return {
        "prompt_id": row["prompt_id"],
        "domain": row["domain"],
        "task_type": row["task_type"],
        # An empty answer is still an answer to judge (it scores low), not a failed request.
        "prediction": text if text is not None else ("" if result.ok else None),
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "latency_ms": result.latency_ms,
        "cost_usd": cost_usd(result.prompt_tokens, result.completion_tokens, price),
        "error": None if result.ok else error,
        "eval_set": row["eval_set"],
    }


async def predict(
    prompts: pl.DataFrame,
    client: ChatClient,
    params: SamplingParams,
    *,
    model_id: str,
    model_kind: str,
    checkpoint_id: str | None,
    model_label: str | None = None,
    shots: Callable[[str], Sequence[dict[str, str]]] | None = None,
    price: tuple[float, float] | None = None,
    log: Callable[[str], None] | None = None,
    log_every_s: float = 10.0,
    progress: bool = True,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> pl.DataFrame:
    """One PREDICTION_SCHEMA row per prompt: the answer with finish_reason and usage, or its error.

    Each row goes to `on_row` (the write-ahead journal) the moment it arrives.

    `shots(task_type)` gives worked examples to put before the prompt (the teacher's own settings); a student
    is asked without any, exactly as it was trained."""
    if model_kind not in MODEL_KINDS:
        raise ValueError(f"unknown model_kind {model_kind!r}: valid values are {', '.join(MODEL_KINDS)}")
    by_id = {row["prompt_id"]: row for row in prompts.iter_rows(named=True)}
    items = [
        (pid, messages(*format_messages(row), shots(row["task_type"]) if shots else ())) for pid, row in by_id.items()
    ]
    model = {"model_id": model_id, "model_kind": model_kind, "model_label": model_label or model_id,
             "checkpoint_id": checkpoint_id}
    rows: list[dict[str, Any]] = []
    started = last_log = time.monotonic()
    tokens = 0
    bar = tqdm(total=len(items), desc=f"eval {model_id}", unit="prompt", disable=not progress, mininterval=1.0)
    try:
        async for pid, result in client.stream(items, params):
            tokens += result.completion_tokens
            answer = {**model, **_answer(by_id[pid], result, price)}
            if on_row is not None:
                on_row(answer)
            rows.append(answer)
            bar.update(1)
            now = time.monotonic()
            if log is not None and (now - last_log >= log_every_s or len(rows) == len(items)):
                elapsed = now - started
                log(
                    f"{model_id}: {len(rows)}/{len(items)} eval prompts answered, "
                    f"{len(rows) / elapsed:.2f} prompts/s, {tokens / elapsed:.1f} tokens/s"
                )
                last_log = now
    finally:
        bar.close()
    return pl.DataFrame(rows, schema=PREDICTION_SCHEMA)
