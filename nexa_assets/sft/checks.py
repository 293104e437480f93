"""Asset checks of the sft layer: the examples' schema and chat roles, and the blocking decontamination check."""

import dagster as dg
import polars as pl

from nexa_assets.sft.package import EvalIndex, SftConfig
from nexa_resources.lake import LakeResource
from nexa_resources.tables import asset_key
from nexa_resources.tables.sft import EXAMPLE_SCHEMA

EXAMPLES = asset_key("sft/examples")
SCHEMA = dg.AssetCheckSpec("schema", asset=EXAMPLES, description="Columns, types and chat roles.")


def eval_prompts(lake: LakeResource) -> list[dict]:
    """The held-out prompts of raw/prompts (instruction, context), which no example may overlap."""
    prompts = lake.read("raw/prompts", columns=["instruction", "context", "split"])
    return prompts.filter(pl.col("split") == "eval").to_dicts()


def schema_check(table: pl.DataFrame) -> dg.AssetCheckResult:
    """sft/examples has the catalog's column types, and every row is a system, user, assistant chat."""
    wrong_types = {c: str(table.schema.get(c)) for c, t in EXAMPLE_SCHEMA.items() if table.schema.get(c) != t}
    roles_ok = all(
        [m["role"] for m in messages] == ["system", "user", "assistant"] and all(m["content"] for m in messages)
        for messages in table["messages"].to_list()
    )
    return dg.AssetCheckResult(
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
    index = EvalIndex.build(eval_prompts(lake), SftConfig.contamination_ngram)
    joined = examples.join(prompts.drop("split"), on="prompt_id", how="left")
    eval_ids = set(prompts.filter(pl.col("split") == "eval")["prompt_id"])
    hits = []
    for row in joined.iter_rows(named=True):
        why = (
            "prompt is in the eval split"
            if row["prompt_id"] in eval_ids
            else index.contaminated(row["instruction"] or "", row.get("context"), row["completion"])
        )
        if why:
            hits.append({"example_id": row["example_id"], "why": why})
    return dg.AssetCheckResult(
        passed=not hits,
        metadata={"contaminated": len(hits), "examples": examples.height, "sample": dg.MetadataValue.json(hits[:5])},
    )
