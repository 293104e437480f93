"""The scripted server's ASGI application: routes, scriptable config, stats and faults (see scripted_server.py)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson

from nexa_testing.scripted_answers import (
    VERDICT_FAULTS,
    answer_for,
    bad_verdict,
    fingerprint,
    logprobs_for,
    rubric_slots,
    text_of,
    verdict_for,
    word_count,
)

FAULTS: tuple[str, ...] = ("429", "500", "timeout", "malformed", "drop", "length")
DEFAULT_MODEL = "scripted-teacher"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Config:
    """The scriptable behaviour; every field is settable through POST /control."""

    latency_ms: int = 0
    fault_rate: float = 0.0
    faults: list[str] = field(default_factory=list)
    retry_after_s: float = 1.0
    seed: int = 0
    timeout_sleep_s: float = 30.0
    fail_first_n: int = 0
    verdict_fault_rate: float = 0.0
    verdict_faults: list[str] = field(default_factory=list)


@dataclass
class Stats:
    """What the server saw since the last reset."""

    requests: int = 0
    max_in_flight: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_fault: Counter[str] = field(default_factory=Counter)
    fingerprints: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    auth_headers: list[str] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    by_verdict: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        """The /stats payload."""
        return {
            "requests": self.requests,
            "max_in_flight": self.max_in_flight,
            "by_status": dict(self.by_status),
            "by_fault": dict(self.by_fault),
            "fingerprints": list(self.fingerprints),
            "answered": list(self.answered),
            "auth_headers": list(self.auth_headers),
            "by_verdict": dict(self.by_verdict),
        }


def _json_bytes(obj: Any) -> bytes:
    """Compact JSON encoding (orjson: a body with top-20 log-probabilities is ~200 KB)."""
    return orjson.dumps(obj)


def _error(kind: str, message: str, code: str) -> bytes:
    """An OpenAI-style error body."""
    return _json_bytes({"error": {"message": message, "type": kind, "param": None, "code": code}})


class ScriptedApp:
    """The raw ASGI application holding config and stats."""

    def __init__(self, latency_ms: int = 0) -> None:
        """Start with the given default latency."""
        self.default_latency_ms = latency_ms
        self.config = Config(latency_ms=latency_ms)
        self.stats = Stats()
        self.in_flight = 0
        self.started = int(time.time())

    # -- helpers ---------------------------------------------------------------------------

    def _choose_fault(self, fp: str, attempt: int) -> str | None:
        """The scripted fault for this (fingerprint, attempt), if any."""
        cfg = self.config
        if not cfg.faults:
            return None
        if cfg.fail_first_n > 0:
            return cfg.faults[(attempt - 1) % len(cfg.faults)] if attempt <= cfg.fail_first_n else None
        if cfg.fault_rate <= 0:
            return None
        h = hashlib.sha256(f"{cfg.seed}:{fp}:{attempt}".encode()).digest()
        u = int.from_bytes(h[:8], "big") / 2**64
        if u >= cfg.fault_rate:
            return None
        return cfg.faults[int.from_bytes(h[8:12], "big") % len(cfg.faults)]

    def _choose_verdict_fault(self, fp: str) -> str | None:
        """The scripted bad verdict for this request, the same on every attempt."""
        cfg = self.config
        if not cfg.verdict_faults or cfg.verdict_fault_rate <= 0:
            return None
        h = hashlib.sha256(f"verdict:{cfg.seed}:{fp}".encode()).digest()
        if int.from_bytes(h[:8], "big") / 2**64 >= cfg.verdict_fault_rate:
            return None
        return cfg.verdict_faults[int.from_bytes(h[8:12], "big") % len(cfg.verdict_faults)]

    def _judge_answer(self, fp: str, messages: list[Any], prompt: str) -> tuple[str | None, str | None] | None:
        """(content, refusal) when the request is a rubric judge prompt, else None."""
        system = next((text_of(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "system"), "")
        slots = rubric_slots(system)
        if slots is None:
            return None
        metrics, low, high = slots
        fault = self._choose_verdict_fault(fp)
        self.stats.by_verdict[fault or "ok"] += 1
        if fault is not None:
            return bad_verdict(fault, metrics, high)
        found = re.search(r"<answer>\n?(.*?)\n?</answer>", prompt, re.S)
        return json.dumps(verdict_for(metrics, low, high, found.group(1) if found else prompt)), None

    def _apply_control(self, body: dict[str, Any]) -> None:
        """Validate and apply a /control payload (raises ValueError on bad input)."""
        known = {f.name for f in fields(Config)} | {"reset"}
        unknown = set(body) - known
        if unknown:
            raise ValueError(f"unknown control keys: {sorted(unknown)}")
        faults = body.get("faults")
        if faults is not None:
            if not isinstance(faults, list) or any(str(f) not in FAULTS for f in faults):
                raise ValueError(f"faults must be a list drawn from {list(FAULTS)}")
            body = {**body, "faults": [str(f) for f in faults]}
        bad = body.get("verdict_faults")
        if bad is not None and (not isinstance(bad, list) or any(str(f) not in VERDICT_FAULTS for f in bad)):
            raise ValueError(f"verdict_faults must be a list drawn from {list(VERDICT_FAULTS)}")
        for key in ("fault_rate", "verdict_fault_rate"):
            rate = body.get(key)
            if rate is not None and not 0.0 <= float(rate) <= 1.0:
                raise ValueError(f"{key} must be within 0..1")
        casts: dict[str, Callable[[Any], Any]] = {
            "latency_ms": int, "fault_rate": float, "retry_after_s": float,
            "seed": int, "timeout_sleep_s": float, "fail_first_n": int, "faults": list,
            "verdict_fault_rate": float, "verdict_faults": lambda v: [str(f) for f in v],
        }
        updates = {key: cast(body[key]) for key, cast in casts.items() if key in body}  # all-or-nothing
        if body.get("reset"):
            self.config = Config(latency_ms=self.default_latency_ms)
            self.stats = Stats()
        for key, value in updates.items():
            setattr(self.config, key, value)

    @staticmethod
    async def _read_body(receive: Receive) -> bytes:
        """The whole request body."""
        chunks: list[bytes] = []
        while True:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                return b"".join(chunks)

    @staticmethod
    async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        """Send one complete response."""
        hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": hdrs + (headers or [])})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _drop(send: Send) -> None:
        """Close the connection without any response, so the client sees a dropped connection."""
        cycle = getattr(send, "__self__", None)  # uvicorn's RequestResponseCycle owns the transport
        transport = getattr(cycle, "transport", None)
        if transport is None:
            raise ConnectionAbortedError("scripted drop")  # fallback: the server answers 500
        cycle.disconnected = True  # type: ignore[union-attr]  # keeps uvicorn from writing a 500
        transport.close()

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one request."""
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"].rstrip("/")
        if method == "POST" and path in ("/v1/chat/completions", "/chat/completions"):
            self.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.in_flight)
            try:
                await self._chat(scope, receive, send, time.monotonic())
            finally:
                self.in_flight -= 1
        elif method == "GET" and path == "/health":
            await self._send(send, 200, b'{"status":"ok"}')
        elif method == "GET" and path == "/stats":
            await self._send(send, 200, _json_bytes(self.stats.as_json()))
        elif method == "POST" and path == "/reset":
            await self._read_body(receive)
            self.stats = Stats()
            await self._send(send, 200, b'{"status":"reset"}')
        elif path == "/control" and method in ("GET", "POST"):
            if method == "POST":
                try:
                    raw = await self._read_body(receive)
                    body = json.loads(raw or b"{}")
                    if not isinstance(body, dict):
                        raise ValueError("control body must be a JSON object")
                    self._apply_control(body)
                except (ValueError, TypeError) as exc:
                    await self._send(send, 400, _error("invalid_request_error", str(exc), "bad_control"))
                    return
            await self._send(send, 200, _json_bytes(asdict(self.config)))
        elif method == "GET" and path in ("/v1/models", "/models"):
            models = {"object": "list", "data": [
                {"id": DEFAULT_MODEL, "object": "model", "created": self.started, "owned_by": "nexa"}
            ]}
            await self._send(send, 200, _json_bytes(models))
        else:
            await self._send(send, 404, _error("invalid_request_error", f"no route {method} {path}", "not_found"))
    async def _chat(self, scope: Scope, receive: Receive, send: Send, arrived: float) -> None:
        """Answer one chat completion, applying any scripted fault."""
        raw = await self._read_body(receive)
        stats = self.stats
        stats.requests += 1
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value.decode("latin-1")
                if auth not in stats.auth_headers:
                    stats.auth_headers.append(auth)
        try:
            req = json.loads(raw)
            model = str(req.get("model") or DEFAULT_MODEL)
            messages = req["messages"]
            if not isinstance(messages, list):
                raise TypeError("messages must be a list")
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            stats.by_status["400"] += 1
            await self._send(send, 400, _error("invalid_request_error", f"bad request body: {exc}", "invalid_body"))
            return
        fp = fingerprint(model, messages)
        stats.fingerprints.append(fp)
        stats.attempts[fp] += 1
        fault = self._choose_fault(fp, stats.attempts[fp])
        cfg = self.config
        if fault is not None:
            stats.by_fault[fault] += 1

        async def after_latency() -> None:
            # The latency counts from the request's arrival, and the answer is built before waiting, so
            # the server's own work is inside the configured latency, not added to it.
            if cfg.latency_ms > 0:
                await asyncio.sleep(max(0.0, cfg.latency_ms / 1000 - (time.monotonic() - arrived)))

        if await self._send_fault(send, fault, after_latency):
            return
        answer = _json_bytes(self._completion(req, model, messages, fp, fault))
        stats.by_status["200"] += 1
        if fault != "timeout":
            await after_latency()
        await self._send(send, 200, answer)
        stats.answered.append(fp)

    async def _send_fault(self, send: Send, fault: str | None, after_latency: Callable[[], Awaitable[None]]) -> bool:
        """Answer with the scripted fault, if it replaces the answer; whether it did (a timeout only delays it)."""
        cfg, stats = self.config, self.stats
        if fault == "429":
            stats.by_status["429"] += 1
            ra = cfg.retry_after_s
            ra_text = str(int(ra)) if float(ra).is_integer() else repr(float(ra))
            body = _error("requests", "Rate limit reached (scripted).", "rate_limit_exceeded")
            await after_latency()
            await self._send(send, 429, body, [(b"retry-after", ra_text.encode())])
        elif fault == "500":
            stats.by_status["500"] += 1
            await after_latency()
            await self._send(send, 500, _error("server_error", "The server had an error (scripted).", "server_error"))
        elif fault == "drop":
            stats.by_status["drop"] += 1
            await after_latency()
            await self._drop(send)
        elif fault == "malformed":
            stats.by_status["200"] += 1
            await after_latency()
            await self._send(send, 200, b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [')
        else:
            if fault == "timeout":
                await after_latency()
                await asyncio.sleep(cfg.timeout_sleep_s)
            return False
        return True

    def _completion(
        self, req: dict[str, Any], model: str, messages: list[Any], fp: str, fault: str | None
    ) -> dict[str, Any]:
        """The chat.completion payload: the scripted answer or verdict, cut short by `length` or max_tokens."""
        prompt = next((text_of(m.get("content")) for m in reversed(messages)
                       if isinstance(m, dict) and m.get("role") == "user"), "")
        judged = self._judge_answer(fp, messages, prompt)
        content, refusal = judged if judged is not None else (answer_for(prompt), None)
        finish = "stop"
        words = (content or "").split(" ")
        limit = req.get("max_completion_tokens") or req.get("max_tokens")
        if fault == "length":
            content, finish = " ".join(words[: max(1, len(words) // 2)]), "length"
        elif content is not None and isinstance(limit, int) and 0 < limit < len(words):
            content, finish = " ".join(words[:limit]), "length"
        prompt_tokens = sum(word_count(text_of(m.get("content"))) for m in messages if isinstance(m, dict))
        completion_tokens = word_count(content or refusal or "")
        return {
            "id": "chatcmpl-" + fp[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
                "logprobs": logprobs_for(content, req.get("top_logprobs")) if req.get("logprobs") else None,
                "finish_reason": finish,
            }],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
