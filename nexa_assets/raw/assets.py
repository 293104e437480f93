"""raw/prompts and raw/rejects: every prompt source validated into the lake (group `raw`)."""


from collections.abc import Iterator

import dagster as dg
import polars as pl
from pydantic import Field

from nexa_assets.metadata import counts, preview
from nexa_assets.raw.feedback import Fulfilment, fulfil_requests
from nexa_assets.raw.ingest import GenerationRequest, ingest
from nexa_assets.raw.validate import EVAL_PER_CELL, ValidationRules
from nexa_assets.rounds import resolve_round, round_field
from nexa_assets.sft.package import EvalIndex, SftConfig
from nexa_assets.taxonomy import DOMAINS, TASK_TYPES
from nexa_resources.inputs import InputsResource
from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.tables import asset_key
from nexa_resources.tables.raw import PROMPT_SCHEMA, REJECT_SCHEMA

PROMPTS = asset_key("raw/prompts")
REJECTS = asset_key("raw/rejects")


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
        default=EVAL_PER_CELL,
        ge=0,
        description="Seed-pack prompts held out (split 'eval') in each (domain, task_type) cell: the ones with "
        "the lowest split hash. Applies to prompts when first written; stored rows keep their split.",
    )
    eval_fraction: float = Field(
        default=0.15, ge=0.0, lt=1.0, description="Share of user-file prompts held out, by hash of the prompt id."
    )
    max_instruction_chars: int = Field(default=2000, gt=0)
    max_context_chars: int = Field(default=4000, gt=0)
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


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            PROMPTS,
            description="Validated scientific prompts from the seed pack, the generator and user files; "
            "key prompt_id (content hash); split eval: eval_per_cell seed prompts per cell, eval_fraction "
            "of file prompts (by hash); generated and feedback prompts train.",
            group_name="raw",
            kinds={"deltalake", "polars"},
            tags={"layer": "raw"},
        ),
        dg.AssetSpec(
            REJECTS,
            description="Input rows that failed validation, with file:line and the reason.",
            group_name="raw",
            kinds={"deltalake", "polars"},
            tags={"layer": "raw"},
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec("schema", asset=PROMPTS, description="Columns and types match the raw/prompts schema."),
        dg.AssetCheckSpec("unique_prompt_id", asset=PROMPTS, description="No prompt_id appears twice."),
        dg.AssetCheckSpec("reject_rate", asset=PROMPTS, description="This run's reject rate is under the threshold."),
    ],
)
def raw_prompts(
    context: dg.AssetExecutionContext,
    config: RawPromptsConfig,
    lake: LakeResource,
    inputs: InputsResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Ingest every prompt source, merge new prompts (existing rows untouched) and record rejects.

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
    existing = lake.read("raw/prompts", columns=["prompt_id", "locator", "split"], missing_ok=True)
    existing_map = dict(existing.select("prompt_id", "locator").iter_rows()) if not existing.is_empty() else {}

    listed, warnings = inputs.list_files()
    for warning in warnings:
        context.log.warning(warning)
    names = [f.name for f in listed]
    if config.files is not None:
        unknown = sorted(set(config.files) - set(names))
        if unknown:
            raise dg.Failure(f"files not found in {inputs.uri}: {unknown} (present: {names or 'none'})")
        names = [n for n in names if n in set(config.files)]
    files = [(inputs.display(name), inputs.read_bytes(name)) for name in names]

    generation = [
        GenerationRequest(d, t, config.generated_per_cell, seed=config.generator_seed)
        for d in DOMAINS
        for t in TASK_TYPES
        if config.generated_per_cell
    ]
    rules = ValidationRules(
        max_instruction_chars=config.max_instruction_chars,
        max_context_chars=config.max_context_chars,
        eval_fraction=config.eval_fraction,
        eval_per_cell=config.eval_per_cell,
    )
    result = ingest(
        rules=rules,
        include_seed_pack=config.include_seed_pack,
        generation=generation,
        files=files,
        existing=existing_map,
    )
    context.log.info(
        f"read {result.rows_read} rows from {len(result.by_source)} sources: "
        f"{result.prompts.height} valid, {result.rejects.height} rejected"
    )
    differs = _split_differs(existing, result.prompts)
    if differs:
        context.log.warning(
            f"raw/prompts: {differs} stored prompts keep the split they were first written with, which differs "
            f"from today's rule (eval_per_cell={config.eval_per_cell} seed prompts per cell, "
            f"eval_fraction={config.eval_fraction} of file prompts); rows never move between splits, so this "
            "lake keeps its eval set. Start a fresh lake to split by the current rule."
        )

    lineage = Lineage.from_context(context, resolve_round(context, config.round, lake))
    wrote = lake.write("raw/prompts", result.prompts, mode="merge", lineage=lineage, update_matched=False)
    # A reject read again keeps its lineage; only a changed reason or raw text is rewritten.
    wrote_rejects = lake.write(
        "raw/rejects", result.rejects, mode="merge", lineage=lineage, update_if_changed=("reason_code", "reason", "raw")
    )
    known = {**existing_map, **dict(zip(result.prompts["prompt_id"], result.prompts["locator"]))}
    fed = (
        _fulfil_feedback(context, lake, rules, known, from_pool=config.feedback_from_pool)
        if config.fulfil_feedback_requests
        else None
    )
    table = lake.read("raw/prompts")
    rejects_table = lake.read("raw/rejects")
    context.log.info(f"raw/prompts v{wrote.version}: {wrote.inserted} new rows, {table.height} in all")

    yield dg.MaterializeResult(
        asset_key=PROMPTS,
        metadata={
            **wrote.metadata(),
            "dagster/row_count": table.height,
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
        },
    )
    yield dg.MaterializeResult(
        asset_key=REJECTS,
        metadata={
            **wrote_rejects.metadata(),
            "dagster/row_count": rejects_table.height,
            "rejected_this_run": result.rejects.height,
            "by_reason": counts(result.rejects, ["reason_code"]),
            "preview": preview(result.rejects, ["locator", "reason_code", "reason"]),
        },
    )

    expected = {**PROMPT_SCHEMA, "run_id": pl.String(), "round": pl.Int64(), "created_at": pl.Datetime("us", "UTC")}
    mismatched = {c: str(table.schema.get(c)) for c, t in expected.items() if table.schema.get(c) != t}
    yield dg.AssetCheckResult(
        asset_key=PROMPTS,
        check_name="schema",
        passed=not mismatched,
        metadata={"mismatched_columns": dg.MetadataValue.json(mismatched)},
    )
    duplicates = table.height - table["prompt_id"].n_unique()
    yield dg.AssetCheckResult(
        asset_key=PROMPTS, check_name="unique_prompt_id", passed=duplicates == 0, metadata={"duplicates": duplicates}
    )
    yield dg.AssetCheckResult(
        asset_key=PROMPTS,
        check_name="reject_rate",
        passed=result.reject_rate <= config.max_reject_rate,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"reject_rate": round(result.reject_rate, 4), "threshold": config.max_reject_rate},
    )


