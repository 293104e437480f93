"""distill/pairs runs: judge new completions, ask again for prompts none of whose samples passed, mark the chosen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dagster as dg
import polars as pl

from nexa_assets.distill.completions import collect_into_lake, request_for
from nexa_core.filters import FilterConfig
from nexa_assets.distill.pairs import GateConfig, evaluate_pairs, mark_chosen
from nexa_assets.distill.task import format_messages, format_regeneration
from nexa_assets.metadata import counts, preview
from nexa_resources.judge import JudgeCache, JudgeResource
from nexa_resources.lake import LakeResource, Lineage, WriteResult
from nexa_resources.tables.distill import PAIR_SCHEMA
from nexa_resources.teacher import TeacherResource

PREVIEW_COLUMNS = ["request_id", "sample_index", "passed", "chosen", "reject_reasons", "judge_mean", "regenerated_from"]


@dataclass(frozen=True)
class PairsRun:
    """What one distill/pairs run judged and wrote; `table` is distill/pairs after it."""

    table: pl.DataFrame
    written: WriteResult
    this_run: pl.DataFrame
    regenerated: int


@dataclass(frozen=True)
class Judging:
    """Everything a pairs run judges with: filters, gate, judge, teacher and the lineage of its writes."""

    context: dg.AssetExecutionContext
    lake: LakeResource
    teacher: TeacherResource
    judge: JudgeResource
    lineage: Lineage
    filters: FilterConfig
    gate: GateConfig

    def evaluate(self, rows: pl.DataFrame, known: pl.DataFrame) -> pl.DataFrame:
        """Filter and judge `rows`; the passing pairs in `known` anchor the near-duplicate filter."""
        passed = set(known.filter(pl.col("passed"))["request_id"]) if known.height else None
        anchors = joined_completions(self.lake, passed).to_dicts() if passed is not None else []
        return evaluate_pairs(
            rows.to_dicts(),
            filters=self.filters,
            gate=self.gate,
            judge=lambda items, corpus: self.judge.judge_many(
                items, self.context.log, corpus, cache=JudgeCache(self.lake, self.lineage)
            ),
            judge_model=self.judge.judge_model,
            rubric_version=self.judge.rubric_version,
            anchors=anchors,
        )

    def write(self, pairs: pl.DataFrame) -> WriteResult:
        return self.lake.write("distill/pairs", pairs, mode="merge", lineage=self.lineage)


def judge_pairs(run: Judging, regenerate: int, batch_size: int) -> PairsRun:
    """Judge the completions not judged yet, regenerate up to `regenerate` times, then mark the chosen samples."""
    existing = run.lake.read("distill/pairs", missing_ok=True)
    judged = set(existing["request_id"]) if existing.height else set()
    fresh = joined_completions(run.lake).filter(~pl.col("request_id").is_in(list(judged)))
    run.context.log.info(f"{fresh.height} new completions to filter and judge ({len(judged)} judged before)")
    new_pairs = run.evaluate(fresh, existing)
    written = run.write(new_pairs)
    regenerated: list[pl.DataFrame] = []
    for depth in range(1, regenerate + 1):
        pairs = run.lake.read("distill/pairs")
        parents = regeneration_parents(pairs, depth)
        if parents.is_empty():
            break
        requests = regeneration_requests(run.lake, parents, run.teacher)
        run.context.log.info(f"regeneration round {depth}: asking again for {len(requests)} rejected pairs")
        collect_into_lake(run.context, run.lake, run.teacher, requests, run.lineage, batch_size)
        ids = {r["request_id"] for r in requests}
        new = run.evaluate(joined_completions(run.lake, ids - set(pairs["request_id"])), pairs)
        regenerated.append(new)
        written = run.write(new)
    table = _with_pair_columns(run.lake.read("distill/pairs"))
    marked = mark_chosen(table)
    changed = marked.join(table.select("request_id", pl.col("chosen").alias("_was")), on="request_id").filter(
        pl.col("chosen").ne_missing(pl.col("_was"))
    )
    if changed.height:
        written = run.write(changed.drop("_was").select(list(PAIR_SCHEMA)))
        table = run.lake.read("distill/pairs")
    this_run = pl.concat([new_pairs, *regenerated]) if regenerated else new_pairs
    return PairsRun(table, written, this_run, sum(r.height for r in regenerated))


def pairs_metadata(result: PairsRun, judge: JudgeResource, gate: GateConfig, waived: list[str]) -> dict[str, Any]:
    """What a distill/pairs run judged, and the table's pass and rejection counts."""
    table = result.table
    reasons = table.select(pl.col("reject_reasons").explode().alias("reason")).drop_nulls()
    served = table.filter(pl.col("passed"))["prompt_id"].implode()
    return {
        "judged_this_run": result.this_run.height,
        "regenerated_this_run": result.regenerated,
        "passed": int(table["passed"].sum()),
        "chosen": int(table["chosen"].sum()),
        "prompts_without_a_passing_sample": table.filter(~pl.col("prompt_id").is_in(served))["prompt_id"].n_unique(),
        "pass_rate": round(pass_rate(table), 4),
        "judge_model": judge.judge_model,
        "rubric_version": judge.rubric_version,
        **judge_spend(result.this_run),
        "waived_reasons": dg.MetadataValue.json(sorted(waived)),
        "thresholds": dg.MetadataValue.json(gate.thresholds),
        "reject_reasons": counts(reasons, ["reason"]),
        "pass_by_cell": counts(table.filter(pl.col("passed")), ["domain", "task_type"]),
        "preview": preview(table, PREVIEW_COLUMNS),
    }


