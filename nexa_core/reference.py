"""Agreement with a reference answer: the teacher's answer to the same eval prompt (its leaderboard row), which
the structural judge may blend into correctness (issue 12 item 3; off by default, see docs/evaluation.md "What the
offline judge measures" for the measurement).

What counts as agreement is the reference's own content: its content words (by stem) beyond the prompt's words,
beyond boilerplate any answer can add (content.GENERIC, PREDICTION_WORDS), beyond the worked examples' topic words
(the teacher saw an example; an answer copying it must not agree), and beyond the teacher's habits (words it uses in
its references to many prompts: a student that learned them says nothing about this prompt). Only a reference the
judge itself finds acceptable is used (MIN_REFERENCE_CORRECTNESS). The reference can only lower a score, never raise
it: echoing the prompt or a teacher's stock phrases gains nothing, and the teacher's own answer judged against itself
keeps its score.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from nexa_core.content import GENERIC, STEM, stems
from nexa_core.shared_answers import prompt_key
from nexa_core.structural_judge import judge_structural_batch
from nexa_core.text import normalize

# The share of correctness that comes from agreement with the reference: correctness becomes
# min(correctness, round((1 - w) * correctness + w * (1 + 4 * agreement))).
REFERENCE_WEIGHT = 0.25
# An answer that uses this share of the reference's own content words agrees fully (agreement 1).
FULL_AGREEMENT = 0.3
# A stem in the references of at least this share of prompts (and at least 3) is a habit of the teacher's.
TEACHER_HABIT = 0.2
# A reference with fewer own content words than this says too little to compare against: not used.
MIN_REFERENCE_TERMS = 5
# A reference the structural judge itself gives less correctness than this (in a batch of the teacher's answers,
# so one it reused across prompts counts as such) is not used: agreeing with a wrong, looping or prompt-restating
# answer is no evidence of anything, and a student rewarded for it would learn the teacher's failures.
MIN_REFERENCE_CORRECTNESS = 3


# Words of any prediction (which way a quantity goes, what something becomes): shared with a reference they say
# nothing about the prompt, beside content.GENERIC (which the judge itself uses, so it is left as it is).
PREDICTION_WORDS = frozenset(
    w[:STEM]
    for w in """become becomes became fall falls fell rise rises rose double doubles doubled halve halves slow slows
    slower faster lose loses lost gain gains drop drops stay stays remain remains reach reaches shift shifts show
    shows reduce reduces reduced raise raises raised lead leads cause would """.split()
)


@cache
def _example_topics() -> frozenset[str]:
    """Topic stems of the teacher's worked examples (content._examples keeps them per example)."""
    from nexa_core.content import _examples

    return frozenset().union(*(topic for _, topic, _ in _examples()))


def reference_terms(reference: str | None, instruction: str, context: str | None,
                    habits: Iterable[str] = ()) -> frozenset[str]:
    """The reference's own content: its stems beyond the prompt's, boilerplate, the worked examples' topic
    words and the teacher's habits."""
    prompt = stems(instruction) | stems(context)
    return frozenset(stems(reference) - prompt - GENERIC - PREDICTION_WORDS - _example_topics() - set(habits))


def teacher_habits(references: Sequence[Mapping[str, Any]], share: float = TEACHER_HABIT) -> frozenset[str]:
    """Stems the teacher uses in its references to at least `share` of the prompts (and at least 3): its
    stock words, not content about one prompt. `references`: keys instruction, context, reference."""
    counts: dict[str, int] = {}
    for r in references:
        prompt = stems(r.get("instruction")) | stems(r.get("context"))
        for stem in stems(r.get("reference")) - prompt:
            counts[stem] = counts.get(stem, 0) + 1
    floor = max(3, share * len(references))
    return frozenset(s for s, n in counts.items() if n >= floor)


@dataclass(frozen=True)
class ReferenceSet:
    """The teacher's answers to a set of prompts, each reduced to its own content words."""

    terms: Mapping[str, frozenset[str]] = field(default_factory=dict)  # prompt_key → the reference's own stems
    texts: Mapping[str, str] = field(default_factory=dict)  # prompt_key → the reference answer, when trusted
    weight: float = REFERENCE_WEIGHT
    answered: int = 0  # prompts the teacher answered, trusted or not

    @classmethod
    def build(
        cls,
        references: Sequence[Mapping[str, Any]],
        weight: float = REFERENCE_WEIGHT,
        min_correctness: int = MIN_REFERENCE_CORRECTNESS,
    ) -> ReferenceSet:
        """From rows with keys task_type, instruction, context, reference (the teacher's answer; None or empty:
        none) and finish_reason. Only references the structural judge gives at least `min_correctness` are kept.
        Habits and reuse are found over all the rows: build it from the teacher's whole eval set, not a batch."""
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight={weight} must be in [0, 1]")
        rows = [r for r in references if (r.get("reference") or "").strip()]
        habits = teacher_habits(rows)
        terms: dict[str, frozenset[str]] = {}
        texts: dict[str, str] = {}
        for r, correctness in zip(rows, reference_correctness(rows), strict=True):
            if correctness < min_correctness:
                continue
            key = prompt_key(r)
            texts[key] = r["reference"].strip()
            own = reference_terms(r["reference"], r["instruction"], r.get("context"), habits)
            if len(own) >= MIN_REFERENCE_TERMS:
                terms[key] = own
        return cls(terms=terms, texts=texts, weight=weight, answered=len(rows))

    def __len__(self) -> int:
        """The references in use (trusted)."""
        return len(self.texts)

    def text(self, item: Mapping[str, Any]) -> str | None:
        """The reference answer to this item's prompt, if the teacher gave one and the item's answer is not
        that very answer (the teacher's own row is judged on its own)."""
        reference = self.texts.get(prompt_key(item))
        if reference is None or normalize(reference) == normalize(item.get("answer")):
            return None
        return reference

    def agreement(self, item: Mapping[str, Any]) -> float | None:
        """How much of the reference's own content the item's answer shares, 0–1 (FULL_AGREEMENT of its words
        is 1); None when there is no usable reference for the item's prompt."""
        terms = self.terms.get(prompt_key(item))
        if not terms or self.text(item) is None:
            return None
        shared = len(terms & stems(item.get("answer"))) / len(terms)
        return min(1.0, shared / FULL_AGREEMENT)

    def blend(self, score: int, agreement: float) -> int:
        """`score` with `weight` of it from agreement (1–5), never above `score`."""
        mixed = (1 - self.weight) * score + self.weight * (1 + 4 * agreement)
        return max(1, min(score, int(mixed + 0.5)))


def reference_correctness(rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """The structural judge's correctness of each reference, judged together as the teacher's batch."""
    items = [
        {"task_type": r["task_type"], "instruction": r["instruction"], "context": r.get("context"),
         "answer": r["reference"], "finish_reason": r.get("finish_reason")}
        for r in rows
    ]
    return [v.scores["correctness"] if v.scores else 1 for v in judge_structural_batch(items)]


def reference_version(rubric_version: str, reference_model: str) -> str:
    """The rubric version of scores judged against `reference_model`'s answers: never equal to a version
    judged without a reference, nor to one judged against another model's answers."""
    return f"{rubric_version}+ref:{reference_model}"
