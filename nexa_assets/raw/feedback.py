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
from dataclasses import dataclass
from typing import Any

import polars as pl

from nexa_assets.raw.generator import generate_prompts, vocabulary
from nexa_assets.raw.readers import RawRecord
from nexa_assets.raw.validate import ValidationRules, prompt_id, validate_records
from nexa_assets.sft.package import EvalIndex
from nexa_assets.text import content_hash
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
    rules = rules or ValidationRules()
    source = f"generator:v{vocabulary().version}"
    taken: dict[str, str] = dict(existing)
    prompts: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []
    short: dict[str, int] = {}
    pool = _pool(stored)
    bought: list[pl.DataFrame] = []
    for request in requests.filter(pl.col("status") == "open").iter_rows(named=True):
        domain, task_type, want = request["domain"], request["task_type"], int(request["n_prompts"])
        prefix = f"feedback:round={request['for_round']}:{domain}/{task_type}/"
        # Prompts written or bought for this request by an earlier run that stopped before marking it done.
        earlier = sorted(pid for pid, locator in existing.items() if locator.startswith(prefix))
        cell = (pl.col("domain") == domain) & (pl.col("task_type") == task_type)
        earlier += pool.filter(cell & (pl.col("bought_for_round") == request["for_round"]))["prompt_id"].to_list()
        want -= len(earlier)
        if want > 0:
            take = pool.filter(cell & pl.col("bought_for_round").is_null()).sort("prompt_id", descending=True).head(want)
            take = take.with_columns(pl.lit(request["for_round"], dtype=pl.Int64()).alias("bought_for_round"))
            pool = pool.update(take.select("prompt_id", "bought_for_round"), on="prompt_id")
            bought.append(take)
            earlier += take["prompt_id"].to_list()
            want -= take.height
        capacity = vocabulary().capacity(domain, task_type)
        candidates = generate_prompts(
            domain,
            task_type,
            min(capacity, max(want, 0) * _OVERSAMPLE),
            seed=_seed(request["for_round"], domain, task_type),
            hints=request["hints"] or (),
        )
        fresh = [] if want <= 0 else [
            c
            for c in candidates
            if prompt_id(domain, task_type, c["instruction"], c["context"]) not in taken
            and not (held_out is not None and held_out.contaminated(c["instruction"], c["context"]))
        ][:want]
        records = [
            RawRecord(
                source=source,
                locator=f"{prefix}{len(earlier) + i}",
                raw=c["instruction"],
                fields={k: v for k, v in c.items() if k != "locator"},
            )
            for i, c in enumerate(fresh)
        ]
        good, _ = validate_records(records, origin="feedback", rules=rules, existing=taken, seen={})
        for row in good:
            taken[row["prompt_id"]] = row["locator"]
            prompts.append({**row, "for_round": request["for_round"]})
        if len(good) < want:
            short[f"{domain}/{task_type}"] = want - len(good)
        done.append({**request, "status": "done", "fulfilled_by": run_id, "prompt_ids": earlier + [r["prompt_id"] for r in good]})
    schema = {**PROMPT_SCHEMA, "for_round": pl.Int64()}
    return Fulfilment(
        prompts=pl.DataFrame(prompts, schema=schema),
        requests=pl.DataFrame(done, schema=requests.schema) if done else requests.clear(),
        short=short,
        bought=pl.concat(bought) if bought else pool.clear(),
    )


def _pool(stored: pl.DataFrame | None) -> pl.DataFrame:
    """The built-in train prompts a request may buy (bought or not yet), with a bought_for_round column."""
    if stored is None or stored.is_empty():
        return pl.DataFrame(schema={**PROMPT_SCHEMA, "bought_for_round": pl.Int64()})
    if "bought_for_round" not in stored.columns:
        stored = stored.with_columns(pl.lit(None, dtype=pl.Int64()).alias("bought_for_round"))
    return stored.filter((pl.col("split") == "train") & pl.col("origin").is_in(POOL_ORIGINS))
