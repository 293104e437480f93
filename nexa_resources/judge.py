"""The judge behind one interface: the offline structural judge (default) or an LLM judge over the
same OpenAI-compatible client as the teacher. Both score the versioned rubric of DESIGN §5.

The LLM judge's answers are cached in the lake (eval/judge_requests, keyed by a hash of the judge model, the
rubric messages and the sampling), so a pair judged again costs nothing, as a teacher request answered before.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from pydantic import Field

from nexa_core.filters import is_refusal
from nexa_core.pricing import cost_usd
from nexa_core.reference import ReferenceSet, reference_version
from nexa_core.rubric import (
    DEFAULT_RUBRIC,
    JudgeVerdict,
    Rubric,
    available_rubrics,
    format_judge_messages,
    load_rubric,
    parse_judge_answer,
)
from nexa_core.structural_judge import judge_structural_batch
from nexa_core.text import content_hash
from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.llm_client import ChatResult, run_sync
from nexa_resources.profiles import settings_env
from nexa_resources.tables.eval import JUDGE_REQUEST_SCHEMA
from nexa_resources.teacher import Endpoint, _endpoint_env

JUDGE_KINDS: tuple[str, ...] = ("structural", "llm")
STRUCTURAL_JUDGE_ID = "structural-v2"
JUDGE_REQUESTS = "eval/judge_requests"
OPENAI_BASE_URL = "https://api.openai.com/v1"
# The LLM judge when only an API key is given; the second when the teacher is the first (a model grading its own
# answers favours them).
DEFAULT_JUDGE_MODELS: tuple[str, str] = ("gpt-4.1-mini", "gpt-4o-mini")


def default_judge_model(teacher_model: str) -> str:
    """The default LLM judge: never the teacher's model."""
    first, second = DEFAULT_JUDGE_MODELS
    return second if teacher_model == first else first


