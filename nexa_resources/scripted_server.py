"""A scripted OpenAI-compatible HTTP server for tests and benchmarks (uvicorn + a raw ASGI app).

Run it with `python -m nexa_resources.scripted_server --port P [--latency-ms 100] [--host 127.0.0.1]`;
it prints `ready http://HOST:PORT` once it accepts connections (`--port 0` picks a free port).

Endpoints:
    POST /v1/chat/completions  canned, deterministic chat.completion after `latency_ms`
    GET  /v1/models            one-model list
    GET  /health               {"status": "ok"}
    GET  /stats                {"requests", "max_in_flight", "by_status", "by_fault", "fingerprints", "answered",
                                "auth_headers"}: fingerprints as requests arrive, answered once a 200 answer is sent
    POST /reset                clear stats and per-fingerprint attempt counters (config is kept)
    GET|POST /control          read / script behaviour, e.g. {"fault_rate": 0.2, "faults": ["429"]}

Control keys: latency_ms, fault_rate (0..1), faults (subset of FAULTS), retry_after_s, seed,
timeout_sleep_s, fail_first_n, verdict_fault_rate (0..1), verdict_faults (subset of VERDICT_FAULTS),
reset (restore the default config and clear stats before applying the rest).
Fault choice is deterministic: with `fail_first_n > 0` attempts 1..N of each fingerprint fail with
`faults[(attempt - 1) % len(faults)]`; otherwise a request faults when a hash of (seed, fingerprint,
attempt) falls below `fault_rate`, so the outcome never depends on arrival order under concurrency.

Logprobs: a request with `"logprobs": true` (and `top_logprobs`: k) gets OpenAI's `choices[0].logprobs.content`
for its answer (`logprobs_for`: the answer's words as tokens, each the most likely of k, from a hash).

Judge mode: a request whose system prompt asks for `{"scores": {"<metric>": <low-high>, …}, …}` (the rubric's
judge prompt) gets a verdict JSON, its scores drawn from a hash of the request (`verdict_for`). A bad verdict
is scripted like a fault, but fixed per request (a hash of seed and fingerprint against `verdict_fault_rate`):
`unparsable` (prose without JSON), `refusal` (the API's `refusal` field, no content), `off_scale` (a score
above the scale's maximum). Stats count verdicts by kind in `by_verdict`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

FAULTS: tuple[str, ...] = ("429", "500", "timeout", "malformed", "drop", "length")
VERDICT_FAULTS: tuple[str, ...] = ("unparsable", "refusal", "off_scale")
# The line of the rubric's system prompt that names the metrics and the scale: "<metric>": <1-5>.
_SCORE_SLOT = re.compile(r'"(\w+)": <(\d+)-(\d+)>')
DEFAULT_MODEL = "scripted-teacher"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def fingerprint(model: str, messages: list[dict[str, Any]]) -> str:
    """sha256 of the canonical JSON of model + messages; the client side computes the same value."""
    blob = json.dumps({"messages": messages, "model": model}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


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


def _text(content: Any) -> str:
    """Plain text of a message content (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _words(text: str) -> int:
    """Rough token count: whitespace-separated words."""
    return len(text.split())


# Technical terms the canned answers draw on, so each prompt gets content of its own (a fixed answer
# reused across prompts is what the judge rejects).
_TERMS: tuple[str, ...] = tuple(
    """spectroscopy calorimetry chromatography fluorescence impedance rheology tomography diffraction
    luminescence microfluidics nanoindentation phosphorylation isotope-labelling electrophoresis
    interferometry ellipsometry voltammetry titration sequencing crystallinity porosity viscosity
    conductivity permeability adsorption desorption oxidation hydrolysis methylation acetylation
    polarisation magnetisation resonance relaxation dispersion turbulence nucleation coarsening
    segregation passivation sintering annealing quenching doping grafting crosslinking swelling
    fouling sedimentation transcription translation secretion signalling""".split()
)
_ASKING = frozenset(
    "propose suggest offer generate formulate design describe outline testable hypotheses hypothesis "
    "explaining explain experiment method protocol study approach measure determine whether would "
    "could which their there these those about using between".split()
)


def _pick(prompt: str, salt: str, options: tuple[str, ...] | list[str], k: int) -> list[str]:
    """k options chosen deterministically from a hash of the prompt."""
    ranked = sorted(options, key=lambda o: hashlib.sha256(f"{salt}\x1f{prompt}\x1f{o}".encode()).digest())
    return ranked[:k]


def _number(prompt: str, salt: str, low: int, high: int) -> int:
    return low + int.from_bytes(hashlib.sha256(f"{salt}\x1f{prompt}".encode()).digest()[:4], "big") % (high - low + 1)


def answer_for(prompt: str) -> str:
    """The canned, deterministic answer to the last user message: a hypothesis list or a protocol built
    from the prompt's own words and terms chosen by its hash (so different prompts get different answers),
    or an echo of anything else."""
    low = prompt.lower()
    asked = re.search(r"(?m)^Task:\s*(.+)$", prompt)
    given = re.search(r"(?m)^Context:\s*(.+)$", prompt)
    source = " ".join(m.group(1) for m in (asked, given) if m) or prompt
    words = list(dict.fromkeys(w for w in re.findall(r"[A-Za-z][A-Za-z-]{4,}", source) if w.lower() not in _ASKING))
    topic = [(words or ["the system"])[i % max(1, len(words))] for i in range(12)]
    terms = _pick(prompt, "terms", _TERMS, 12)
    if "hypothes" in low:
        lines = [f"Hypotheses about {', '.join(words[:12]) or 'the system'}:"]
        for n in range(3):
            a, b, c = terms[3 * n : 3 * n + 3]
            words = " and ".join(topic[3 + 2 * n : 5 + 2 * n])
            rise = _number(prompt, f"rise{n}", 10, 90)
            lines.append(
                f"{n + 1}. {a.capitalize()} of the {words} is limited by {b}. Prediction: blocking {b} "
                f"lowers {c} by {rise}% within {_number(prompt, f'time{n}', 2, 48)} h, and {a} tracks it."
            )
        return "\n".join(lines)
    if any(k in low for k in ("method", "design", "protocol")):
        t = terms
        return "\n".join(
            [
                f"Protocol for {', '.join(words[:12]) or 'the system'}:",
                f"1. Prepare {_number(prompt, 'n', 6, 30)} samples of {topic[3]} for {t[0]} and {t[7]} at "
                f"{_number(prompt, 'dose', 2, 50)} mg/mL; keep untreated {topic[4]} as the control.",
                f"2. Vary {topic[5]} and {topic[6]} while holding {t[1]} at {_number(prompt, 'temp', 15, 80)} °C "
                f"for {_number(prompt, 'hours', 2, 72)} h.",
                f"3. Measure {t[2]} and {t[3]} of the {topic[7]} every {_number(prompt, 'minutes', 5, 60)} min "
                f"by {t[4]}.",
                f"4. Confirm with {t[5]} and {t[8]} as a second readout of {topic[8]}, calibrated against "
                f"{t[6]} standards.",
                f"5. Compare conditions, blocked by {t[9]} batch and {t[10]} drift, with a one-way ANOVA over "
                f"{_number(prompt, 'reps', 3, 6)} independent replicates.",
            ]
        )
    return f"Echo: {prompt}"


def logprobs_for(content: str | None, top_k: Any) -> dict[str, Any]:
    """OpenAI's `choices[].logprobs` for an answer: its "tokens" are the answer's words with the whitespace before
    them (they join back to the answer), each the most likely of `top_k` candidates, log-probabilities from a hash."""
    k = max(1, min(20, int(top_k or 1)))
    content_items = []
    for i, token in enumerate(re.findall(r"\s*\S+", content or "")):
        best = -0.05 - _number(f"{i}{token}", "lp", 0, 100) / 100
        others = [w for w in _pick(f"{i}{token}", "alt", _TERMS, k + 1) if f" {w}" != token][: k - 1]
        top = [(token, best)] + [(f" {w}", best - 1.0 - n) for n, w in enumerate(others)]
        content_items.append({
            "token": token, "logprob": best, "bytes": list(token.encode()),
            "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top],
        })
    return {"content": content_items, "refusal": None}


def rubric_slots(system_prompt: str) -> tuple[list[str], int, int] | None:
    """(metrics, low, high) when the system prompt is a rubric judge prompt, else None."""
    slots = _SCORE_SLOT.findall(system_prompt)
    if not slots:
        return None
    return [m for m, _, _ in slots], int(slots[0][1]), int(slots[0][2])


def verdict_for(metrics: list[str], low: int, high: int, answer: str) -> dict[str, Any]:
    """The scripted judge's verdict on an answer: each score in the upper part of the scale (low + 2 .. high),
    from a hash of the metric and the answer; every score below 4 gets a `lacking` phrase."""
    top = max(low, min(high, low + 2))
    scores = {m: _number(answer, f"verdict:{m}", top, high) for m in metrics}
    lacking = {m: f"more concrete {m}" for m, v in scores.items() if v < 4}
    return {"scores": scores, "lacking": lacking}


def _bad_verdict(fault: str, metrics: list[str], high: int) -> tuple[str | None, str | None]:
    """(content, refusal) of a scripted bad verdict."""
    if fault == "refusal":
        return None, "I can't help with grading this answer."
    if fault == "off_scale":
        return json.dumps({"scores": {m: high + 2 for m in metrics}, "lacking": {}}), None
    return "The answer looks reasonable overall; I would rate it fairly well.", None


def _json_bytes(obj: Any) -> bytes:
    """Compact JSON encoding."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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
        system = next((_text(m.get("content")) for m in messages if isinstance(m, dict) and m.get("role") == "system"), "")
        slots = rubric_slots(system)
        if slots is None:
            return None
        metrics, low, high = slots
        fault = self._choose_verdict_fault(fp)
        self.stats.by_verdict[fault or "ok"] += 1
        if fault is not None:
            return _bad_verdict(fault, metrics, high)
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

        if fault == "429":
            stats.by_status["429"] += 1
            ra = cfg.retry_after_s
            ra_text = str(int(ra)) if float(ra).is_integer() else repr(float(ra))
            body = _error("requests", "Rate limit reached (scripted).", "rate_limit_exceeded")
            await after_latency()
            await self._send(send, 429, body, [(b"retry-after", ra_text.encode())])
            return
        if fault == "500":
            stats.by_status["500"] += 1
            await after_latency()
            await self._send(send, 500, _error("server_error", "The server had an error (scripted).", "server_error"))
            return
        if fault == "drop":
            stats.by_status["drop"] += 1
            await after_latency()
            await self._drop(send)
            return
        if fault == "malformed":
            stats.by_status["200"] += 1
            await after_latency()
            await self._send(send, 200, b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [')
            return
        if fault == "timeout":
            await after_latency()
            await asyncio.sleep(cfg.timeout_sleep_s)

        prompt = next((_text(m.get("content")) for m in reversed(messages)
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
        prompt_tokens = sum(_words(_text(m.get("content"))) for m in messages if isinstance(m, dict))
        completion_tokens = _words(content or refusal or "")
        payload = {
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
        stats.by_status["200"] += 1
        answer = _json_bytes(payload)
        if fault != "timeout":
            await after_latency()
        await self._send(send, 200, answer)
        stats.answered.append(fp)


async def _serve(host: str, port: int, latency_ms: int) -> None:
    """Run uvicorn and print the ready line once it listens."""
    import uvicorn

    config = uvicorn.Config(
        ScriptedApp(latency_ms), host=host, port=port, loop="uvloop", http="httptools", lifespan="off",
        access_log=False, log_level="warning", timeout_graceful_shutdown=1, backlog=2048,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        bound = server.servers[0].sockets[0].getsockname()[1]
        print(f"ready http://{host}:{bound}", flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--latency-ms", type=int, default=0)
    args = parser.parse_args(argv)
    loop_factory = uvicorn.Config(app=None, loop="uvloop").get_loop_factory()  # type: ignore[arg-type]
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(args.host, args.port, args.latency_ms))


# -- test / benchmark helper ------------------------------------------------------------------


class ScriptedServer:
    """Run the scripted server in a subprocess: `with ScriptedServer(latency_ms=0) as s: s.base_url`."""

    def __init__(self, latency_ms: int = 0, host: str = "127.0.0.1", port: int = 0, startup_timeout_s: float = 20.0) -> None:
        """Configure; nothing starts until `start()` or `__enter__`."""
        self.host, self.port, self.latency_ms = host, port, latency_ms
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.root_url = ""
        self._stderr = tempfile.TemporaryFile(mode="w+")

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (`http://host:port/v1`)."""
        return self.root_url + "/v1"

    def start(self) -> ScriptedServer:
        """Launch the subprocess and wait for its ready line."""
        cmd = [sys.executable, "-m", "nexa_resources.scripted_server", "--host", self.host,
               "--port", str(self.port), "--latency-ms", str(self.latency_ms)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env)
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(self.startup_timeout_s)
        match = re.match(r"ready (http://\S+)", line[0]) if line else None
        if match is None:
            self.proc.kill()
            self.proc.wait(5)
            self._stderr.seek(0)
            err = self._stderr.read()[-2000:]
            self.stop()
            why = f"no ready line within {self.startup_timeout_s}s" if not line else f"stdout said {line[0]!r}"
            raise RuntimeError(f"scripted server did not start ({why}); stderr:\n{err}")
        self.root_url = match.group(1)
        self.port = int(self.root_url.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        """Terminate the subprocess (kill it if it lingers)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None
        self._stderr.close()

    def __enter__(self) -> ScriptedServer:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """Stop the server."""
        self.stop()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One JSON call to the server with stdlib urllib."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.root_url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path} -> {exc.code}: {exc.read().decode(errors='replace')}") from exc

    def control(self, **kw: Any) -> dict[str, Any]:
        """Script behaviour (see the module docstring); returns the resulting config."""
        return self._call("POST", "/control", kw)

    def stats(self) -> dict[str, Any]:
        """The /stats payload."""
        return self._call("GET", "/stats")

    def reset(self) -> None:
        """Restore the default config and clear stats."""
        self.control(reset=True)


if __name__ == "__main__":
    main()
