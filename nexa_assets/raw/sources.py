"""What one raw/prompts run reads: the input files asked for, the generator's requests, and split drift."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg
import polars as pl

from nexa_assets.raw.ingest import GenerationRequest
from nexa_core.taxonomy import DOMAINS, TASK_TYPES
from nexa_resources.inputs import InputsResource


def input_files(
    inputs: InputsResource, wanted: Sequence[str] | None, warn: Callable[[str], None]
) -> tuple[list[str], list[tuple[str, bytes]]]:
    """The names of the input files to read (all, or `wanted`) and their (display name, bytes)."""
    listed, warnings = inputs.list_files()
    for warning in warnings:
        warn(warning)
    names = [f.name for f in listed]
    if wanted is not None:
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise dg.Failure(f"files not found in {inputs.uri}: {unknown} (present: {names or 'none'})")
        names = [n for n in names if n in set(wanted)]
    return names, [(inputs.display(name), inputs.read_bytes(name)) for name in names]


def generation_requests(per_cell: int, seed: int) -> list[GenerationRequest]:
    """`per_cell` generator prompts in every (domain, task_type) cell; none when 0."""
    return [GenerationRequest(d, t, per_cell, seed=seed) for d in DOMAINS for t in TASK_TYPES if per_cell]


def split_differs(stored: pl.DataFrame, ingested: pl.DataFrame) -> int:
    """How many stored prompts have a split other than the one this run's rule gives them."""
    if stored.is_empty() or ingested.is_empty():
        return 0
    both = stored.select("prompt_id", "split").join(ingested.select("prompt_id", "split"), on="prompt_id")
    return both.filter(pl.col("split") != pl.col("split_right")).height