def _split_differs(stored: pl.DataFrame, ingested: pl.DataFrame) -> int:
    """How many stored prompts have a split other than the one this run's rule gives them."""
    if stored.is_empty() or ingested.is_empty():
        return 0
    both = stored.select("prompt_id", "split").join(ingested.select("prompt_id", "split"), on="prompt_id")
    return both.filter(pl.col("split") != pl.col("split_right")).height


def _fulfil_feedback(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    rules: ValidationRules,
    known: dict[str, str],
    *,
    from_pool: bool,
) -> Fulfilment | None:
    """Buy the prompts that open feedback requests ask for (`known`: prompt_id → locator of every prompt in
    the lake): mark unanswered built-in train prompts of the cell bought (`from_pool`), generate the rest,
    then mark those requests done."""
    requests = lake.read("feedback/requests", missing_ok=True)
    if requests.is_empty() or requests.filter(pl.col("status") == "open").is_empty():
        return None
    # No targeted prompt may share a word run with a held-out prompt (the judge's hints are free text).
    stored = lake.read("raw/prompts", missing_ok=True)
    eval_rows = stored.filter(pl.col("split") == "eval").iter_rows(named=True) if not stored.is_empty() else ()
    held_out = EvalIndex.build(eval_rows, SftConfig().contamination_ngram)
    fed = fulfil_requests(
        requests, known, run_id=context.run.run_id, rules=rules, held_out=held_out, stored=stored if from_pool else None
    )
    for (for_round,), bought in fed.bought.partition_by("bought_for_round", as_dict=True).items():
        lake.write(
            "raw/prompts",
            bought.select(*PROMPT_SCHEMA),
            mode="merge",
            lineage=Lineage.from_context(context, int(for_round)),
            update_if_changed=("bought_for_round",),
        )
    for (for_round,), prompts in fed.prompts.partition_by("for_round", as_dict=True).items():
        lake.write(
            "raw/prompts",
            prompts.drop("for_round"),
            mode="merge",
            lineage=Lineage.from_context(context, int(for_round)),
            update_matched=False,
        )
    # The request rows keep their own lineage (the round that found the weakness); fulfilled_by says who did it.
    lake.write("feedback/requests", fed.requests, mode="merge")
    cells = ", ".join(f"{r['domain']}/{r['task_type']} ×{len(r['prompt_ids'])}" for r in fed.requests.iter_rows(named=True))
    context.log.info(
        f"feedback: {fed.bought.height} unanswered train prompts bought and {fed.prompts.height} generated for "
        f"{fed.requests.height} requests ({cells})"
    )
    for cell, missing in fed.short.items():
        context.log.warning(f"feedback: the generator has no more distinct prompts for {cell} ({missing} short)")
    return fed


__all__ = ["REJECT_SCHEMA", "RawPromptsConfig", "raw_prompts"]
