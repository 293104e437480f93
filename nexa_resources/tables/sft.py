"""The sft layer: chat rows ready for supervised fine-tuning."""

from __future__ import annotations

import polars as pl

from nexa_resources.tables.spec import TableSpec

MESSAGE = pl.Struct({"role": pl.String(), "content": pl.String()})
EXAMPLE_SCHEMA: dict[str, pl.DataType] = {
    "example_id": pl.String(),
    "prompt_id": pl.String(),
    "request_id": pl.String(),
    "messages": pl.List(MESSAGE),
    "prompt": pl.String(),
    "completion": pl.String(),
    "domain": pl.String(),
    "task_type": pl.String(),
    "split": pl.String(),  # train | val
    "judge_mean": pl.Float64(),
}

SPECS: tuple[TableSpec, ...] = (
    TableSpec(
        "sft", "examples", ("example_id",), EXAMPLE_SCHEMA, "sft_examples",
        "The chosen answer per prompt as TRL-ready chat rows, deduplicated and decontaminated; split train/val.",
    ),
)
