"""The train/checkpoints row: one per trained checkpoint, keyed by hash(run, SFT version, config)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import polars as pl

from nexa_core.text import content_hash
from nexa_resources.tables.train import CHECKPOINT_SCHEMA


def checkpoint_id(run_id: str, sft_version: int, config: Mapping[str, Any]) -> str:
    """Same run, data version and config → same id (and output folder, so a retried step resumes)."""
    return content_hash(run_id, int(sft_version), json.dumps(dict(config), sort_keys=True))


def artifact_uri(lake_root_uri: str, checkpoint: str) -> str:
    """Where a checkpoint's files go by default: `<lake root>/train/artifacts/<checkpoint_id>`."""
    return f"{lake_root_uri.rstrip('/')}/train/artifacts/{checkpoint}"


def checkpoint_row(checkpoint: str, uri: str, result: Mapping[str, Any]) -> pl.DataFrame:
    """One train/checkpoints row from a compute backend's result (trainer metrics + where and at what price)."""

    def num(key: str) -> float | None:
        value = result.get(key)
        return None if value is None else float(value)

    row = {
        "checkpoint_id": checkpoint,
        "base_model": result.get("base_model"),
        "preset": result.get("preset"),
        "sft_version": int(result["sft_version"]),
        "rows": result.get("rows"),
        "rows_sha256": result.get("rows_sha256"),
        "config": json.dumps(result.get("config", {}), sort_keys=True),
        "uri": uri,
        "backend": result.get("backend"),
        "cloud": result.get("cloud"),
        "region": result.get("region"),
        "accelerator": result.get("accelerator"),
        "price_per_hour": num("price_per_hour"),
        "wall_s": num("wall_s"),
        "cost_usd": num("cost_usd"),
        "steps": result.get("steps"),
        "tokens": result.get("tokens"),
        "tokens_per_s": num("tokens_per_s"),
        "train_loss": num("train_loss"),
        "val_loss": num("val_loss"),
    }
    return pl.DataFrame([row], schema=CHECKPOINT_SCHEMA)
