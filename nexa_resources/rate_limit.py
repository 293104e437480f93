"""Requests-per-minute and tokens-per-minute budgets for the chat client, as token buckets."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


class RateLimiter:
    """Requests-per-minute and tokens-per-minute budgets as token buckets (0 = unlimited)."""

    def __init__(self, requests_per_minute: float = 0, tokens_per_minute: float = 0) -> None:
        self._buckets = [
            _Bucket(requests_per_minute) if requests_per_minute else None,
            _Bucket(tokens_per_minute) if tokens_per_minute else None,
        ]

    async def acquire(self, tokens: int) -> None:
        for bucket, amount in zip(self._buckets, (1, tokens)):
            if bucket is not None:
                await bucket.take(amount)


@dataclass
class _Bucket:
    per_minute: float
    level: float = field(init=False)
    capacity: float = field(init=False)
    updated: float = field(default_factory=time.monotonic)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        # A burst of at most 6 s of budget: providers enforce limits over windows shorter than a minute.
        self.capacity = max(1.0, self.per_minute / 10)
        self.level = self.capacity

    async def take(self, amount: float) -> None:
        amount = min(amount, self.capacity)  # a request larger than the burst still goes, at the full rate
        async with self.lock:
            while True:
                now = time.monotonic()
                self.level = min(self.capacity, self.level + (now - self.updated) * self.per_minute / 60)
                self.updated = now
                if self.level >= amount:
                    self.level -= amount
                    return
                await asyncio.sleep((amount - self.level) * 60 / self.per_minute)
