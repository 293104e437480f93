"""Collect teacher completions for many requests, merging finished rows into the lake as it goes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from nexa_assets.distill.task import cost_usd, messages, parse_answer
from nexa_resources.llm_client import ChatClient, SamplingParams


@dataclass
class CollectStats:
    """Running totals of one collection, for logs, progress and metadata."""

    total: int
    done: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0  # None once an answer had no known price
    started: float = field(default_factory=time.monotonic)
    error_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def requests_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.done if self.done else 0.0

    def line(self) -> str:
        return (
            f"{self.done}/{self.total} requests, {self.requests_per_s:.1f} req/s, "
            f"{self.prompt_tokens + self.completion_tokens} tokens, "
            f"{'$ unknown' if self.cost_usd is None else f'${self.cost_usd:.4f}'}, {self.errors} errors"
        )


async def collect(
    requests: Sequence[dict[str, Any]],
    client: ChatClient,
    params: SamplingParams,
    *,
    model_id: str,
    price: tuple[float, float] | None,
    on_batch: Callable[[list[dict[str, Any]]], None],
    on_row: Callable[[dict[str, Any]], None] | None = None,
    batch_size: int = 32,
    flush_every_s: float = 10.0,
    min_merge_interval_s: float = 1.0,
    log: Callable[[str], None] | None = None,
    log_every_s: float = 10.0,
    progress: bool = True,
) -> CollectStats:
    """Send every request and hand finished rows to `on_batch` as they finish.

    Each row goes to `on_row` (the write-ahead journal) the moment it arrives. Rows are handed on
    once `batch_size` have finished (at most one merge per `min_merge_interval_s`) or `flush_every_s`
    has passed, one merge at a time: without a journal a crash loses the rows of the last second or
    batch; with one, only the requests in flight.

    Each request dict is a `task.teacher_request` (request_id, prompt_id, template_version, system_prompt,
    user_prompt, shots, regenerated_from, sample_index, worked_examples); each row handed on adds the answer, usage, latency, cost, attempts and error.
    """
    stats = CollectStats(total=len(requests))
    by_id = {r["request_id"]: r for r in requests}
    items = [(r["request_id"], messages(r["system_prompt"], r["user_prompt"], r.get("shots") or ())) for r in requests]
    pending: list[dict[str, Any]] = []
    merging: asyncio.Task[None] | None = None
    last_log = last_merge = time.monotonic()
    bar = tqdm(total=len(requests), desc=f"teacher {model_id}", unit="req", disable=not progress, mininterval=1.0)

    def merge_if_due(force: bool = False) -> None:
        # One merge at a time, off the event loop; rows finishing meanwhile pile up and go in the next
        # one. A merge scans the target table, so fewer, larger merges keep up with any request rate.
        nonlocal merging, last_merge
        if merging is not None:
            if not merging.done():
                return
            merging.result()  # surface a failed merge
            merging = None
        since = time.monotonic() - last_merge
        due = (len(pending) >= batch_size and since >= min_merge_interval_s) or since >= flush_every_s
        if pending and (force or due):
            batch = pending.copy()
            pending.clear()
            last_merge = time.monotonic()
            merging = asyncio.create_task(asyncio.to_thread(on_batch, batch))

    try:
        async for key, result in client.stream(items, params):
            completion, error = parse_answer(result)
            cost = cost_usd(result.prompt_tokens, result.completion_tokens, price)
            row = {
                **by_id[key],
                "teacher_model": model_id,
                "completion": completion,
                "finish_reason": result.finish_reason,
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
                "latency_ms": round(result.latency_ms, 1),
                "cost_usd": cost,
                "attempts": result.attempts,
                "error": error,
            }
            if result.logprobs is not None:  # only when asked (SamplingParams.top_logprobs): distill/logprobs rows
                row["logprobs"] = result.logprobs
            if on_row is not None:
                on_row(row)
            pending.append(row)
            stats.done += 1
            stats.prompt_tokens += result.prompt_tokens
            stats.completion_tokens += result.completion_tokens
            stats.cost_usd = None if cost is None or stats.cost_usd is None else stats.cost_usd + cost
            if error is not None:
                stats.errors += 1
                stats.error_kinds[error.split(":")[0]] += 1
            bar.update(1)
            merge_if_due()
            if log is not None and time.monotonic() - last_log >= log_every_s:
                log(stats.line())
                last_log = time.monotonic()
        if merging is not None:
            await merging
            merging = None
        merge_if_due(force=True)
        if merging is not None:
            await merging
    finally:
        bar.close()
        await client.aclose()
    if log is not None:
        log(stats.line())
    return stats
