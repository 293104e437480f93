"""Cell statistics: the mean of 1–5 judge scores with a 95% Student-t confidence interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Two-sided 95% Student-t critical values t(0.975, df) for df = 1..30; beyond 30 the normal 1.96 is
# within 2% (t(0.975, 30) = 2.042), and interpolating in 1/df keeps it continuous.
_T975: tuple[float, ...] = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
_Z975 = 1.959964


def t_critical_95(df: int) -> float:
    """t(0.975, df): the multiplier of the standard error for a two-sided 95% interval."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    # Linear in 1/df between df=30 and df=∞ (error < 0.002 against the exact quantile).
    weight = len(_T975) / df
    return _Z975 + (_T975[-1] - _Z975) * weight


@dataclass(frozen=True)
class CellStats:
    mean: float | None
    n: int
    std: float | None
    ci_low: float | None
    ci_high: float | None


def mean_ci(scores: Sequence[float], scale: tuple[float, float] = (1.0, 5.0)) -> CellStats:
    """Mean, sample standard deviation and 95% t-interval, clipped to the score scale.

    One score has no spread to estimate, so its interval is the whole scale (as wide as it can be),
    never a zero-width claim of certainty. No scores gives all None.
    """
    n = len(scores)
    if n == 0:
        return CellStats(None, 0, None, None, None)
    mean = math.fsum(scores) / n
    if n == 1:
        return CellStats(mean, 1, None, scale[0], scale[1])
    var = math.fsum((s - mean) ** 2 for s in scores) / (n - 1)
    std = math.sqrt(var)
    half = t_critical_95(n - 1) * std / math.sqrt(n)
    return CellStats(mean, n, std, max(scale[0], mean - half), min(scale[1], mean + half))
