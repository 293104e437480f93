"""distill/completions runs: which train prompts the teacher answers, the requests, and collecting into the lake."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg
import polars as pl

from nexa_assets.distill.collect import CollectStats, collect
from nexa_assets.distill.task import teacher_request
from nexa_core.templates import templates
from nexa_assets.metadata import preview
from nexa_resources.journal import Journal, journal_dir, recover_into
from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.llm_client import run_sync
from nexa_resources.tables.distill import COMPLETION_SCHEMA
from nexa_resources.teacher import TeacherResource

NO_PRICE = "unknown (no price for the teacher)"


def select_prompts(
    prompts: pl.DataFrame, *, per_cell: int | None, max_prompts: int | None, domains: Sequence[str] | None
) -> pl.DataFrame:
    """The train prompts of raw/prompts the teacher answers, by id: `per_cell` caps only the built-in ones."""
    prompts = prompts.filter(pl.col("split") == "train").sort("prompt_id")
    if domains:
        prompts = prompts.filter(pl.col("domain").is_in(domains))
    if per_cell is not None:
        # The cap thins the built-in prompts (seed pack, generator); the user's files and the prompts the
        # feedback loop bought (generated for it, or built-in ones it took past the cap) are always answered.
        bought = pl.col("origin").is_in(["feedback", "file"])
        if "bought_for_round" in prompts.columns:
            bought = bought | pl.col("bought_for_round").is_not_null()
        rank = pl.int_range(pl.len()).over("domain", "task_type", bought)
        prompts = prompts.filter(bought | (rank < per_cell))
    return prompts.head(max_prompts) if max_prompts is not None else prompts


def request_for(row: dict[str, Any], teacher: TeacherResource, **extra: Any) -> dict[str, Any]:
    """One teacher request for a prompt row, with the teacher's model, sampling and worked examples."""
    return teacher_request(row, teacher.model_id, teacher.sampling(), worked_examples=teacher.worked_examples, **extra)


def teacher_requests(prompts: pl.DataFrame, teacher: TeacherResource) -> list[dict[str, Any]]:
    """`teacher.samples` requests per prompt (best-of-n), each keyed by its sample index."""
    return [
        request_for(row, teacher, sample_index=i)
        for row in prompts.iter_rows(named=True)
        for i in range(teacher.samples)
    ]


def _answered(lake: LakeResource) -> set[str]:
    answered = lake.read("distill/completions", columns=["request_id", "error"], missing_ok=True)
    return set(answered.filter(pl.col("error").is_null())["request_id"]) if not answered.is_empty() else set()


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
    done = _answered(lake)
    pending = [r for r in requests if r["request_id"] not in done]
    cached = [r for r in requests if r["request_id"] in done]
    context.log.info(
        f"{len(requests)} teacher requests: {len(cached)} already answered (cache), {len(pending)} to send"
    )
    if not pending:
        return cached, CollectStats(total=0)
    merge = _batch_writer(lake, teacher, lineage)
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
                on_row=lambda row: journal.append({name: row.get(name) for name in COMPLETION_SCHEMA}),
                batch_size=batch_size,
                log=context.log.info,
            )
        )
        journal.discard()
    return cached, stats


def _batch_writer(
    lake: LakeResource, teacher: TeacherResource, lineage: Lineage
) -> Callable[[list[dict[str, Any]]], None]:
    """Merge a batch of answers into distill/completions (and a remote teacher's log-probabilities)."""
    store_logprobs = (
        endpoint_logprobs_writer(lake, teacher, lineage) if teacher.top_logprobs and not teacher.is_local else None
    )

    def merge(rows: list[dict[str, Any]]) -> None:
        answers = [{k: v for k, v in r.items() if k != "logprobs"} for r in rows]
        lake.write(
            "distill/completions", pl.DataFrame(answers, schema=COMPLETION_SCHEMA), mode="merge", lineage=lineage
        )
        if store_logprobs is not None:  # after the answers: a crash between loses probabilities, never mixes them
            store_logprobs(rows)

    return merge


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
            new,
            teacher_model=teacher.model_id,
            top_k=teacher.top_logprobs,
            tokenizer=identity,
            name=name,
            lookup=lookup,
        )
        if frame.height:
            lake.write(LOGPROBS_TABLE, frame, mode="append", lineage=lineage)
            stored.update(r["request_id"] for r in new)

    return write


def completion_metadata(
    teacher: TeacherResource,
    table: pl.DataFrame,
    mine: pl.DataFrame,
    requests: Sequence[dict[str, Any]],
    cached: Sequence[dict[str, Any]],
    stats: CollectStats,
) -> dict[str, Any]:
    """What a distill/completions run asked, sent and paid, beside the whole table's cost."""
    total = (
        NO_PRICE
        if table["cost_usd"].null_count()
        else round(float(table["cost_usd"].sum()), 6)
        if table.height
        else 0.0
    )
    return {
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
        "cost_usd_this_run": NO_PRICE if stats.cost_usd is None else round(stats.cost_usd, 6),
        "cost_usd_total": total,
        "wall_s": round(stats.elapsed_s, 1) if stats.total else 0.0,
        "preview": preview(mine, ["prompt_id", "finish_reason", "completion_tokens", "latency_ms", "completion"]),
    }
