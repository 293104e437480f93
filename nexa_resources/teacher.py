"""Teacher and LLM-judge endpoints: any OpenAI-compatible server, or the local default model.

With no base URL configured, the first request starts `transformers serve` with SmolLM2-135M-Instruct
on a free port of 127.0.0.1; the server stops when the run ends. API keys come only from environment
variables (Dagster `EnvVar`), are never logged and never written anywhere.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from nexa_resources.llm_client import ChatClient, RetryPolicy, SamplingParams
from nexa_resources.local_model import (
    LOCAL_MODEL_NAME,
    LocalModelServer,
    ensure_local_model,
)
from nexa_resources.profiles import secret_env, settings_env

LOCAL_MODEL_ID = f"local/{LOCAL_MODEL_NAME}"
# The local model answers in batches (nexa_resources.batch_server): 128 in flight fill one batch.
LOCAL_MAX_TOKENS, LOCAL_CONCURRENCY = 256, 128
REMOTE_MAX_TOKENS, REMOTE_CONCURRENCY = 384, 16
# Best of 4 samples with a worked example lifted the local model's mean judge score from 2.99 (plain, greedy)
# and 3.45 (example, greedy) to 4.11 on 24 seed prompts (docs/loop.md, "What makes the loop learn").
LOCAL_BEST_OF = 4
# Re-asking a prompt none of whose samples passed, with what failed: on the local teacher 20 such requests
# (bench/efficacy.py, 2 rounds) made 3 SFT rows in 158 s, a quarter of what the same time buys as more
# best-of samples in the main batch; a paid teacher answering once per prompt gets one re-ask.
LOCAL_REGENERATE, REMOTE_REGENERATE = 0, 1
# vLLM's repetition penalty at 1.1 cut the local teacher's loops: on 32 seed prompts × 4 samples (worked example,
# T 0.7) truncated answers fell from 63 to 37 of 128, gate-passing samples rose from 17 to 47 and prompts with a
# passing sample from 11 to 26 (docs/loop.md, "What makes the loop learn"). At 1.3 it breaks list numbering.
LOCAL_REPETITION_PENALTY = 1.1
# A local request waits for the batches ahead of it (64 answers of 256 tokens: ~5 minutes on 2 cores); a
# client that gave up earlier would retry and have the same answer computed again.
LOCAL_TIMEOUT_S, REMOTE_TIMEOUT_S = 3600.0, 180.0
# USD per 1M (input, output) tokens for well-known hosted models; extend with the `prices` field.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}


class Endpoint(dg.ConfigurableResource):
    """Shared settings of an OpenAI-compatible endpoint (teacher or judge)."""

    base_url: str = Field(default="", description="OpenAI-compatible base URL; empty starts the local model.")
    model: str = Field(default="", description="Model name sent to the endpoint (ignored for the local model).")
    api_key: str | None = Field(default=None, description="API key; set it with dagster.EnvVar, never inline.")
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = Field(
        default=0, ge=0, description=f"Answer length limit; 0 = {LOCAL_MAX_TOKENS} for the local model, {REMOTE_MAX_TOKENS} otherwise."
    )
    seed: int | None = None
    repetition_penalty: float | None = Field(
        default=None, gt=0, description="> 1 discourages repeating tokens (vLLM and the local server; OpenAI rejects it); unset: "
        f"{LOCAL_REPETITION_PENALTY} for the local teacher, none otherwise."
    )
    max_concurrency: int = Field(
        default=0, ge=0, description=f"Requests in flight; 0 = {LOCAL_CONCURRENCY} for the local model, {REMOTE_CONCURRENCY} otherwise."
    )
    requests_per_minute: float = Field(default=0, ge=0, description="0 = unlimited")
    tokens_per_minute: float = Field(default=0, ge=0, description="0 = unlimited")
    timeout_s: float = Field(
        default=0,
        ge=0,
        description=f"Seconds a request may take; 0 = {LOCAL_TIMEOUT_S:.0f} for the local model (a request waits for "
        f"its batch: minutes on a CPU), {REMOTE_TIMEOUT_S:.0f} otherwise.",
    )
    max_retries: int = Field(default=5, ge=0)
    backoff_base_s: float = Field(default=0.5, ge=0)
    prices: dict[str, list[float]] = Field(
        default_factory=dict,
        description="USD per 1M [input, output] tokens by model id, beside DEFAULT_PRICES; a model in neither costs "
        "0 as a teacher and is 'unknown' (null $) as a judge.",
    )

    _server: LocalModelServer | None = PrivateAttr(default=None)

    @property
    def is_local(self) -> bool:
        return not self.base_url

    @property
    def model_id(self) -> str:
        """The stable name recorded in tables and hashed into request ids."""
        if self.is_local:
            return LOCAL_MODEL_ID
        if not self.model:
            raise ValueError(f"{type(self).__name__}: a base_url needs a model name too")
        return self.model

    @property
    def answer_tokens(self) -> int:
        """max_tokens, or the default for this endpoint: the same wherever the resource is built (CLI, demo,
        daemon), since it is part of every request id."""
        return self.max_tokens or (LOCAL_MAX_TOKENS if self.is_local else REMOTE_MAX_TOKENS)

    @property
    def concurrency(self) -> int:
        return self.max_concurrency or (LOCAL_CONCURRENCY if self.is_local else REMOTE_CONCURRENCY)

    def sampling(self) -> SamplingParams:
        return SamplingParams(self.temperature, self.top_p, self.answer_tokens, self.seed, self.penalty)

    @property
    def penalty(self) -> float | None:
        """The repetition penalty sent: the configured one (none when unset)."""
        return self.repetition_penalty

    def price(self) -> tuple[float, float] | None:
        """USD per 1M (input, output) tokens: 0 for the local model, None when a remote model has no known price."""
        if self.is_local:
            return (0.0, 0.0)
        if self.model in self.prices:
            values = self.prices[self.model]
            return (float(values[0]), float(values[1]))
        return DEFAULT_PRICES.get(self.model)

    def describe(self) -> dict[str, Any]:
        """What to show in metadata and logs: never the key."""
        return {
            "model_id": self.model_id,
            "endpoint": "local (OpenAI-compatible server, 127.0.0.1)" if self.is_local else self.base_url,
            "max_concurrency": self.concurrency,
            "sampling": self.sampling().as_request(),
        }

    def client(self, log: Any = None) -> ChatClient:
        """A ChatClient for this endpoint, starting the local model server first when needed."""
        base_url, request_model = self.base_url, self.model
        if self.is_local:
            if self._server is None:
                if log is not None:
                    log.info(f"starting the local model {LOCAL_MODEL_NAME} (OpenAI-compatible server on 127.0.0.1)")
                self._server = LocalModelServer(ensure_local_model()).start()
                if log is not None:
                    log.info(f"local model ready at {self._server.base_url}")
            base_url, request_model = self._server.base_url, self._server.model_name
        api_key = self.api_key.get_value() if isinstance(self.api_key, dg.EnvVar) else self.api_key
        return ChatClient(
            base_url=base_url,
            model=request_model,
            api_key=api_key,
            timeout_s=self.timeout_s or (LOCAL_TIMEOUT_S if self.is_local else REMOTE_TIMEOUT_S),
            max_concurrency=self.concurrency,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            retry=RetryPolicy(max_retries=self.max_retries, backoff_base_s=self.backoff_base_s),
        )

    def close(self) -> None:
        """Stop the local model server if this resource started one."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.close()


