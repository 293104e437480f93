"""distill/completions and distill/pairs: teacher answers that never pay twice, filtered and judged."""

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dagster as dg
import polars as pl
from pydantic import Field

from nexa_assets.distill.collect import CollectStats, collect
from nexa_assets.distill.filters import FilterConfig
from nexa_assets.distill.pairs import GateConfig, evaluate_pairs, mark_chosen
from nexa_assets.distill.task import (
    OUTPUT_COLUMNS,
    format_messages,
    format_regeneration,
    teacher_request,
    templates,
)
from nexa_assets.metadata import counts, preview
from nexa_assets.rounds import resolve_round, round_field
from nexa_resources.journal import Journal, journal_dir, recover_into
from nexa_resources.judge import JudgeCache, JudgeResource
from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.llm_client import run_sync
from nexa_resources.tables import asset_key
from nexa_resources.tables.distill import COMPLETION_SCHEMA, METRICS, PAIR_SCHEMA
from nexa_resources.teacher import TeacherResource

COMPLETIONS = asset_key("distill/completions")
PAIRS = asset_key("distill/pairs")
PROMPTS = asset_key("raw/prompts")

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


def collect_into_lake(
    context: dg.AssetExecutionContext,
    lake: LakeResource,
    teacher: TeacherResource,
    requests: Sequence[dict[str, Any]],
    lineage: Lineage,
    batch_size: int,
) -> tuple[list[dict[str, Any]], CollectStats]:
    """Send the requests not answered yet; merge rows as they finish. Returns (cached ids, stats).

    Each answer is journaled as it arrives; answers a killed run journaled are merged first, so a
    re-run sends only what was in flight when it died.
    """
    recovered = recover_into(lake, "distill/completions", COMPLETION_SCHEMA)
    if recovered:
        context.log.info(f"recovered {recovered} teacher answers that an interrupted run had received")
    answered = lake.read("distill/completions", columns=["request_id", "error"], missing_ok=True)
    done = set(answered.filter(pl.col("error").is_null())["request_id"]) if not answered.is_empty() else set()
    pending = [r for r in requests if r["request_id"] not in done]
    cached = [r for r in requests if r["request_id"] in done]
    context.log.info(
        f"{len(requests)} teacher requests: {len(cached)} already answered (cache), {len(pending)} to send"
    )
    if not pending:
        return cached, CollectStats(total=0)

    store_logprobs = (
        endpoint_logprobs_writer(lake, teacher, lineage) if teacher.top_logprobs and not teacher.is_local else None
    )

    def merge(rows: list[dict[str, Any]]) -> None:
        answers = [{k: v for k, v in r.items() if k != "logprobs"} for r in rows]
        lake.write("distill/completions", _completion_frame(answers), mode="merge", lineage=lineage)
        if store_logprobs is not None:  # after the answers: a crash between loses probabilities, never mixes them
            store_logprobs(rows)

    def journal_row(row: dict[str, Any]) -> None:
        journal.append({name: row.get(name) for name in COMPLETION_SCHEMA})

    client = teacher.client(context.log)
    with Journal.open(journal_dir(lake, "distill/completions"), lineage) as journal:
        stats = run_sync(
            lambda: collect(
                pending,
                client,
                teacher.sampling(),
                model_id=teacher.model_id,
                price=teacher.price(),
                on_batch=merge,
                on_row=journal_row,
                batch_size=batch_size,
                log=context.log.info,
            )
        )
        journal.discard()
    return cached, stats


def endpoint_logprobs_writer(
    lake: LakeResource, teacher: TeacherResource, lineage: Lineage
) -> Callable[[list[dict[str, Any]]], None]:
    """Append the top-k log-probabilities a remote teacher returned with its answers to distill/logprobs, skipping
    requests the table already holds (an append, not a merge: a merge on (request_id, position) costs more than
    the teacher call at hundreds of rows per answer)."""
    from nexa_assets.distill.logprobs import LOGPROBS_TABLE, endpoint_rows, token_lookup, tokenizer_identity

    held = lake.read(LOGPROBS_TABLE, columns=["request_id"], missing_ok=True)
    stored = set(held["request_id"].unique()) if held.height else set()
    identity, name, lookup = f"endpoint:{teacher.model_id}", teacher.model_id, None
    if teacher.logprobs_tokenizer:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(teacher.logprobs_tokenizer)
        identity, name, lookup = tokenizer_identity(tokenizer), teacher.logprobs_tokenizer, token_lookup(tokenizer)

    def write(rows: list[dict[str, Any]]) -> None:
        new = [r for r in rows if r["request_id"] not in stored]
        frame = endpoint_rows(
            new, teacher_model=teacher.model_id, top_k=teacher.top_logprobs, tokenizer=identity, name=name,
            lookup=lookup,
        )
        if frame.height:
            lake.write(LOGPROBS_TABLE, frame, mode="append", lineage=lineage)
            stored.update(r["request_id"] for r in new)

    return write


