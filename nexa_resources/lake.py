"""The lake: every Delta read and write, table versions and history, and DuckDB SQL over all tables.

This is the one module that writes Delta tables. Tables live at `<root>/<layer>/<name>`; the root is a
local folder (`data_lake/` by default) or `s3://bucket/prefix`. S3 settings come from the environment
only (never from config, so keys never reach Dagster metadata):

    AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, AWS_REGION (or AWS_DEFAULT_REGION),
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from pydantic import Field

from nexa_resources.run_worker import tag_run_worker
from nexa_resources.storage import storage_options_from_env
from nexa_resources.tables import TABLES, TableSpec, table_spec

DEFAULT_ROOT = "data_lake"
ROOT_ENV = "NEXA_LAKE_ROOT"
# Limits of user SQL (`nexa sql`, the dashboard's SQL page), sized for a shared dashboard.
SQL_TIMEOUT_ENV = "NEXA_SQL_TIMEOUT_S"
SQL_MEMORY_ENV = "NEXA_SQL_MEMORY_LIMIT"
DEFAULT_SQL_TIMEOUT_S = 30.0
DEFAULT_SQL_MEMORY_LIMIT = "1GB"

# Concurrent writers contend on the Delta log; a lost race is retried this many times.
_COMMIT_RETRIES = 12


class WriteMode(str, Enum):
    OVERWRITE = "overwrite"
    APPEND = "append"
    MERGE = "merge"


class SqlAccessError(RuntimeError):
    """User SQL touched something outside the lake views."""


class SqlLimitError(RuntimeError):
    """User SQL ran past the time limit or needed more than the memory limit."""


@dataclass(frozen=True)
class Lineage:
    """Who wrote a row: the Dagster run, the feedback round, and when (DESIGN §3)."""

    run_id: str
    round: int = 0
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @classmethod
    def from_context(cls, context: dg.AssetExecutionContext, round: int = 0) -> Lineage:
        return cls(run_id=context.run.run_id, round=round)


@dataclass(frozen=True)
class WriteResult:
    """What one write did: the Delta version it committed and the row counts."""

    table: str
    mode: WriteMode
    version: int
    rows_in: int
    inserted: int
    updated: int = 0
    deleted: int = 0

    def metadata(self) -> dict[str, Any]:
        """Dagster materialization metadata for this write."""
        return {
            "table": self.table,
            "delta_version": self.version,
            "write_mode": self.mode.value,
            "rows_in": self.rows_in,
            "rows_inserted": self.inserted,
            "rows_updated": self.updated,
            "rows_deleted": self.deleted,
        }


def with_lineage(df: pl.DataFrame, lineage: Lineage) -> pl.DataFrame:
    """Add (or overwrite) the lineage columns run_id, round and created_at."""
    return df.with_columns(
        pl.lit(lineage.run_id, dtype=pl.String).alias("run_id"),
        pl.lit(lineage.round, dtype=pl.Int64).alias("round"),
        pl.lit(lineage.created_at, dtype=pl.Datetime("us", "UTC")).alias("created_at"),
    )


class LakeResource(dg.ConfigurableResource):
    """Delta Lake tables on a local folder or S3, with DuckDB SQL over every table."""

    root: str = Field(
        default=DEFAULT_ROOT,
        description="Lake root: a local folder (relative to the working directory) or s3://bucket/prefix.",
    )
    sql_timeout_s: float = Field(
        default=DEFAULT_SQL_TIMEOUT_S,
        ge=0,
        description=f"User SQL is interrupted after this many seconds (0: no limit); env {SQL_TIMEOUT_ENV}.",
    )
    sql_memory_limit: str = Field(
        default=DEFAULT_SQL_MEMORY_LIMIT,
        description=f"DuckDB memory_limit of user SQL, e.g. 512MB or 4GB (no spilling to disk); env {SQL_MEMORY_ENV}.",
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Every Nexa run uses the lake, so here a run records which process runs it (see run_worker).
        tag_run_worker(context.instance, context.dagster_run)

    @classmethod
    def from_env(cls, root: str | None = None) -> LakeResource:
        """The lake named by `root`, else NEXA_LAKE_ROOT, else ./data_lake; SQL limits from their variables."""
        return cls(root=root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT, **sql_limits_from_env())

    # ----------------------------------------------------------------- locations

    @property
    def is_remote(self) -> bool:
        return "://" in self.root

    def root_uri(self) -> str:
        if self.is_remote:
            return self.root.rstrip("/")
        return str(Path(self.root).expanduser().resolve())

    def uri(self, table: str | TableSpec) -> str:
        spec = table if isinstance(table, TableSpec) else table_spec(table)
        return f"{self.root_uri()}/{spec.path}"

    def storage_options(self) -> dict[str, str] | None:
        return storage_options_from_env() if self.is_remote else None

    # ------------------------------------------------------------------- reading

    def exists(self, table: str) -> bool:
        return DeltaTable.is_deltatable(self.uri(table), storage_options=self.storage_options())

    def tables(self) -> list[TableSpec]:
        """Every table that exists in the lake: the registry's, plus any other `layer/name` found locally."""
        found = [spec for spec in TABLES.values() if self.exists(spec.path)]
        if not self.is_remote:
            root = Path(self.root_uri())
            known = {spec.path for spec in found}
            for log in sorted(root.glob("*/*/_delta_log")):
                path = f"{log.parent.parent.name}/{log.parent.name}"
                if path not in known and path not in TABLES:
                    try:
                        found.append(table_spec(path))
                    except ValueError:
                        continue
        return found

    def delta_table(self, table: str, version: int | str | datetime | None = None) -> DeltaTable:
        """The DeltaTable at its latest version, or at a version number / timestamp (time travel)."""
        uri = self.uri(table)
        try:
            dt = DeltaTable(uri, storage_options=self.storage_options())
        except TableNotFoundError:
            existing = ", ".join(spec.path for spec in self.tables()) or "none yet"
            raise TableNotFoundError(
                f"no Delta table {table!r} at {uri} (tables in this lake: {existing}); "
                "materialize its asset first"
            ) from None
        if version is not None:
            target = _parse_version(version)
            if isinstance(target, datetime):
                target = _version_at(dt, target, table)
            dt.load_as_version(target)
        return dt

    def version(self, table: str) -> int | None:
        """The latest Delta version of a table, or None if it does not exist."""
        if not self.exists(table):
            return None
        return self.delta_table(table).version()

    def read(
        self,
        table: str,
        *,
        version: int | str | datetime | None = None,
        columns: Sequence[str] | None = None,
        missing_ok: bool = False,
    ) -> pl.DataFrame:
        """A table (optionally at a past version or timestamp) as a polars DataFrame."""
        if missing_ok and not self.exists(table):
            return pl.DataFrame()
        dt = self.delta_table(table, version)
        return pl.from_arrow(dt.to_pyarrow_table(columns=list(columns) if columns else None))

    def history(self, table: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The table's commits, newest first: version, timestamp, operation and metrics."""
        return self.delta_table(table).history(limit)

    # ------------------------------------------------------------------- writing

    def write(
        self,
        table: str,
        data: pl.DataFrame,
        *,
        mode: WriteMode | str,
        lineage: Lineage | None = None,
        keys: Sequence[str] | None = None,
        update_matched: bool = True,
        update_if_changed: Sequence[str] = (),
        delete_unmatched: bool = False,
        partition_by: Sequence[str] | None = None,
    ) -> WriteResult:
        """Write rows: overwrite, append, or merge on the table's keys. Returns the new Delta version.

        A merge inserts rows whose keys are new and, with `update_matched`, replaces rows whose keys
        exist (with `update_if_changed`, only those where one of these columns differs, so a row read
        again keeps its lineage and an unchanged batch commits nothing); with `delete_unmatched` it also
        deletes rows absent from `data`, making the table equal to `data` while rows that did not change
        keep their lineage. Re-running a merge changes nothing. Concurrent writers are safe: a commit that
        loses the race is retried against the new table state.
        """
        mode = WriteMode(mode)
        spec = table_spec(table)
        if lineage is not None:
            data = with_lineage(data, lineage)
        merge_keys = tuple(keys or spec.keys)
        if mode is WriteMode.MERGE:
            if not merge_keys:
                raise ValueError(f"merge into {spec.path} needs key columns; pass keys=[...]")
            missing = [k for k in merge_keys if k not in data.columns]
            if missing:
                raise ValueError(f"merge into {spec.path}: key columns {missing} are not in the rows")
            data = data.unique(subset=list(merge_keys), keep="last", maintain_order=True)
        arrow = data.to_arrow()
        uri = self.uri(spec)
        custom_metadata = {"nexa.run_id": lineage.run_id} if lineage else None
        commit = CommitProperties(custom_metadata=custom_metadata)
        # Creating a table must fail, not be rebased onto a table another writer just created
        # (delta-rs would commit it as version 1 on top of theirs): no commit retries for it.
        create_commit = CommitProperties(custom_metadata=custom_metadata, max_commit_retries=0)

        for attempt in range(_COMMIT_RETRIES):
            creating = False
            try:
                if mode is WriteMode.MERGE and self.exists(spec.path):
                    update = _changed_predicate(update_if_changed) if update_matched else False
                    return self._merge(spec, arrow, merge_keys, update, delete_unmatched, commit)
                # A merge into a missing table creates it, but only if it is still missing: appending
                # would duplicate the keys of a writer that created it since exists() said no.
                creating = mode is WriteMode.MERGE
                write_deltalake(
                    uri,
                    arrow,
                    mode="overwrite" if mode is WriteMode.OVERWRITE else "error" if creating else "append",
                    schema_mode=(
                        "overwrite" if mode is WriteMode.OVERWRITE else None if creating else "merge"
                    ),
                    partition_by=list(partition_by) if partition_by else None,
                    storage_options=self.storage_options(),
                    commit_properties=create_commit if creating else commit,
                )
                version = self.delta_table(spec.path).version()
                return WriteResult(spec.path, mode, version, arrow.num_rows, arrow.num_rows)
            except CommitFailedError:
                if attempt == _COMMIT_RETRIES - 1:
                    raise
                time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
            except DeltaError:
                # Another writer created the table first: merge into it on the next attempt.
                if not creating or attempt == _COMMIT_RETRIES - 1 or not self.exists(spec.path):
                    raise
        raise AssertionError("unreachable")

    def _merge(
        self,
        spec: TableSpec,
        arrow: pa.Table,
        keys: tuple[str, ...],
        update: str | bool,
        delete_unmatched: bool,
        commit: CommitProperties,
    ) -> WriteResult:
        dt = self.delta_table(spec.path)
        predicate = " AND ".join(f"t.{_quote(k)} = s.{_quote(k)}" for k in keys)
        merger = dt.merge(
            arrow,
            predicate=predicate,
            source_alias="s",
            target_alias="t",
            merge_schema=True,
            commit_properties=commit,
        )
        if update:
            merger = merger.when_matched_update_all(predicate=update if isinstance(update, str) else None)
        if delete_unmatched:
            merger = merger.when_not_matched_by_source_delete()
        metrics = merger.when_not_matched_insert_all().execute()
        return WriteResult(
            spec.path,
            WriteMode.MERGE,
            dt.version(),
            arrow.num_rows,
            int(metrics.get("num_target_rows_inserted", 0)),
            int(metrics.get("num_target_rows_updated", 0)),
            int(metrics.get("num_target_rows_deleted", 0)),
        )

    # ----------------------------------------------------------------------- SQL

    def connect(
        self,
        at: Mapping[str, int | str | datetime] | None = None,
        *,
        safe: bool = True,
    ) -> duckdb.DuckDBPyConnection:
        """DuckDB with every lake table as view `<layer>.<name>`, optionally some at past versions.

        With `safe` (the default for anything a user types), file system access is disabled and the
        setting locked: only the lake views can be read, and memory is capped at `sql_memory_limit`.
        """
        at = {table_spec(k).path: v for k, v in (at or {}).items()}
        con = duckdb.connect(":memory:")
        specs = self.tables()
        unknown = set(at) - {s.path for s in specs}
        if unknown:
            valid = ", ".join(s.sql_name for s in specs) or "none yet"
            raise ValueError(f"--at names tables not in the lake: {sorted(unknown)} (tables: {valid})")
        allowed: list[str] = []
        for spec in specs:
            dt = self.delta_table(spec.path, at.get(spec.path))
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(spec.layer)}")
            view = f"{_quote(spec.layer)}.{_quote(spec.name)}"
            files = _plain_parquet_files(dt) if not self.is_remote else None
            if files:
                # DuckDB's own Parquet reader over the version's data files: 2-4x faster than scanning
                # a pyarrow dataset (bench/lake.py), and still no extension.
                columns = ", ".join(_quote(f.name) for f in dt.schema().fields)
                listing = ", ".join(_sql_str(f) for f in files)
                try:
                    con.execute(
                        f"CREATE OR REPLACE VIEW {view} AS SELECT {columns} "
                        f"FROM read_parquet([{listing}], union_by_name = true)"
                    )
                    allowed.extend(files)
                    continue
                except duckdb.Error:
                    pass  # e.g. a column no data file has yet: the pyarrow dataset handles it
            hidden = f"__{spec.layer}__{spec.name}"
            con.register(hidden, dt.to_pyarrow_dataset())
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {_quote(hidden)}")
        if safe:
            self._seal(con, allowed)
        return con

    def _seal(self, con: duckdb.DuckDBPyConnection, allowed: Sequence[str]) -> None:
        """Lock `con` down for user SQL: no file access beyond `allowed`, no temp folder, capped memory."""
        # DuckDB adds its temp folder (default `.tmp` in the working directory) to allowed_directories,
        # readable and writable by SQL: without one, nothing spills to disk and no directory is open.
        con.execute("SET temp_directory = ''")
        try:
            con.execute(f"SET memory_limit = {_sql_str(self.sql_memory_limit)}")
        except duckdb.Error as exc:
            con.close()
            raise ValueError(
                f"bad SQL memory limit {self.sql_memory_limit!r} ({SQL_MEMORY_ENV}): expected a size such as "
                f"512MB, 2GB or 80% ({exc})"
            ) from None
        if allowed:  # exactly the data files of the views' versions, read-only
            con.execute(f"SET allowed_paths = [{', '.join(_sql_str(f) for f in allowed)}]")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")

    def sql(
        self,
        query: str,
        at: Mapping[str, int | str | datetime] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> pa.Table:
        """Run read-only user SQL over the lake views and return the result as Arrow.

        The query is interrupted after `timeout_s` (default `sql_timeout_s`; 0: no limit) and may use at
        most `sql_memory_limit`: either raises SqlLimitError. File access raises SqlAccessError.
        """
        limit = self.sql_timeout_s if timeout_s is None else timeout_s
        con = self.connect(at)
        try:
            with _interrupt_after(con, limit):
                relation = con.sql(query)
                return relation.fetch_arrow_table() if relation is not None else pa.table({})
        except duckdb.InterruptException:
            raise SqlLimitError(
                f"query stopped after {limit:g} s, the time limit of Nexa SQL: narrow it (WHERE, LIMIT, fewer "
                f"joins) or raise the limit ({SQL_TIMEOUT_ENV}=SECONDS, or `nexa sql --timeout SECONDS`)"
            ) from None
        except duckdb.OutOfMemoryException:
            raise SqlLimitError(
                f"query needs more than {self.sql_memory_limit} of memory, the limit of Nexa SQL (no spilling "
                f"to disk): narrow it (WHERE, LIMIT, fewer columns) or raise the limit ({SQL_MEMORY_ENV}=4GB)"
            ) from None
        except duckdb.PermissionException as exc:
            raise self._access_error(str(exc)) from None
        except duckdb.CatalogException as exc:
            missing = re.search(r"Table with name (.+?) does not exist", str(exc))
            if missing and _looks_like_a_file(missing.group(1)):
                raise self._access_error(f"{missing.group(1)!r} is a file, not a lake view") from None
            raise duckdb.CatalogException(f"{exc}\nLake views: {self._view_names()}") from None
        finally:
            con.close()

    def _access_error(self, detail: str) -> SqlAccessError:
        return SqlAccessError(
            "external file access is disabled in Nexa SQL: no file, directory, ATTACH or COPY TO; only the "
            f"lake views can be queried ({detail}). Views: {self._view_names()}"
        )

    def _view_names(self) -> str:
        return ", ".join(s.sql_name for s in self.tables()) or "none yet"


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
def _interrupt_after(con: duckdb.DuckDBPyConnection, seconds: float) -> Iterator[None]:
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


def _looks_like_a_file(name: str) -> bool:
    """Whether a name DuckDB could not find as a table is a file path (`FROM '/etc/passwd'`)."""
    return bool(re.search(r"[/\\~:]|\.\w{1,8}$", name))


def _changed_predicate(columns: Sequence[str]) -> str | bool:
    """The merge's update condition: rows where one of `columns` differs, or True (every matched row)."""
    if not columns:
        return True
    return " OR ".join(f"(t.{_quote(c)} IS DISTINCT FROM s.{_quote(c)})" for c in columns)


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _plain_parquet_files(dt: DeltaTable) -> list[str] | None:
    """The table's data files if plain read_parquet reads it exactly: no partitions, DVs or column mapping."""
    protocol = dt.protocol()
    if protocol.min_reader_version > 1 or dt.metadata().partition_columns:
        return None
    files = dt.file_uris()
    if not files or any("://" in f for f in files):
        return None
    return files


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _parse_version(version: int | str | datetime) -> int | datetime:
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


def _version_at(dt: DeltaTable, when: datetime, table: str) -> int:
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
