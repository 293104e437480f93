"""Which registered checkpoint a step works on: the one named, else the newest in train/checkpoints."""

from __future__ import annotations

from typing import Any

import dagster as dg
import polars as pl

from nexa_resources.lake import LakeResource


def newest_checkpoint(lake: LakeResource, checkpoint_id: str | None = None) -> dict[str, Any]:
    """The checkpoint row to evaluate: the one named, else the newest registered."""
    checkpoints = lake.read("train/checkpoints", missing_ok=True)
    if checkpoints.is_empty():
        raise dg.Failure("train/checkpoints is empty: materialize train/checkpoints first (group train)")
    if checkpoint_id is not None:
        found = checkpoints.filter(pl.col("checkpoint_id") == checkpoint_id)
        if found.is_empty():
            valid = ", ".join(checkpoints["checkpoint_id"].to_list())
            raise dg.Failure(f"unknown checkpoint_id {checkpoint_id!r}: valid values are {valid}")
        return found.row(0, named=True)
    return checkpoints.sort("created_at").row(-1, named=True)
