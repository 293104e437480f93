"""An offline judge that needs no model: rubric scores from structural checks a user can read (DESIGN §5).

Judge v2 (rubric_v2): besides structure, an answer must say something of its own about its prompt. Items
that only restate the instruction, boilerplate any answer could add ("control", "n = 3", units), content
lifted from the teacher's worked examples, an unused context passage, items that repeat each other, and
an answer given near-identically to other prompts (judged over a batch) all lose correctness.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
from nexa_core.content import (
    GENERIC,
    example_copy,
    jaccard,
    longest_shared_run,
    own_content,
    stems,
    tokens,
)
from nexa_core.rubric import JudgeVerdict, load_rubric
from nexa_core.shared_answers import shared_prompt_counts
from nexa_core.taxonomy import TASK_TYPES
from nexa_core.text import normalize

if TYPE_CHECKING:  # reference.py judges its references with this module
    from nexa_core.reference import ReferenceSet

METRICS: tuple[str, ...] = load_rubric().metrics
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
# An item adds content when it uses this many content words (by stem) beyond its prompt and boilerplate.
MIN_OWN_CONTENT = 3
# Two items whose content words (boilerplate aside) overlap this much say the same thing.
SAME_ITEM = 0.6
# This many consecutive words of the instruction inside an item restate it.
RESTATED_RUN = 6
# A context passage counts as used when the answer takes up this share of its own content words.
CONTEXT_USED, CONTEXT_TOUCHED = 0.35, 0.2
# Worked-example copying: its topic words the answer uses, or the share of its 3-grams from the example.
EXAMPLE_WORDS, EXAMPLE_SHARE = 6, 0.25
# A sentence framed as a prediction, condition or test may carry numbers; one without states them as fact.
_FRAMED = re.compile(
    r"(?i)\b(?:predict\w*|expect\w*|control\w*|baseline|would|will|could|may|might|should|if|whether|when|"
    r"test\w*|falsif\w*|"
    r"measur\w*|compar\w*|add\w*|vary\w*|varied|rais\w*|lower\w*|above|below|exceed\w*|between|from\s+\S+\s+to|"
    r"at\s+least|at\s+most|more\s+than|less\s+than|up\s+to|under|over|after|before|within|until|range\w*)\b"
)
SHARED_PENALTY = 3
CAPPED: dict[str, str] = {
    "methodology": "a design for this prompt's question",
    "specificity": "variables and quantities of this prompt's question",
}

@dataclass
class Score:
    """A metric that starts at the top of the scale and loses points, each loss with its reason."""

    value: int = 5
    reasons: list[str] = field(default_factory=list)
    refused: bool = False

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
    task-appropriate structure, on the instruction's topic, items that add content of their own (not the
    instruction's words, boilerplate, or the worked example's), the context passage used where given, no
    refusal, not cut off. Whether the answer is reused across prompts needs a batch: `judge_structural_batch`.
    """
    text = answer_text(task_type, answer)
    if not text:
        return empty_verdict()
    truncated = finish_reason == "length"
    parsed = parse_hypotheses(text) if task_type == "hypothesis" else parse_steps(text)
    items = distinct_items(parsed)
    asserted = asserted_quantities(items, instruction) if task_type == "hypothesis" else 0
    scores = {
        "correctness": _correctness(task_type, instruction, context, text, items, len(parsed), truncated, asserted),
        "methodology": methodology_score(task_type, text, items),
        "specificity": specificity_score(task_type, text, items),
        "clarity": clarity_score(text, truncated, len(parsed) - len(items)),
        "hallucination_safety": hallucination_safety_score(text, asserted),
    }
    return _capped(scored_verdict(scores))


def answer_text(task_type: str, answer: str | None) -> str:
    """The answer stripped, once `task_type` is known to be one of TASK_TYPES."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task_type {task_type!r}: valid values are {', '.join(TASK_TYPES)}")
    return (answer or "").strip()


def empty_verdict() -> JudgeVerdict:
    """The verdict on an empty answer: 1 on every metric."""
    return JudgeVerdict({m: 1 for m in METRICS}, {m: "an answer (it was empty)" for m in METRICS}, None)


def scored_verdict(scores: Mapping[str, Score]) -> JudgeVerdict:
    """Scores clamped to 1–5, with a `lacking` hint for each metric below HINT_BELOW."""
    return JudgeVerdict(
        scores={m: max(1, min(5, s.value)) for m, s in scores.items()},
        lacking={m: "; ".join(s.reasons) for m, s in scores.items() if s.value < HINT_BELOW and s.reasons},
        error=None,
    )


def _capped(verdict: JudgeVerdict) -> JudgeVerdict:
    """Methodology and specificity at most one above correctness: a design or variables that do not
    address this prompt's question test nothing about it."""
    if verdict.scores is None:
        return verdict
    scores, lacking = dict(verdict.scores), dict(verdict.lacking)
    for metric in CAPPED:
        cap = scores["correctness"] + 1
        if scores[metric] > cap:
            scores[metric] = cap
            if cap < HINT_BELOW:
                lacking[metric] = "; ".join(filter(None, [lacking.get(metric), CAPPED[metric]]))
    return JudgeVerdict(scores=scores, lacking=lacking, error=verdict.error)


