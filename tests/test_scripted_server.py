"""The scripted OpenAI-compatible server, exercised through the real `openai` client."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import openai
import pytest

from nexa_testing.scripted_server import ScriptedServer, fingerprint

MODEL = "teacher-test"


def _client(s: ScriptedServer, timeout: float = 10.0) -> openai.OpenAI:
    """A sync client that never retries."""
    return openai.OpenAI(base_url=s.base_url, api_key="sk-test-key", max_retries=0, timeout=timeout)


def _ask(client: openai.OpenAI, text: str = "hello there") -> openai.types.chat.ChatCompletion:
    """One chat completion."""
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])


def test_normal_answer_and_usage(srv: ScriptedServer) -> None:
    """A hypothesis prompt gets 3 numbered hypotheses with predictions, echoed model and word-count usage;
    answers are built from the prompt, so two prompts get different answers."""
    prompt = "Propose hypotheses on why sleep improves memory"
    r = _ask(_client(srv), prompt)
    assert r.object == "chat.completion" and r.model == MODEL and r.id
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    lines = choice.message.content.splitlines()
    assert [ln[:2] for ln in lines if ln[:1].isdigit()] == ["1.", "2.", "3."]
    assert all("Prediction:" in ln for ln in lines[1:])
    assert _ask(_client(srv), "Propose hypotheses on why bees dance").choices[0].message.content != choice.message.content
    assert r.usage.prompt_tokens == len(prompt.split())
    assert r.usage.completion_tokens == len(choice.message.content.split())
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    method = _ask(_client(srv), "Design a protocol to test it").choices[0].message.content
    steps = [ln for ln in method.splitlines() if ln[:1].isdigit()]
    assert len(steps) == 5 and "control" in method and "readout" in method
    assert _ask(_client(srv), "just words").choices[0].message.content == "Echo: just words"


def test_stats_fingerprints_and_auth(srv: ScriptedServer) -> None:
    """Stats count every request, list fingerprints the client can recompute and the auth headers seen."""
    client = _client(srv)
    for text in ("a", "b", "a"):
        _ask(client, text)
    stats = srv.stats()
    assert stats["requests"] == 3 and stats["by_status"] == {"200": 3}
    expected = [fingerprint(MODEL, [{"role": "user", "content": t}]) for t in ("a", "b", "a")]
    assert stats["fingerprints"] == stats["answered"] == expected
    assert stats["auth_headers"] == ["Bearer sk-test-key"]


def test_reset_clears_stats(srv: ScriptedServer) -> None:
    """POST /reset empties the stats but keeps the config."""
    srv.control(latency_ms=5)
    _ask(_client(srv))
    assert srv.stats()["requests"] == 1
    req = urllib.request.Request(srv.root_url + "/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200
    empty = {"requests": 0, "max_in_flight": 0, "by_status": {}, "by_fault": {}, "fingerprints": [], "answered": [],
             "auth_headers": [], "by_verdict": {}}
    assert srv.stats() == empty
    assert srv.control()["latency_ms"] == 5


def test_latency_honoured(srv: ScriptedServer) -> None:
    """latency_ms=100 delays each answer by about 100 ms."""
    client = _client(srv)
    _ask(client)  # warm the connection
    srv.control(latency_ms=100)
    t0 = time.perf_counter()
    _ask(client)
    elapsed = time.perf_counter() - t0
    assert 0.095 <= elapsed < 1.0


def test_429_has_retry_after(srv: ScriptedServer) -> None:
    """A 429 fault carries a (fractional) Retry-After header the client can read."""
    srv.control(fault_rate=1.0, faults=["429"], retry_after_s=0.05)
    with pytest.raises(openai.RateLimitError) as exc:
        _ask(_client(srv))
    assert exc.value.response.headers["retry-after"] == "0.05"
    assert exc.value.status_code == 429
    assert srv.stats()["by_status"] == {"429": 1}


def test_500(srv: ScriptedServer) -> None:
    """A 500 fault becomes InternalServerError."""
    srv.control(fault_rate=1.0, faults=["500"])
    with pytest.raises(openai.InternalServerError):
        _ask(_client(srv))


def test_malformed(srv: ScriptedServer) -> None:
    """A 200 with a non-JSON body makes the client raise (openai 3.x lets json.JSONDecodeError through)."""
    srv.control(fault_rate=1.0, faults=["malformed"])
    with pytest.raises((json.JSONDecodeError, openai.APIResponseValidationError)):
        _ask(_client(srv))


def test_drop(srv: ScriptedServer) -> None:
    """A dropped connection becomes APIConnectionError (and not a timeout)."""
    srv.control(fault_rate=1.0, faults=["drop"])
    with pytest.raises(openai.APIConnectionError) as exc:
        _ask(_client(srv))
    assert not isinstance(exc.value, openai.APITimeoutError)
    assert srv.stats()["by_status"] == {"drop": 1}


def test_timeout(srv: ScriptedServer) -> None:
    """A timeout fault outlasts a 0.5 s client timeout."""
    srv.control(fault_rate=1.0, faults=["timeout"], timeout_sleep_s=5)
    t0 = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        _ask(_client(srv, timeout=0.5))
    assert time.perf_counter() - t0 < 3


def test_length(srv: ScriptedServer) -> None:
    """A length fault cuts the answer short with finish_reason 'length'."""
    full = _ask(_client(srv), "Design a method").choices[0].message.content
    srv.control(fault_rate=1.0, faults=["length"])
    r = _ask(_client(srv), "Design a method")
    assert r.choices[0].finish_reason == "length"
    assert len(r.choices[0].message.content) < len(full)


def test_fail_first_n_is_deterministic(srv: ScriptedServer) -> None:
    """fail_first_n=2 fails the first two attempts of every fingerprint, then answers."""
    srv.control(fail_first_n=2, faults=["500", "429"], retry_after_s=0)
    client = _client(srv)
    for text in ("x", "y"):
        with pytest.raises(openai.InternalServerError):
            _ask(client, text)
        with pytest.raises(openai.RateLimitError):
            _ask(client, text)
        assert _ask(client, text).choices[0].finish_reason == "stop"
    assert srv.stats()["by_status"] == {"500": 2, "429": 2, "200": 2}


def test_fault_rate_is_seeded(srv: ScriptedServer) -> None:
    """The same seed gives the same faults for the same requests; about fault_rate of them fail."""

    def run() -> list[bool]:
        client = _client(srv)
        out = []
        for i in range(40):
            try:
                _ask(client, f"q{i}")
                out.append(True)
            except openai.InternalServerError:
                out.append(False)
        return out

    srv.control(fault_rate=0.5, faults=["500"], seed=7)
    first = run()
    srv.control(reset=True, fault_rate=0.5, faults=["500"], seed=7)
    assert run() == first
    assert 8 <= first.count(False) <= 32


def test_control_rejects_bad_input(srv: ScriptedServer) -> None:
    """Unknown keys and faults are a 400, not silently ignored."""
    with pytest.raises(RuntimeError, match="400"):
        srv.control(faults=["boom"])
    with pytest.raises(RuntimeError, match="400"):
        srv.control(latency=3)


def test_models_and_health(srv: ScriptedServer) -> None:
    """The model list and health endpoints answer."""
    assert [m.id for m in _client(srv).models.list()]
    with urllib.request.urlopen(srv.root_url + "/health", timeout=5) as resp:
        assert json.loads(resp.read()) == {"status": "ok"}


def test_throughput_smoke(srv: ScriptedServer) -> None:
    """500 requests at 50 ms latency with 64 concurrent AsyncOpenAI calls overlap on the server."""
    srv.control(latency_ms=50)
    n, conc = 500, 64

    async def go() -> float:
        client = openai.AsyncOpenAI(base_url=srv.base_url, api_key="k", max_retries=0, timeout=30)
        sem = asyncio.Semaphore(conc)

        async def one(i: int) -> None:
            async with sem:
                await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"q {i}"}])

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - t0
        await client.close()
        return elapsed

    elapsed = asyncio.run(go())
    stats = srv.stats()
    assert stats["requests"] == n and stats["by_status"] == {"200": n}
    # Load-independent proof of concurrency: the server held many requests at once.
    assert stats["max_in_flight"] >= conc // 2
    # Wall time is bounded by the openai client's CPU (~3 ms/request here), not by the server; serial
    # would take n * 0.05 = 25 s, the ideal is 0.39 s. Generous because the machine is shared.
    assert elapsed < n * 0.05 / 2, f"{n} requests took {elapsed:.2f}s"
