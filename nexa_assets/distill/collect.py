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
    cost_usd: float = 0.0
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
            f"{self.prompt_tokens + self.completion_tokens} tokens, ${self.cost_usd:.4f}, {self.errors} errors"
        )


async def collect(
    requests: Sequence[dict[str, Any]],
    client: ChatClient,
    params: SamplingParams,
    *,
    model_id: str,
    price: tuple[float, float] | None,
    on_batch: Callable[[list[dict[str, Any]]], None],
    batch_size: int = 32,
    log: Callable[[str], None] | None = None,
    log_every_s: float = 10.0,
    progress: bool = True,
) -> CollectStats:
    """Send every request and hand finished rows to `on_batch` in batches (a crash loses one batch at most).

    Each request dict carries request_id, prompt_id, template_version, system_prompt, user_prompt and
    regenerated_from; each row handed on adds the answer, usage, latency, cost, attempts and error.
    """
    stats = CollectStats(total=len(requests))
    by_id = {r["request_id"]: r for r in requests}
    items = [(r["request_id"], messages(r["system_prompt"], r["user_prompt"])) for r in requests]
    pending: list[dict[str, Any]] = []
    last_log = time.monotonic()
    bar = tqdm(total=len(requests), desc=f"teacher {model_id}", unit="req", disable=not progress, mininterval=1.0)

    async def flush() -> None:
        if pending:
            batch = pending.copy()
            pending.clear()
            # delta-rs work happens off the event loop so in-flight requests keep going.
            await asyncio.to_thread(on_batch, batch)

    try:
        async for key, result in client.stream(items, params):
            completion, error = parse_answer(result)
            cost = cost_usd(result.prompt_tokens, result.completion_tokens, price)
            request = by_id[key]
            pending.append(
                {
                    **request,
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
            )
            stats.done += 1
            stats.prompt_tokens += result.prompt_tokens
            stats.completion_tokens += result.completion_tokens
            stats.cost_usd += cost
            if error is not None:
                stats.errors += 1
                stats.error_kinds[error.split(":")[0]] += 1
            bar.update(1)
            if len(pending) >= batch_size:
                await flush()
            if log is not None and time.monotonic() - last_log >= log_every_s:
                log(stats.line())
                last_log = time.monotonic()
        await flush()
    finally:
        bar.close()
        await client.aclose()
    if log is not None:
        log(stats.line())
    return stats
