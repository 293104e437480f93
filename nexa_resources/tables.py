"""The lake's table registry: every table of DESIGN §3 with its key columns."""

from __future__ import annotations

from dataclasses import dataclass

LINEAGE_COLUMNS: tuple[str, ...] = ("run_id", "round", "created_at")


@dataclass(frozen=True)
class TableSpec:
    """A Delta table at `<lake_root>/<layer>/<name>`, seen by DuckDB as `<layer>.<name>`."""

    layer: str
    name: str
    keys: tuple[str, ...]

    @property
    def path(self) -> str:
        return f"{self.layer}/{self.name}"

    @property
    def sql_name(self) -> str:
        return f"{self.layer}.{self.name}"


TABLES: dict[str, TableSpec] = {
    spec.path: spec
    for spec in (
        TableSpec("raw", "prompts", ("prompt_id",)),
        TableSpec("raw", "rejects", ("reject_id",)),
        TableSpec("distill", "completions", ("request_id",)),
        TableSpec("distill", "pairs", ("request_id",)),
        TableSpec("distill", "logprobs", ("request_id", "position")),
        TableSpec("sft", "examples", ("example_id",)),
        TableSpec("train", "checkpoints", ("checkpoint_id",)),
        TableSpec("eval", "prompts", ("prompt_id",)),
        TableSpec("eval", "predictions", ("model_id", "prompt_id")),
        TableSpec("eval", "scores", ("model_id", "prompt_id", "metric")),
        TableSpec("eval", "judge_requests", ("request_id",)),
        TableSpec("eval", "metrics", ("model_id", "domain", "task_type", "metric")),
        TableSpec("feedback", "weaknesses", ("round", "domain", "task_type", "metric")),
        TableSpec("feedback", "requests", ("round", "domain", "task_type")),
        TableSpec("feedback", "rounds", ("round",)),
    )
}


def table_spec(table: str) -> TableSpec:
    """Look a table up by `layer/name` or `layer.name`; unknown names list the valid ones."""
    path = table.replace(".", "/", 1)
    if path in TABLES:
        return TABLES[path]
    layer, _, name = path.partition("/")
    if layer and name and "/" not in name and name.isidentifier() and layer.isidentifier():
        return TableSpec(layer, name, ())
    valid = ", ".join(sorted(TABLES))
    raise ValueError(f"unknown table {table!r}: expected 'layer/name' such as one of {valid}")