def pass_rate(table: pl.DataFrame) -> float:
    return float(table["passed"].mean()) if table.height else 0.0


def joined_completions(lake: LakeResource, request_ids: set[str] | None = None) -> pl.DataFrame:
    """The answered completions (all, or these ids) joined with their prompts' cell, instruction and context."""
    completions = lake.read("distill/completions").filter(pl.col("error").is_null())
    if request_ids is not None:
        completions = completions.filter(pl.col("request_id").is_in(list(request_ids)))
    prompts = lake.read("raw/prompts", columns=["prompt_id", "domain", "task_type", "instruction", "context"])
    return completions.join(prompts, on="prompt_id", how="inner")


def _with_pair_columns(table: pl.DataFrame) -> pl.DataFrame:
    """A pairs table with the columns an older one lacks (best-of-n, judge costs) added: sample 0, nulls."""
    missing = [
        pl.lit(0 if name == "sample_index" else None, dtype).alias(name)
        for name, dtype in PAIR_SCHEMA.items()
        if name not in table.columns
    ]
    return table.with_columns(missing) if missing else table


def judge_spend(pairs: pl.DataFrame) -> dict[str, Any]:
    """Metadata: judge requests paid, tokens and $ ("unknown" when a paid verdict has no price) for these rows."""
    paid = pairs.filter(pl.col("judge_prompt_tokens") > 0)
    unknown = paid["judge_cost_usd"].null_count() > 0
    return {
        "judge_requests_paid": paid.height,
        "judge_tokens": int(paid["judge_prompt_tokens"].sum() + paid["judge_completion_tokens"].sum()),
        "judge_cost_usd": "unknown" if unknown else round(float(paid["judge_cost_usd"].sum()), 6),
    }


def _chain_depth(pairs: pl.DataFrame) -> dict[str, int]:
    parent = dict(zip(pairs["request_id"], pairs["regenerated_from"]))
    depth: dict[str, int] = {}
    for rid in parent:
        d, node = 0, rid
        while parent.get(node) is not None and d < 100:
            node, d = parent[node], d + 1
        depth[rid] = d
    return depth


def regeneration_parents(pairs: pl.DataFrame, depth: int) -> pl.DataFrame:
    """For each prompt none of whose candidates passed: its best rejected pair at chain depth `depth - 1`
    that has not been regenerated yet (one request per prompt, never one per rejected sample)."""
    depths = _chain_depth(pairs)
    children = set(pairs["regenerated_from"].drop_nulls())
    served = set(pairs.filter(pl.col("passed"))["prompt_id"])
    return (
        pairs.filter(
            ~pl.col("passed")
            & ~pl.col("prompt_id").is_in(list(served))
            & pl.col("request_id").map_elements(lambda r: depths.get(r, 0) == depth - 1, return_dtype=pl.Boolean)
            & ~pl.col("request_id").is_in(list(children))
        )
        .sort(["prompt_id", "judge_mean", "request_id"], descending=[False, True, False], nulls_last=True)
        .unique(subset=["prompt_id"], keep="first", maintain_order=True)
    )


def regeneration_requests(lake: LakeResource, parents: pl.DataFrame, teacher: TeacherResource) -> list[dict[str, Any]]:
    """Ask again with the original prompt and what failed, keyed by the rejected request it replaces."""
    rows = joined_completions(lake, set(parents["request_id"]))
    reasons = dict(zip(parents["request_id"], parents["reject_reasons"]))
    out = []
    for row in rows.iter_rows(named=True):
        _, original = format_messages(row)
        user_prompt = format_regeneration(original, reasons[row["request_id"]])
        out.append(request_for(row, teacher, user_prompt=user_prompt, regenerated_from=row["request_id"]))
    return out
