"""raw/prompts and raw/rejects: every prompt source validated into the lake (group `raw`).

Split: in each (domain, task_type) cell the `eval_per_cell` seed-pack prompts with the lowest
`hash_fraction(prompt_id, "split")` are `eval` (a rank over the seed pack alone: the same on every
run and lake); user-file prompts are `eval` when that fraction is under `eval_fraction`; generated
and feedback prompts are always `train`.

A prompt's split is written once, at its first insert, and never changed: rows already in the lake
keep theirs even where today's rule (or a changed `eval_per_cell` / `eval_fraction`) would decide
otherwise, because moving a prompt between splits would put trained-on prompts into eval or break
the comparison of rounds. So a lake first built under the old rule (seed prompts with a hash
fraction under 0.15: 2 to 5 per cell) keeps its old eval set; the run logs a warning and reports
the count as `split_differs_from_rule`. The rule applies in full to a fresh lake (delete
`raw/prompts` and the tables built from it to start over).
"""


from collections.abc import Iterator
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from nexa_assets.metadata import counts, materialization, preview
from nexa_assets.raw import checks
from nexa_assets.raw.feedback import Fulfilment, fulfil_into_lake
from nexa_assets.raw.ingest import IngestResult, ingest
from nexa_assets.raw.sources import generation_requests, input_files, split_differs
from nexa_assets.raw.validate import ValidationRules
from nexa_assets.rounds import round_field, run_lineage
from nexa_resources.inputs import InputsResource
from nexa_resources.lake import LakeResource, WriteResult
from nexa_resources.tables import table_spec

PROMPTS = table_spec("raw/prompts")
REJECTS = table_spec("raw/rejects")


