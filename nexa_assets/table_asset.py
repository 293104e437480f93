"""The decorator of an asset that writes one catalog table: key, group and upstream tables from the catalog."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from nexa_resources.tables import asset_key, table_spec


def table_asset(
    table: str,
    *check_specs: dg.AssetCheckSpec,
    deps: Sequence[str],
    description: str,
    engine: str = "polars",
    group_name: str | None = None,
) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`dg.asset` for `table` (layer/name) computed by `engine`, depending on the tables `deps`, grouped by its layer."""
    spec = table_spec(table)
    return dg.asset(
        key=spec.asset_key,
        deps=[asset_key(d) for d in deps],
        group_name=group_name or spec.layer,
        kinds={engine, "deltalake"},
        description=description,
        check_specs=list(check_specs) or None,
    )
