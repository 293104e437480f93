"""The table reference of docs/lake.md, generated from the catalog between two marker lines."""

from __future__ import annotations

from pathlib import Path

from nexa_resources.tables import TABLES, TableSpec
from nexa_resources.tables.spec import LINEAGE_COLUMNS

BEGIN = "<!-- tables: generated from nexa_resources/tables by `python -m nexa_resources.tables --write` -->"
END = "<!-- tables: end -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "lake.md"


def _key(spec: TableSpec) -> str:
    keys = ", ".join(f"`{k}`" for k in spec.keys)
    return f"({keys})" if len(spec.keys) > 1 else keys


def _columns(spec: TableSpec) -> str:
    return ", ".join(f"{name} ({dtype})" for name, dtype in spec.schema.items() if name not in spec.keys)


def tables_markdown() -> str:
    """The generated section: one row per table, then each table's columns and types."""
    lines = [BEGIN, "", "| table | key | written by | what |", "|---|---|---|---|"]
    lines += [f"| `{s.sql_name}` | {_key(s)} | `{s.owner}` | {s.description} |" for s in TABLES.values()]
    lines += ["", f"Columns besides the key (every table also has {', '.join(LINEAGE_COLUMNS)}):", ""]
    lines += [f"- `{s.sql_name}`: {_columns(s)}" for s in TABLES.values()]
    return "\n".join([*lines, "", END])


def render(text: str) -> str:
    """`text` with the generated section between the markers replaced by the catalog's."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"docs/lake.md needs the marker lines {BEGIN!r} and {END!r} around the table section")
    return text[:start] + tables_markdown() + text[end + len(END) :]
