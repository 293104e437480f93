"""Row validation for raw prompts: good rows get a content-hash id and a split, bad rows a reason.

The split (DESIGN §1), decided once when a prompt is first written and never changed afterwards:

- seed pack: by rank within its (domain, task_type) cell. The `eval_per_cell` seed prompts of a cell
  with the lowest `hash_fraction(prompt_id, "split")` are `eval`, the rest `train`. The rank is taken
  over the seed pack alone, so the eval set is held out by construction, has exactly `eval_per_cell`
  prompts per cell (the seed pack has 32 a cell: 12 eval, 20 train by default), and does not depend
  on what else is in the lake or on the run.
- user files: `eval` when `hash_fraction(prompt_id, "split") < eval_fraction` (a file's rows arrive
  over time, so each is decided on its own).
- generated and feedback prompts: always `train`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any

from nexa_assets.raw.readers import REQUIRED_FIELDS, RawRecord
from nexa_core.taxonomy import DOMAINS, TASK_TYPES
from nexa_core.text import content_hash, hash_fraction, normalize

# Only seed-pack and user-file prompts are split train/eval; generated ones are always train (DESIGN §1).
SPLIT_ORIGINS: frozenset[str] = frozenset({"seed", "file"})
# Held-out seed prompts per (domain, task_type) cell: enough to tell a real change from noise.
EVAL_PER_CELL = 12
# Control characters a text field may hold: tab, line feed and carriage return; NUL and the rest are refused.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
ORIGINS: tuple[str, ...] = ("seed", "generated", "feedback", "file")
REASON_CODES: tuple[str, ...] = (
    "missing_field",
    "wrong_type",
    "empty_text",
    "too_long",
    "invalid_utf8",
    "invalid_json",
    "invalid_csv",
    "missing_header",
    "control_character",
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
    eval_fraction: float = 0.15  # user-file prompts: share held out, by hash
    eval_per_cell: int = EVAL_PER_CELL  # seed-pack prompts: the lowest-hash ones held out in each cell


def prompt_id(domain: str, task_type: str, instruction: str, context: str | None) -> str:
    return content_hash(domain, task_type, normalize(instruction), normalize(context))


def reject_id(source: str, locator: str) -> str:
    return content_hash(source, locator)


def split_key(pid: str) -> float:
    """The number every split compares: a stable fraction in [0, 1) from the prompt id."""
    return hash_fraction(pid, "split")


def seed_eval_ids(cells: Iterable[tuple[str, str, str]], eval_per_cell: int) -> frozenset[str]:
    """The held-out seed prompts: in each (domain, task_type) cell the `eval_per_cell` prompt ids with the
    lowest split key (ties by id). `cells` gives (domain, task_type, prompt_id) for the whole seed pack."""
    by_cell: dict[tuple[str, str], set[str]] = {}
    for domain, task_type, pid in cells:
        by_cell.setdefault((domain, task_type), set()).add(pid)
    return frozenset(
        pid
        for pids in by_cell.values()
        for pid in sorted(pids, key=lambda p: (split_key(p), p))[: max(eval_per_cell, 0)]
    )


def split_for(pid: str, origin: str, eval_fraction: float, seed_eval: Set[str] = frozenset()) -> str:
    """train/eval for one prompt: seed prompts by membership of `seed_eval` (see `seed_eval_ids`), file
    prompts by hash fraction, the rest always train. Stable across runs and rounds."""
    if origin == "seed":
        return "eval" if pid in seed_eval else "train"
    if origin in SPLIT_ORIGINS:
        return "eval" if split_key(pid) < eval_fraction else "train"
    return "train"


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
    that very row read again (same locator), which makes re-ingesting a file a no-op. Seed records
    must be the whole seed pack in one call: their split is a rank within each cell of it.
    """
    if origin not in ORIGINS:
        raise ValueError(f"unknown origin {origin!r}: valid values are {', '.join(ORIGINS)}")
    existing = existing or {}
    seen = {} if seen is None else seen
    prompts: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    records = list(records)
    seed_eval = _seed_eval(records, rules) if origin == "seed" else frozenset()
    for record in records:
        if record.fields is None:
            rejects.append(
                _reject(record, record.error_code or "unparsable_file", record.error or f"{record.locator}: unreadable")
            )
            continue
        problem = _field_problem(record, rules)
        if problem:
            rejects.append(_reject(record, *problem))
            continue
        row = _prompt_row(record, origin, rules.eval_fraction, seed_eval)
        pid = row["prompt_id"]
        first = seen.get(pid) or existing.get(pid)
        if first is not None and first != record.locator:
            rejects.append(_reject(record, "duplicate", f"{record.locator}: duplicate of {first} after normalization"))
            continue
        if pid in seen:
            continue
        seen[pid] = record.locator
        prompts.append(row)
    return prompts, rejects


def _seed_eval(records: Sequence[RawRecord], rules: ValidationRules) -> frozenset[str]:
    """The seed pack's held-out ids, ranked over every valid row of the pack before duplicates against the
    lake are dropped, so a prompt's split depends on the seed pack alone."""
    valid = [_key(r) for r in records if r.fields is not None and not _field_problem(r, rules)]
    return seed_eval_ids([(d, t, prompt_id(d, t, i, c)) for d, t, i, c in valid], rules.eval_per_cell)


def _prompt_row(record: RawRecord, origin: str, eval_fraction: float, seed_eval: Set[str]) -> dict[str, Any]:
    """The raw/prompts row of a valid record."""
    domain, task_type, instruction, context = _key(record)
    pid = prompt_id(domain, task_type, instruction, context)
    return {
        "prompt_id": pid,
        "domain": domain,
        "task_type": task_type,
        "instruction": instruction,
        "context": context,
        "source": record.source,
        "locator": record.locator,
        "origin": origin,
        "split": split_for(pid, origin, eval_fraction, seed_eval),
    }


def _reject(record: RawRecord, code: str, message: str) -> dict[str, Any]:
    """The raw/rejects row of a record that failed validation."""
    return {
        "reject_id": reject_id(record.source, record.locator),
        "source": record.source,
        "locator": record.locator,
        "reason_code": code,
        "reason": message,
        "raw": record.raw,
    }


def _key(record: RawRecord) -> tuple[str, str, str, str | None]:
    """(domain, task_type, instruction, context) of a row that passed `_field_problem`, cleaned."""
    fields = record.fields or {}
    context = (fields.get("context") or "").strip() or None
    return fields["domain"].strip().lower(), fields["task_type"].strip().lower(), fields["instruction"].strip(), context


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
    for name in (*REQUIRED_FIELDS, "context"):
        control = _CONTROL.search(fields.get(name) or "")
        if control:
            return "control_character", (
                f"{where}: field {name!r} holds control character {_char_name(control.group())} at position "
                f"{control.start() + 1}: only tab, line feed and carriage return are allowed"
            )
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


def _char_name(char: str) -> str:
    """U+0000 (NUL)-style name of a control character."""
    names = {"\x00": "NUL", "\x1b": "ESC", "\x7f": "DEL"}
    return f"U+{ord(char):04X}" + (f" ({names[char]})" if char in names else "")
