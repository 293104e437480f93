"""What an answer says beyond its prompt: content words by stem, boilerplate any answer can add, and
words or phrases lifted from the teacher's worked examples (the checks behind judge v2)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from nexa_core.taxonomy import TASK_TYPES
from nexa_core.templates import templates
from nexa_core.text import normalize

_CONTENT_WORD = re.compile(r"[^\W\d_]{4,}")
_TOKEN = re.compile(r"[^\W_]+")
OWN_TASK = 0.6  # a prompt with this share of a worked example's task words asks that example's task
STEM = 5  # words sharing their first five letters count as the same word ("catalyst", "catalytic")


def _stem_set(words: str) -> frozenset[str]:
    return frozenset(w[:STEM] for w in words.split())


# Words of the prompt's own genre: asking, answering and proposing say nothing about the topic (judge v1 used the
# first block alone, as whole words).
GENRE_WORDS = """about above after again against also among another answer based because been before being below
    between both could describe design designs detail does doing during each either explain following
    from further given have having here hypotheses hypothesis into investigate just more most much must
    other over plausible possible propose protocol provide question should show some specific study such
    suggest test testable than that their them then there these they this those through under until using
    very what when where whether which while will with within would your experiment experimental
    experiments method methods methodology outline"""
STOPWORDS = _stem_set(
    GENRE_WORDS
    + """ generate formulate offer explanation explanations
    explaining mechanism mechanisms observation observations described anomaly phenomenon pattern
    situation address problem falsify paired claim following approach determine"""
)

# Boilerplate of any scientific answer: a model can add these to every answer (to look rigorous)
# without saying anything about the prompt, so they never count as content of the answer's own.
GENERIC = _stem_set(
    """control controls baseline reference replicate replicates replication triplicate duplicate sample
    samples group groups treatment treated untreated condition conditions measure measured measurement
    quantify quantified assay readout record recorded monitor analyze analysis analyse compare compared
    comparison statistical statistics significant significantly anova mean standard deviation error
    random randomize blind blinded independent increase increases increased decrease decreases decreased
    higher lower change changes changed effect effects affect affects influence role factor factors level
    levels rate rates result results data outcome outcomes prediction predict predicted predicts expect
    expected observe observed observation mechanism cause causes caused therefore thus response responses
    different difference differences same similar every three four five first second third prepare
    prepared perform performed repeat repeated collect collected calculate calculated determine evaluate
    assess identify examine important relevant various several multiple value values amount number total
    time times period duration hours minutes seconds days weeks degrees percent fold dose doses size high
    greater fewer less small large larger smaller activity system process property properties performance
    procedure approach setup parameter parameters variable variables testing tested tests power vehicle
    sham placebo mock blank calibrate calibrated calibration instrument device equipment used uses across
    relative likely directly statistically hold held keep kept apply applied matched identical primary
    secondary report reported confidence interval alpha size sizes per test using step steps run runs
    conduct conducted ensure include includes including example show shows shown case cases specific
    two-sided one-way note additional further follow follows""".replace("-", " ")
)


def stems(text: str | None) -> set[str]:
    """The content words of a text by five-letter stem, prompt-genre words left out."""
    return {w[:STEM] for w in _CONTENT_WORD.findall(normalize(text)) if w[:STEM] not in STOPWORDS}


def own_content(text: str | None, prompt: Iterable[str]) -> set[str]:
    """Stems the text adds beyond the prompt's own words and beyond boilerplate any answer could add."""
    return stems(text) - set(prompt) - GENERIC


def tokens(text: str | None) -> list[str]:
    """The normalized words and numbers of a text."""
    return _TOKEN.findall(normalize(text))


def masked_tokens(text: str | None, prompt: Iterable[str]) -> list[str]:
    """The text's words with the prompt's words (by stem) replaced by one placeholder, so two answers that
    differ only in the topic words they echo read the same."""
    prompt_stems = set(prompt)
    return ["_" if t[:STEM] in prompt_stems else t for t in tokens(text)]


def shingles(tokens: list[str], width: int = 3) -> set[tuple[str, ...]]:
    """Word n-grams of a token list (the whole list when it is shorter)."""
    if len(tokens) <= width:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + width]) for i in range(len(tokens) - width + 1)}


def jaccard(a: set, b: set) -> float:  # type: ignore[type-arg]
    return len(a & b) / len(a | b) if a or b else 0.0


@cache
def _examples() -> tuple[tuple[frozenset[str], frozenset[str], frozenset[tuple[str, ...]]], ...]:
    """(its task's topic stems, its topic stems, its answer's word 3-grams) for each worked example."""
    out = []
    for task_type in TASK_TYPES:
        text = templates().texts[f"example_{task_type}"]
        head, _, answer = text.partition("\n---\n")
        task = next((line.split(":", 1)[1] for line in head.splitlines() if line.startswith("Task:")), head)
        topic = frozenset(stems(text) - GENERIC)
        out.append((frozenset(stems(task) - GENERIC), topic, frozenset(shingles(tokens(answer)))))
    return tuple(out)


def example_copy(text: str | None, prompt: Iterable[str]) -> tuple[int, float]:
    """How much of the answer comes from a worked example set for another task: (topic words of the
    example it uses beyond its prompt's, share of its word 3-grams found in the example), the larger over
    the examples. An example whose own task the prompt asks (most of its topic words) does not count."""
    prompt_stems = set(prompt)
    used = stems(text) - prompt_stems
    grams = shingles(tokens(text))
    words, share = 0, 0.0
    for task, topic, example_grams in _examples():
        if task and len(task & prompt_stems) >= OWN_TASK * len(task):
            continue
        words = max(words, len(used & topic))
        if grams:
            share = max(share, len(grams & example_grams) / len(grams))
    return words, share


def longest_shared_run(text: str | None, source: str | None) -> int:
    """The most consecutive words of `source` that `text` repeats verbatim."""
    a, b = tokens(text), tokens(source)
    best, previous = 0, [0] * (len(b) + 1)
    for word in a:
        current = [0] * (len(b) + 1)
        for j, other in enumerate(b, 1):
            if word == other:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best
