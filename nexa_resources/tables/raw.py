"""The raw layer: validated prompts from every source, and the input rows that failed validation."""

from __future__ import annotations

import polars as pl

from nexa_resources.tables.spec import TableSpec

PROMPT_SCHEMA: dict[str, pl.DataType] = {
    "prompt_id": pl.String(),
    "domain": pl.String(),
    "task_type": pl.String(),
    "instruction": pl.String(),
    "context": pl.String(),
    "source": pl.String(),
    "locator": pl.String(),
    "origin": pl.String(),  # seed | generated | feedback | file
    "split": pl.String(),  # train | eval
    # The round whose feedback bought this built-in train prompt past the teacher's per-cell cap; null: not bought.
    "bought_for_round": pl.Int64(),
}
REJECT_SCHEMA: dict[str, pl.DataType] = {
    "reject_id": pl.String(),  # hash(source, locator)
    "source": pl.String(),
    "locator": pl.String(),  # file:line
    "reason_code": pl.String(),
    "reason": pl.String(),
    "raw": pl.String(),
}

SPECS: tuple[TableSpec, ...] = (
    TableSpec(
        "raw", "prompts", ("prompt_id",), PROMPT_SCHEMA, "raw_prompts",
        "Validated scientific prompts from the seed pack, the generator, feedback requests and user files.",
    ),
    TableSpec(
        "raw", "rejects", ("reject_id",), REJECT_SCHEMA, "raw_prompts",
        "Input rows that failed validation, with file:line and the reason.",
    ),
)
