"""The table catalog: every lake table of DESIGN §3 with its keys, columns, asset key, owner and description."""

from __future__ import annotations

import dagster as dg

from nexa_resources.tables import distill, eval, feedback, raw, sft, train
from nexa_resources.tables.spec import LINEAGE_COLUMNS, LINEAGE_SCHEMA, TableSpec

CELL = ("domain", "task_type")
TABLES: dict[str, TableSpec] = {
    spec.path: spec
    for spec in (
        TableSpec(
            "raw",
            "prompts",
            ("prompt_id",),
            raw.PROMPT_SCHEMA,
            "raw_prompts",
            "Validated scientific prompts from the seed pack, the generator, feedback requests and user files.",
        ),
        TableSpec(
            "raw",
            "rejects",
            ("reject_id",),
            raw.REJECT_SCHEMA,
            "raw_prompts",
            "Input rows that failed validation, with file:line and the reason.",
        ),
        TableSpec(
            "distill",
            "completions",
            ("request_id",),
            distill.COMPLETION_SCHEMA,
            "distill_completions",
            "Teacher answers to the train prompts (best-of-n samples), each paid for once.",
        ),
        TableSpec(
            "distill",
            "pairs",
            ("request_id",),
            distill.PAIR_SCHEMA,
            "distill_pairs",
            "Every completion filtered (with all its reasons) and judged; the chosen sample per prompt.",
        ),
        TableSpec(
            "distill",
            "logprobs",
            ("request_id", "position"),
            distill.LOGPROBS_SCHEMA,
            "distill_logprobs",
            "The teacher's top-k next-token log-probabilities of each chosen answer token, for KD training.",
        ),
        TableSpec(
            "sft",
            "examples",
            ("example_id",),
            sft.EXAMPLE_SCHEMA,
            "sft_examples",
            "The chosen answer per prompt as TRL-ready chat rows, deduplicated and decontaminated.",
        ),
        TableSpec(
            "train",
            "checkpoints",
            ("checkpoint_id",),
            train.CHECKPOINT_SCHEMA,
            "train_checkpoints",
            "One row per trained student: its sft/examples version, config, where it ran, cost and losses.",
        ),
        TableSpec(
            "eval",
            "prompts",
            ("prompt_id",),
            eval.EVAL_PROMPT_SCHEMA,
            "eval_prompts",
            "The held-out prompts (raw split eval), with the hash of the eval set they belong to.",
        ),
        TableSpec(
            "eval",
            "predictions",
            ("model_id", "prompt_id"),
            eval.PREDICTION_SCHEMA,
            "eval_predictions",
            "One answer per model and eval prompt, with finish reason, usage, latency and cost.",
        ),
        TableSpec(
            "eval",
            "scores",
            ("model_id", "prompt_id", "metric"),
            eval.SCORE_SCHEMA,
            "eval_scores",
            "One judge verdict per model, prompt and rubric metric (null score on a judge failure).",
        ),
        TableSpec(
            "eval",
            "judge_requests",
            ("request_id",),
            eval.JUDGE_REQUEST_SCHEMA,
            "JudgeResource",
            "The LLM judge's request cache: every answered judge request, so no verdict is paid for twice.",
        ),
        TableSpec(
            "eval",
            "metrics",
            ("model_id", *CELL, "metric"),
            eval.METRIC_SCHEMA,
            "eval_metrics",
            "Per model and cell (domain, task_type, metric): mean score, n and 95% interval.",
        ),
        TableSpec(
            "feedback",
            "weaknesses",
            ("round", *CELL, "metric"),
            feedback.WEAKNESS_SCHEMA,
            "feedback_loop",
            "Every cell of the round's checkpoint: score, threshold, weak or pass, change, stop reason.",
        ),
        TableSpec(
            "feedback",
            "requests",
            ("round", *CELL),
            feedback.REQUEST_SCHEMA,
            "feedback_loop",
            "Prompts to buy for the next round per weak (domain, task_type), with the judge's hints.",
        ),
        TableSpec(
            "feedback",
            "rounds",
            ("round",),
            feedback.ROUND_SCHEMA,
            "feedback_loop",
            "The loop's ledger, one row per round: measured and estimated $, spend, lift per $ and stop reason.",
        ),
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


def asset_key(table: str) -> dg.AssetKey:
    """The Dagster asset key of a catalog table; unknown names list the valid ones."""
    path = table.replace(".", "/", 1)
    if path not in TABLES:
        raise ValueError(f"no asset writes {table!r}: expected one of {', '.join(sorted(TABLES))}")
    return TABLES[path].asset_key


__all__ = ["LINEAGE_COLUMNS", "LINEAGE_SCHEMA", "TABLES", "TableSpec", "asset_key", "table_spec"]
