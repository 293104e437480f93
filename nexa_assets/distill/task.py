"""The teacher task contract: declared input columns, a function that builds the messages, one that
parses the answer (distilabel-style). Templates are versioned files; their content hash is the version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nexa_core.taxonomy import TASK_TYPES
from nexa_core.templates import templates
from nexa_core.text import content_hash
from nexa_resources.llm_client import ChatResult, SamplingParams

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
    "sample_index",
    "worked_examples",
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


def worked_example(task_type: str) -> list[dict[str, str]]:
    """A solved task of this type as a (user, assistant) turn, asked exactly the way real prompts are."""
    head, _, answer = templates().texts[f"example_{task_type}"].partition("\n---\n")
    fields = dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)
    _, user = format_messages({"task_type": task_type, "domain": fields["Domain"], "instruction": fields["Task"]})
    return [{"role": "user", "content": user}, {"role": "assistant", "content": answer.strip()}]


def teacher_request(
    row: Mapping[str, Any],
    model: str,
    params: SamplingParams,
    *,
    sample_index: int = 0,
    worked_examples: int = 0,
    user_prompt: str | None = None,
    regenerated_from: str | None = None,
) -> dict[str, Any]:
    """One teacher call for a raw prompt row: its identity covers the model, templates, sampling, the worked
    examples in context and the sample index (best-of-n sends n requests; none is ever paid twice).

    `system_prompt` and `user_prompt` are what the student is trained on and evaluated with; `shots` (the
    worked examples) go to the teacher only.
    """
    version = templates().version
    system_prompt, plain_user = format_messages(row)
    shots = worked_example(row["task_type"]) if worked_examples else []
    extra = f"shots={worked_examples};sample={sample_index}" if (worked_examples or sample_index) else ""
    if regenerated_from is not None:
        extra += f"regen:{regenerated_from}"
    return {
        "request_id": request_id(row["prompt_id"], model, version, params, extra),
        "prompt_id": row["prompt_id"],
        "template_version": version,
        "system_prompt": system_prompt,
        "user_prompt": user_prompt or plain_user,
        "shots": shots,
        "regenerated_from": regenerated_from,
        "sample_index": sample_index,
        "worked_examples": worked_examples,
    }


def format_regeneration(original_user_prompt: str, reasons: Sequence[str]) -> str:
    """The user prompt that asks again, telling the teacher what failed."""
    said = [REASON_TEXT.get(r, r.replace("_", " ")) for r in reasons]
    unique = list(dict.fromkeys(said))
    return templates().texts["regeneration"].format(
        reasons="; ".join(unique) or "it did not meet the quality bar", original_user_prompt=original_user_prompt
    )


def messages(
    system_prompt: str, user_prompt: str, shots: Sequence[Mapping[str, str]] = ()
) -> list[dict[str, str]]:
    """The chat sent: system prompt, any worked examples as earlier turns, then the user prompt."""
    return [
        {"role": "system", "content": system_prompt},
        *({"role": m["role"], "content": m["content"]} for m in shots),
        {"role": "user", "content": user_prompt},
    ]


def parse_answer(result: ChatResult) -> tuple[str | None, str | None]:
    """(completion, error): the text, or None with the recorded reason."""
    if result.error is not None:
        return None, result.error
    text = (result.content or "").strip()
    if not text:
        return None, "empty answer"
    return text, None
