"""The lake: every Delta read and write, table versions and history, and DuckDB SQL over all tables.

This is the one module that writes Delta tables. Tables live at `<root>/<layer>/<name>`; the root is a
local folder (`data_lake/` by default) or `s3://bucket/prefix`. S3 settings come from the environment
only (never from config, so keys never reach Dagster metadata):

    AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, AWS_REGION (or AWS_DEFAULT_REGION),
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import duckdb
import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from pydantic import Field

from nexa_resources.lake_sql import (
    DEFAULT_SQL_MEMORY_LIMIT,
    DEFAULT_SQL_TIMEOUT_S,
    SQL_MEMORY_ENV,
    SQL_TIMEOUT_ENV,
    SqlAccessError,
    SqlLimitError,
    changed_predicate,
    interrupt_after,
    looks_like_a_file,
    parse_version,
    plain_parquet_files,
    quote,
    seal,
    sql_limits_from_env,
    sql_str,
    version_at,
)
from nexa_resources.profiles import settings_env
from nexa_resources.run_worker import tag_run_worker
from nexa_resources.storage import storage_options_from_env
from nexa_resources.tables import TABLES, TableSpec, table_spec

DEFAULT_ROOT = "data_lake"
ROOT_ENV = "NEXA_LAKE_ROOT"

# Concurrent writers contend on the Delta log; a lost race is retried this many times.
_COMMIT_RETRIES = 12
_T = TypeVar("_T")


class WriteMode(str, Enum):
    OVERWRITE = "overwrite"
    APPEND = "append"
    MERGE = "merge"
    DELETE = "delete"


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


def configured_root() -> str:
    """The lake root the environment names: NEXA_LAKE_ROOT, else the profile's, else ./data_lake."""
    return settings_env().get(ROOT_ENV) or DEFAULT_ROOT


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
        return cls(root=root or configured_root(), **sql_limits_from_env())

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
            target = parse_version(version)
            if isinstance(target, datetime):
                target = version_at(dt, target, table)
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
            data = _unique_on_keys(spec, data, merge_keys)
        arrow = data.to_arrow()
        commit = _commit_properties(lineage)
        update = changed_predicate(update_if_changed) if update_matched else False

        def attempt() -> WriteResult:
            if mode is WriteMode.MERGE and self.exists(spec.path):
                return self._merge(spec, arrow, merge_keys, update, delete_unmatched, commit)
            return self._create_or_append(spec, arrow, mode, partition_by, lineage)

        return self._retrying(attempt)

    def delete(self, table: str, predicate: str, *, lineage: Lineage | None = None) -> WriteResult:
        """Delete the rows matching a SQL `predicate`, as one commit tagged with the run like a write."""
        spec = table_spec(table)
        commit = _commit_properties(lineage)

        def attempt() -> WriteResult:
            dt = self.delta_table(spec.path)
            metrics = dt.delete(predicate, commit_properties=commit)
            deleted = int(metrics.get("num_deleted_rows", 0))
            return WriteResult(spec.path, WriteMode.DELETE, dt.version(), 0, 0, deleted=deleted)

        return self._retrying(attempt)

    def _retrying(self, attempt: Callable[[], _T]) -> _T:
        """Run one commit, retrying it when another writer's commit won the race for the Delta log."""
        for n in range(_COMMIT_RETRIES):
            last = n == _COMMIT_RETRIES - 1
            try:
                return attempt()
            except CommitFailedError:
                if last:
                    raise
                time.sleep(random.uniform(0.05, 0.25) * (n + 1))
            except _LostCreate as lost:
                if last:
                    raise lost.error from None
        raise AssertionError("unreachable")

    def _create_or_append(
        self,
        spec: TableSpec,
        arrow: pa.Table,
        mode: WriteMode,
        partition_by: Sequence[str] | None,
        lineage: Lineage | None,
    ) -> WriteResult:
        # A merge into a missing table creates it, but only if it is still missing: appending would
        # duplicate the keys of a writer that created it since exists() said no. Creating must fail,
        # not be rebased onto a table another writer just created (delta-rs would commit it as
        # version 1 on top of theirs): no commit retries for it.
        creating = mode is WriteMode.MERGE
        try:
            write_deltalake(
                self.uri(spec),
                arrow,
                mode="overwrite" if mode is WriteMode.OVERWRITE else "error" if creating else "append",
                schema_mode="overwrite" if mode is WriteMode.OVERWRITE else None if creating else "merge",
                partition_by=list(partition_by) if partition_by else None,
                storage_options=self.storage_options(),
                commit_properties=_commit_properties(lineage, retries=0 if creating else None),
            )
        except CommitFailedError:
            raise
        except DeltaError as exc:
            if creating and self.exists(spec.path):
                raise _LostCreate(exc) from exc  # another writer created it first: merge into theirs
            raise
        version = self.delta_table(spec.path).version()
        return WriteResult(spec.path, mode, version, arrow.num_rows, arrow.num_rows)

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
        predicate = " AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in keys)
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
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(spec.layer)}")
            view = f"{quote(spec.layer)}.{quote(spec.name)}"
            files = plain_parquet_files(dt) if not self.is_remote else None
            if files:
                # DuckDB's own Parquet reader over the version's data files: 2-4x faster than scanning
                # a pyarrow dataset (bench/lake.py), and still no extension.
                columns = ", ".join(quote(f.name) for f in dt.schema().fields)
                listing = ", ".join(sql_str(f) for f in files)
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
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {quote(hidden)}")
        if safe:
            seal(con, allowed, self.sql_memory_limit)
        return con

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
            with interrupt_after(con, limit):
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
            if missing and looks_like_a_file(missing.group(1)):
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


class _LostCreate(Exception):
    """Another writer created the table this merge meant to create: retry as a merge into theirs."""

    def __init__(self, error: DeltaError) -> None:
        super().__init__(str(error))
        self.error = error


def _commit_properties(lineage: Lineage | None, retries: int | None = None) -> CommitProperties:
    """Delta commit properties naming the writing run, so `history` shows who committed what."""
    custom_metadata = {"nexa.run_id": lineage.run_id} if lineage else None
    if retries is None:
        return CommitProperties(custom_metadata=custom_metadata)
    return CommitProperties(custom_metadata=custom_metadata, max_commit_retries=retries)


def _unique_on_keys(spec: TableSpec, data: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    """The rows of a merge, the last of each key; keys missing raise with the table's name."""
    if not keys:
        raise ValueError(f"merge into {spec.path} needs key columns; pass keys=[...]")
    missing = [k for k in keys if k not in data.columns]
    if missing:
        raise ValueError(f"merge into {spec.path}: key columns {missing} are not in the rows")
    return data.unique(subset=list(keys), keep="last", maintain_order=True)
