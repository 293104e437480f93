"""The train group's asset checks: the loss fell over the run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from nexa_resources.tables import asset_key

CHECKPOINTS = asset_key("train/checkpoints")


def loss_fell_spec() -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec("loss_fell", asset=CHECKPOINTS, description="Final train loss below the first.")


def loss_fell(result: Mapping[str, Any]) -> dg.AssetCheckResult:
    """Passes when the run's final train loss is below its first."""
    first, last = result.get("first_loss"), result.get("train_loss")
    return dg.AssetCheckResult(
        asset_key=CHECKPOINTS,
        check_name="loss_fell",
        passed=first is not None and last is not None and last < first,
        metadata={"first_loss": first, "train_loss": last, "steps": result.get("steps")},
    )
