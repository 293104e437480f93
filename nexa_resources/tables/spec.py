"""What the catalog knows of one table: where it lives, its keys and columns, and the asset that writes it."""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg
import polars as pl

# Added by the lake on every write (nexa_resources.lake.with_lineage).
LINEAGE_COLUMNS: tuple[str, ...] = ("run_id", "round", "created_at")
LINEAGE_SCHEMA: dict[str, pl.DataType] = {
    "run_id": pl.String(),
    "round": pl.Int64(),
    "created_at": pl.Datetime("us", "UTC"),
}


@dataclass(frozen=True)
class TableSpec:
    """A Delta table at `<lake_root>/<layer>/<name>`, seen by DuckDB as `<layer>.<name>`."""

    layer: str
    name: str
    keys: tuple[str, ...]
    schema: dict[str, pl.DataType] = field(default_factory=dict, compare=False)
    owner: str = ""  # the Dagster asset (or resource) that writes it
    description: str = ""

    @property
    def path(self) -> str:
        return f"{self.layer}/{self.name}"

    @property
    def sql_name(self) -> str:
        return f"{self.layer}.{self.name}"

    @property
    def asset_key(self) -> dg.AssetKey:
        return dg.AssetKey([self.layer, self.name])

    @property
    def stored_schema(self) -> dict[str, pl.DataType]:
        """The columns as stored: the schema plus the lineage columns."""
        return {**self.schema, **LINEAGE_SCHEMA}
