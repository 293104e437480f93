"""Build raw/prompts and raw/rejects rows from every source: seed pack, generator, user files."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import polars as pl

from nexa_assets.raw.generator import generate_prompts, vocabulary
from nexa_assets.raw.readers import RawRecord, parse_file
from nexa_assets.raw.validate import ValidationRules, validate_records
from nexa_resources.tables.raw import PROMPT_SCHEMA, REJECT_SCHEMA

SEED_PACK_FILE = "seed_pack.jsonl"



@dataclass(frozen=True)
class GenerationRequest:
    """Ask the generator for n prompts in one cell (hints come from the judge via feedback)."""

    domain: str
    task_type: str
    n: int
    seed: int
    origin: str = "generated"
    hints: tuple[str, ...] = ()


@dataclass
class IngestResult:
    prompts: pl.DataFrame
    rejects: pl.DataFrame
    rows_read: int
    by_source: dict[str, dict[str, int]]

    @property
    def reject_rate(self) -> float:
        return self.rejects.height / self.rows_read if self.rows_read else 0.0


def seed_pack_records() -> list[RawRecord]:
    """The built-in seed pack (nexa_assets/raw/data/seed_pack.jsonl)."""
    data = resources.files("nexa_assets.raw").joinpath("data", SEED_PACK_FILE).read_bytes()
    return parse_file(SEED_PACK_FILE, data)


def generated_records(request: GenerationRequest) -> list[RawRecord]:
    source = f"generator:v{vocabulary().version}"
    rows = generate_prompts(request.domain, request.task_type, request.n, seed=request.seed, hints=request.hints)
    return [RawRecord(source=source, locator=row.pop("locator"), raw=row["instruction"], fields=row) for row in rows]


def ingest(
    *,
    rules: ValidationRules,
    include_seed_pack: bool = True,
    generation: Sequence[GenerationRequest] = (),
    files: Iterable[tuple[str, bytes]] = (),
    existing: Mapping[str, str] | None = None,
) -> IngestResult:
    """Validate every source in a fixed order (seed, generated, files) so duplicates resolve the same way."""
    batches: list[tuple[str, str, list[RawRecord]]] = []
    if include_seed_pack:
        batches.append(("seed", SEED_PACK_FILE, seed_pack_records()))
    for request in generation:
        label = f"{request.origin}:{request.domain}/{request.task_type}"
        batches.append((request.origin, label, generated_records(request)))
    for name, data in files:
        batches.append(("file", name, parse_file(name, data)))

    seen: dict[str, str] = {}
    prompts: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    by_source: dict[str, dict[str, int]] = {}
    rows_read = 0
    for origin, label, records in batches:
        good, bad = validate_records(records, origin=origin, rules=rules, existing=existing, seen=seen)
        prompts.extend(good)
        rejects.extend(bad)
        rows_read += len(records)
        by_source[label] = {"rows": len(records), "accepted": len(good), "rejected": len(bad)}
    return IngestResult(
        prompts=pl.DataFrame(prompts, schema=PROMPT_SCHEMA),
        rejects=pl.DataFrame(rejects, schema=REJECT_SCHEMA),
        rows_read=rows_read,
        by_source=by_source,
    )
