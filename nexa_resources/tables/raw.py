"""The raw layer: validated prompts from every source, and the input rows that failed validation."""

from __future__ import annotations

import polars as pl

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
