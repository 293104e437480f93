"""Asset checks of the distill layer: the teacher's error rate and the pairs' pass rate."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
import polars as pl

from nexa_assets.distill.collect import CollectStats
from nexa_resources.tables import asset_key

COMPLETIONS = asset_key("distill/completions")
PAIRS = asset_key("distill/pairs")

ERROR_RATE = dg.AssetCheckSpec("error_rate", asset=COMPLETIONS, description="Failed requests under the limit.")
PASS_RATE = dg.AssetCheckSpec("pass_rate", asset=PAIRS, description="Pass rate above the floor.")


def error_rate_check(
    mine: pl.DataFrame, requests: Sequence[dict[str, Any]], stats: CollectStats, limit: float
) -> Iterator[dg.AssetCheckResult]:
    """The share of this run's requests whose row holds an error; over `limit` the run then fails."""
    # Judged on the table, not on this run: a re-run that retries 4 failed rows of 64 and fails 1 again
    # leaves 1 error in 64, whatever share of the 4 sent it was.
    failed = int(mine["error"].is_not_null().sum()) if mine.height else 0
    error_rate = failed / len(requests) if requests else 0.0
    passed = error_rate <= limit
    yield dg.AssetCheckResult(
        asset_key=COMPLETIONS,
        check_name="error_rate",
        passed=passed,
        metadata={
            "error_rate": round(error_rate, 4),
            "limit": limit,
            "requests": len(requests),
            "failed_in_table": failed,
            "sent_this_run": stats.done,
            "failed_this_run": stats.errors,
        },
    )
    if not passed:
        top = ", ".join(f"{k} ×{n}" for k, n in stats.error_kinds.most_common(3)) or "see the error column"
        raise dg.Failure(
            f"{failed} of {len(requests)} teacher requests hold an error in distill/completions ({error_rate:.0%} > "
            f"limit {limit:.0%}); this run sent {stats.done}, {stats.errors} failed: {top}. "
            "Their rows are recorded with the error; re-run to retry them.",
        )


def pass_rate_check(pass_rate: float, floor: float) -> dg.AssetCheckResult:
    """The share of distill/pairs that passed the filters and the judge, against `floor`."""
    return dg.AssetCheckResult(
        asset_key=PAIRS,
        check_name="pass_rate",
        passed=pass_rate >= floor,
        metadata={"pass_rate": round(pass_rate, 4), "floor": floor},
    )
