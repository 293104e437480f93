"""Collect teacher completions for many requests, merging finished rows into the lake as it goes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from nexa_assets.distill.task import messages, parse_answer
from nexa_core.pricing import cost_usd
from nexa_resources.llm_client import ChatClient, ChatResult, SamplingParams


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

    def record(self, row: dict[str, Any]) -> None:
        """Count one answered request (its tokens, $ and error)."""
        self.done += 1
        self.prompt_tokens += row["prompt_tokens"]
        self.completion_tokens += row["completion_tokens"]
        cost = row["cost_usd"]
        self.cost_usd = None if cost is None or self.cost_usd is None else self.cost_usd + cost
        if row["error"] is not None:
            self.errors += 1
            self.error_kinds[row["error"].split(":")[0]] += 1

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
    merger = _Merger(on_batch, batch_size, flush_every_s, min_merge_interval_s)
    last_log = time.monotonic()
    bar = tqdm(total=len(requests), desc=f"teacher {model_id}", unit="req", disable=not progress, mininterval=1.0)
    try:
        async for key, result in client.stream(items, params):
            row = answer_row(by_id[key], result, model_id, price)
            if on_row is not None:
                on_row(row)
            merger.pending.append(row)
            stats.record(row)
            bar.update(1)
            merger.merge_if_due()
            if log is not None and time.monotonic() - last_log >= log_every_s:
                log(stats.line())
                last_log = time.monotonic()
        await merger.drain()
    finally:
        bar.close()
        await client.aclose()
    if log is not None:
        log(stats.line())
    return stats


def answer_row(
    request: dict[str, Any], result: ChatResult, model_id: str, price: tuple[float, float] | None
) -> dict[str, Any]:
    """The distill/completions row of one answered request: the answer, usage, latency, cost and error."""
    completion, error = parse_answer(result)
    row = {
        **request,
        "teacher_model": model_id,
        "completion": completion,
        "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "latency_ms": round(result.latency_ms, 1),
        "cost_usd": cost_usd(result.prompt_tokens, result.completion_tokens, price),
        "attempts": result.attempts,
        "error": error,
    }
    if result.logprobs is not None:  # only when asked (SamplingParams.top_logprobs): distill/logprobs rows
        row["logprobs"] = result.logprobs
    return row


@dataclass
class _Merger:
    """Hands finished rows to `on_batch`, one merge at a time, off the event loop.

    Rows finishing meanwhile pile up and go in the next one. A merge scans the target table, so fewer,
    larger merges keep up with any request rate.
    """

    on_batch: Callable[[list[dict[str, Any]]], None]
    batch_size: int
    flush_every_s: float
    min_merge_interval_s: float
    pending: list[dict[str, Any]] = field(default_factory=list)
    merging: asyncio.Task[None] | None = None
    last_merge: float = field(default_factory=time.monotonic)

    def merge_if_due(self, force: bool = False) -> None:
        if self.merging is not None:
            if not self.merging.done():
                return
            self.merging.result()  # surface a failed merge
            self.merging = None
        since = time.monotonic() - self.last_merge
        full = len(self.pending) >= self.batch_size and since >= self.min_merge_interval_s
        due = full or since >= self.flush_every_s
        if self.pending and (force or due):
            batch = self.pending.copy()
            self.pending.clear()
            self.last_merge = time.monotonic()
            self.merging = asyncio.create_task(asyncio.to_thread(self.on_batch, batch))

    async def drain(self) -> None:
        """Wait for the merge under way, then merge what is left."""
        if self.merging is not None:
            await self.merging
            self.merging = None
        self.merge_if_due(force=True)
        if self.merging is not None:
            await self.merging
