"""Parse prompt files (JSONL, CSV, Parquet) into records, one per row, never raising on bad input.

Every record names its origin as `file:line` (or `file:row` for Parquet) so that a rejected row can be
found again. A file that cannot be parsed at all (binary data, a CSV without its header row) becomes one
record carrying the reason.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pyarrow.parquet as pq

from nexa_core.taxonomy import DOMAINS, TASK_TYPES

SUPPORTED_SUFFIXES: tuple[str, ...] = (".jsonl", ".csv", ".parquet")
REQUIRED_FIELDS: tuple[str, ...] = ("domain", "task_type", "instruction")
OPTIONAL_FIELDS: tuple[str, ...] = ("context",)
# Raw text kept on a reject row, so a long bad row cannot bloat the rejects table.
RAW_KEEP_CHARS = 2000
UTF8_BOM = b"\xef\xbb\xbf"
# A text file is judged on its first bytes: above this share of undecodable bytes or control characters
# it is binary (random bytes: ~50 %; a Latin-1 text file mislabelled as UTF-8: a few %).
TEXT_SAMPLE_BYTES = 65536
MAX_NON_TEXT_SHARE = 0.10
_NON_TEXT = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f\ufffd]")
# Broken CSV rows after which the rest of a file is rejected in one record (each one re-reads the tail).
MAX_CSV_ERRORS = 100


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
    if suffix in (".jsonl", ".csv"):
        binary = _binary_problem(data)
        if binary:
            return [_file_error(name, data, "unparsable_file", binary)]
        return _parse_jsonl(name, data) if suffix == ".jsonl" else _parse_csv(name, data)
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


def _file_error(name: str, data: bytes, code: str, message: str, locator: str | None = None) -> RawRecord:
    return RawRecord(
        source=name,
        locator=locator or name,
        raw=data[:RAW_KEEP_CHARS].decode("utf-8", errors="replace"),
        error_code=code,
        error=f"{locator or name}: {message}",
    )


def _binary_problem(data: bytes) -> str | None:
    """Why `data` is not a UTF-8 text file, or None when it is one."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "not a UTF-8 text file (it starts with a UTF-16 byte order mark): save it as UTF-8"
    sample = data[:TEXT_SAMPLE_BYTES].decode("utf-8", errors="replace")
    if not sample:
        return None
    share = len(_NON_TEXT.findall(sample)) / len(sample)
    if share <= MAX_NON_TEXT_SHARE:
        return None
    return (
        f"not a UTF-8 text file ({share:.0%} of its first {min(len(data), TEXT_SAMPLE_BYTES)} bytes are binary "
        f"or control characters, over {MAX_NON_TEXT_SHARE:.0%}): JSONL and CSV files must be UTF-8 text"
    )


def _parse_jsonl(name: str, data: bytes) -> list[RawRecord]:
    records = []
    for number, line in enumerate(data.removeprefix(UTF8_BOM).split(b"\n"), start=1):
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


# ----------------------------------------------------------------------------------------------- CSV


@dataclass(frozen=True)
class _CsvRow:
    """One CSV record: physical lines `start`..`end` (1-based) and its values; for a record with broken
    quoting, `values` None, the text of line `start` and how far the row would have run (None: lines left
    unread after too many such records)."""

    start: int
    end: int
    text: str
    values: list[str] | None
    runs_to: str | None = None


def _parse_csv(name: str, data: bytes) -> list[RawRecord]:
    # surrogateescape keeps bytes that are not UTF-8 visible per row instead of failing the file.
    text = data.decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    lines = _physical_lines(text)
    columns: list[str] = []
    records: list[RawRecord] = []
    for row in _csv_rows(lines, lambda tail: _holds_a_row(tail, columns)):
        if not columns:
            problem = _header_problem(row)
            if problem:
                return [_file_error(name, data, *problem, locator=f"{name}:{row.start}")]
            columns.extend(v.strip().lower() for v in row.values or ())
            continue
        records.append(_csv_record(name, columns, row))
    return records


