"""Quality filters for teacher completions: each rejected completion gets every reason that applies."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nexa_core.taxonomy import TASK_TYPES
from nexa_core.text import normalize

REASON_CODES: tuple[str, ...] = (
    "too_short",
    "too_long",
    "too_few_tokens",
    "too_many_tokens",
    "truncated",
    "empty",
    "refusal",
    "invented_citation",
    "missing_hypotheses",
    "hypothesis_without_outcome",
    "too_few_steps",
    "missing_control",
    "missing_readout",
    "near_duplicate",
)


@dataclass(frozen=True)
class FilterConfig:
    min_chars: int = 150
    max_chars: int = 6000
    min_tokens: int = 30
    max_tokens: int = 1500
    near_duplicate_threshold: float = 0.85
    min_hypotheses: int = 2
    max_hypotheses: int = 3
    min_steps: int = 3
    # Reason codes that do not reject (e.g. structure checks a tiny stand-in teacher cannot meet).
    waive: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.waive) - set(REASON_CODES)
        if unknown:
            raise ValueError(f"cannot waive unknown reasons {sorted(unknown)}: valid values are {', '.join(REASON_CODES)}")
        for low, high in (
            ("min_chars", "max_chars"),
            ("min_tokens", "max_tokens"),
            ("min_hypotheses", "max_hypotheses"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low}={getattr(self, low)} is above {high}={getattr(self, high)}")
        if not 0.0 < self.near_duplicate_threshold <= 1.0:
            raise ValueError(f"near_duplicate_threshold={self.near_duplicate_threshold} must be in (0, 1]")


# --- patterns a reader can check -------------------------------------------------------------------

_REFUSAL = re.compile(
    r"(?i)\b(?:i(?:'|’)?m\s+sorry|i\s+am\s+sorry|sorry,\s+(?:but\s+)?i\b|i\s+apologi[sz]e|i\s+cannot|"
    r"i\s+can\s?not|i\s+can(?:'|’)?t\s+(?:help|assist|provide|answer|comply|do|fulfill|complete|generate)|"
    r"i(?:'|’)?m\s+(?:not\s+able|unable)|i\s+am\s+(?:not\s+able|unable)|"
    r"i\s+(?:won(?:'|’)?t|will\s+not)\s+(?:be\s+able|help|provide)|as\s+an\s+ai\b|"
    r"as\s+a\s+(?:large\s+)?language\s+model)"
)
# A refusal phrase this close to the start, or anywhere in an answer this short, is the answer itself.
_REFUSAL_START_CHARS = 80
_REFUSAL_MAX_WORDS = 60

_CITATION = re.compile(
    r"(?<![\w\]\)])\[\d{1,3}(?:\s*[,\u2013-]\s*\d{1,3})*\]"  # [1], [1, 2], [3-5]
    r"|\b(?i:doi)\s*:\s*\S+"
    r"|\b10\.\d{4,9}/\S+"  # a bare DOI
    r"|\b(?i:arxiv)\s*:?\s*\d{4}\.\d{4,5}(?:v\d+)?"
    r"|\b(?i:arxiv)\s*:\s*\S+"
    r"|\b[A-Z][\w'\-]+\s+et\s+al\.?(?:,?\s*\(?(?:19|20)\d{2}[a-z]?\)?)?"  # Smith et al. (2019)
    r"|\(\s*[A-Z][\w'\-]+(?:\s+(?:and|&)\s+[A-Z][\w'\-]+)?,?\s+(?:19|20)\d{2}[a-z]?\s*\)"  # (Smith, 2019)
)

_UNIT = (
    r"(?:%|‰|°\s?[CF]|[mµuμ]?K|[mµuμnp]?M|[mµuμn]?mol|[kmµuμn]?g|[mµuμ]?[lL]|h|hrs?|hours?|min|"
    r"minutes?|[mµuμn]?s|sec|seconds?|days?|weeks?|months?|[nµuμmck]?m|Å|[kMG]?Hz|[mk]?V|[mµuμn]?A|"
    r"[mkM]?W|[kM]?J|[mkM]?eV|[kMG]?Pa|m?bar|atm|Torr|rpm|[x×]\s?g|m?T|ppm|ppb|(?:wt|at|vol)\s?%|"
    r"cells|colonies|CFU|cfu|fold|passages|cycles|replicates|samples|mice|rats|animals|patients|"
    r"participants|[kM]?Da|bp|kb|nt|dpi|mesh)"
)
_QUANTITY = re.compile(
    r"(?<![\w.])\d+(?:[.,]\d+)?(?:\s?[x×]\s?10\^?[-−]?\d+)?\s?-?\s?"  # 5, 1.5, 2 x 10^6, "3-"
    + _UNIT
    + r"(?:/\s?[A-Za-zµμ°²³]+)?(?![A-Za-z])"  # mg/mL, °C/min
)

_OUTCOME = re.compile(
    r"(?i)\b(?:measur\w*|quantif\w*|increas\w*|decreas\w*|higher|lower|reduc\w*|enhanc\w*|elevat\w*|"
    r"rates?|concentrations?|expression|levels?|yields?|predict\w*|correlat\w*|fold|faster|slower|"
    r"greater|smaller|larger|fewer|shift\w*|declin\w*|rises?|drops?|inhibit\w*|efficiency|"
    r"conductivity|lifetime|half-life|threshold|proportion|percentage|abundance|signal|titer|"
    r"(?:we|one|you)\s+(?:would|should|will|could|might)\s+(?:expect|observe|see|detect|find|measure))"
    r"|%"
)
_CONTROL = re.compile(
    r"(?i)\b(?:controls?|baselines?|untreated|sham|blanks?|vehicle|placebo|mock|wild[- ]type|"
    r"reference\s+(?:samples?|standards?|groups?|materials?|electrodes?|cells?|conditions?|measurements?)|"
    r"calibration\s+standards?)\b"
)
_READOUT = re.compile(
    r"(?i)\b(?:readouts?|measur\w*|quantif\w*|assay\w*|record\w*|analy[sz]\w*|detect\w*|monitor\w*|"
    r"observ\w*|imag(?:e|es|ing)|spectroscop\w*|microscop\w*|titrat\w*|sequenc\w*|count\w*|weigh\w*|"
    r"calculat\w*|characteri[sz]\w*|spectr\w*|chromatograph\w*|diffraction|plot\w*)"
)

# --- list parsing ------------------------------------------------------------------------------------

_DECORATION = re.compile(r"^[\s>#]*(?:\*\*|__)?\s*")
_NUMBER = re.compile(r"^\(?(\d{1,2})[.)](?=[\s*_]|$)\s*(?:\*\*|__)?\s*")  # 1.  2)  (3)  **4.**
_BULLET = re.compile(r"^[-*•+–]\s+(?:\*\*|__)?\s*")
_BOLD = re.compile(r"\*\*|__")
_HYP_LABEL = re.compile(
    r"(?i)^(?:(?:alternative|working|main|primary|secondary)\s+)?hypothesis\s*"
    r"(?:#?\s*(\d{1,2}|[A-D]|[IVX]{1,4}))?\s*(?:\*\*|__)?\s*(?:[:.)\-–—]|$)"
)
_H_LABEL = re.compile(r"^\(?[Hh]\s?(\d{1,2})\)?\s*(?:\*\*|__)?\s*(?:[:.)\-–—]|$)")
_STEP_LABEL = re.compile(r"(?i)^step\s*#?\s*(\d{1,2})\s*(?:\*\*|__)?\s*(?:[:.)\-–—]|$)")
_INLINE_LABEL = re.compile(r"(?i)\b(?:hypothesis|step|h)\s?#?\d{1,2}\b")
_WORD = re.compile(r"\w+")
# Two parsed items this similar (Jaccard over their word sets) state the same hypothesis.
_SAME_ITEM = 0.8


@dataclass(frozen=True)
class _Marker:
    indent: int
    kind: str  # "hypothesis" | "step" (a label) or "number" | "bullet" (a list item)
    number: int | None
    body: str


def _marker(line: str) -> _Marker | None:
    indent = len(line) - len(line.lstrip(" \t"))
    rest = _DECORATION.sub("", line, count=1)
    kind, number = None, None
    if m := _NUMBER.match(rest):
        kind, number, rest = "number", int(m.group(1)), rest[m.end():]
    elif m := _BULLET.match(rest):
        kind, rest = "bullet", rest[m.end():]
    rest = _BOLD.sub("", rest, count=1) if rest.startswith(("**", "__")) else rest
    rest = rest.lstrip()
    for label_kind, pattern in (("hypothesis", _HYP_LABEL), ("hypothesis", _H_LABEL), ("step", _STEP_LABEL)):
        if m := pattern.match(rest):
            label = m.group(1)
            return _Marker(indent, label_kind, int(label) if label and label.isdigit() else None, rest[m.end():])
    return _Marker(indent, kind, number, rest) if kind else None


# A bold line with no colon is a section title; "**Prediction:**" introduces part of an item instead.
_BOLD_LINE = re.compile(r"^\s*(?:\*\*|__)[^*_:]+(?:\*\*|__)\s*$")


def _is_heading(line: str) -> bool:
    """A Markdown heading, or a line that is bold and nothing else ("**Testing plan**")."""
    return line.lstrip().startswith("#") or bool(_BOLD_LINE.match(line))


def _collect(lines: list[str], markers: list[_Marker | None], starts: list[int], paragraphs: bool) -> list[str]:
    """The text of each item: its marker line plus continuation lines up to the next item or boundary.

    A list item (`paragraphs=False`) ends at a blank line followed by unindented text, as in Markdown;
    a labelled item ("Hypothesis 1:") runs on through blank lines until the next label or heading.
    """
    start_set = set(starts)
    items = []
    for s in starts:
        first = markers[s]
        assert first is not None
        parts = [first.body]
        i = s + 1
        while i < len(lines) and i not in start_set:
            line, marker = lines[i], markers[i]
            if _is_heading(line) and (marker is None or marker.kind == first.kind):
                break
            if marker is not None and marker.kind == first.kind and marker.indent <= first.indent:
                break
            if not line.strip() and not paragraphs:
                following = next((j for j in range(i + 1, len(lines)) if lines[j].strip()), None)
                if following is None or following in start_set:
                    break
                indent = len(lines[following]) - len(lines[following].lstrip(" \t"))
                if indent <= first.indent and markers[following] is None:
                    break
            parts.append(line)
            i += 1
        items.append(" ".join(_BOLD.sub("", " ".join(parts)).split()))
    return items


def _runs(markers: list[_Marker | None], kind: str) -> list[list[int]]:
    """Top-level items of one kind, split into runs where the numbering starts over."""
    indices = [i for i, m in enumerate(markers) if m is not None and m.kind == kind]
    if not indices:
        return []
    top = min(markers[i].indent for i in indices)  # type: ignore[union-attr]
    runs: list[list[int]] = []
    previous: int | None = None
    for i in indices:
        marker = markers[i]
        assert marker is not None
        if marker.indent > top:
            continue
        # "1. 1. 1." (lazy Markdown numbering) continues a run; only a smaller number restarts one.
        if not runs or (marker.number is not None and previous is not None and marker.number < previous):
            runs.append([])
        runs[-1].append(i)
        previous = marker.number
    return runs


def _words(text: str) -> set[str]:
    return set(_WORD.findall(normalize(text)))


def _distinct(items: list[str], threshold: float) -> list[str]:
    kept: list[str] = []
    kept_words: list[set[str]] = []
    for item in items:
        words = _words(item)
        if not words:
            continue
        if any(_jaccard(words, other) >= threshold for other in kept_words):
            continue
        kept.append(item)
        kept_words.append(words)
    return kept


def _jaccard(a: set[Any], b: set[Any]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def _heading_before(lines: list[str], markers: list[_Marker | None], index: int) -> str:
    for j in range(index - 1, -1, -1):
        if lines[j].strip():
            return lines[j] if markers[j] is None else ""
    return ""


def parse_hypotheses(text: str | None) -> list[str]:
    """The distinct hypotheses an answer states, without their markers; near-identical ones count once.

    Labels ("Hypothesis 1:", "**H2:**", "### Hypothesis 3") win over list items; otherwise the numbered
    run under a heading that mentions hypotheses (else the first run), otherwise top-level bullets.
    """
    lines = (text or "").splitlines()
    markers = [_marker(line) for line in lines]
    # "Hypothesis:" alone on a line heads a list; "Hypothesis 1" alone heads the paragraph after it.
    labels = [
        i
        for i, m in enumerate(markers)
        if m is not None and m.kind == "hypothesis" and (m.number is not None or m.body.strip())
    ]
    if labels:
        return _distinct(_collect(lines, markers, labels, paragraphs=True), _SAME_ITEM)
    for kind in ("number", "bullet"):
        runs = _runs(markers, kind)
        if runs:
            headed = [run for run in runs if "hypothes" in _heading_before(lines, markers, run[0]).lower()]
            return _distinct(_collect(lines, markers, (headed or runs)[0], paragraphs=False), _SAME_ITEM)
    return []


def parse_steps(text: str | None) -> list[str]:
    """The ordered steps of a protocol: "Step N" labels, else the longest run of numbered items."""
    lines = (text or "").splitlines()
    markers = [_marker(line) for line in lines]
    labels = [i for i, m in enumerate(markers) if m is not None and m.kind == "step"]
    if labels:
        items = _collect(lines, markers, labels, paragraphs=True)
    else:
        runs = _runs(markers, "number")
        items = _collect(lines, markers, max(runs, key=len), paragraphs=False) if runs else []
    return _distinct(items, 1.0)  # only a step repeated word for word counts once


# --- single-answer checks ------------------------------------------------------------------------------


def find_citations(text: str | None) -> list[str]:
    """Citation-like strings ([1], DOIs, arXiv ids, "Smith et al. (2019)") a teacher cannot have verified."""
    return [m.group(0).strip() for m in _CITATION.finditer(text or "")]


def is_refusal(text: str | None) -> bool:
    """Whether the answer opens with a refusal or is mostly one ("I'm sorry", "As an AI", ...)."""
    stripped = _DECORATION.sub("", (text or "").strip(), count=1)
    match = _REFUSAL.search(stripped)
    if match is None:
        return False
    return match.start() <= _REFUSAL_START_CHARS or len(stripped.split()) <= _REFUSAL_MAX_WORDS


def has_measurable_outcome(text: str | None) -> bool:
    """Whether a hypothesis names something to measure (a direction, a rate, a level, a quantity)."""
    return bool(_OUTCOME.search(text or "") or _QUANTITY.search(text or ""))


def has_control(text: str | None) -> bool:
    """Whether a protocol mentions a control, baseline, sham, blank or reference sample."""
    return bool(_CONTROL.search(text or ""))


def has_readout(text: str | None) -> bool:
    """Whether a protocol says what is measured, quantified, assayed, recorded or analyzed."""
    return bool(_READOUT.search(text or ""))


def find_quantities(text: str | None) -> list[str]:
    """Numbers with units ("37 °C", "10 mg/mL", "24 h", "3-fold"), list markers and labels excluded."""
    return [m.group(0).strip() for m in _QUANTITY.finditer(strip_markers(text))]


def strip_markers(text: str | None) -> str:
    """The text without list markers and "Hypothesis N"/"Step N" labels, so their digits count for nothing."""
    lines = []
    for line in (text or "").splitlines():
        marker = _marker(line)
        lines.append(marker.body if marker is not None else line)
    return _INLINE_LABEL.sub(" ", "\n".join(lines))


def estimate_tokens(text: str) -> int:
    """About four characters a token: used only when the server reported no completion token count."""
    return math.ceil(len(text) / 4)


def check_completion(
    completion: str | None,
    task_type: str,
    finish_reason: str | None,
    completion_tokens: int | None,
    config: FilterConfig,
) -> list[str]:
    """Every reason (from REASON_CODES) to reject one completion; an empty list means it passes.

    An empty completion gets only `empty` (and `truncated`): every content check would fail with it.
    """
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task_type {task_type!r}: valid values are {', '.join(TASK_TYPES)}")
    reasons: list[str] = []
    text = (completion or "").strip()
    if not text:
        reasons.append("empty")
        if finish_reason == "length" and "truncated" not in config.waive:
            reasons.append("truncated")
        return reasons
    if len(text) < config.min_chars:
        reasons.append("too_short")
    if len(text) > config.max_chars:
        reasons.append("too_long")
    tokens = completion_tokens if completion_tokens is not None else estimate_tokens(text)
    if tokens < config.min_tokens:
        reasons.append("too_few_tokens")
    if tokens > config.max_tokens:
        reasons.append("too_many_tokens")
    if finish_reason == "length":
        reasons.append("truncated")
    if is_refusal(text):
        reasons.append("refusal")
    if find_citations(text):
        reasons.append("invented_citation")
    if task_type == "hypothesis":
        hypotheses = parse_hypotheses(text)
        if not config.min_hypotheses <= len(hypotheses) <= config.max_hypotheses:
            reasons.append("missing_hypotheses")
        if any(not has_measurable_outcome(h) for h in hypotheses):
            reasons.append("hypothesis_without_outcome")
    else:
        if len(parse_steps(text)) < config.min_steps:
            reasons.append("too_few_steps")
        if not has_control(text):
            reasons.append("missing_control")
        if not has_readout(text):
            reasons.append("missing_readout")
    return [r for r in reasons if r not in config.waive]


# --- near duplicates across a batch -------------------------------------------------------------------

# Word 3-grams: a ~150-word answer with three words changed still scores about 0.88 (5-grams: 0.82).
_SHINGLE_WORDS = 3
_BANDS, _ROWS = 20, 5  # 100 MinHash values; a pair at Jaccard 0.85 is a candidate with p > 0.99999
_MASK64 = (1 << 64) - 1


def _seed(name: str, i: int) -> int:
    return int.from_bytes(hashlib.sha256(f"nexa-minhash-{name}-{i}".encode()).digest()[:8], "big")


_PERM_A = np.array([_seed("a", i) | 1 for i in range(_BANDS * _ROWS)], dtype=np.uint64)[:, None]
_PERM_B = np.array([_seed("b", i) for i in range(_BANDS * _ROWS)], dtype=np.uint64)[:, None]
_POSITION = np.array([_seed("p", i) | 1 for i in range(_SHINGLE_WORDS)], dtype=np.uint64)


def _shingles(text: str, vocabulary: dict[str, int]) -> np.ndarray:
    """Distinct 64-bit hashes of the text's word 3-grams (the whole text when it is shorter)."""
    words = _WORD.findall(normalize(text))
    if not words:
        return np.empty(0, dtype=np.uint64)
    ids = []
    for word in words:
        if word not in vocabulary:
            vocabulary[word] = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        ids.append(vocabulary[word])
    hashed = np.array(ids, dtype=np.uint64)
    width = min(_SHINGLE_WORDS, len(words))
    count = len(words) - width + 1
    combined = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is the point
        for k in range(width):
            combined = combined * _POSITION[k] + hashed[k : k + count]
    return np.unique(combined)


