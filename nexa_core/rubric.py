"""The versioned judge rubric (DESIGN §5): metrics, 1–5 scale, judge prompt, and parsing a judge's answer."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Any

from nexa_core.taxonomy import TASK_TYPES
from nexa_core.text import content_hash

DEFAULT_RUBRIC = "rubric_v2"  # the rubric the structural judge v2 implements
USER_PLACEHOLDERS: tuple[str, ...] = ("task_type", "instruction", "context", "answer")
# A rubric whose user_template also has {reference} shows the judge a reference answer (the teacher's).
REFERENCE_PLACEHOLDER = "reference"
NO_REFERENCE = "(none for this prompt: judge the answer on its own)"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_ANCHOR_LEVELS = ("1", "3", "5")


@dataclass(frozen=True)
class Rubric:
    version: str  # the file's version plus a hash of its text: "v1-<12 hex>"
    metrics: tuple[str, ...]
    scale: tuple[int, int]
    system_prompt: str  # rendered: the metric descriptions are already in it
    user_template: str  # placeholders {task_type} {instruction} {context} {answer}, and {reference} when it takes one
    descriptions: Mapping[str, Mapping[str, str]]  # metric → {"question", "1", "3", "5"}

    @property
    def takes_reference(self) -> bool:
        """Whether the judge is shown a reference answer (user_template has {reference})."""
        return "{" + REFERENCE_PLACEHOLDER + "}" in self.user_template


@dataclass(frozen=True)
class JudgeVerdict:
    scores: dict[str, int] | None  # None when the judge's answer was unusable; never a 0 score
    lacking: dict[str, str]  # metric → what was lacking, a hint for the prompt generator
    error: str | None  # "judge_unparsable: <why>", "judge_refused: <why>" or another recorded failure
    # What this verdict cost (columns described in nexa_resources/tables/eval.py JUDGE_COST_SCHEMA).
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0

    @property
    def ok(self) -> bool:
        return self.scores is not None


def available_rubrics() -> tuple[str, ...]:
    """Names of the rubric files shipped in nexa_core/data/rubrics."""
    data = _rubric_folder()
    return tuple(sorted(p.name.removesuffix(".json") for p in data.iterdir() if p.name.endswith(".json")))


def _rubric_folder() -> Traversable:
    return resources.files("nexa_core").joinpath("data", "rubrics")


@cache
def load_rubric(name: str = DEFAULT_RUBRIC) -> Rubric:
    """The rubric shipped as package data `nexa_core/data/rubrics/<name>.json`."""
    names = available_rubrics()
    if name not in names:
        raise ValueError(f"unknown rubric {name!r}: valid values are {', '.join(names)}")
    text = _rubric_folder().joinpath(f"{name}.json").read_text(encoding="utf-8")
    return _build(name, text)


def _build(name: str, text: str) -> Rubric:
    raw: dict[str, Any] = json.loads(text)
    low, high = int(raw["scale"]["min"]), int(raw["scale"]["max"])
    if low >= high:
        raise ValueError(f"{name}: scale min {low} must be below max {high}")
    descriptions: dict[str, Mapping[str, str]] = {}
    for entry in raw["metrics"]:
        metric = entry["name"]
        if metric in descriptions:
            raise ValueError(f"{name}: metric {metric!r} is listed twice")
        missing = [level for level in _ANCHOR_LEVELS if level not in entry["levels"]]
        if missing:
            raise ValueError(f"{name}: metric {metric!r} lacks anchors for {', '.join(missing)}")
        descriptions[metric] = MappingProxyType({"question": entry["question"], **entry["levels"]})
    user_template = raw["user_template"]
    absent = [p for p in USER_PLACEHOLDERS if "{" + p + "}" not in user_template]
    if absent:
        raise ValueError(f"{name}: user_template lacks placeholders {', '.join('{' + p + '}' for p in absent)}")
    metrics = tuple(descriptions)
    system_prompt = _fill(
        raw["system_prompt"],
        {
            "scale_min": str(low),
            "scale_max": str(high),
            "rubric": _render_descriptions(descriptions),
            "metric_scores": "{" + ", ".join(f'"{m}": <{low}-{high}>' for m in metrics) + "}",
        },
    )
    return Rubric(
        version=f"{raw['version']}-{content_hash(text)[:12]}",
        metrics=metrics,
        scale=(low, high),
        system_prompt=system_prompt,
        user_template=user_template,
        descriptions=MappingProxyType(descriptions),
    )


def _render_descriptions(descriptions: Mapping[str, Mapping[str, str]]) -> str:
    blocks = []
    for metric, text in descriptions.items():
        anchors = "\n".join(f"  {level} = {text[level]}" for level in _ANCHOR_LEVELS)
        blocks.append(f"- {metric}: {text['question']}\n{anchors}")
    return "\n".join(blocks)


def _fill(template: str, values: Mapping[str, str]) -> str:
    """Replace {name} placeholders in one pass, so braces inside the values are never expanded."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def format_judge_messages(
    rubric: Rubric,
    task_type: str,
    instruction: str,
    context: str | None,
    answer: str | None,
    reference: str | None = None,
) -> list[dict[str, str]]:
    """The chat messages (system, user) asking a judge to score one answer with this rubric; `reference` (the
    teacher's answer to the same prompt) only with a rubric that takes one."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task_type {task_type!r}: valid values are {', '.join(TASK_TYPES)}")
    if reference is not None and not rubric.takes_reference:
        raise ValueError(f"rubric {rubric.version} shows no reference answer: use its _reference variant")
    user = _fill(
        rubric.user_template,
        {
            "task_type": task_type,
            "instruction": instruction.strip(),
            "context": (context or "").strip() or "(none)",
            "answer": (answer or "").strip() or "(empty answer)",
            REFERENCE_PLACEHOLDER: (reference or "").strip() or NO_REFERENCE,
        },
    )
    return [{"role": "system", "content": rubric.system_prompt}, {"role": "user", "content": user}]


def parse_judge_answer(rubric: Rubric, text: str | None) -> tuple[dict[str, int] | None, dict[str, str], str | None]:
    """(scores, lacking, error) from a judge's reply; any defect gives (None, {}, "judge_unparsable: …").

    Tolerates ```json fences, prose around the object, a flat object without "scores", integral floats
    (4.0) and digit strings ("4"); a missing metric, another value, or a score off the scale is an error.
    """
    found = _json_object(text or "")
    if found is None:
        return None, {}, "judge_unparsable: no JSON object in the judge's answer"
    block = found.get("scores", found)
    if not isinstance(block, dict):
        return None, {}, f"judge_unparsable: 'scores' is a {type(block).__name__}, not an object"
    low, high = rubric.scale
    scores: dict[str, int] = {}
    for metric in rubric.metrics:
        if metric not in block:
            return None, {}, f"judge_unparsable: missing score for {metric!r} (metrics: {', '.join(rubric.metrics)})"
        score = _as_int(block[metric])
        if score is None:
            return None, {}, f"judge_unparsable: score for {metric!r} is not an integer: {block[metric]!r}"
        if not low <= score <= high:
            return None, {}, f"judge_unparsable: score for {metric!r} is {score}, outside {low}-{high}"
        scores[metric] = score
    lacking_block = found.get("lacking")
    lacking = {
        metric: " ".join(phrase.split())
        for metric, phrase in (lacking_block.items() if isinstance(lacking_block, dict) else ())
        if metric in scores and isinstance(phrase, str) and phrase.strip()
    }
    return scores, lacking, None


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object holding "scores" (else the first JSON object at all) anywhere in the text."""
    decoder = json.JSONDecoder()
    first: dict[str, Any] | None = None
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            if "scores" in value:
                return value
            first = first if first is not None else value
        position = text.find("{", end)
    return first


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None
