"""The teacher task contract: declared input columns, a function that builds the messages, one that
parses the answer (distilabel-style). Templates are versioned files; their content hash is the version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from nexa_assets.taxonomy import TASK_TYPES
from nexa_assets.text import content_hash
from nexa_resources.llm_client import ChatResult, SamplingParams

TEMPLATE_NAMES: tuple[str, ...] = ("system", "hypothesis", "methodology", "regeneration")
INPUT_COLUMNS: tuple[str, ...] = ("prompt_id", "domain", "task_type", "instruction", "context")
OUTPUT_COLUMNS: tuple[str, ...] = (
    "request_id",
    "prompt_id",
    "teacher_model",
    "template_version",
    "system_prompt",
    "user_prompt",
    "completion",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "latency_ms",
    "cost_usd",
    "attempts",
    "error",
    "regenerated_from",
)
# How a filter reason reads to the teacher in a regeneration request.
REASON_TEXT: dict[str, str] = {
    "too_short": "the answer was too short",
    "too_long": "the answer was too long",
    "too_few_tokens": "the answer was too short",
    "too_many_tokens": "the answer was too long",
    "truncated": "the answer was cut off before it ended",
    "empty": "the answer was empty",
    "refusal": "the answer refused the task",
    "invented_citation": "it cited references that may not exist (do not cite anything)",
    "missing_hypotheses": "it did not give two or three distinct numbered hypotheses",
    "hypothesis_without_outcome": "a hypothesis had no measurable outcome",
    "too_few_steps": "it had fewer than three ordered steps",
    "missing_control": "it had no control condition",
    "missing_readout": "it did not say what would be measured",
    "near_duplicate": "it repeated another answer almost word for word",
}


@dataclass(frozen=True)
class Templates:
    texts: Mapping[str, str]
    version: str


@cache
def templates() -> Templates:
    """The prompt templates (nexa_assets/distill/templates/*.txt) and their content-hash version."""
    folder = resources.files("nexa_assets.distill").joinpath("templates")
    texts = {name: folder.joinpath(f"{name}.txt").read_text(encoding="utf-8").strip() for name in TEMPLATE_NAMES}
    version = "t-" + content_hash(*(f"{name}\x1e{texts[name]}" for name in TEMPLATE_NAMES))[:12]
    return Templates(texts=texts, version=version)


def request_id(prompt_id: str, model: str, template_version: str, params: SamplingParams, extra: str = "") -> str:
    """The identity of one teacher call: an answered request id is never paid for again."""
    return content_hash(prompt_id, model, template_version, params.fingerprint(), extra)


def format_messages(row: Mapping[str, Any]) -> tuple[str, str]:
    """(system prompt, user prompt) for one raw prompt row."""
    task_type = row["task_type"]
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task_type {task_type!r}: valid values are {', '.join(TASK_TYPES)}")
    t = templates().texts
    context = (row.get("context") or "").strip()
    user = t[task_type].format(
        domain=row["domain"],
        instruction=row["instruction"].strip(),
        context_block=f"Context: {context}\n" if context else "",
    )
    return t["system"], user


def format_regeneration(original_user_prompt: str, reasons: Sequence[str]) -> str:
    """The user prompt that asks again, telling the teacher what failed."""
    said = [REASON_TEXT.get(r, r.replace("_", " ")) for r in reasons]
    unique = list(dict.fromkeys(said))
    return templates().texts["regeneration"].format(
        reasons="; ".join(unique) or "it did not meet the quality bar", original_user_prompt=original_user_prompt
    )


def messages(system_prompt: str, user_prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system_prompt}, {"role": "user", "content": user_prompt}]


def parse_answer(result: ChatResult) -> tuple[str | None, str | None]:
    """(completion, error): the text, or None with the recorded reason."""
    if result.error is not None:
        return None, result.error
    text = (result.content or "").strip()
    if not text:
        return None, "empty answer"
    return text, None


def cost_usd(prompt_tokens: int, completion_tokens: int, price: Sequence[float] | None) -> float:
    """Cost from a (USD per 1M input tokens, USD per 1M output tokens) price; 0 when unpriced."""
    if not price:
        return 0.0
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000
