"""ChatClient against the scripted OpenAI-compatible server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import pytest

from nexa_resources.llm_client import (
    ChatClient,
    ChatResult,
    RetryPolicy,
    SamplingParams,
)
from nexa_resources.rate_limit import RateLimiter
from nexa_testing.scripted_server import ScriptedServer, answer_for, fingerprint

MODEL = "scripted-teacher"
KEY = "sk-client-test-KEY-7731"
PARAMS = SamplingParams(max_tokens=256)
ALL_FAULTS = ["429", "500", "timeout", "malformed", "drop"]


def client(srv: ScriptedServer, *, base_url: str | None = None, **kw) -> ChatClient:
    settings = {"timeout_s": 5.0, "retry": RetryPolicy(max_retries=3, backoff_base_s=0.01)} | kw
    return ChatClient(base_url=base_url or srv.base_url, model=MODEL, api_key=KEY, **settings)


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "You are terse."}, {"role": "user", "content": text}]


def complete(c: ChatClient, messages: list[dict[str, str]]) -> tuple[ChatResult, float]:
    async def go() -> ChatResult:
        try:
            return await c.complete(messages, PARAMS)
        finally:
            await c.aclose()

    started = time.monotonic()
    result = asyncio.run(go())
    return result, time.monotonic() - started


def test_plain_answer_usage_and_fingerprint(srv):
    result, _ = complete(client(srv), msgs("Echo this back"))
    assert result.ok and result.attempts == 1 and result.status is None
    assert result.content == answer_for("Echo this back") and result.finish_reason == "stop"
    assert result.prompt_tokens == 6 and result.completion_tokens == 4 and result.latency_ms > 0
    stats = srv.stats()
    # The client sends exactly the configured model and the messages: the server's fingerprint matches.
    assert stats["fingerprints"] == [fingerprint(MODEL, msgs("Echo this back"))]


def test_429_retry_after_is_honoured(srv):
    srv.control(fail_first_n=2, faults=["429"], retry_after_s=0.3)
    result, elapsed = complete(client(srv), msgs("throttled"))
    assert result.ok and result.attempts == 3
    # Two Retry-After waits of 0.3 s, not the 0.01 s backoff.
    assert elapsed >= 0.6
    stats = srv.stats()
    assert stats["requests"] == 3 and stats["by_status"] == {"429": 2, "200": 1}


def test_500_timeout_malformed_and_drop_are_retried(srv):
    srv.control(fail_first_n=4, faults=["500", "timeout", "malformed", "drop"], timeout_sleep_s=2.0)
    result, elapsed = complete(client(srv, timeout_s=0.3, retry=RetryPolicy(max_retries=4, backoff_base_s=0.01)),
                               msgs("flaky"))
    assert result.ok and result.attempts == 5, result
    assert result.content == answer_for("flaky")
    assert 0.3 <= elapsed < 1.9  # one client timeout, no wait for the server's 2 s sleep
    stats = srv.stats()
    assert stats["requests"] == 5
    assert stats["by_fault"] == {"500": 1, "timeout": 1, "malformed": 1, "drop": 1}


@pytest.mark.parametrize(
    ("fault", "prefix", "status"),
    [("500", "HTTP 500", 500), ("malformed", "malformed response", None), ("drop", "connection error", None),
     ("timeout", "timeout after 0.2s", None)],
)
def test_persistent_failure_is_returned_not_raised(srv, fault, prefix, status):
    srv.control(fail_first_n=100, faults=[fault], timeout_sleep_s=1.0)
    result, _ = complete(client(srv, timeout_s=0.2, retry=RetryPolicy(max_retries=2, backoff_base_s=0.01)),
                         msgs("always fails"))
    assert not result.ok and result.content is None
    assert result.attempts == 3  # max_retries + 1
    assert result.error.startswith(prefix), result.error
    assert result.status == status
    assert srv.stats()["requests"] == 3


def test_retry_policy_delays():
    policy = RetryPolicy(max_retries=5, backoff_base_s=0.1, backoff_max_s=1.0)
    for attempt, full in [(1, 0.1), (2, 0.2), (3, 0.4), (5, 1.0), (9, 1.0)]:
        assert all(full * 0.5 <= policy.delay(attempt, None) <= full for _ in range(20))
    assert all(0.7 <= policy.delay(1, 0.7) <= 0.75 for _ in range(20))  # Retry-After wins over backoff
    assert policy.delay(1, 60.0) <= 1.05  # but never beyond backoff_max_s


def test_client_errors_are_not_retried_and_never_show_the_key(srv):
    """A 404 is the request's own fault: one attempt. The URL here carries the key, the error must not."""
    result, _ = complete(client(srv, base_url=f"{srv.root_url}/{KEY}/v1"), msgs("wrong route"))
    assert not result.ok and result.attempts == 1 and result.status == 404
    assert result.error.startswith("HTTP 404") and "***" in result.error
    assert KEY not in result.error


