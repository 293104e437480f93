"""Targeted prompt requests: new prompts for each weak (domain, task_type), in proportion to its gap."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import polars as pl

from nexa_resources.tables.feedback import REQUEST_SCHEMA

MAX_HINTS = 3


def allocate(gaps: Mapping[tuple[str, str], float], budget: int, min_per_cell: int = 1) -> dict[tuple[str, str], int]:
    """Split `budget` prompts over cells in proportion to their gap (largest remainder, ties by name).

    Every cell gets `min_per_cell` first while the budget lasts (largest gaps first), so no weak cell
    is starved by a larger one; the rest goes by proportion. The counts sum to `budget`.
    """
    if budget < 0 or min_per_cell < 0:
        raise ValueError(f"budget ({budget}) and min_per_cell ({min_per_cell}) must be >= 0")
    cells = sorted((c for c, g in gaps.items() if g > 0), key=lambda c: (-gaps[c], c))
    out = {c: 0 for c in cells}
    if not cells or budget == 0:
        return out
    remaining = budget
    for cell in cells:
        give = min(min_per_cell, remaining)
        out[cell] += give
        remaining -= give
    if remaining:
        total = sum(gaps[c] for c in cells)
        shares = {c: remaining * gaps[c] / total for c in cells}
        floors = {c: int(shares[c]) for c in cells}
        for c in cells:
            out[c] += floors[c]
        left = remaining - sum(floors.values())
        for c in sorted(cells, key=lambda c: (-(shares[c] - floors[c]), -gaps[c], c))[:left]:
            out[c] += 1
    return out


def top_hints(rationales: list[str | None], limit: int = MAX_HINTS) -> list[str]:
    """The judge's most frequent 'lacking' notes (normalized spacing), most frequent first."""
    counts = Counter(" ".join(r.split()) for r in rationales if r and r.strip())
    return [text for text, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]]


def build_requests(
    weak: pl.DataFrame,
    scores: pl.DataFrame,
    *,
    budget: int,
    for_round: int,
    min_per_cell: int = 1,
) -> pl.DataFrame:
    """REQUEST_SCHEMA rows (status open) for the weak cells of one round.

    `scores` are the evaluated model's eval/scores rows; hints come from the rationales of its weak metrics.
    """
    if weak.is_empty():
        return pl.DataFrame(schema=REQUEST_SCHEMA)
    by_cell = weak.group_by("domain", "task_type").agg(pl.col("gap").sum(), pl.col("metric").sort())
    gaps = {(r["domain"], r["task_type"]): r["gap"] for r in by_cell.iter_rows(named=True)}
    counts = allocate(gaps, budget, min_per_cell)
    rows: list[dict[str, Any]] = []
    for r in by_cell.sort("domain", "task_type").iter_rows(named=True):
        cell = (r["domain"], r["task_type"])
        if not counts.get(cell):
            continue
        rationale = scores.filter(
            (pl.col("domain") == r["domain"])
            & (pl.col("task_type") == r["task_type"])
            & pl.col("metric").is_in(r["metric"])
        )["rationale"].to_list() if not scores.is_empty() else []
        rows.append(
            {
                "domain": r["domain"],
                "task_type": r["task_type"],
                "for_round": for_round,
                "n_prompts": counts[cell],
                "gap": r["gap"],
                "metrics": r["metric"],
                "hints": top_hints(rationale),
                "status": "open",
                "fulfilled_by": None,
                "prompt_ids": [],
            }
        )
    return pl.DataFrame(rows, schema=REQUEST_SCHEMA)
