"""Row validation for raw prompts: good rows get a content-hash id and a split, bad rows a reason."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from nexa_assets.raw.readers import RawRecord
from nexa_assets.taxonomy import DOMAINS, TASK_TYPES
from nexa_assets.text import content_hash, hash_fraction, normalize

REQUIRED_FIELDS: tuple[str, ...] = ("domain", "task_type", "instruction")
# Only seed-pack and user-file prompts are split train/eval; generated ones are always train (DESIGN §1).
SPLIT_ORIGINS: frozenset[str] = frozenset({"seed", "file"})
ORIGINS: tuple[str, ...] = ("seed", "generated", "feedback", "file")
REASON_CODES: tuple[str, ...] = (
    "missing_field",
    "wrong_type",
    "empty_text",
    "too_long",
    "invalid_utf8",
    "invalid_json",
    "invalid_csv",
    "unknown_domain",
    "unknown_task_type",
    "duplicate",
    "unparsable_file",
    "unsupported_file",
)


@dataclass(frozen=True)
class ValidationRules:
    max_instruction_chars: int = 2000
    max_context_chars: int = 4000
    eval_fraction: float = 0.15


def prompt_id(domain: str, task_type: str, instruction: str, context: str | None) -> str:
    return content_hash(domain, task_type, normalize(instruction), normalize(context))


def reject_id(source: str, locator: str) -> str:
    return content_hash(source, locator)


def split_for(pid: str, origin: str, eval_fraction: float) -> str:
    """train/eval by hash of the prompt id: stable across runs and rounds."""
    if origin not in SPLIT_ORIGINS:
        return "train"
    return "eval" if hash_fraction(pid, "split") < eval_fraction else "train"


def validate_records(
    records: Iterable[RawRecord],
    *,
    origin: str,
    rules: ValidationRules,
    existing: Mapping[str, str] | None = None,
    seen: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split records into prompt rows and reject rows.

    `existing` maps prompt ids already in the lake to their locator; `seen` collects the ids of this
    batch across calls. A row equal (after normalization) to another row is a duplicate unless it is
    that very row read again (same locator), which makes re-ingesting a file a no-op.
    """
    if origin not in ORIGINS:
        raise ValueError(f"unknown origin {origin!r}: valid values are {', '.join(ORIGINS)}")
    existing = existing or {}
    seen = {} if seen is None else seen
    prompts: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []

    def reject(record: RawRecord, code: str, message: str) -> None:
        rejects.append(
            {
                "reject_id": reject_id(record.source, record.locator),
                "source": record.source,
                "locator": record.locator,
                "reason_code": code,
                "reason": message,
                "raw": record.raw,
            }
        )

    for record in records:
        if record.fields is None:
            reject(record, record.error_code or "unparsable_file", record.error or f"{record.locator}: unreadable")
            continue
        problem = _field_problem(record, rules)
        if problem:
            reject(record, *problem)
            continue
        fields = record.fields
        domain = fields["domain"].strip().lower()
        task_type = fields["task_type"].strip().lower()
        instruction = fields["instruction"].strip()
        context = (fields.get("context") or "").strip() or None
        pid = prompt_id(domain, task_type, instruction, context)
        first = seen.get(pid) or existing.get(pid)
        if first is not None and first != record.locator:
            reject(record, "duplicate", f"{record.locator}: duplicate of {first} after normalization")
            continue
        if pid in seen:
            continue
        seen[pid] = record.locator
        prompts.append(
            {
                "prompt_id": pid,
                "domain": domain,
                "task_type": task_type,
                "instruction": instruction,
                "context": context,
                "source": record.source,
                "locator": record.locator,
                "origin": origin,
                "split": split_for(pid, origin, rules.eval_fraction),
            }
        )
    return prompts, rejects


def _field_problem(record: RawRecord, rules: ValidationRules) -> tuple[str, str] | None:
    fields = record.fields or {}
    where = record.locator
    for name in REQUIRED_FIELDS:
        if fields.get(name) is None:
            return "missing_field", f"{where}: missing required field {name!r} (required: {', '.join(REQUIRED_FIELDS)})"
    for name in (*REQUIRED_FIELDS, "context"):
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            return "wrong_type", f"{where}: field {name!r} must be a string, got {type(value).__name__}"
    for name in REQUIRED_FIELDS:
        if not fields[name].strip():
            return "empty_text", f"{where}: field {name!r} is empty or whitespace only"
    limits = {"instruction": rules.max_instruction_chars, "context": rules.max_context_chars}
    for name, limit in limits.items():
        value = fields.get(name) or ""
        if len(value) > limit:
            return "too_long", f"{where}: field {name!r} has {len(value)} characters, over the maximum of {limit}"
    domain = fields["domain"].strip().lower()
    if domain not in DOMAINS:
        return "unknown_domain", f"{where}: field 'domain' is {fields['domain']!r}: valid values are {', '.join(DOMAINS)}"
    task_type = fields["task_type"].strip().lower()
    if task_type not in TASK_TYPES:
        return (
            "unknown_task_type",
            f"{where}: field 'task_type' is {fields['task_type']!r}: valid values are {', '.join(TASK_TYPES)}",
        )
    return None
