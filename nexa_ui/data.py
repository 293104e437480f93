"""The dashboard's one door to the lake: cached reads through `nexa_resources.lake` (local folder or S3).

Reads are cached per (lake root, table, Delta version): a page rerun costs one version lookup per table
(itself cached for a few seconds), and a new commit to a table is picked up on the next rerun.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import streamlit as st

from nexa_resources.lake import LakeResource, configured_root, sql_limits_from_env
from nexa_resources.storage import read_s3_object

# How long a table's latest version is trusted before the lake is asked again (seconds).
VERSION_TTL_S = 5


def lake_root() -> str:
    """The lake the dashboard shows: NEXA_LAKE_ROOT, else the profile's, else ./data_lake (as every entry point)."""
    return configured_root()


@st.cache_resource(show_spinner=False)
def _lake(root: str, sql_limits: tuple[tuple[str, Any], ...] = ()) -> LakeResource:
    return LakeResource(root=root, **dict(sql_limits))


def lake() -> LakeResource:
    """The lake, with the SQL limits of NEXA_SQL_TIMEOUT_S and NEXA_SQL_MEMORY_LIMIT as they are now."""
    return _lake(lake_root(), tuple(sorted(sql_limits_from_env().items())))


@st.cache_data(show_spinner=False, ttl=VERSION_TTL_S)
def _version(root: str, table: str) -> int | None:
    return _lake(root).version(table)


@st.cache_data(show_spinner=False, max_entries=64)
def _read(root: str, table: str, version: int) -> pl.DataFrame:
    return _lake(root).read(table, version=version)


def version(table: str) -> int | None:
    """The table's latest Delta version, or None when it does not exist yet."""
    return _version(lake_root(), table)


def read(table: str) -> pl.DataFrame:
    """A table at its latest version; an empty frame when it does not exist yet."""
    root = lake_root()
    current = _version(root, table)
    if current is None:
        return pl.DataFrame()
    return _read(root, table, current)


def existing_tables() -> list[tuple[str, int]]:
    """(`layer.table`, Delta version) of every table in the lake, for the SQL page's list of views."""
    out = []
    for spec in lake().tables():
        current = version(spec.path)
        if current is not None:
            out.append((spec.sql_name, current))
    return out


def run_sql(query: str) -> pa.Table:
    """User SQL over the lake views, read-only: SqlAccessError on file access, SqlLimitError past the time or
    memory limit (NEXA_SQL_TIMEOUT_S, NEXA_SQL_MEMORY_LIMIT), duckdb.Error otherwise."""
    return lake().sql(query)


@st.cache_data(show_spinner=False, max_entries=128)
def _artifact_metrics(uri: str) -> dict[str, Any] | None:
    if uri.startswith("s3://"):
        try:
            body = read_s3_object(f"{uri.rstrip('/')}/metrics.json")  # the trainer's S3 layout
        except Exception:  # noqa: BLE001 - a missing or unreadable file only means no curve to draw
            return None
        return json.loads(body)
    path = Path(uri) / "metrics.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def checkpoint_metrics(uri: str | None) -> dict[str, Any] | None:
    """The trainer's metrics.json beside a checkpoint (loss curve `[[step, loss], …]`), or None if absent."""
    if not uri:
        return None
    return _artifact_metrics(uri)
