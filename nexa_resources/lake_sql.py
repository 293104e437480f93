"""The lake's SQL guard rails and version parsing: limits of user SQL, sealing DuckDB, `--at` versions."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import duckdb
from deltalake import DeltaTable

from nexa_resources.tables import table_spec

# Limits of user SQL (`nexa sql`, the dashboard's SQL page), sized for a shared dashboard.
SQL_TIMEOUT_ENV = "NEXA_SQL_TIMEOUT_S"
SQL_MEMORY_ENV = "NEXA_SQL_MEMORY_LIMIT"
DEFAULT_SQL_TIMEOUT_S = 30.0
DEFAULT_SQL_MEMORY_LIMIT = "1GB"


class SqlAccessError(RuntimeError):
    """User SQL touched something outside the lake views."""


class SqlLimitError(RuntimeError):
    """User SQL ran past the time limit or needed more than the memory limit."""


def seal(con: duckdb.DuckDBPyConnection, allowed: Sequence[str], memory_limit: str) -> None:
    """Lock `con` down for user SQL: no file access beyond `allowed`, no temp folder, capped memory."""
    # DuckDB adds its temp folder (default `.tmp` in the working directory) to allowed_directories,
    # readable and writable by SQL: without one, nothing spills to disk and no directory is open.
    con.execute("SET temp_directory = ''")
    try:
        con.execute(f"SET memory_limit = {sql_str(memory_limit)}")
    except duckdb.Error as exc:
        con.close()
        raise ValueError(
            f"bad SQL memory limit {memory_limit!r} ({SQL_MEMORY_ENV}): expected a size such as "
            f"512MB, 2GB or 80% ({exc})"
        ) from None
    if allowed:  # exactly the data files of the views' versions, read-only
        con.execute(f"SET allowed_paths = [{', '.join(sql_str(f) for f in allowed)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def sql_limits_from_env() -> dict[str, Any]:
    """`sql_timeout_s` and `sql_memory_limit` from NEXA_SQL_TIMEOUT_S and NEXA_SQL_MEMORY_LIMIT when set."""
    limits: dict[str, Any] = {}
    timeout = os.environ.get(SQL_TIMEOUT_ENV, "").strip()
    if timeout:
        try:
            limits["sql_timeout_s"] = float(timeout)
        except ValueError:
            raise ValueError(f"{SQL_TIMEOUT_ENV}={timeout!r}: expected seconds, e.g. 30 (0: no limit)") from None
    memory = os.environ.get(SQL_MEMORY_ENV, "").strip()
    if memory:
        limits["sql_memory_limit"] = memory
    return limits


@contextmanager
def interrupt_after(con: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[None]:
    """Interrupt `con`'s running query after `seconds` (0: never): DuckDB has no statement timeout."""
    if not seconds:
        yield
        return
    timer = threading.Timer(seconds, con.interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()  # an interrupt already under way finishes before the connection is closed


def looks_like_a_file(name: str) -> bool:
    """Whether a name DuckDB could not find as a table is a file path (`FROM '/etc/passwd'`)."""
    return bool(re.search(r"[/\\~:]|\.\w{1,8}$", name))


def changed_predicate(columns: Sequence[str]) -> str | bool:
    """The merge's update condition: rows where one of `columns` differs, or True (every matched row)."""
    if not columns:
        return True
    return " OR ".join(f"(t.{quote(c)} IS DISTINCT FROM s.{quote(c)})" for c in columns)


def sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def plain_parquet_files(dt: DeltaTable) -> list[str] | None:
    """The table's data files if plain read_parquet reads it exactly: no partitions, DVs or column mapping."""
    protocol = dt.protocol()
    if protocol.min_reader_version > 1 or dt.metadata().partition_columns:
        return None
    files = dt.file_uris()
    if not files or any("://" in f for f in files):
        return None
    return files


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def parse_version(version: int | str | datetime) -> int | datetime:
    if isinstance(version, (int, datetime)):
        return version
    text = str(version).strip()
    if re.fullmatch(r"\d+", text):
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"bad version {version!r}: expected a Delta version number (e.g. 3) or an ISO timestamp "
            "(e.g. 2026-11-22T10:00:00Z)"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def version_at(dt: DeltaTable, when: datetime, table: str) -> int:
    """The last version committed at or before `when`, from the commit timestamps (ms) in the log.

    delta-rs would resolve timestamps from object modification times, which S3 keeps to the second.
    """
    millis = when.timestamp() * 1000
    versions = [h["version"] for h in dt.history() if h.get("timestamp", 0) <= millis]
    if not versions:
        raise ValueError(f"{table} has no version at or before {when.isoformat()}")
    return max(versions)


def parse_at(items: Iterable[str]) -> dict[str, str]:
    """Parse CLI `--at layer.table=VERSION` items."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, version = item.partition("=")
        if not sep or not name or not version:
            raise ValueError(f"bad --at {item!r}: expected layer.table=VERSION, e.g. raw.prompts=3")
        out[table_spec(name).path] = version
    return out