def structure_score(task_type: str, text: str, items: list[str]) -> Score:
    """Correctness after the refusal check (floored, `refused`) and the count of items the task asks for."""
    score = Score()
    if is_refusal(text):
        score.floor("an answer instead of a refusal")
        score.refused = True
        return score
    if task_type == "hypothesis":
        in_range = _LIMITS.min_hypotheses <= len(items) <= _LIMITS.max_hypotheses
    else:
        in_range = len(items) >= _LIMITS.min_steps
    if not items:
        score.lose(3, _structure_reason(task_type))
    elif not in_range:
        score.lose(2, _structure_reason(task_type))
    return score


def topic_loss(score: Score, overlap: float) -> None:
    """Lower correctness for an answer using under half of the instruction's topic words."""
    if overlap < 0.25:
        score.lose(2, "an answer about the instruction's topic")
    elif overlap < 0.5:
        score.lose(1, "closer focus on the instruction's topic")


def _structure_reason(task_type: str) -> str:
    if task_type == "hypothesis":
        return f"{_LIMITS.min_hypotheses} to {_LIMITS.max_hypotheses} distinct, clearly stated hypotheses"
    return f"at least {_LIMITS.min_steps} ordered, numbered steps"


def _correctness(
    task_type: str,
    instruction: str,
    context: str | None,
    text: str,
    items: list[str],
    parsed: int,
    truncated: bool,
    asserted: int,
) -> Score:
    """`items` are the distinct items of the `parsed` ones: a repeat adds no content."""
    score = structure_score(task_type, text, items)
    if score.refused:
        return score
    topic_loss(score, topic_overlap(instruction, text, context))
    prompt = stems(instruction) | stems(context)
    if items and sum(bool(stems(item) & (prompt - GENERIC)) for item in items) * 2 < len(items):
        score.lose(1, "items about the prompt's subject")
    if items:
        with_content = sum(len(own_content(item, prompt)) >= MIN_OWN_CONTENT for item in items) / parsed
        loss = 3 if with_content == 0 else 2 if with_content < 0.2 else 1 if with_content < 0.5 else 0
        if loss:
            score.lose(loss, "items that add content beyond the instruction's own words")
        restated = sum(longest_shared_run(item, instruction) >= RESTATED_RUN for item in items)
        if restated >= 2:
            loss = 2 if restated == len(items) else 1
            score.lose(loss, "items that say something new instead of restating the instruction")
    used = context_use(instruction, context, text)
    if used is not None and used < CONTEXT_USED:
        score.lose(2 if used < CONTEXT_TOUCHED else 1, "use of the context passage")
    words, share = example_copy(text, prompt)
    if words >= EXAMPLE_WORDS or share >= EXAMPLE_SHARE:
        score.lose(3, "content of its own, not copied from the worked example")
    if asserted and asserted * 2 >= len(items):
        score.lose(1, "quantities framed as predictions, not invented facts")
    if truncated:
        score.lose(2, "a complete answer (it was cut off)")
    return score


def methodology_score(task_type: str, text: str, items: list[str]) -> Score:
    score = Score()
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


def specificity_score(task_type: str, text: str, items: list[str]) -> Score:
    score = Score()
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


def clarity_score(text: str, truncated: bool, repeated_items: int) -> Score:
    score = Score()
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
    if repeated_items:
        score.lose(2, "items that do not repeat each other")
    return score


def hallucination_safety_score(text: str, asserted: int) -> Score:
    score = Score()
    citations = len(find_citations(text))
    if citations:
        score.lose(min(4, citations + 1), "no invented citations or references")
    appeals = len(_APPEAL_TO_STUDIES.findall(text))
    if appeals:
        score.lose(min(2, appeals), 'no appeals to unnamed studies ("studies show")')
    if asserted:
        score.lose(2, "no invented data: numbers belong in predictions and test conditions")
    return score


def _has_structure(text: str) -> bool:
    return bool(parse_hypotheses(text) or parse_steps(text))


