"""The train layer: one row per trained checkpoint."""

from __future__ import annotations

import polars as pl

CHECKPOINT_SCHEMA: dict[str, pl.DataType] = {
    "checkpoint_id": pl.String(),
    "base_model": pl.String(),
    "preset": pl.String(),
    "sft_version": pl.Int64(),
    "rows": pl.Int64(),  # train rows read at sft_version
    "rows_sha256": pl.String(),  # sha256 of their sorted example_ids
    "config": pl.String(),  # the resolved train config, JSON
    "uri": pl.String(),
    "backend": pl.String(),
    "cloud": pl.String(),
    "region": pl.String(),
    "accelerator": pl.String(),
    "price_per_hour": pl.Float64(),
    "wall_s": pl.Float64(),
    "cost_usd": pl.Float64(),
    "steps": pl.Int64(),
    "tokens": pl.Int64(),
    "tokens_per_s": pl.Float64(),
    "train_loss": pl.Float64(),
    "val_loss": pl.Float64(),
}
