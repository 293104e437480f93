"""What a model call costs, from a (USD per 1M input tokens, USD per 1M output tokens) price."""

from __future__ import annotations

from collections.abc import Sequence

FREE = (0.0, 0.0)  # the price of a model answering on this machine (a GPU's time is counted where it trains)


def cost_usd(prompt_tokens: int, completion_tokens: int, price: Sequence[float] | None) -> float | None:
    """Cost from a (USD per 1M input tokens, USD per 1M output tokens) price; None (unknown) when unpriced."""
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