def _completion_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=COMPLETION_SCHEMA)


def teacher_requests(prompts: pl.DataFrame, teacher: TeacherResource) -> list[dict[str, Any]]:
    """`teacher.samples` requests per prompt (best-of-n), each keyed by its sample index."""
    return [
        teacher_request(
            row, teacher.model_id, teacher.sampling(), sample_index=i, worked_examples=teacher.worked_examples
        )
        for row in prompts.iter_rows(named=True)
        for i in range(teacher.samples)
    ]


@dg.asset(
    key=COMPLETIONS,
    deps=[PROMPTS],
    group_name="distill",
    kinds={"openai", "deltalake"},
    description="Teacher completions for the train prompts, keyed by request_id = hash(prompt, model, "
    "template version, sampling); an answered request is never sent again.",
    check_specs=[dg.AssetCheckSpec("error_rate", asset=COMPLETIONS, description="Failed requests under the limit.")],
)
def distill_completions(
    context: dg.AssetExecutionContext, config: CompletionsConfig, lake: LakeResource, teacher: TeacherResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Collect teacher answers for every train prompt not answered yet, merging rows as they finish."""
    prompts = lake.read("raw/prompts").filter(pl.col("split") == "train").sort("prompt_id")
    if config.domains:
        prompts = prompts.filter(pl.col("domain").is_in(config.domains))
    if config.per_cell is not None:
        # The cap thins the built-in prompts (seed pack, generator); the user's files and the prompts the
        # feedback loop bought (generated for it, or built-in ones it took past the cap) are always answered.
        bought = pl.col("origin").is_in(["feedback", "file"])
        if "bought_for_round" in prompts.columns:
            bought = bought | pl.col("bought_for_round").is_not_null()
        rank = pl.int_range(pl.len()).over("domain", "task_type", bought)
        prompts = prompts.filter(bought | (rank < config.per_cell))
    if config.max_prompts is not None:
        prompts = prompts.head(config.max_prompts)
    requests = teacher_requests(prompts, teacher)
    lineage = Lineage.from_context(context, resolve_round(context, config.round, lake))
    cached, stats = collect_into_lake(context, lake, teacher, requests, lineage, config.batch_size)

    table = lake.read("distill/completions", missing_ok=True)
    mine = table.filter(pl.col("request_id").is_in([r["request_id"] for r in requests])) if table.height else table
    version = lake.version("distill/completions")
    yield dg.MaterializeResult(
        asset_key=COMPLETIONS,
        metadata={
            "delta_version": version,
            "dagster/row_count": table.height,
            "teacher": dg.MetadataValue.json(teacher.describe()),
            "template_version": templates().version,
            "requests": len(requests),
            "requests_cached": len(cached),
            "requests_sent": stats.done,
            "errors": stats.errors,
            "error_kinds": dg.MetadataValue.json(dict(stats.error_kinds)),
            "requests_per_s": round(stats.requests_per_s, 2),
            "prompt_tokens_sent": stats.prompt_tokens,
            "completion_tokens_sent": stats.completion_tokens,
            "cost_usd_this_run": "unknown (no price for the teacher)" if stats.cost_usd is None else round(stats.cost_usd, 6),
            "cost_usd_total": (
                "unknown (no price for the teacher)" if table["cost_usd"].null_count()
                else round(float(table["cost_usd"].sum()), 6) if table.height else 0.0
            ),
            "wall_s": round(stats.elapsed_s, 1) if stats.total else 0.0,
            "preview": preview(mine, ["prompt_id", "finish_reason", "completion_tokens", "latency_ms", "completion"]),
        },
    )
    # Judged on the table, not on this run: a re-run that retries 4 failed rows of 64 and fails 1 again
    # leaves 1 error in 64, whatever share of the 4 sent it was.
    failed = int(mine["error"].is_not_null().sum()) if mine.height else 0
    error_rate = failed / len(requests) if requests else 0.0
    passed = error_rate <= teacher.max_error_rate
    yield dg.AssetCheckResult(
        asset_key=COMPLETIONS,
        check_name="error_rate",
        passed=passed,
        metadata={
            "error_rate": round(error_rate, 4),
            "limit": teacher.max_error_rate,
            "requests": len(requests),
            "failed_in_table": failed,
            "sent_this_run": stats.done,
            "failed_this_run": stats.errors,
        },
    )
    if not passed:
        top = ", ".join(f"{k} ×{n}" for k, n in stats.error_kinds.most_common(3)) or "see the error column"
        raise dg.Failure(
            f"{failed} of {len(requests)} teacher requests hold an error in distill/completions ({error_rate:.0%} > "
            f"limit {teacher.max_error_rate:.0%}); this run sent {stats.done}, {stats.errors} failed: {top}. "
            "Their rows are recorded with the error; re-run to retry them.",
        )


class PairsConfig(dg.Config):
    """Filters, judge thresholds and regeneration."""

    round: int | None = round_field()
    regenerate: int | None = Field(
        default=None,
        ge=0,
        description="How many times a prompt whose samples all failed is asked again, with what failed; unset: "
        "1 for a remote teacher, 0 for the local one (its best-of-n samples buy ~4x more rows for the time).",
    )
    min_chars: int = 150
    max_chars: int = 6000
    min_tokens: int = 30
    max_tokens: int = 1500
    near_duplicate_threshold: float = 0.85
    waive_reasons: list[str] = Field(
        default_factory=list, description="Filter reasons that do not reject (recorded in the metadata)."
    )
    thresholds: dict[str, int] = Field(
        default_factory=lambda: {m: 3 for m in METRICS}, description="Minimum judge score per metric (1–5)."
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
        return GateConfig(thresholds={**{m: 3 for m in METRICS}, **self.thresholds})


def _joined_completions(lake: LakeResource, request_ids: set[str] | None = None) -> pl.DataFrame:
    completions = lake.read("distill/completions").filter(pl.col("error").is_null())
    if request_ids is not None:
        completions = completions.filter(pl.col("request_id").is_in(list(request_ids)))
    prompts = lake.read("raw/prompts", columns=["prompt_id", "domain", "task_type", "instruction", "context"])
    return completions.join(prompts, on="prompt_id", how="inner")


@dg.asset(
    key=PAIRS,
    deps=[COMPLETIONS],
    group_name="distill",
    kinds={"polars", "deltalake"},
    description="Every completion (each best-of-n sample) filtered (with all its reasons) and judged on the "
    "rubric; per prompt the passing sample with the best judge mean is `chosen`; a prompt none of whose samples "
    "passed is asked again with what failed, linked by regenerated_from.",
    check_specs=[dg.AssetCheckSpec("pass_rate", asset=PAIRS, description="Pass rate above the floor.")],
)
def distill_pairs(
    context: dg.AssetExecutionContext,
    config: PairsConfig,
    lake: LakeResource,
    teacher: TeacherResource,
    judge: JudgeResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Filter and judge new completions, regenerate rejected ones, and merge the pairs."""
    lineage = Lineage.from_context(context, resolve_round(context, config.round, lake))
    filters, gate = config.filters(), config.gate()
    existing = lake.read("distill/pairs", missing_ok=True)
    judged = set(existing["request_id"]) if existing.height else set()

    def judge_new(rows: pl.DataFrame, known: pl.DataFrame) -> pl.DataFrame:
        anchors = (
            _joined_completions(lake, set(known.filter(pl.col("passed"))["request_id"])).to_dicts()
            if known.height
            else []
        )
        return evaluate_pairs(
            rows.to_dicts(),
            filters=filters,
            gate=gate,
            judge=lambda items, corpus: judge.judge_many(items, context.log, corpus, cache=JudgeCache(lake, lineage)),
            judge_model=judge.judge_model,
            rubric_version=judge.rubric_version,
            anchors=anchors,
        )

    candidates = _joined_completions(lake)
    fresh = candidates.filter(~pl.col("request_id").is_in(list(judged)))
    context.log.info(f"{fresh.height} new completions to filter and judge ({len(judged)} judged before)")
    new_pairs = judge_new(fresh, existing)
    written = lake.write("distill/pairs", new_pairs, mode="merge", lineage=lineage)
    regenerated, regenerated_pairs = 0, []

    regenerate = teacher.regenerations if config.regenerate is None else config.regenerate
    for depth in range(1, regenerate + 1):
        pairs = lake.read("distill/pairs")
        parents = _regeneration_parents(pairs, depth)
        if parents.is_empty():
            break
        requests = _regeneration_requests(lake, parents, teacher)
        context.log.info(f"regeneration round {depth}: asking again for {len(requests)} rejected pairs")
        collect_into_lake(context, lake, teacher, requests, lineage, config.batch_size)
        ids = {r["request_id"] for r in requests}
        rows = _joined_completions(lake, ids - set(pairs["request_id"]))
        new = judge_new(rows, pairs)
        regenerated += new.height
        regenerated_pairs.append(new)
        written = lake.write("distill/pairs", new, mode="merge", lineage=lineage)

    table = lake.read("distill/pairs")
    table = _with_pair_columns(table)
    marked = mark_chosen(table)
    changed = marked.join(table.select("request_id", pl.col("chosen").alias("_was")), on="request_id").filter(
        pl.col("chosen").ne_missing(pl.col("_was"))
    )
    if changed.height:
        written = lake.write("distill/pairs", changed.drop("_was").select(list(PAIR_SCHEMA)), mode="merge", lineage=lineage)
        table = lake.read("distill/pairs")
    this_run = pl.concat([new_pairs, *regenerated_pairs]) if regenerated_pairs else new_pairs
    reasons = table.select(pl.col("reject_reasons").explode().alias("reason")).drop_nulls()
    pass_rate = float(table["passed"].mean()) if table.height else 0.0
    yield dg.MaterializeResult(
        asset_key=PAIRS,
        metadata={
            **written.metadata(),
            "dagster/row_count": table.height,
            "judged_this_run": new_pairs.height + regenerated,
            "regenerated_this_run": regenerated,
            "passed": int(table["passed"].sum()),
            "chosen": int(table["chosen"].sum()),
            "prompts_without_a_passing_sample": table.filter(~pl.col("prompt_id").is_in(
                table.filter(pl.col("passed"))["prompt_id"].implode()))["prompt_id"].n_unique(),
            "pass_rate": round(pass_rate, 4),
            "judge_model": judge.judge_model,
            "rubric_version": judge.rubric_version,
            **judge_spend(this_run),
            "waived_reasons": dg.MetadataValue.json(sorted(config.waive_reasons)),
            "thresholds": dg.MetadataValue.json(gate.thresholds),
            "reject_reasons": counts(reasons, ["reason"]),
            "pass_by_cell": counts(table.filter(pl.col("passed")), ["domain", "task_type"]),
            "preview": preview(
                table, ["request_id", "sample_index", "passed", "chosen", "reject_reasons", "judge_mean", "regenerated_from"]
            ),
        },
    )
    yield dg.AssetCheckResult(
        asset_key=PAIRS,
        check_name="pass_rate",
        passed=pass_rate >= config.min_pass_rate,
        metadata={"pass_rate": round(pass_rate, 4), "floor": config.min_pass_rate},
    )


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


def _regeneration_parents(pairs: pl.DataFrame, depth: int) -> pl.DataFrame:
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


def _regeneration_requests(lake: LakeResource, parents: pl.DataFrame, teacher: TeacherResource) -> list[dict[str, Any]]:
    """Ask again with the original prompt and what failed, keyed by the rejected request it replaces."""
    rows = _joined_completions(lake, set(parents["request_id"]))
    reasons = dict(zip(parents["request_id"], parents["reject_reasons"]))
    out = []
    for row in rows.iter_rows(named=True):
        _, original = format_messages(row)
        out.append(
            teacher_request(
                row,
                teacher.model_id,
                teacher.sampling(),
                worked_examples=teacher.worked_examples,
                user_prompt=format_regeneration(original, reasons[row["request_id"]]),
                regenerated_from=row["request_id"],
            )
        )
    return out
