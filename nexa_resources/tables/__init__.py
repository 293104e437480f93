"""The table catalog: every lake table of DESIGN §3 with its keys, columns, asset key, owner and description."""

from __future__ import annotations

import dagster as dg

from nexa_resources.tables import distill, eval, feedback, raw, sft, train
from nexa_resources.tables.spec import LINEAGE_COLUMNS, LINEAGE_SCHEMA, TableSpec

TABLES: dict[str, TableSpec] = {
    spec.path: spec for layer in (raw, distill, sft, train, eval, feedback) for spec in layer.SPECS
}


def table_spec(table: str) -> TableSpec:
    """Look a table up by `layer/name` or `layer.name`; unknown names list the valid ones."""
    path = table.replace(".", "/", 1)
    if path in TABLES:
        return TABLES[path]
    layer, _, name = path.partition("/")
    if layer and name and "/" not in name and name.isidentifier() and layer.isidentifier():
        return TableSpec(layer, name, ())
    valid = ", ".join(sorted(TABLES))
    raise ValueError(f"unknown table {table!r}: expected 'layer/name' such as one of {valid}")


def asset_key(table: str) -> dg.AssetKey:
    """The Dagster asset key of a catalog table; unknown names list the valid ones."""
    path = table.replace(".", "/", 1)
    if path not in TABLES:
        raise ValueError(f"no asset writes {table!r}: expected one of {', '.join(sorted(TABLES))}")
    return TABLES[path].asset_key


__all__ = ["LINEAGE_COLUMNS", "LINEAGE_SCHEMA", "TABLES", "TableSpec", "asset_key", "table_spec"]
