"""sft/examples: TRL-ready chat rows from passing pairs, with a blocking decontamination check."""

from collections.abc import Iterator

import dagster as dg
import polars as pl
from pydantic import Field

from nexa_assets.metadata import counts, materialization, preview
from nexa_assets.rounds import round_field, run_lineage
from nexa_assets.sft import checks
from nexa_assets.sft.checks import sft_decontamination
from nexa_assets.sft.package import SftConfig, build_examples
from nexa_assets.table_asset import table_asset
from nexa_resources.lake import LakeResource


class ExamplesConfig(dg.Config):
    round: int | None = round_field()
    val_fraction: float = Field(default=SftConfig.val_fraction, ge=0, lt=1)
    contamination_ngram: int = Field(
        default=SftConfig.contamination_ngram, ge=5, description="Shared word run that counts as contamination."
    )
    near_duplicate_threshold: float = SftConfig.near_duplicate_threshold


def candidates(lake: LakeResource) -> pl.DataFrame:
    """The chosen passing pairs of train prompts, with their completion, instruction and context."""
    pairs = lake.read("distill/pairs").filter(pl.col("passed"))
    if "chosen" in pairs.columns:
        pairs = pairs.filter(pl.col("chosen"))
    completions = lake.read("distill/completions", columns=["request_id", "completion"])
    prompts = lake.read("raw/prompts", columns=["prompt_id", "instruction", "context", "split"])
    return (
        pairs.select("request_id", "prompt_id", "domain", "task_type", "judge_mean")
        .join(completions, on="request_id")
        .join(prompts.filter(pl.col("split") == "train").drop("split"), on="prompt_id")
    )


DESCRIPTION = (
    "Supervised fine-tuning rows (messages + prompt/completion, TRL-ready): the chosen sample per prompt "
    "(distill/pairs), asked the way evaluation asks (no worked examples), deduplicated, never overlapping an eval "
    "prompt; split train/val by prompt hash."
)


@table_asset("sft/examples", checks.SCHEMA, deps=["distill/pairs"], description=DESCRIPTION)
def sft_examples(
    context: dg.AssetExecutionContext, config: ExamplesConfig, lake: LakeResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Package passing pairs; rows no longer selected are removed so the table is the current dataset."""
    sft = SftConfig(config.val_fraction, config.contamination_ngram, config.near_duplicate_threshold)
    examples, stats = build_examples(candidates(lake), checks.eval_prompts(lake), sft)
    written = lake.write(
        "sft/examples",
        examples,
        mode="merge",
        lineage=run_lineage(context, config.round, lake),
        update_matched=False,
        delete_unmatched=True,
    )
    context.log.info(f"sft/examples v{written.version}: {examples.height} examples, dropped {stats}")
    yield materialization(
        "sft/examples",
        written,
        lake,
        **{f"dropped_{k}" if k != "candidates" else k: v for k, v in stats.items()},
        by_cell_and_split=counts(examples, ["domain", "task_type", "split"]),
        preview=preview(examples, ["example_id", "domain", "task_type", "split", "prompt", "completion"]),
    )
    yield checks.schema_check(lake.read("sft/examples"))


__all__ = ["ExamplesConfig", "sft_decontamination", "sft_examples"]