def test_key_reaches_the_server_as_authorization(srv):
    result, _ = complete(client(srv), msgs("auth"))
    assert result.ok
    assert srv.stats()["auth_headers"] == [f"Bearer {KEY}"]


def test_stream_mixed_faults_yields_each_request_exactly_once(srv):
    srv.control(fault_rate=0.2, faults=ALL_FAULTS, retry_after_s=0.01, timeout_sleep_s=1.5, seed=7)
    c = client(srv, timeout_s=0.3, max_concurrency=16, retry=RetryPolicy(max_retries=1, backoff_base_s=0.01))
    items = [(f"k{i:03d}", msgs(f"question number {i}")) for i in range(100)]

    async def go() -> list[tuple[str, ChatResult]]:
        try:
            return [pair async for pair in c.stream(items, PARAMS)]
        finally:
            await c.aclose()

    results = asyncio.run(go())
    keys = [k for k, _ in results]
    assert len(keys) == len(set(keys)) == 100 and set(keys) == {k for k, _ in items}
    stats = srv.stats()
    assert sum(stats["by_fault"].values()) >= 10  # faults really were injected (~20% of ~120 attempts)
    assert stats["requests"] == sum(r.attempts for _, r in results)
    for key, result in results:
        i = int(key[1:])
        if result.ok:
            assert result.content == answer_for(f"question number {i}") and result.error is None
        else:
            assert result.content is None and result.error and result.attempts == 2
    assert any(r.ok and r.attempts == 2 for _, r in results)  # a retry that succeeded
    assert KEY not in " ".join(r.error for _, r in results if r.error)


def test_requests_per_minute_paces_requests(srv):
    """600/min is 10 requests per second once the bucket's burst (6 s of budget: 60 requests) is spent."""
    c = client(srv, requests_per_minute=600)

    async def go() -> float:
        try:
            for _ in range(60):  # spend the initial burst without sending anything
                await c._limiter.acquire(0)
            started = time.monotonic()
            await asyncio.gather(*(c.complete(msgs(f"paced {i}"), PARAMS) for i in range(12)))
            return time.monotonic() - started
        finally:
            await c.aclose()

    elapsed = asyncio.run(go())
    assert elapsed >= 0.9
    assert srv.stats()["requests"] == 12


def test_rate_limiter_burst_is_six_seconds_of_budget():
    async def go() -> tuple[float, float]:
        limiter = RateLimiter(requests_per_minute=600)
        started = time.monotonic()
        for _ in range(60):
            await limiter.acquire(0)
        burst = time.monotonic() - started
        for _ in range(5):
            await limiter.acquire(0)
        return burst, time.monotonic() - started - burst

    burst, paced = asyncio.run(go())
    assert burst < 0.2 and paced >= 0.4  # 60 at once, then 10 per second


def test_rate_limiter_tokens_per_minute():
    async def go() -> float:
        limiter = RateLimiter(tokens_per_minute=6000)  # 100 tokens per second
        await limiter.acquire(600)  # the whole burst
        started = time.monotonic()
        await limiter.acquire(50)
        return time.monotonic() - started

    assert 0.4 <= asyncio.run(go()) < 2.0


def test_stream_keeps_the_concurrency_bound_and_surfaces_a_bug_instead_of_hanging(srv, monkeypatch):
    srv.control(latency_ms=20)
    c = client(srv, max_concurrency=4)
    items = [(str(i), [{"role": "user", "content": f"q {i}"}]) for i in range(20)]

    async def collect_all() -> list[str]:
        try:
            return [key async for key, result in c.stream(items, PARAMS) if result.ok]
        finally:
            await c.aclose()

    assert sorted(asyncio.run(collect_all()), key=int) == [str(i) for i in range(20)]
    assert srv.stats()["max_in_flight"] == 4

    broken = client(srv, max_concurrency=2)

    async def boom(*args, **kwargs):
        raise RuntimeError("a bug in complete()")

    monkeypatch.setattr(broken, "complete", boom)

    async def drain() -> None:
        async for _ in broken.stream(items, PARAMS):
            pass

    with pytest.raises(RuntimeError, match="a bug in complete"):
        asyncio.run(asyncio.wait_for(drain(), timeout=10))
