"""sft/examples: TRL-ready chat rows from passing pairs, with a blocking decontamination check."""

from collections.abc import Iterator

import dagster as dg
import polars as pl
from pydantic import Field

from nexa_assets.metadata import counts, preview
from nexa_assets.rounds import resolve_round, round_field
from nexa_assets.sft.package import EvalIndex, SftConfig, build_examples
from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.tables import asset_key
from nexa_resources.tables.sft import EXAMPLE_SCHEMA

EXAMPLES = asset_key("sft/examples")
PAIRS = asset_key("distill/pairs")


class ExamplesConfig(dg.Config):
    round: int | None = round_field()
    val_fraction: float = Field(default=0.1, ge=0, lt=1)
    contamination_ngram: int = Field(default=12, ge=5, description="Shared word run that counts as contamination.")
    near_duplicate_threshold: float = 0.85


def _eval_prompts(lake: LakeResource) -> list[dict]:
    prompts = lake.read("raw/prompts", columns=["instruction", "context", "split"])
    return prompts.filter(pl.col("split") == "eval").to_dicts()


@dg.asset(
    key=EXAMPLES,
    deps=[PAIRS],
    group_name="sft",
    kinds={"polars", "deltalake"},
    description="Supervised fine-tuning rows (messages + prompt/completion, TRL-ready): the chosen sample per "
    "prompt (distill/pairs), asked the way evaluation asks (no worked examples), deduplicated, never overlapping an eval prompt; split train/val by prompt hash.",
    check_specs=[dg.AssetCheckSpec("schema", asset=EXAMPLES, description="Columns, types and chat roles.")],
)
def sft_examples(
    context: dg.AssetExecutionContext, config: ExamplesConfig, lake: LakeResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Package passing pairs; rows no longer selected are removed so the table is the current dataset."""
    pairs = lake.read("distill/pairs").filter(pl.col("passed"))
    if "chosen" in pairs.columns:
        pairs = pairs.filter(pl.col("chosen"))
    completions = lake.read("distill/completions", columns=["request_id", "completion"])
    prompts = lake.read("raw/prompts", columns=["prompt_id", "instruction", "context", "split"])
    candidates = (
        pairs.select("request_id", "prompt_id", "domain", "task_type", "judge_mean")
        .join(completions, on="request_id")
        .join(prompts.filter(pl.col("split") == "train").drop("split"), on="prompt_id")
    )
    sft = SftConfig(config.val_fraction, config.contamination_ngram, config.near_duplicate_threshold)
    examples, stats = build_examples(candidates, _eval_prompts(lake), sft)
    written = lake.write(
        "sft/examples",
        examples,
        mode="merge",
        lineage=Lineage.from_context(context, resolve_round(context, config.round, lake)),
        update_matched=False,
        delete_unmatched=True,
    )
    context.log.info(f"sft/examples v{written.version}: {examples.height} examples, dropped {stats}")
    yield dg.MaterializeResult(
        asset_key=EXAMPLES,
        metadata={
            **written.metadata(),
            "dagster/row_count": examples.height,
            **{f"dropped_{k}" if k != "candidates" else k: v for k, v in stats.items()},
            "by_cell_and_split": counts(examples, ["domain", "task_type", "split"]),
            "preview": preview(examples, ["example_id", "domain", "task_type", "split", "prompt", "completion"]),
        },
    )
    table = lake.read("sft/examples")
    wrong_types = {c: str(table.schema.get(c)) for c, t in EXAMPLE_SCHEMA.items() if table.schema.get(c) != t}
    roles_ok = all(
        [m["role"] for m in messages] == ["system", "user", "assistant"] and all(m["content"] for m in messages)
        for messages in table["messages"].to_list()
    )
    yield dg.AssetCheckResult(
        asset_key=EXAMPLES,
        check_name="schema",
        passed=not wrong_types and roles_ok,
        metadata={"wrong_types": dg.MetadataValue.json(wrong_types), "chat_roles_ok": roles_ok},
    )


@dg.asset_check(
    asset=EXAMPLES,
    blocking=True,
    description="No training example equals an eval prompt (normalized) or shares a long word run with one.",
)
def sft_decontamination(context: dg.AssetCheckExecutionContext, lake: LakeResource) -> dg.AssetCheckResult:
    """Re-read the written table and prove it holds nothing from the held-out eval prompts."""
    examples = lake.read("sft/examples")
    prompts = lake.read("raw/prompts", columns=["prompt_id", "instruction", "context", "split"])
    index = EvalIndex.build(_eval_prompts(lake), ExamplesConfig().contamination_ngram)
    joined = examples.join(prompts.drop("split"), on="prompt_id", how="left")
    eval_ids = set(prompts.filter(pl.col("split") == "eval")["prompt_id"])
    hits = []
    for row in joined.iter_rows(named=True):
        why = "prompt is in the eval split" if row["prompt_id"] in eval_ids else index.contaminated(
            row["instruction"] or "", row.get("context"), row["completion"]
        )
        if why:
            hits.append({"example_id": row["example_id"], "why": why})
    return dg.AssetCheckResult(
        passed=not hits,
        metadata={"contaminated": len(hits), "examples": examples.height, "sample": dg.MetadataValue.json(hits[:5])},
    )
