"""Package passing pairs as TRL-ready chat rows: split, dedupe, and decontaminate against eval prompts."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from nexa_core.filters import near_duplicate_indices
from nexa_assets.distill.task import format_messages
from nexa_core.text import content_hash, hash_fraction, normalize
from nexa_resources.tables.sft import EXAMPLE_SCHEMA


@dataclass(frozen=True)
class SftConfig:
    val_fraction: float = 0.1
    # A shared run of this many words with an eval prompt counts as contamination.
    contamination_ngram: int = 12
    near_duplicate_threshold: float = 0.85


_WORD = re.compile(r"\w+")


def _words(text: str | None) -> list[str]:
    """Normalized words without punctuation, so "week?" and "week," both read as "week"."""
    return _WORD.findall(normalize(text))


def ngrams(text: str | None, n: int) -> set[tuple[str, ...]]:
    words = _words(text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass(frozen=True)
class EvalIndex:
    """What an eval prompt looks like, for decontamination: normalized instructions and long n-grams."""

    instructions: frozenset[str]
    grams: frozenset[tuple[str, ...]]
    n: int

    @classmethod
    def build(cls, eval_prompts: Iterable[dict[str, Any]], n: int) -> EvalIndex:
        instructions, grams = set(), set()
        for row in eval_prompts:
            instructions.add(" ".join(_words(row["instruction"])))
            grams |= ngrams(row["instruction"], n)
            grams |= ngrams(row.get("context"), n)
        return cls(frozenset(instructions), frozenset(grams), n)

    def contaminated(self, instruction: str, *texts: str | None) -> str | None:
        """Why a training row overlaps an eval prompt, or None."""
        if " ".join(_words(instruction)) in self.instructions:
            return "instruction equals an eval prompt"
        for text in (instruction, *texts):
            if ngrams(text, self.n) & self.grams:
                return f"shares a {self.n}-word run with an eval prompt"
        return None


def build_examples(
    candidates: pl.DataFrame, eval_prompts: Sequence[dict[str, Any]], config: SftConfig
) -> tuple[pl.DataFrame, dict[str, int]]:
    """One example per prompt from passing pairs (best judge mean first), with the drop counts.

    `candidates` holds passing pairs joined with their completion and raw prompt: request_id,
    prompt_id, domain, task_type, instruction, context, completion, judge_mean.
    """
    stats = {"candidates": candidates.height, "exact_duplicates": 0, "near_duplicates": 0, "contaminated": 0}
    if candidates.is_empty():
        return pl.DataFrame(schema=EXAMPLE_SCHEMA), stats
    best = (
        candidates.sort(["prompt_id", "judge_mean", "request_id"], descending=[False, True, False], nulls_last=True)
        .unique(subset=["prompt_id"], keep="first", maintain_order=True)
        .with_columns(pl.col("completion").map_elements(normalize, return_dtype=pl.String).alias("_norm"))
    )
    deduped = best.unique(subset=["_norm"], keep="first", maintain_order=True)
    stats["exact_duplicates"] = best.height - deduped.height
    near = near_duplicate_indices(deduped["completion"].to_list(), config.near_duplicate_threshold)
    if near:
        deduped = deduped.with_row_index("_i").filter(~pl.col("_i").is_in(list(near))).drop("_i")
    stats["near_duplicates"] = len(near)

    index = EvalIndex.build(eval_prompts, config.contamination_ngram)
    rows = []
    for row in deduped.iter_rows(named=True):
        if index.contaminated(row["instruction"], row.get("context"), row["completion"]):
            stats["contaminated"] += 1
            continue
        system_prompt, user_prompt = format_messages(row)
        rows.append(
            {
                "example_id": content_hash(row["prompt_id"], row["request_id"]),
                "prompt_id": row["prompt_id"],
                "request_id": row["request_id"],
                "messages": [
                    {"role": "system", "content": system_prompt},
                    {"role": "user", "content": user_prompt},
                    {"role": "assistant", "content": row["completion"]},
                ],
                "prompt": user_prompt,
                "completion": row["completion"],
                "domain": row["domain"],
                "task_type": row["task_type"],
                "split": "val" if hash_fraction(row["prompt_id"], "sft-split") < config.val_fraction else "train",
                "judge_mean": row["judge_mean"],
            }
        )
    return pl.DataFrame(rows, schema=EXAMPLE_SCHEMA), stats
