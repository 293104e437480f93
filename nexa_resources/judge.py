"""The judge behind one interface: the offline structural judge (default) or an LLM judge over the
same OpenAI-compatible client as the teacher. Both score the versioned rubric of DESIGN §5."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from nexa_assets.evaluate.rubric import (
    DEFAULT_RUBRIC,
    JudgeVerdict,
    format_judge_messages,
    load_rubric,
    parse_judge_answer,
)
from nexa_assets.evaluate.structural_judge import judge_structural_batch
from nexa_resources.llm_client import run_sync
from nexa_resources.teacher import Endpoint, _endpoint_env

JUDGE_KINDS: tuple[str, ...] = ("structural", "llm")
STRUCTURAL_JUDGE_ID = "structural-v2"


class JudgeResource(Endpoint):
    """Scores answers on the rubric: `structural` (no model, default) or `llm` (OpenAI-compatible)."""

    kind: str = Field(default="structural", description=f"One of {', '.join(JUDGE_KINDS)}.")
    rubric: str = Field(default=DEFAULT_RUBRIC, description="Rubric file in nexa_assets/evaluate/data.")
    temperature: float = 0.0
    max_tokens: int = Field(default=256, gt=0)

    @classmethod
    def from_env(cls) -> JudgeResource:
        """NEXA_JUDGE (structural|llm), NEXA_JUDGE_BASE_URL, NEXA_JUDGE_MODEL, NEXA_JUDGE_API_KEY."""
        return cls(kind=os.environ.get("NEXA_JUDGE", "structural"), **_endpoint_env("NEXA_JUDGE"))

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

    def judge_many(
        self,
        items: Sequence[Mapping[str, Any]],
        log: Any = None,
        corpus: Sequence[Mapping[str, Any]] = (),
    ) -> list[JudgeVerdict]:
        """One verdict per item (keys task_type, instruction, context, answer, finish_reason).

        `items` should be one model's answers: the structural judge lowers the correctness of an answer
        near-identical to answers of other prompts, in `items` or in `corpus` (that model's answers judged
        before, same keys; only compared against, never judged). The LLM judge scores each answer alone.
        """
        self._check_kind()
        if self.kind == "structural":
            return judge_structural_batch(items, corpus)
        return run_sync(lambda: self._judge_llm(items, log))

    async def _judge_llm(self, items: Sequence[Mapping[str, Any]], log: Any) -> list[JudgeVerdict]:
        rubric = load_rubric(self.rubric)
        client = self.client(log)
        requests = [
            (
                str(n),
                format_judge_messages(rubric, i["task_type"], i["instruction"], i.get("context"), i["answer"]),
            )
            for n, i in enumerate(items)
        ]
        verdicts: list[JudgeVerdict | None] = [None] * len(items)
        try:
            async for key, result in client.stream(requests, self.sampling()):
                if result.error is not None:
                    verdicts[int(key)] = JudgeVerdict(None, {}, f"judge_error: {result.error}")
                else:
                    verdicts[int(key)] = JudgeVerdict(*parse_judge_answer(rubric, result.content))
        finally:
            await client.aclose()
        return [v if v is not None else JudgeVerdict(None, {}, "judge_error: no answer") for v in verdicts]
