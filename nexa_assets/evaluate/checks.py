"""The evaluate group's asset checks: the eval prompts stay out of every training table."""

from __future__ import annotations

import dagster as dg
import polars as pl

from nexa_resources.lake import LakeResource
from nexa_resources.tables import asset_key

EVAL_PROMPTS = asset_key("eval/prompts")
TRAINING_TABLES: tuple[str, ...] = ("distill/completions", "sft/examples")


def held_out_spec() -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        "held_out",
        asset=EVAL_PROMPTS,
        blocking=True,
        description="No eval prompt appears in distill/completions or sft/examples.",
    )


def held_out(lake: LakeResource, prompts: pl.DataFrame) -> dg.AssetCheckResult:
    """Passes when none of `prompts` is in a training table."""
    ids = prompts["prompt_id"].implode()
    leaked = {
        table: lake.read(table, columns=["prompt_id"]).filter(pl.col("prompt_id").is_in(ids)).height
        for table in TRAINING_TABLES
        if lake.exists(table)
    }
    return dg.AssetCheckResult(
        asset_key=EVAL_PROMPTS,
        check_name="held_out",
        passed=not any(leaked.values()),
        metadata={"rows_in_training_tables": dg.MetadataValue.json(leaked)},
    )
