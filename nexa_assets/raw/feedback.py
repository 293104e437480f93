"""Turn open feedback requests into new, targeted prompts (origin `feedback`, always split `train`).

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
from nexa_assets.raw.ingest import PROMPT_SCHEMA
from nexa_assets.raw.readers import RawRecord
from nexa_assets.raw.validate import ValidationRules, prompt_id, validate_records
from nexa_assets.sft.package import EvalIndex
from nexa_assets.text import content_hash

# Candidates drawn per requested prompt, so prompts already in the lake can be skipped.
_OVERSAMPLE = 4


@dataclass
class Fulfilment:
    prompts: pl.DataFrame  # PROMPT_SCHEMA plus `for_round`
    requests: pl.DataFrame  # the requests, now status done with their prompt_ids
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
) -> Fulfilment:
    """New prompts for every open request, never one already in the lake (`existing`: prompt_id → locator)
    nor one that `held_out` (the eval prompts) calls contaminated.

    Each prompt asks for what the judge found lacking (the request's hints). Deterministic: the same
    open requests over the same lake give the same prompts.
    """
    rules = rules or ValidationRules()
    source = f"generator:v{vocabulary().version}"
    taken: dict[str, str] = dict(existing)
    prompts: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []
    short: dict[str, int] = {}
    for request in requests.filter(pl.col("status") == "open").iter_rows(named=True):
        domain, task_type, want = request["domain"], request["task_type"], int(request["n_prompts"])
        prefix = f"feedback:round={request['for_round']}:{domain}/{task_type}/"
        # Prompts written for this request by an earlier run that stopped before marking it done.
        earlier = sorted(pid for pid, locator in existing.items() if locator.startswith(prefix))
        want -= len(earlier)
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
    )