def topic_overlap(instruction: str, answer: str, context: str | None = None) -> float:
    """The share of the prompt's topic words (by five-letter stem; boilerplate aside) that the answer uses:
    the instruction's, or with the context's too when the instruction names fewer than three."""
    wanted = stems(instruction) - GENERIC
    if len(wanted) < 3:
        wanted |= stems(context) - GENERIC
    if not wanted:
        return 1.0
    return len(wanted & stems(answer)) / len(wanted)


def context_use(instruction: str, context: str | None, answer: str) -> float | None:
    """The share of the context passage's own content words (not the instruction's, not boilerplate) that
    the answer takes up; None when there is no passage with at least three such words."""
    wanted = stems(context) - stems(instruction) - GENERIC
    if len(wanted) < 3:
        return None
    return len(wanted & stems(answer)) / len(wanted)


def distinct_items(items: list[str]) -> list[str]:
    """The items, each counted once: an item whose content words mostly repeat an earlier one's is dropped."""
    kept: list[str] = []
    kept_words: list[set[str]] = []
    for item in items:
        words = stems(item) - GENERIC
        if words and any(jaccard(words, other) >= SAME_ITEM for other in kept_words):
            continue
        kept.append(item)
        kept_words.append(words)
    return kept


def asserted_quantities(items: list[str], instruction: str) -> int:
    """Items that state a number with a unit as established fact: in a sentence that is not a prediction,
    a condition or a test (a hypothesis proposes; "the moon emits 12 mg of autoinducer" invents data).
    Words the instruction itself uses frame nothing."""
    asked = set(tokens(instruction))

    def framed(sentence: str) -> bool:
        return bool(_FRAMED.search(" ".join(t for t in tokens(sentence) if t not in asked)))

    return sum(
        any(find_quantities(sentence) and not framed(sentence) for sentence in _SENTENCE.split(item))
        for item in items
    )


def judge_structural_batch(
    items: Sequence[Mapping[str, Any]],
    corpus: Sequence[Mapping[str, Any]] = (),
    references: ReferenceSet | None = None,
) -> list[JudgeVerdict]:
    """Judge a batch of answers (keys task_type, instruction, context, answer, finish_reason), each as
    `judge_structural` does, then lower the correctness of answers whose content is near-identical to
    answers given to other prompts, in the batch or in `corpus` (answers already judged, same keys).
    A batch should hold one model's answers: two models may well agree on one prompt.

    With `references` (the teacher's answers, reference.py), an answer to a prompt the teacher answered has
    `references.weight` of its correctness from how much of the reference's own content it shares (never
    raised by it)."""
    verdicts = [
        judge_structural(i["task_type"], i["instruction"], i.get("context"), i.get("answer"), i.get("finish_reason"))
        for i in items
    ]
    shared = shared_prompt_counts(items, corpus)
    verdicts = [_shared_penalty(v, n) if n else v for v, n in zip(verdicts, shared, strict=True)]
    if references is None or not references.weight:
        return verdicts
    return [_reference_blend(v, references, i) for v, i in zip(verdicts, items, strict=True)]


def _reference_blend(verdict: JudgeVerdict, references: ReferenceSet, item: Mapping[str, Any]) -> JudgeVerdict:
    agreement = references.agreement(item)
    if verdict.scores is None or agreement is None:
        return verdict
    scores = dict(verdict.scores)
    blended = references.blend(scores["correctness"], agreement)
    if blended == scores["correctness"]:
        return verdict
    scores["correctness"] = blended
    lacking = dict(verdict.lacking)
    if blended < HINT_BELOW:
        reason = "the substance of the reference answer (the teacher's answer to this prompt)"
        lacking["correctness"] = "; ".join(filter(None, [lacking.get("correctness"), reason]))
    return _capped(JudgeVerdict(scores=scores, lacking=lacking, error=verdict.error))


def _shared_penalty(verdict: JudgeVerdict, prompts: int) -> JudgeVerdict:
    if verdict.scores is None:
        return verdict
    scores = dict(verdict.scores)
    scores["correctness"] = max(1, scores["correctness"] - SHARED_PENALTY)
    reason = f"an answer written for this prompt (near-identical answers were given to {prompts} other prompts)"
    lacking = dict(verdict.lacking)
    lacking["correctness"] = "; ".join(filter(None, [lacking.get("correctness"), reason]))
    return _capped(JudgeVerdict(scores=scores, lacking=lacking, error=verdict.error))


def repetition(text: str) -> float:
    """The share of sentences that repeat an earlier one (tiny models loop); 0 for short answers."""
    sentences = [normalize(s) for s in _SENTENCE.split(text) if len(s.split()) >= 3]
    if len(sentences) < 4:
        return 0.0
    return 1 - len(set(sentences)) / len(sentences)
