"""Asset checks of the raw layer: raw/prompts' schema, unique ids, and the run's reject rate."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import polars as pl

from nexa_resources.tables import table_spec

PROMPTS = table_spec("raw/prompts")

SPECS = [
    dg.AssetCheckSpec("schema", asset=PROMPTS.asset_key, description="Columns and types match the raw/prompts schema."),
    dg.AssetCheckSpec("unique_prompt_id", asset=PROMPTS.asset_key, description="No prompt_id appears twice."),
    dg.AssetCheckSpec(
        "reject_rate", asset=PROMPTS.asset_key, description="This run's reject rate is under the threshold."
    ),
]


def prompt_checks(table: pl.DataFrame, reject_rate: float, max_reject_rate: float) -> Iterator[dg.AssetCheckResult]:
    """The three raw/prompts checks over the table as written and this run's reject rate."""
    mismatched = {c: str(table.schema.get(c)) for c, t in PROMPTS.stored_schema.items() if table.schema.get(c) != t}
    yield dg.AssetCheckResult(
        asset_key=PROMPTS.asset_key,
        check_name="schema",
        passed=not mismatched,
        metadata={"mismatched_columns": dg.MetadataValue.json(mismatched)},
    )
    duplicates = table.height - table["prompt_id"].n_unique()
    yield dg.AssetCheckResult(
        asset_key=PROMPTS.asset_key,
        check_name="unique_prompt_id",
        passed=duplicates == 0,
        metadata={"duplicates": duplicates},
    )
    yield dg.AssetCheckResult(
        asset_key=PROMPTS.asset_key,
        check_name="reject_rate",
        passed=reject_rate <= max_reject_rate,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"reject_rate": round(reject_rate, 4), "threshold": max_reject_rate},
    )
