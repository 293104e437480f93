"""Dagster metadata helpers: Markdown previews and count tables a person can read at a glance."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import polars as pl

from nexa_resources.lake import LakeResource, WriteResult
from nexa_resources.tables import asset_key

PREVIEW_ROWS = 5
CELL_CHARS = 80


def markdown_table(df: pl.DataFrame, columns: Sequence[str] | None = None, rows: int = PREVIEW_ROWS) -> str:
    """A Markdown table of the first rows (long cells cut), for `MetadataValue.md`."""
    if columns:
        df = df.select([c for c in columns if c in df.columns])
    if df.is_empty():
        return "_no rows_"
    head = df.head(rows)

    def cell(value: object) -> str:
        text = "" if value is None else str(value)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"

    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.iter_rows()]
    return "\n".join(lines)


def preview(df: pl.DataFrame, columns: Sequence[str] | None = None) -> dg.MetadataValue:
    return dg.MetadataValue.md(markdown_table(df, columns))


def counts(df: pl.DataFrame, by: Sequence[str]) -> dg.MetadataValue:
    """Row counts grouped by columns, as a Markdown table."""
    if df.is_empty():
        return dg.MetadataValue.md("_no rows_")
    table = df.group_by(list(by)).len("rows").sort(list(by))
    return dg.MetadataValue.md(markdown_table(table, rows=table.height))


def table_metadata(
    lake: LakeResource, table: str, written: WriteResult | None, extra: Mapping[str, Any]
) -> dict[str, Any]:
    """An asset's materialization metadata: its write (else the table's version), row count, then `extra`."""
    write = written.metadata() if written is not None else {"delta_version": lake.version(table)}
    return {**write, "dagster/row_count": lake.read(table, columns=["run_id"], missing_ok=True).height, **extra}


def rounded_table(df: pl.DataFrame, columns: Sequence[str], rounded: Sequence[str], rows: int) -> dg.MetadataValue:
    """A Markdown table of `columns`, those in `rounded` to 3 decimals."""
    picked = df.select([pl.col(c).round(3) if c in rounded else pl.col(c) for c in columns])
    return dg.MetadataValue.md(markdown_table(picked, rows=rows))


def materialization(table: str, written: WriteResult | None, lake: LakeResource, **extra: Any) -> dg.MaterializeResult:
    """The MaterializeResult of an asset that wrote `table`, with its `table_metadata`."""
    return dg.MaterializeResult(asset_key=asset_key(table), metadata=table_metadata(lake, table, written, extra))
