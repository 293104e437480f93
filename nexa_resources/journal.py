"""Write-ahead journal of rows received but not merged into a lake table yet.

A collection appends each finished row (one JSON line, fsynced) the moment it arrives, before it waits
for a batch merge, so a kill -9 loses only the requests still in flight. The next collection merges the
journals of earlier runs into the table and deletes them; a run deletes its own once everything is merged.

Where: `<lake root>/_journal/<layer>/<table>/` for a local lake; for an s3:// lake a local cache,
`~/.cache/nexa/journal/<sha256 of the lake URI, 16 hex>/<layer>/<table>/`. NEXA_JOURNAL_DIR replaces
`~/.cache/nexa/journal` for both (still keyed by the lake, so two lakes never share a journal).

A writer holds an exclusive flock on its file for as long as it lives: recovery skips files that are
locked (a run still collecting, in this or another process) and the lock ends with the process.
Rows hold what the merge would write (prompts, answers, usage); no credentials ever reach them.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.tables import table_spec

JOURNAL_ENV = "NEXA_JOURNAL_DIR"
_SUFFIX = ".jsonl"
_OPENING = ".opening"  # a journal before its header is durable; recovery only deletes stale ones
_STALE_OPENING_S = 60.0


def journal_dir(lake: LakeResource, table: str) -> Path:
    """The folder of `table`'s journals for this lake (see the module doc)."""
    override = os.environ.get(JOURNAL_ENV, "").strip()
    if not override and not lake.is_remote:
        return Path(lake.root_uri()) / "_journal" / table
    base = Path(override).expanduser() if override else Path.home() / ".cache" / "nexa" / "journal"
    key = hashlib.sha256(lake.root_uri().encode()).hexdigest()[:16]
    return base.resolve() / key / table


class Journal:
    """One run's journal file: a header line with its lineage, then one JSON line per row."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def open(cls, folder: Path, lineage: Lineage) -> Journal:
        """Create and lock a new journal in `folder`; it is visible to recovery only once locked."""
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{lineage.run_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        opening = folder / (name + _OPENING)
        fd = os.open(opening, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        journal = cls(folder / (name + _SUFFIX), fd)
        journal._write({"journal": 1, "run_id": lineage.run_id, "round": lineage.round})
        os.rename(opening, journal.path)
        _fsync_dir(folder)
        return journal

    def append(self, row: dict[str, Any]) -> None:
        """Write one row durably (flushed and fsynced) before returning."""
        self._write(row)

    def discard(self) -> None:
        """Delete the journal: every row in it is in the table."""
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            self.close()

    def close(self) -> None:
        """Release the file, keeping it for the next recovery."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            raise RuntimeError(f"journal {self.path} is closed; open a new one with Journal.open")
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        os.write(self._fd, line.encode())
        os.fsync(self._fd)


def recover_into(lake: LakeResource, table: str, schema: Mapping[str, pl.DataType]) -> int:
    """Merge into `table` the journaled rows of earlier runs that it lacks or holds only as an error.

    Rows already answered in the table stay untouched (same lineage, no commit). Returns the rows read.
    """
    return recover(journal_dir(lake, table), lambda rows, lineage: merge_unanswered(lake, table, schema, rows, lineage))


def merge_unanswered(
    lake: LakeResource, table: str, schema: Mapping[str, pl.DataType], rows: list[dict[str, Any]], lineage: Lineage
) -> None:
    """Merge the `rows` whose key `table` lacks, or holds with an error where the row has none."""
    keys = list(table_spec(table).keys)
    frame = pl.DataFrame(rows, schema=schema)
    existing = lake.read(table, columns=[*keys, "error"], missing_ok=True)
    if existing.height:
        answered = existing.filter(pl.col("error").is_null()).select(keys)
        failed = existing.filter(pl.col("error").is_not_null()).select(keys)
        frame = pl.concat([
            frame.join(existing.select(keys), on=keys, how="anti"),
            frame.filter(pl.col("error").is_null()).join(failed, on=keys, how="semi").join(answered, on=keys, how="anti"),
        ])
    if frame.height:
        lake.write(table, frame, mode="merge", lineage=lineage)


def recover(folder: Path, merge: Callable[[list[dict[str, Any]], Lineage], None]) -> int:
    """Hand the rows of every journal no live process holds to `merge(rows, lineage)`, then delete it.

    `merge` must be idempotent: a recovery killed after merging and before deleting runs again.
    Returns how many rows were handed on.
    """
    if not folder.is_dir():
        return 0
    total = 0
    for path in sorted(folder.glob("*" + _OPENING)):
        _delete_if_stale(path)
    for path in sorted(folder.glob("*" + _SUFFIX)):
        total += _recover_one(path, merge)
    return total


def _recover_one(path: Path, merge: Callable[[list[dict[str, Any]], Lineage], None]) -> int:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # another recovery took it
        return 0
    try:
        if not _try_lock(fd) or os.fstat(fd).st_nlink == 0:
            return 0  # a live writer's, or deleted by another recovery meanwhile
        with os.fdopen(os.dup(fd), "rb") as fh:
            header, rows = _parse(fh.read(), path)
        if rows:
            try:
                merge(rows, Lineage(run_id=header["run_id"], round=int(header.get("round") or 0)))
            except Exception as exc:
                raise RuntimeError(
                    f"could not merge journal {path} ({len(rows)} answers an interrupted run received): {exc}. "
                    f"Fix the cause and re-run, or move the file out of {path.parent} to drop them (they are "
                    "then asked again)"
                ) from exc
        path.unlink(missing_ok=True)
        return len(rows)
    finally:
        os.close(fd)


def _parse(data: bytes, path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and rows; a line cut short by a kill (only ever the last one) is skipped."""
    records = []
    for line in data.splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    if not records or "run_id" not in records[0]:
        raise ValueError(f"journal {path} has no header line: not a Nexa journal; move it out of {path.parent}")
    return records[0], records[1:]


def _delete_if_stale(path: Path) -> None:
    """Delete a journal its writer never finished opening (killed in between): it holds no rows."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        if time.time() - os.fstat(fd).st_mtime > _STALE_OPENING_S and _try_lock(fd):
            path.unlink(missing_ok=True)
    finally:
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