class RawPromptsConfig(dg.Config):
    """How raw prompts are gathered and validated."""

    round: int | None = round_field()
    include_seed_pack: bool = Field(default=True, description="Ingest the built-in seed pack.")
    generated_per_cell: int = Field(
        default=0, ge=0, description="Extra generator prompts per (domain, task_type) cell; always split 'train'."
    )
    generator_seed: int = Field(default=0, description="Seed of the prompt generator.")
    files: list[str] | None = Field(
        default=None, description="Only these files (relative to the input location); all files when unset."
    )
    eval_per_cell: int = Field(
        default=ValidationRules.eval_per_cell,
        ge=0,
        description="Seed-pack prompts held out (split 'eval') in each (domain, task_type) cell: the ones with "
        "the lowest split hash. Applies to prompts when first written; stored rows keep their split.",
    )
    eval_fraction: float = Field(
        default=ValidationRules.eval_fraction, ge=0.0, lt=1.0, description="Share of user-file prompts held out, by hash of the prompt id."
    )
    max_instruction_chars: int = Field(default=ValidationRules.max_instruction_chars, gt=0)
    max_context_chars: int = Field(default=ValidationRules.max_context_chars, gt=0)
    fulfil_feedback_requests: bool = Field(
        default=True, description="Fulfil the open rows of feedback/requests with targeted train prompts."
    )
    feedback_from_pool: bool = Field(
        default=True,
        description="Fulfil them first with the cell's unanswered seed-pack/generated train prompts (written like "
        "its eval prompts), then with new prompts from the generator; false: generator only.",
    )
    max_reject_rate: float = Field(
        default=0.5, ge=0.0, le=1.0, description="Asset check fails when this run rejects more than this share."
    )

    def rules(self) -> ValidationRules:
        return ValidationRules(
            max_instruction_chars=self.max_instruction_chars,
            max_context_chars=self.max_context_chars,
            eval_fraction=self.eval_fraction,
            eval_per_cell=self.eval_per_cell,
        )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            PROMPTS.asset_key,
            description="Validated scientific prompts from the seed pack, the generator and user files; "
            "key prompt_id (content hash); split eval: eval_per_cell seed prompts per cell, eval_fraction "
            "of file prompts (by hash); generated and feedback prompts train.",
            group_name="raw",
            kinds={"deltalake", "polars"},
            tags={"layer": "raw"},
        ),
        dg.AssetSpec(
            REJECTS.asset_key,
            description=REJECTS.description,
            group_name="raw",
            kinds={"deltalake", "polars"},
            tags={"layer": "raw"},
        ),
    ],
    check_specs=checks.SPECS,
)
def raw_prompts(
    context: dg.AssetExecutionContext,
    config: RawPromptsConfig,
    lake: LakeResource,
    inputs: InputsResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Ingest every prompt source, merge new prompts (existing rows untouched) and record rejects."""
    existing = lake.read("raw/prompts", columns=["prompt_id", "locator", "split"], missing_ok=True)
    existing_map = dict(existing.select("prompt_id", "locator").iter_rows()) if not existing.is_empty() else {}
    names, files = input_files(inputs, config.files, context.log.warning)
    rules = config.rules()
    result = ingest(
        rules=rules,
        include_seed_pack=config.include_seed_pack,
        generation=generation_requests(config.generated_per_cell, config.generator_seed),
        files=files,
        existing=existing_map,
    )
    context.log.info(
        f"read {result.rows_read} rows from {len(result.by_source)} sources: "
        f"{result.prompts.height} valid, {result.rejects.height} rejected"
    )
    differs = split_differs(existing, result.prompts)
    if differs:
        context.log.warning(_SPLIT_WARNING.format(differs=differs, config=config))
    lineage = run_lineage(context, config.round, lake)
    wrote = lake.write("raw/prompts", result.prompts, mode="merge", lineage=lineage, update_matched=False)
    # A reject read again keeps its lineage; only a changed reason or raw text is rewritten.
    wrote_rejects = lake.write(
        "raw/rejects", result.rejects, mode="merge", lineage=lineage, update_if_changed=("reason_code", "reason", "raw")
    )
    known = {**existing_map, **dict(zip(result.prompts["prompt_id"], result.prompts["locator"]))}
    fed = (
        fulfil_into_lake(context, lake, rules, known, from_pool=config.feedback_from_pool)
        if config.fulfil_feedback_requests
        else None
    )
    table = lake.read("raw/prompts")
    context.log.info(f"raw/prompts v{wrote.version}: {wrote.inserted} new rows, {table.height} in all")
    metadata = _prompts_metadata(result, wrote, fed, differs, names, table)
    yield materialization("raw/prompts", wrote, lake, **metadata)
    yield materialization(
        "raw/rejects",
        wrote_rejects,
        lake,
        rejected_this_run=result.rejects.height,
        by_reason=counts(result.rejects, ["reason_code"]),
        preview=preview(result.rejects, ["locator", "reason_code", "reason"]),
    )
    yield from checks.prompt_checks(table, result.reject_rate, config.max_reject_rate)


_SPLIT_WARNING = (
    "raw/prompts: {differs} stored prompts keep the split they were first written with, which differs "
    "from today's rule (eval_per_cell={config.eval_per_cell} seed prompts per cell, "
    "eval_fraction={config.eval_fraction} of file prompts); rows never move between splits, so this "
    "lake keeps its eval set. Start a fresh lake to split by the current rule."
)


def _prompts_metadata(
    result: IngestResult, wrote: WriteResult, fed: Fulfilment | None, differs: int, names: list[str], table: pl.DataFrame
) -> dict[str, Any]:
    """What a raw/prompts run read, added and bought, beside the table's counts by cell and split."""
    return {
        "rows_read": result.rows_read,
        "new_prompts": wrote.inserted + (fed.prompts.height if fed else 0),
        "feedback_prompts": fed.prompts.height if fed else 0,
        "feedback_bought_from_pool": fed.bought.height if fed else 0,
        "feedback_requests_fulfilled": fed.requests.height if fed else 0,
        "split_differs_from_rule": differs,
        "files": dg.MetadataValue.json(names),
        "by_source": dg.MetadataValue.json(result.by_source),
        "by_cell_and_split": counts(table, ["domain", "task_type", "split"]),
        "preview": preview(table, ["prompt_id", "domain", "task_type", "split", "origin", "instruction"]),
    }


__all__ = ["RawPromptsConfig", "raw_prompts"]