def _physical_lines(text: str) -> list[str]:
    """The text's lines with their endings, split where the csv module ends a line: LF, CRLF or CR."""
    return re.findall(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z", text)


def _csv_rows(lines: list[str], swallows_a_row: Callable[[list[str]], bool]) -> Iterator[_CsvRow]:
    """Records read with a strict dialect. A record with broken quoting (a csv error, or a quoted field
    running into a line that `swallows_a_row` says is a row of its own) comes back without values, and
    reading resumes on the line after the one it started on, so one bad quote costs one line."""
    start, errors = 0, 0
    while start < len(lines):
        reader = csv.reader(lines[start:], strict=True)
        first = start  # 0-based index of the line the current record starts on
        resume = None
        try:
            for values in reader:
                end = start + reader.line_num
                if end - first > 1 and swallows_a_row(lines[first + 1 : end]):
                    ran_into = next(i for i in range(first + 1, end) if swallows_a_row([lines[i]]))
                    runs_to = f"line {ran_into + 1}, which reads as a row of its own"
                    yield _CsvRow(first + 1, end, lines[first], None, runs_to)
                    resume = first + 1
                    break
                if values:
                    yield _CsvRow(first + 1, end, "".join(lines[first:end]), values)
                first = end
        except csv.Error as exc:
            end = start + reader.line_num
            runs_to = "the end of the file" if str(exc) == "unexpected end of data" else f"line {end} ({exc})"
            yield _CsvRow(first + 1, end, lines[first], None, runs_to)
            resume = first + 1
        if resume is None:
            return
        errors += 1
        if errors >= MAX_CSV_ERRORS and resume < len(lines):
            yield _CsvRow(resume + 1, len(lines), lines[resume], None)  # the rest, unread
            return
        start = resume


def _holds_a_row(lines: list[str], columns: list[str]) -> bool:
    """Whether one of `lines` reads on its own as a prompt row (a valid domain and task type in their
    columns): a quoted field that runs over it most likely lacks its closing quote."""
    if "domain" not in columns or "task_type" not in columns:
        return False
    d, t = columns.index("domain"), columns.index("task_type")
    for line in lines:
        values = next(csv.reader([line]), [])
        if len(values) > max(d, t) and values[d].strip().lower() in DOMAINS and values[t].strip().lower() in TASK_TYPES:
            return True
    return False


def _header_problem(row: _CsvRow) -> tuple[str, str] | None:
    """(reason code, message) when the first row is not a usable header; the file is then not read."""
    expected = f"{', '.join(REQUIRED_FIELDS)} (required) and {', '.join(OPTIONAL_FIELDS)} (optional)"
    if row.values is None:
        return "invalid_csv", f"the header row has a quote that is not closed before {row.runs_to}; file not read"
    names = [v.strip().lower() for v in row.values]
    missing = [f for f in REQUIRED_FIELDS if f not in names]
    if missing:
        return (
            "missing_header",
            f"the first row is not a header naming the columns (missing {', '.join(missing)}; got "
            f"{', '.join(repr(v) for v in row.values)[:300]}): a CSV file starts with a header row naming the "
            f"columns {expected}; file not read",
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        return "invalid_csv", f"the header names column {repeated[0]!r} more than once; file not read"
    return None


def _csv_record(name: str, columns: list[str], row: _CsvRow) -> RawRecord:
    if row.values is None:
        locator = f"{name}:{row.start}"
        return RawRecord(name, locator, _readable(row.text.rstrip("\r\n")), error_code="invalid_csv",
                         error=_quote_message(locator, columns, row))
    # The line the record ends on, as csv.DictReader counted it: stored locators stay valid.
    locator = f"{name}:{row.end}"
    raw = _readable(",".join(row.values))
    bad = [c for c, v in zip(columns, row.values) if _has_surrogates(v)]
    if bad:
        message = f"{locator}: invalid UTF-8 in field {bad[0]!r}"
        return RawRecord(name, locator, raw, error_code="invalid_utf8", error=message)
    if len(row.values) > len(columns):
        return RawRecord(
            name, locator, raw, error_code="invalid_csv",
            error=f"{locator}: {len(row.values)} values for {len(columns)} columns ({', '.join(columns)})",
        )
    fields = {c: (None if v == "" and c == "context" else v) for c, v in zip(columns, row.values)}
    return RawRecord(name, locator, raw, fields=fields)


def _quote_message(locator: str, columns: list[str], row: _CsvRow) -> str:
    if row.runs_to is None:
        return f"{locator}: lines {row.start}-{row.end} not read after {MAX_CSV_ERRORS} rows with broken quoting"
    fault = _quote_fault(row.text)
    if fault is None:
        return f"{locator}: broken CSV quoting in the row starting here, which runs to {row.runs_to}"
    column, closed = fault
    where = f"field {columns[column]!r} (column {column + 1})" if column < len(columns) else f"column {column + 1}"
    if closed:
        return f"{locator}: {where} has text after its closing quote (write a quote inside a quoted field as \"\")"
    return (
        f"{locator}: {where} opens a quote that is not closed on line {row.start}, so the row would run to "
        f"{row.runs_to}; line {row.start} is rejected and reading resumes at line {row.start + 1}"
    )


def _quote_fault(line: str) -> tuple[int, bool] | None:
    """Where one line's quoting breaks: (0-based column, True for text after a closing quote / False for
    a quote still open at the end of the line), or None when its quotes balance."""
    column, quoted, closed, at_start = 0, False, False, True
    i = 0
    while i < len(line):
        ch = line[i]
        if quoted:
            if ch == '"' and line[i + 1 : i + 2] == '"':
                i += 1
            elif ch == '"':
                quoted, closed = False, True
        elif ch == ",":
            column, closed, at_start = column + 1, False, True
            i += 1
            continue
        elif ch in "\r\n":
            break
        elif closed:
            return column, True
        elif ch == '"' and at_start:
            quoted = True
        at_start = False
        i += 1
    return (column, False) if quoted else None


def _readable(text: str) -> str:
    """Text decoded with surrogateescape, shown with U+FFFD for its undecodable bytes, cut to RAW_KEEP_CHARS."""
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")[:RAW_KEEP_CHARS]


# ------------------------------------------------------------------------------------------- Parquet


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
