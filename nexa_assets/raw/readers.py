"""Parse prompt files (JSONL, CSV, Parquet) into records, one per row, never raising on bad input.

Every record names its origin as `file:line` (or `file:row` for Parquet) so that a rejected row can be
found again. A file that cannot be parsed at all becomes one record carrying the parser's message.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pyarrow.parquet as pq

SUPPORTED_SUFFIXES: tuple[str, ...] = (".jsonl", ".csv", ".parquet")
# Raw text kept on a reject row, so a long bad row cannot bloat the rejects table.
RAW_KEEP_CHARS = 2000


@dataclass
class RawRecord:
    """One input row before validation: its fields, or the reason it could not be read."""

    source: str
    locator: str
    raw: str
    fields: dict[str, Any] | None = None
    error_code: str | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def parse_file(name: str, data: bytes) -> list[RawRecord]:
    """Records from one file's bytes; the suffix of `name` picks the format."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix == ".jsonl":
        return _parse_jsonl(name, data)
    if suffix == ".csv":
        return _parse_csv(name, data)
    if suffix == ".parquet":
        return _parse_parquet(name, data)
    return [
        _file_error(
            name,
            data,
            "unsupported_file",
            f"unsupported file type {suffix or '(none)'!r}: valid types are {', '.join(SUPPORTED_SUFFIXES)}",
        )
    ]


def _file_error(name: str, data: bytes, code: str, message: str) -> RawRecord:
    return RawRecord(
        source=name,
        locator=name,
        raw=data[:RAW_KEEP_CHARS].decode("utf-8", errors="replace"),
        error_code=code,
        error=f"{name}: {message}",
    )


def _parse_jsonl(name: str, data: bytes) -> list[RawRecord]:
    records = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        locator = f"{name}:{number}"
        raw = line[:RAW_KEEP_CHARS].decode("utf-8", errors="replace")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            records.append(
                RawRecord(name, locator, raw, error_code="invalid_utf8",
                          error=f"{locator}: invalid UTF-8 at byte {exc.start} of the line")
            )
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            records.append(
                RawRecord(name, locator, raw, error_code="invalid_json",
                          error=f"{locator}: not valid JSON ({exc.msg} at column {exc.colno})")
            )
            continue
        if not isinstance(value, dict):
            records.append(
                RawRecord(name, locator, raw, error_code="invalid_json",
                          error=f"{locator}: expected a JSON object, got {type(value).__name__}")
            )
            continue
        records.append(RawRecord(name, locator, raw, fields=value))
    return records


def _parse_csv(name: str, data: bytes) -> list[RawRecord]:
    # surrogateescape keeps bytes that are not UTF-8 visible per row instead of failing the file.
    text = data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    records = []
    try:
        for row in reader:
            locator = f"{name}:{reader.line_num}"
            values = list(row.values())
            raw = ",".join("" if v is None else str(v) for v in values)
            raw = raw.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")[:RAW_KEEP_CHARS]
            bad = [k for k, v in row.items() if isinstance(v, str) and _has_surrogates(v)]
            if bad:
                records.append(
                    RawRecord(name, locator, raw, error_code="invalid_utf8",
                              error=f"{locator}: invalid UTF-8 in field {bad[0]!r}")
                )
                continue
            if None in row:  # more values than header columns
                records.append(
                    RawRecord(name, locator, raw, error_code="invalid_csv",
                              error=f"{locator}: {len(values)} values for {len(reader.fieldnames or [])} columns")
                )
                continue
            fields = {k: (None if v == "" and k == "context" else v) for k, v in row.items() if v is not None}
            records.append(RawRecord(name, locator, raw, fields=fields))
    except csv.Error as exc:
        records.append(_file_error(name, data, "unparsable_file", f"CSV parse error at line {reader.line_num}: {exc}"))
    return records


def _parse_parquet(name: str, data: bytes) -> list[RawRecord]:
    try:
        table = pq.read_table(io.BytesIO(data))
    except Exception as exc:  # pyarrow raises several types for corrupt files; the message is what matters
        return [_file_error(name, data, "unparsable_file", f"Parquet parse error: {exc}")]
    records = []
    for number, row in enumerate(table.to_pylist(), start=1):
        locator = f"{name}:{number}"
        fields: dict[str, Any] = {}
        error = None
        for key, value in row.items():
            if isinstance(value, bytes):
                try:
                    value = value.decode("utf-8")
                except UnicodeDecodeError:
                    error = f"{locator}: invalid UTF-8 in field {key!r}"
                    value = value.decode("utf-8", errors="replace")
            fields[key] = value
        raw = json.dumps(fields, default=str, ensure_ascii=False)[:RAW_KEEP_CHARS]
        if error:
            records.append(RawRecord(name, locator, raw, error_code="invalid_utf8", error=error))
        else:
            records.append(RawRecord(name, locator, raw, fields=fields))
    return records


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)