def _band_keys(shingles: np.ndarray) -> list[bytes]:
    with np.errstate(over="ignore"):
        # multiply-add-shift hashing of the upper 32 bits of each shingle: one permutation per row
        values = (_PERM_A * (shingles >> np.uint64(32))[None, :] + _PERM_B) >> np.uint64(32)
    signature = values.min(axis=1).reshape(_BANDS, _ROWS)
    return [bytes([band]) + signature[band].tobytes() for band in range(_BANDS)]


def near_duplicate_indices(
    texts: Sequence[str],
    threshold: float,
    *,
    anchors: Sequence[bool] | None = None,
) -> dict[int, int]:
    """Map each near-duplicate text's index to the index of the earlier text it near-duplicates.

    Similarity is Jaccard over word 3-gram shingles of the normalized texts; MinHash with LSH banding
    only proposes candidates, the exact Jaccard decides, so the answer is deterministic. The earlier
    text is always one that is kept (not itself a near duplicate, and allowed by `anchors` when given),
    so dropping every key keeps exactly one text of each group. Texts without words are never matched.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold={threshold} must be in (0, 1]")
    if anchors is not None and len(anchors) != len(texts):
        raise ValueError(f"anchors has {len(anchors)} entries for {len(texts)} texts")
    vocabulary: dict[str, int] = {}
    buckets: dict[bytes, list[int]] = {}
    kept_sets: dict[int, set[int]] = {}
    duplicates: dict[int, int] = {}
    for j, text in enumerate(texts):
        shingles = _shingles(text or "", vocabulary)
        if shingles.size == 0:
            continue
        keys = _band_keys(shingles)
        candidates = sorted({i for key in keys for i in buckets.get(key, ())})
        current = set(shingles.tolist())
        earlier = next((i for i in candidates if _jaccard(kept_sets[i], current) >= threshold), None)
        if earlier is not None:
            duplicates[j] = earlier
        elif anchors is None or anchors[j]:
            kept_sets[j] = current
            for key in keys:
                buckets.setdefault(key, []).append(j)
    return duplicates


def apply_filters(rows: Sequence[Mapping[str, Any]], config: FilterConfig) -> list[list[str]]:
    """The reasons for each row (keys: completion, task_type, finish_reason, completion_tokens).

    `near_duplicate` goes to a row whose completion near-duplicates an earlier row that passed every
    other check and was not itself a near duplicate. So each group keeps its first good completion,
    a rejected completion never knocks out a good one, and a bad copy of a good one gets the reason too.
    """
    reasons = [
        check_completion(
            row.get("completion"),
            row.get("task_type"),  # type: ignore[arg-type]
            row.get("finish_reason"),
            row.get("completion_tokens"),
            config,
        )
        for row in rows
    ]
    duplicates = near_duplicate_indices(
        [row.get("completion") or "" for row in rows],
        config.near_duplicate_threshold,
        anchors=[not r for r in reasons],
    )
    for index in sorted(duplicates):
        reasons[index].append("near_duplicate")
    return reasons
