"""Judge v1 of the offline structural judge (rubric_v1), frozen so bench/judge.py can compare it with v2.

It is gamed by a fixed answer reused across prompts, instruction echo and keyword stuffing (issue 12);
the loop uses nexa_core.structural_judge."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nexa_core.filters import (
    FilterConfig,
    find_citations,
    find_quantities,
    has_control,
    has_measurable_outcome,
    has_readout,
    is_refusal,
    parse_hypotheses,
    parse_steps,
    strip_markers,
)
from nexa_core.rubric import JudgeVerdict
from nexa_core.taxonomy import TASK_TYPES
from nexa_core.text import normalize

METRICS: tuple[str, ...] = ("correctness", "methodology", "specificity", "clarity", "hallucination_safety")
# Below this score a metric gets a `lacking` hint, as the LLM judge is asked to give.
HINT_BELOW = 4
_LIMITS = FilterConfig()  # hypothesis and step counts the filters ask of a teacher

_REPLICATION = re.compile(
    r"(?i)\b(?:replicat\w*|triplicate|duplicates?|n\s*=\s*\d+|independent\s+(?:experiments?|samples|runs|trials)|"
    r"t-tests?|anova|statistic\w*|standard\s+deviation|error\s+bars|confidence\s+intervals?|p\s*<\s*0?\.\d+|"
    r"regression|sample\s+size|power\s+analysis|randomi[sz]\w*|blind\w*)"
)
_APPEAL_TO_STUDIES = re.compile(
    r"(?i)\b(?:(?:previous|prior|recent|many|several|numerous)\s+)?(?:studies|research|experiments|literature)\s+"
    r"(?:has|have)?\s*(?:shown|show|shows|demonstrated|demonstrates|proven|proved|confirmed|established)\b"
    r"|\bit\s+(?:is|has\s+been)\s+(?:well[- ]known|well[- ]established|proven|widely\s+accepted)\b"
    r"|\baccording\s+to\s+(?:recent\s+)?(?:studies|research|the\s+literature)\b"
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_CONTENT_WORD = re.compile(r"[^\W\d_]{4,}")
_STEM = 5  # words sharing their first five letters count as the same word ("catalyst", "catalytic")
_STOPWORDS = frozenset(
    """about above after again against also among another answer based because been before being below
    between both could describe design designs detail does doing during each either explain following
    from further given have having here hypotheses hypothesis into investigate just more most much must
    other over plausible possible propose protocol provide question should show some specific study such
    suggest test testable than that their them then there these they this those through under until using
    very what when where whether which while will with within would your experiment experimental
    experiments method methods methodology outline""".split()
)


@dataclass
class _Score:
    """A metric that starts at the top of the scale and loses points, each loss with its reason."""

    value: int = 5
    reasons: list[str] = field(default_factory=list)

    def lose(self, points: int, reason: str) -> None:
        self.value -= points
        if reason not in self.reasons:
            self.reasons.append(reason)

    def floor(self, reason: str) -> None:
        self.lose(self.value - 1, reason)


def judge_structural(
    task_type: str,
    instruction: str,
    context: str | None,
    answer: str | None,
    finish_reason: str | None = None,
) -> JudgeVerdict:
    """Score an answer 1–5 on each rubric metric from checks a user can read, with no model.

    hypothesis: 2–3 distinct hypotheses, each with a measurable outcome. methodology: ordered steps,
    a control, a readout. Both: quantities with units and replicates (specificity), no invented
    citations or appeals to unnamed studies (hallucination_safety), complete, structured, not
    repetitive (clarity). `correctness` is only a structural proxy, not a check of the science:
    task-appropriate structure, overlap of content words with the instruction, no refusal, not cut off.
    `context` is accepted so both judges share one signature; the checks do not use it.
    """
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task_type {task_type!r}: valid values are {', '.join(TASK_TYPES)}")
    text = (answer or "").strip()
    if not text:
        return JudgeVerdict({m: 1 for m in METRICS}, {m: "an answer (it was empty)" for m in METRICS}, None)
    truncated = finish_reason == "length"
    items = parse_hypotheses(text) if task_type == "hypothesis" else parse_steps(text)
    scores = {
        "correctness": _correctness(task_type, instruction, text, items, truncated),
        "methodology": _methodology(task_type, text, items),
        "specificity": _specificity(task_type, text, items),
        "clarity": _clarity(text, truncated),
        "hallucination_safety": _hallucination_safety(text),
    }
    return JudgeVerdict(
        scores={m: max(1, min(5, s.value)) for m, s in scores.items()},
        lacking={m: "; ".join(s.reasons) for m, s in scores.items() if s.value < HINT_BELOW and s.reasons},
        error=None,
    )


def _structure_reason(task_type: str) -> str:
    if task_type == "hypothesis":
        return f"{_LIMITS.min_hypotheses} to {_LIMITS.max_hypotheses} distinct, clearly stated hypotheses"
    return f"at least {_LIMITS.min_steps} ordered, numbered steps"


def _correctness(task_type: str, instruction: str, text: str, items: list[str], truncated: bool) -> _Score:
    score = _Score()
    if is_refusal(text):
        score.floor("an answer instead of a refusal")
        return score
    if task_type == "hypothesis":
        in_range = _LIMITS.min_hypotheses <= len(items) <= _LIMITS.max_hypotheses
    else:
        in_range = len(items) >= _LIMITS.min_steps
    if not items:
        score.lose(3, _structure_reason(task_type))
    elif not in_range:
        score.lose(2, _structure_reason(task_type))
    overlap = topic_overlap(instruction, text)
    if overlap < 0.25:
        score.lose(2, "an answer about the instruction's topic")
    elif overlap < 0.5:
        score.lose(1, "closer focus on the instruction's topic")
    if truncated:
        score.lose(2, "a complete answer (it was cut off)")
    return score


def _methodology(task_type: str, text: str, items: list[str]) -> _Score:
    score = _Score()
    if task_type == "hypothesis":
        if not items:
            score.floor("testable hypotheses, each with a measurable outcome")
            return score
        if any(not has_measurable_outcome(item) for item in items):
            score.lose(2, "a measurable outcome for each hypothesis")
        if not _LIMITS.min_hypotheses <= len(items) <= _LIMITS.max_hypotheses:
            score.lose(1, _structure_reason(task_type))
        return score
    if not items:
        score.lose(3, _structure_reason(task_type))
    elif len(items) < _LIMITS.min_steps:
        score.lose(2, _structure_reason(task_type))
    if not has_control(text):
        score.lose(2, "a control condition")
    if not has_readout(text):
        score.lose(2, "a readout (what is measured, and how)")
    return score


def _specificity(task_type: str, text: str, items: list[str]) -> _Score:
    score = _Score()
    quantities = set(find_quantities(text))
    if not quantities:
        score.lose(2, "quantities with units")
    elif len(quantities) < 2:
        score.lose(1, "quantities with units")
    if not re.search(r"\d", strip_markers(text)):
        score.lose(1, "specific numbers (doses, times, sizes)")
    if task_type == "methodology" and not _REPLICATION.search(text):
        score.lose(1, "replicates or a statistical comparison")
    if task_type == "hypothesis" and not (items and all(has_measurable_outcome(item) for item in items)):
        score.lose(1, "a named measurable variable in each hypothesis (a rate, level, concentration)")
    return score


def _clarity(text: str, truncated: bool) -> _Score:
    score = _Score()
    words = len(text.split())
    if truncated:
        score.lose(2, "a complete answer that is not cut off")
    if not _has_structure(text):
        score.lose(2, "a numbered structure")
    if words < 25:
        score.lose(3, "a fuller answer")
    elif words < 60:
        score.lose(1, "a fuller answer")
    elif words > 1000:
        score.lose(1, "a more concise answer")
    if repetition(text) > 0.25:
        score.lose(2, "no repeated sentences")
    return score


def _hallucination_safety(text: str) -> _Score:
    score = _Score()
    citations = len(find_citations(text))
    if citations:
        score.lose(min(4, citations + 1), "no invented citations or references")
    appeals = len(_APPEAL_TO_STUDIES.findall(text))
    if appeals:
        score.lose(min(2, appeals), 'no appeals to unnamed studies ("studies show")')
    return score


def _has_structure(text: str) -> bool:
    return bool(parse_hypotheses(text) or parse_steps(text))


def _stems(text: str) -> set[str]:
    return {w[:_STEM] for w in _CONTENT_WORD.findall(normalize(text)) if w not in _STOPWORDS}


def topic_overlap(instruction: str, answer: str) -> float:
    """The share of the instruction's content words (by five-letter stem) that the answer uses."""
    wanted = _stems(instruction)
    if not wanted:
        return 1.0
    return len(wanted & _stems(answer)) / len(wanted)


def repetition(text: str) -> float:
    """The share of sentences that repeat an earlier one (tiny models loop); 0 for short answers."""
    sentences = [normalize(s) for s in _SENTENCE.split(text) if len(s.split()) >= 3]
    if len(sentences) < 4:
        return 0.0
    return 1 - len(set(sentences)) / len(sentences)
