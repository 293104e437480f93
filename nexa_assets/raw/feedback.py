"""Turn open feedback requests into targeted prompts: first the lake's own unanswered train prompts of the
cell (seed pack, generator), then new ones from the generator (origin `feedback`, always split `train`).

Built-in train prompts beyond the teacher's per-cell cap (`distill/completions` per_cell) wait in the lake
unanswered; they are written like the eval prompts of their cell, so they are the best data a weak cell
can get. A request takes them from the end of the order the cap reads from the start (prompt_id
descending), so a bought prompt is one the cap left out while the cell holds more than the cap, and marks
them `bought_for_round`; the teacher always answers bought prompts.

The generator's templates share no long word run with the seed pack (tests/test_raw_generator.py), but
a request's hints are the judge's free text and could quote an eval prompt; a candidate that then
shares a word run with a held-out prompt (the rule sft/examples' decontamination applies) is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import polars as pl

from nexa_assets.raw.generator import generate_prompts, vocabulary
from nexa_assets.raw.readers import RawRecord
from nexa_assets.raw.validate import ValidationRules, prompt_id, validate_records
from nexa_assets.sft.package import EvalIndex, SftConfig
from nexa_core.text import content_hash
from nexa_assets.metadata import preview, table_metadata
from nexa_resources.lake import LakeResource, Lineage, WriteResult
from nexa_resources.tables import asset_key
from nexa_resources.tables.raw import PROMPT_SCHEMA

# Origins of prompts the teacher answers only up to its per-cell cap, unless bought.
POOL_ORIGINS = ("seed", "generated")
# Candidates drawn per requested prompt, so prompts already in the lake can be skipped.
_OVERSAMPLE = 4


@dataclass
class Fulfilment:
    prompts: pl.DataFrame  # PROMPT_SCHEMA plus `for_round`: new prompts
    requests: pl.DataFrame  # the requests, now status done with their prompt_ids
    bought: pl.DataFrame  # prompts already in the lake, now with bought_for_round set (same columns as given)
    short: dict[str, int]  # "domain/task_type" → prompts the generator could not make (capacity)


def _seed(for_round: int, domain: str, task_type: str) -> int:
    return int(content_hash("feedback", for_round, domain, task_type)[:8], 16)


def fulfil_requests(
    requests: pl.DataFrame,
    existing: Mapping[str, str],
    *,
    run_id: str,
    rules: ValidationRules | None = None,
    held_out: EvalIndex | None = None,
    stored: pl.DataFrame | None = None,
) -> Fulfilment:
    """Prompts for every open request: unanswered built-in train prompts of the cell from `stored` (the
    raw/prompts table) first, then new ones, never one already in the lake (`existing`: prompt_id → locator)
    nor one that `held_out` (the eval prompts) calls contaminated.

    Each new prompt asks for what the judge found lacking (the request's hints). Deterministic: the same
    open requests over the same lake give the same prompts.
    """
    state = _State(rules or ValidationRules(), held_out, dict(existing), _pool(stored))
    done = [
        _fulfil_one(request, existing, run_id, state)
        for request in requests.filter(pl.col("status") == "open").iter_rows(named=True)
    ]
    return Fulfilment(
        prompts=pl.DataFrame(state.prompts, schema={**PROMPT_SCHEMA, "for_round": pl.Int64()}),
        requests=pl.DataFrame(done, schema=requests.schema) if done else requests.clear(),
        short=state.short,
        bought=pl.concat(state.bought) if state.bought else state.pool.clear(),
    )


@dataclass
class _State:
    """What fulfilling requests one after another has taken so far."""

    rules: ValidationRules
    held_out: EvalIndex | None
    taken: dict[str, str]  # prompt_id → locator of every prompt in the lake or made in this run
    pool: pl.DataFrame
    prompts: list[dict[str, Any]] = field(default_factory=list)
    bought: list[pl.DataFrame] = field(default_factory=list)
    short: dict[str, int] = field(default_factory=dict)


def _fulfil_one(request: dict[str, Any], existing: Mapping[str, str], run_id: str, state: _State) -> dict[str, Any]:
    """Buy and generate the prompts of one open request; returns the request, now done."""
    domain, task_type, want = request["domain"], request["task_type"], int(request["n_prompts"])
    prefix = f"feedback:round={request['for_round']}:{domain}/{task_type}/"
    # Prompts written or bought for this request by an earlier run that stopped before marking it done.
    earlier = sorted(pid for pid, locator in existing.items() if locator.startswith(prefix))
    cell = (pl.col("domain") == domain) & (pl.col("task_type") == task_type)
    earlier += state.pool.filter(cell & (pl.col("bought_for_round") == request["for_round"]))["prompt_id"].to_list()
    want -= len(earlier)
    if want > 0:
        take = state.pool.filter(cell & pl.col("bought_for_round").is_null()).sort("prompt_id", descending=True)
        take = take.head(want).with_columns(pl.lit(request["for_round"], dtype=pl.Int64()).alias("bought_for_round"))
        state.pool = state.pool.update(take.select("prompt_id", "bought_for_round"), on="prompt_id")
        state.bought.append(take)
        earlier += take["prompt_id"].to_list()
        want -= take.height
    good = _generate(request, prefix, len(earlier), max(want, 0), state) if want > 0 else []
    for row in good:
        state.taken[row["prompt_id"]] = row["locator"]
        state.prompts.append({**row, "for_round": request["for_round"]})
    if len(good) < want:
        state.short[f"{domain}/{task_type}"] = want - len(good)
    return {**request, "status": "done", "fulfilled_by": run_id, "prompt_ids": earlier + [r["prompt_id"] for r in good]}


def _generate(request: dict[str, Any], prefix: str, start: int, want: int, state: _State) -> list[dict[str, Any]]:
    """Up to `want` new valid prompts for the request's cell, none taken or contaminated, located after `start`."""
    domain, task_type = request["domain"], request["task_type"]
    candidates = generate_prompts(
        domain,
        task_type,
        min(vocabulary().capacity(domain, task_type), want * _OVERSAMPLE),
        seed=_seed(request["for_round"], domain, task_type),
        hints=request["hints"] or (),
    )
    fresh = [
        c
        for c in candidates
        if prompt_id(domain, task_type, c["instruction"], c["context"]) not in state.taken
        and not (state.held_out is not None and state.held_out.contaminated(c["instruction"], c["context"]))
    ][:want]
    source = f"generator:v{vocabulary().version}"
    records = [
        RawRecord(
            source=source,
            locator=f"{prefix}{start + i}",
            raw=c["instruction"],
            fields={k: v for k, v in c.items() if k != "locator"},
        )
        for i, c in enumerate(fresh)
    ]
    good, _ = validate_records(records, origin="feedback", rules=state.rules, existing=state.taken, seen={})
    return good


def _pool(stored: pl.DataFrame | None) -> pl.DataFrame:
    """The built-in train prompts a request may buy (bought or not yet), with a bought_for_round column."""
    if stored is None or stored.is_empty():
        return pl.DataFrame(schema={**PROMPT_SCHEMA, "bought_for_round": pl.Int64()})
    if "bought_for_round" not in stored.columns:
        stored = stored.with_columns(pl.lit(None, dtype=pl.Int64()).alias("bought_for_round"))
    return stored.filter((pl.col("split") == "train") & pl.col("origin").is_in(POOL_ORIGINS))


def fulfil_into_lake(
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
    held_out = EvalIndex.build(eval_rows, SftConfig.contamination_ngram)
    fed = fulfil_requests(
        requests, known, run_id=context.run.run_id, rules=rules, held_out=held_out, stored=stored if from_pool else None
    )
    for (for_round,), bought in fed.bought.partition_by("bought_for_round", as_dict=True).items():
        lineage = Lineage.from_context(context, int(for_round))
        lake.write(
            "raw/prompts", bought.select(*PROMPT_SCHEMA), mode="merge", lineage=lineage,
            update_if_changed=("bought_for_round",),
        )
    for (for_round,), prompts in fed.prompts.partition_by("for_round", as_dict=True).items():
        lineage = Lineage.from_context(context, int(for_round))
        lake.write("raw/prompts", prompts.drop("for_round"), mode="merge", lineage=lineage, update_matched=False)
    # The request rows keep their own lineage (the round that found the weakness); fulfilled_by says who did it.
    written = lake.write("feedback/requests", fed.requests, mode="merge")
    _record_fulfilment(context, lake, written, fed)
    _log_fulfilment(context, fed)
    return fed


def _record_fulfilment(
    context: dg.AssetExecutionContext, lake: LakeResource, written: WriteResult, fed: Fulfilment
) -> None:
    """feedback/requests belongs to feedback_loop (declaring it here would close a cycle in the asset graph), so
    this run's write to it is recorded in its history as a materialization by this run."""
    context.log_event(
        dg.AssetMaterialization(
            asset_key=asset_key("feedback/requests"),
            description=f"{fed.requests.height} open requests fulfilled by raw/prompts (run {context.run.run_id})",
            metadata=table_metadata(
                lake,
                "feedback/requests",
                written,
                {"fulfilled": fed.requests.height,
                 "preview": preview(fed.requests, ["round", "domain", "task_type", "status", "fulfilled_by"])},
            ),
        )
    )


def _log_fulfilment(context: dg.AssetExecutionContext, fed: Fulfilment) -> None:
    cells = ", ".join(f"{r['domain']}/{r['task_type']} ×{len(r['prompt_ids'])}" for r in fed.requests.iter_rows(named=True))
    context.log.info(
        f"feedback: {fed.bought.height} unanswered train prompts bought and {fed.prompts.height} generated for "
        f"{fed.requests.height} requests ({cells})"
    )
    for cell, missing in fed.short.items():
        context.log.warning(f"feedback: the generator has no more distinct prompts for {cell} ({missing} short)")
