"""The sft layer: chat rows ready for supervised fine-tuning."""

from __future__ import annotations

import polars as pl

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
