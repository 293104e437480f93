"""Judge v1 of the offline structural judge (rubric_v1), frozen so bench/judge.py can compare it with v2.

It is gamed by a fixed answer reused across prompts, instruction echo and keyword stuffing (issue 12);
the loop uses nexa_core.structural_judge. v1 reuses its checks but for correctness (structure and topic only)."""

from __future__ import annotations

import re

from nexa_core.content import GENRE_WORDS
from nexa_core.filters import parse_hypotheses, parse_steps
from nexa_core.rubric import JudgeVerdict
from nexa_core.structural_judge import (
    answer_text,
    clarity_score,
    empty_verdict,
    hallucination_safety_score,
    methodology_score,
    scored_verdict,
    specificity_score,
    structure_score,
    topic_loss,
)
from nexa_core.text import normalize

_CONTENT_WORD = re.compile(r"[^\W\d_]{4,}")
_STEM = 5  # words sharing their first five letters count as the same word ("catalyst", "catalytic")
_STOPWORDS = frozenset(GENRE_WORDS.split())  # whole words, not stems, as v1 compared them


def judge_structural(
    task_type: str, instruction: str, context: str | None, answer: str | None, finish_reason: str | None = None
) -> JudgeVerdict:
    """Judge v1's verdict: v2's checks (structural_judge.judge_structural) but for correctness, which is only
    task-appropriate structure, overlap of content words with the instruction, no refusal, not cut off.
    `context` is accepted so both judges share one signature; the checks do not use it."""
    text = answer_text(task_type, answer)
    if not text:
        return empty_verdict()
    truncated = finish_reason == "length"
    items = parse_hypotheses(text) if task_type == "hypothesis" else parse_steps(text)
    correctness = structure_score(task_type, text, items)
    if not correctness.refused:
        topic_loss(correctness, topic_overlap(instruction, text))
        if truncated:
            correctness.lose(2, "a complete answer (it was cut off)")
    return scored_verdict({
        "correctness": correctness,
        "methodology": methodology_score(task_type, text, items),
        "specificity": specificity_score(task_type, text, items),
        "clarity": clarity_score(text, truncated, 0),
        "hallucination_safety": hallucination_safety_score(text, 0),
    })


def _stems(text: str) -> set[str]:
    return {w[:_STEM] for w in _CONTENT_WORD.findall(normalize(text)) if w not in _STOPWORDS}


def topic_overlap(instruction: str, answer: str) -> float:
    """The share of the instruction's content words (by five-letter stem) that the answer uses."""
    wanted = _stems(instruction)
    if not wanted:
        return 1.0
    return len(wanted & _stems(answer)) / len(wanted)