class TeacherResource(Endpoint):
    """The teacher that answers prompts (OpenAI, vLLM, any OpenAI-compatible server, or local).

    Context and search make a teacher stronger than its weights alone: `worked_examples` solved tasks of the
    same type precede each prompt, and `best_of` samples are drawn per prompt, the gate and judge choosing one
    (distill/pairs). The student is trained on the prompt without the examples (context distillation).
    """

    max_error_rate: float = Field(
        default=0.2, ge=0, le=1, description="Fail the run when more than this share of sent requests fail."
    )
    best_of: int = Field(
        default=0, ge=0, description=f"Samples per prompt; 0 = {LOCAL_BEST_OF} for the local model, 1 otherwise."
    )
    worked_examples: int = Field(
        default=1, ge=0, le=1, description="Worked examples of the task type in the teacher's context (0 or 1)."
    )
    top_logprobs: int = Field(
        default=0, ge=0, le=20, description="Keep the teacher's top-k token log-probabilities in distill/logprobs "
        "(0: off). A remote endpoint is asked with logprobs/top_logprobs (part of the request id); the local teacher "
        "returns none, so the distill/logprobs asset scores its chosen answers in-process (docs/distill.md)."
    )
    logprobs_tokenizer: str = Field(
        default="", description="A folder or hub id of the remote teacher's tokenizer: its identity is recorded with "
        "the probabilities and their token texts mapped to ids (unset: endpoint:<model>, which no student matches)."
    )

    def sampling(self) -> SamplingParams:
        base = super().sampling()
        if self.top_logprobs and not self.is_local:
            from dataclasses import replace

            return replace(base, top_logprobs=self.top_logprobs)
        return base

    @property
    def samples(self) -> int:
        return self.best_of or (LOCAL_BEST_OF if self.is_local else 1)

    @property
    def regenerations(self) -> int:
        """Default re-asks of a prompt whose samples all failed the gate (distill/pairs `regenerate`)."""
        return LOCAL_REGENERATE if self.is_local else REMOTE_REGENERATE

    @property
    def penalty(self) -> float | None:
        if self.repetition_penalty is None and self.is_local:
            return LOCAL_REPETITION_PENALTY
        return self.repetition_penalty

    def label(self, decoding: str) -> str:
        """A readable name for tables: the model and how it was asked."""
        shots = f"{self.worked_examples} worked example{'s' if self.worked_examples != 1 else ''}"
        name = f"local {LOCAL_MODEL_NAME}" if self.is_local else self.model_id
        return f"teacher ({name}, {shots}, {decoding})"

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "best_of": self.samples, "worked_examples": self.worked_examples}

    @classmethod
    def from_env(cls) -> TeacherResource:
        """NEXA_TEACHER_BASE_URL, NEXA_TEACHER_MODEL, NEXA_TEACHER_API_KEY (else OPENAI_API_KEY)."""
        return cls(**_endpoint_env("NEXA_TEACHER"))


def _endpoint_env(prefix: str) -> dict[str, Any]:
    env = settings_env()
    settings: dict[str, Any] = {
        "base_url": env.get(f"{prefix}_BASE_URL", ""),
        "model": env.get(f"{prefix}_MODEL", ""),
    }
    api_key = secret_env(f"{prefix}_API_KEY", "OPENAI_API_KEY")
    if api_key is not None:
        settings["api_key"] = api_key
    if env.get(f"{prefix}_MAX_CONCURRENCY"):
        settings["max_concurrency"] = int(env[f"{prefix}_MAX_CONCURRENCY"])
    if prefix == "NEXA_TEACHER" and env.get("NEXA_TEACHER_TOP_LOGPROBS"):
        settings["top_logprobs"] = int(env["NEXA_TEACHER_TOP_LOGPROBS"])
    if env.get(f"{prefix}_MAX_TOKENS"):
        settings["max_tokens"] = int(env[f"{prefix}_MAX_TOKENS"])
    return settings
