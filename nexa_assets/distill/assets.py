"""distill/completions and distill/pairs: teacher answers that never pay twice, filtered and judged."""

from collections.abc import Iterator

import dagster as dg
import polars as pl
from pydantic import Field

from nexa_assets.distill import checks
from nexa_assets.distill.completions import collect_into_lake, completion_metadata, select_prompts, teacher_requests
from nexa_core.filters import FilterConfig
from nexa_assets.distill.judging import Judging, judge_pairs, pairs_metadata, pass_rate
from nexa_assets.distill.pairs import GateConfig
from nexa_assets.distill.task import OUTPUT_COLUMNS
from nexa_assets.metadata import materialization
from nexa_assets.rounds import round_field, run_lineage
from nexa_assets.table_asset import table_asset
from nexa_resources.judge import JudgeResource
from nexa_resources.lake import LakeResource
from nexa_resources.tables.distill import COMPLETION_SCHEMA, METRICS
from nexa_resources.teacher import TeacherResource

assert tuple(COMPLETION_SCHEMA) == OUTPUT_COLUMNS


class CompletionsConfig(dg.Config):
    """Which prompts the teacher answers."""

    round: int | None = round_field()
    max_prompts: int | None = Field(default=None, description="Answer at most this many train prompts (by id).")
    per_cell: int | None = Field(
        default=2,
        description="Answer at most this many seed-pack/generated train prompts per (domain, task_type) cell; "
        "prompts from user files and those bought by the feedback loop are always answered.",
    )
    batch_size: int = Field(default=32, gt=0, description="Rows merged into the lake per batch while collecting.")
    domains: list[str] | None = Field(default=None, description="Only these domains (all when unset).")


COMPLETIONS_DESCRIPTION = (
    "Teacher completions for the train prompts, keyed by request_id = hash(prompt, model, template version, "
    "sampling); an answered request is never sent again."
)
PAIRS_DESCRIPTION = (
    "Every completion (each best-of-n sample) filtered (with all its reasons) and judged on the rubric; per prompt "
    "the passing sample with the best judge mean is `chosen`; a prompt none of whose samples passed is asked again "
    "with what failed, linked by regenerated_from."
)


@table_asset(
    "distill/completions", checks.ERROR_RATE, deps=["raw/prompts"], description=COMPLETIONS_DESCRIPTION, engine="openai"
)
def distill_completions(
    context: dg.AssetExecutionContext, config: CompletionsConfig, lake: LakeResource, teacher: TeacherResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Collect teacher answers for every train prompt not answered yet, merging rows as they finish."""
    prompts = select_prompts(
        lake.read("raw/prompts"), per_cell=config.per_cell, max_prompts=config.max_prompts, domains=config.domains
    )
    requests = teacher_requests(prompts, teacher)
    lineage = run_lineage(context, config.round, lake)
    cached, stats = collect_into_lake(context, lake, teacher, requests, lineage, config.batch_size)
    table = lake.read("distill/completions", missing_ok=True)
    mine = table.filter(pl.col("request_id").is_in([r["request_id"] for r in requests])) if table.height else table
    metadata = completion_metadata(teacher, table, mine, requests, cached, stats)
    yield materialization("distill/completions", None, lake, **metadata)
    yield from checks.error_rate_check(mine, requests, stats, teacher.max_error_rate)


class PairsConfig(dg.Config):
    """Filters, judge thresholds and regeneration."""

    round: int | None = round_field()
    regenerate: int | None = Field(
        default=None,
        ge=0,
        description="How many times a prompt whose samples all failed is asked again, with what failed; unset: "
        "1 for a remote teacher, 0 for the local one (its best-of-n samples buy ~4x more rows for the time).",
    )
    min_chars: int = FilterConfig.min_chars
    max_chars: int = FilterConfig.max_chars
    min_tokens: int = FilterConfig.min_tokens
    max_tokens: int = FilterConfig.max_tokens
    near_duplicate_threshold: float = FilterConfig.near_duplicate_threshold
    waive_reasons: list[str] = Field(
        default_factory=list, description="Filter reasons that do not reject (recorded in the metadata)."
    )
    thresholds: dict[str, int] = Field(
        default_factory=lambda: dict(GateConfig().thresholds), description="Minimum judge score per metric (1–5)."
    )
    min_pass_rate: float = Field(default=0.05, ge=0, le=1, description="Asset check floor on the pass rate.")
    batch_size: int = 32

    def filters(self) -> FilterConfig:
        return FilterConfig(
            min_chars=self.min_chars,
            max_chars=self.max_chars,
            min_tokens=self.min_tokens,
            max_tokens=self.max_tokens,
            near_duplicate_threshold=self.near_duplicate_threshold,
            waive=frozenset(self.waive_reasons),
        )

    def gate(self) -> GateConfig:
        unknown = set(self.thresholds) - set(METRICS)
        if unknown:
            raise ValueError(f"unknown metrics in thresholds: {sorted(unknown)}; valid values are {', '.join(METRICS)}")
        return GateConfig(thresholds={**GateConfig().thresholds, **self.thresholds})


@table_asset("distill/pairs", checks.PASS_RATE, deps=["distill/completions"], description=PAIRS_DESCRIPTION)
def distill_pairs(
    context: dg.AssetExecutionContext,
    config: PairsConfig,
    lake: LakeResource,
    teacher: TeacherResource,
    judge: JudgeResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Filter and judge new completions, regenerate rejected ones, and merge the pairs."""
    gate = config.gate()
    judging = Judging(context, lake, teacher, judge, run_lineage(context, config.round, lake), config.filters(), gate)
    regenerate = teacher.regenerations if config.regenerate is None else config.regenerate
    result = judge_pairs(judging, regenerate, config.batch_size)
    metadata = pairs_metadata(result, judge, gate, config.waive_reasons)
    yield materialization("distill/pairs", result.written, lake, **metadata)
    yield checks.pass_rate_check(pass_rate(result.table), config.min_pass_rate)
