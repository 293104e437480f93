"""Answers that do not depend on their prompt: near-identical content given to different prompts.

One answer alone cannot show this, so it is judged over a batch (one model's answers, or one teacher's).
Each answer's own prompt words are masked first, so a fixed answer that only echoes each prompt's topic
still reads the same everywhere; what remains is compared as word 3-grams.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from nexa_core.content import jaccard, masked_tokens, shingles, stems
from nexa_core.text import normalize

# Masked answers this similar (Jaccard over word 3-grams) say the same thing.
SHARED_THRESHOLD = 0.5
# Candidates share one of their _SKETCH smallest hashed 3-grams: a pair at Jaccard 0.5 is missed with
# probability (1 - 0.5) ** 16, about 2e-5; the exact Jaccard then decides.
_SKETCH = 16


def prompt_key(item: Mapping[str, Any]) -> str:
    return normalize(item.get("instruction")) + "\x1f" + normalize(item.get("context"))


def _grams(item: Mapping[str, Any]) -> frozenset[tuple[str, ...]]:
    prompt = stems(item.get("instruction")) | stems(item.get("context"))
    return frozenset(shingles(masked_tokens(item.get("answer"), prompt)))


def _sketch(grams: frozenset[tuple[str, ...]]) -> list[bytes]:
    hashed = sorted(hashlib.blake2b("\x1f".join(g).encode(), digest_size=8).digest() for g in grams)
    return hashed[:_SKETCH]


def shared_prompt_counts(
    items: Sequence[Mapping[str, Any]],
    corpus: Sequence[Mapping[str, Any]] = (),
    threshold: float = SHARED_THRESHOLD,
) -> list[int]:
    """For each item (keys instruction, context, answer): how many other prompts, among `items` and the
    already-judged `corpus`, got an answer whose content is near-identical to this one's."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold={threshold} must be in (0, 1]")
    rows = [*items, *corpus]
    keys = [prompt_key(r) for r in rows]
    # identical masked answers are compared once
    groups: dict[frozenset[tuple[str, ...]], list[int]] = {}
    for index, row in enumerate(rows):
        grams = _grams(row)
        if grams:
            groups.setdefault(grams, []).append(index)
    distinct = list(groups)
    postings: dict[bytes, list[int]] = {}
    for g, grams in enumerate(distinct):
        for h in _sketch(grams):
            postings.setdefault(h, []).append(g)
    similar: dict[int, set[int]] = {g: {g} for g in range(len(distinct))}
    for members in postings.values():
        for a_pos, a in enumerate(members):
            for b in members[a_pos + 1 :]:
                if b not in similar[a] and jaccard(distinct[a], distinct[b]) >= threshold:
                    similar[a].add(b)
                    similar[b].add(a)
    counts = [0] * len(items)
    group_of = {i: g for g, grams in enumerate(distinct) for i in groups[grams]}
    for index in range(len(items)):
        if index not in group_of:
            continue
        prompts = {keys[i] for g in similar[group_of[index]] for i in groups[distinct[g]]}
        counts[index] = len(prompts - {keys[index]})
    return counts