@dataclass
class JudgeCache:
    """The LLM judge's request cache: the lake table eval/judge_requests (JUDGE_REQUEST_SCHEMA)."""

    lake: LakeResource
    lineage: Lineage | None = None

    def lookup(self, request_ids: set[str]) -> dict[str, dict[str, Any]]:
        table = self.lake.read(JUDGE_REQUESTS, missing_ok=True)
        if table.is_empty() or not request_ids:
            return {}
        found = table.filter(pl.col("request_id").is_in(list(request_ids)))
        return {row["request_id"]: row for row in found.iter_rows(named=True)}

    def store(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            frame = pl.DataFrame(rows, schema=JUDGE_REQUEST_SCHEMA)
            self.lake.write(JUDGE_REQUESTS, frame, mode="merge", lineage=self.lineage)


class JudgeResource(Endpoint):
    """Scores answers on the rubric: `structural` (no model, default) or `llm` (OpenAI-compatible)."""

    kind: str = Field(default="structural", description=f"One of {', '.join(JUDGE_KINDS)}.")
    rubric: str = Field(default=DEFAULT_RUBRIC, description="Rubric file in nexa_core/data/rubrics.")
    temperature: float = 0.0
    max_tokens: int = Field(default=256, gt=0)
    reference: bool = Field(
        default=False,
        description="Judge eval answers against the teacher row's answer to the same prompt (eval/predictions, "
        "model_kind teacher) where one exists: the structural judge blends agreement with it into correctness, "
        "the LLM judge is shown it (rubric <rubric>_reference). Off by default: on the calibration set it did not "
        "help (README, 'What the offline judge measures').",
    )

    @classmethod
    def from_env(cls) -> JudgeResource:
        """NEXA_JUDGE (structural|llm); unset, an API key (NEXA_JUDGE_API_KEY, else OPENAI_API_KEY) makes it `llm`
        and none `structural`. NEXA_JUDGE_BASE_URL (OpenAI's when only a key is given), NEXA_JUDGE_MODEL (default:
        gpt-4.1-mini, or gpt-4o-mini when NEXA_TEACHER_MODEL is gpt-4.1-mini); NEXA_JUDGE_REFERENCE=1 turns the
        `reference` option on."""
        settings = _endpoint_env("NEXA_JUDGE")
        env = settings_env()
        settings["reference"] = env.get("NEXA_JUDGE_REFERENCE", "").strip().lower() in {"1", "true", "yes", "on"}
        kind = env.get("NEXA_JUDGE") or ("llm" if settings.get("api_key") else "structural")
        if kind == "llm" and settings.get("api_key") and not settings["base_url"]:
            settings["base_url"] = OPENAI_BASE_URL
        if settings["base_url"] and not settings["model"]:
            settings["model"] = default_judge_model(env.get("NEXA_TEACHER_MODEL", ""))
        return cls(kind=kind, **settings)

    def _check_kind(self) -> None:
        if self.kind not in JUDGE_KINDS:
            raise ValueError(f"unknown judge kind {self.kind!r}: valid values are {', '.join(JUDGE_KINDS)}")

    @property
    def judge_model(self) -> str:
        self._check_kind()
        return STRUCTURAL_JUDGE_ID if self.kind == "structural" else self.model_id

    @property
    def rubric_version(self) -> str:
        return load_rubric(self.rubric).version

    @property
    def reference_rubric(self) -> str:
        """The rubric that shows the LLM judge a reference answer: `<rubric>_reference`."""
        name = f"{self.rubric}_reference"
        if name not in available_rubrics() or not load_rubric(name).takes_reference:
            valid = [n.removesuffix("_reference") for n in available_rubrics() if n.endswith("_reference")]
            raise ValueError(f"rubric {self.rubric!r} has no reference variant: with reference on, valid rubrics are "
                             f"{', '.join(valid)}")
        return name

    def eval_rubric_version(self, reference_model: str | None) -> str:
        """The rubric_version of eval/scores rows: the rubric's, or with `reference` on that of its reference
        variant and the model whose answers are the references, so scores with and without (or against another
        teacher's) references are never mixed."""
        if not self.reference:
            return self.rubric_version
        if reference_model is None:
            raise ValueError("judge reference is on but there is no teacher row to take references from")
        return reference_version(load_rubric(self.reference_rubric).version, reference_model)

    def judge_price(self) -> tuple[float, float] | None:
        """USD per 1M (input, output) tokens: 0 for the local model, None when the model has no known price."""
        return (0.0, 0.0) if self.is_local else self.price()

    def request_id(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The cache key of one judge request: the judge model, the rubric messages and the sampling."""
        return content_hash(self.model_id, json.dumps(list(messages), sort_keys=True), self.sampling().fingerprint())

    def judge_many(
        self,
        items: Sequence[Mapping[str, Any]],
        log: Any = None,
        corpus: Sequence[Mapping[str, Any]] = (),
        cache: JudgeCache | None = None,
        references: ReferenceSet | None = None,
    ) -> list[JudgeVerdict]:
        """One verdict per item (keys task_type, instruction, context, answer, finish_reason; `owner`, the row
        the verdict is for, decides which row carries a cached verdict's cost).

        `items` should be one model's answers: the structural judge lowers the correctness of an answer
        near-identical to answers of other prompts, in `items` or in `corpus` (that model's answers judged
        before, same keys; only compared against, never judged). The LLM judge scores each answer alone,
        asking only what `cache` has not answered before. With `references` (the teacher's answers), each
        answer is judged against its prompt's reference where there is one: blended into correctness by the
        structural judge, shown to the LLM judge with the reference rubric.
        """
        self._check_kind()
        if self.kind == "structural":
            return judge_structural_batch(items, corpus, references)
        return run_sync(lambda: self._judge_llm(items, log, cache, references))

    async def _judge_llm(
        self,
        items: Sequence[Mapping[str, Any]],
        log: Any,
        cache: JudgeCache | None,
        references: ReferenceSet | None = None,
    ) -> list[JudgeVerdict]:
        rubric = load_rubric(self.rubric if references is None else self.reference_rubric)
        messages = [
            format_judge_messages(
                rubric, i["task_type"], i["instruction"], i.get("context"), i["answer"],
                references.text(i) if references is not None else None,
            )
            for i in items
        ]
        ids = [self.request_id(m) for m in messages]
        owners = [i.get("owner") for i in items]
        cached = cache.lookup(set(ids)) if cache is not None else {}
        pending: dict[str, list[dict[str, str]]] = {}
        for rid, m in zip(ids, messages):
            if rid not in cached:
                pending.setdefault(rid, m)
        if log is not None:
            log.info(f"LLM judge {self.model_id}: {len(items)} verdicts, {len(set(ids)) - len(pending)} requests "
                     f"from the cache, {len(pending)} to send")
        results = await self._send(pending, log)
        first_owner: dict[str, str | None] = {}
        for rid, owner in zip(ids, owners):
            first_owner.setdefault(rid, owner)
        fresh = [self._cache_row(rid, first_owner[rid], r) for rid, r in results.items() if r.ok]
        if cache is not None:
            cache.store(fresh)
        answered = {**cached, **{row["request_id"]: row for row in fresh}}
        claimed: set[str] = set()
        verdicts = []
        for rid, owner in zip(ids, owners):
            entry = answered.get(rid)
            if entry is None:
                verdicts.append(JudgeVerdict(None, {}, f"judge_error: {results[rid].error}"))
                continue
            paid = rid not in claimed and entry["owner"] == owner
            if paid:
                claimed.add(rid)
            verdicts.append(_verdict(rubric, entry, paid))
        return verdicts

    async def _send(self, requests: Mapping[str, list[dict[str, str]]], log: Any) -> dict[str, ChatResult]:
        if not requests:
            return {}
        client = self.client(log)
        try:
            return {key: result async for key, result in client.stream(list(requests.items()), self.sampling())}
        finally:
            await client.aclose()

    def _cache_row(self, rid: str, owner: str | None, result: ChatResult) -> dict[str, Any]:
        price = self.judge_price()
        return {
            "request_id": rid,
            "judge_model": self.model_id,
            "owner": owner,
            "content": result.content,
            "refusal": result.refusal,
            "finish_reason": result.finish_reason,
            "prompt_tokens": result.prompt_tokens,
            "completion_tokens": result.completion_tokens,
            "cost_usd": None if price is None else cost_usd(result.prompt_tokens, result.completion_tokens, price),
            "latency_ms": result.latency_ms,
            "attempts": result.attempts,
        }


def _verdict(rubric: Rubric, entry: Mapping[str, Any], paid: bool) -> JudgeVerdict:
    """The verdict in a judge's answer; its tokens and $ only on the row that `paid` for it."""
    cost: dict[str, Any] = {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    if paid:
        cost = {k: entry[k] for k in cost}
    if entry["refusal"]:
        return JudgeVerdict(None, {}, f"judge_refused: {_short(entry['refusal'])}", **cost)
    scores, lacking, error = parse_judge_answer(rubric, entry["content"])
    if scores is None and is_refusal(entry["content"]):
        error = f"judge_refused: {_short(entry['content'])}"
    return JudgeVerdict(scores, lacking, error, **cost)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
