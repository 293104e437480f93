"""An OpenAI-compatible chat client built for bulk collection: bounded concurrency, rate limits,
retries with backoff that honour Retry-After, and a recorded error instead of an exception.

Every teacher, judge and evaluation call in Nexa goes through `ChatClient`, so OpenAI, a vLLM server
and the local default model are reached by the very same code.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import openai
import orjson

try:  # openai ≥ 3 ships its HTTP stack as httpx2; older releases use httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx  # type: ignore[no-redef]

from nexa_resources.rate_limit import RateLimiter

LARGE_BODY = 1 << 16  # bytes of a response body above which decode_json pauses the garbage collector

# Statuses worth retrying: throttling and server-side trouble. Everything else (400, 401, 404 …) is
# the request's own fault and is recorded at once.
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_CONNECTIONS_PER_SHARD = 8


@dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters sent with every request; part of each request's identity."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 512
    seed: int | None = None
    # vLLM's and the local server's extension (OpenAI rejects it): > 1 discourages tokens already written.
    repetition_penalty: float | None = None
    # > 0 asks for each answer token's top-k log-probabilities (OpenAI `logprobs` + `top_logprobs`, vLLM too);
    # 0 sends neither, so a default request (and its id) is what it always was.
    top_logprobs: int = 0

    def as_request(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            params["seed"] = self.seed
        if self.repetition_penalty is not None:
            params["repetition_penalty"] = self.repetition_penalty
        if self.top_logprobs:
            params["logprobs"] = True
            params["top_logprobs"] = self.top_logprobs
        return params

    def fingerprint(self) -> str:
        return json.dumps(self.as_request(), sort_keys=True)


@dataclass
class ChatResult:
    """One request's outcome: the answer and its usage, or the error that remained after retries."""

    content: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    attempts: int
    error: str | None = None
    status: int | None = None
    refusal: str | None = None  # the model declined: OpenAI's message.refusal (content is then empty)
    # The answer's token log-probabilities as columns (see _logprobs), when asked (top_logprobs > 0).
    logprobs: list[dict[str, Any]] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter; a server's Retry-After wins when it asks for longer."""
        backoff = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        jittered = backoff * random.uniform(0.5, 1.0)
        if retry_after is not None:
            return min(self.backoff_max_s, max(retry_after, 0.0)) + random.uniform(0, 0.05)
        return jittered


class ChatClient:
    """Bulk chat completions over `openai.AsyncOpenAI` against any OpenAI-compatible endpoint."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 120.0,
        max_concurrency: int = 16,
        requests_per_minute: float = 0,
        tokens_per_minute: float = 0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.max_concurrency = max_concurrency
        self.retry = retry or RetryPolicy()
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._limiter = RateLimiter(requests_per_minute, tokens_per_minute)
        self._pool: list[_Shard] = []
        self._next = 0

    def _clients(self) -> list[_Shard]:
        # Several small connection pools instead of one large one: the HTTP pool scans every
        # connection on each request, which dominated client CPU at 64 connections (measured).
        if not self._pool:
            # aiohttp's connector keeps its idle connections in a deque: one pool serves any concurrency.
            shards = 1 if _transport() == "aiohttp" else max(1, -(-self.max_concurrency // _CONNECTIONS_PER_SHARD))
            per_shard = -(-self.max_concurrency // shards)
            limits = httpx.Limits(max_connections=per_shard + 1, max_keepalive_connections=per_shard + 1)
            tls = ssl.create_default_context()  # loading CA certificates costs ~35 ms: once, not per shard
            self._pool = [self._shard(limits, tls) for _ in range(shards)]
        return self._pool

    def _shard(self, limits: httpx.Limits, tls: ssl.SSLContext) -> _Shard:
        http = openai.DefaultAsyncHttpxClient(limits=limits, timeout=self._timeout_s, verify=tls)
        client = openai.AsyncOpenAI(
            base_url=self.base_url,
            # Local servers ignore the key, but the client insists on one.
            api_key=self._api_key or "not-needed",
            max_retries=0,  # retries are ours: they honour Retry-After and are counted
            timeout=self._timeout_s,
            http_client=http,
        )
        return _Shard(client, http, self._timeout_s, aiohttp_limit=limits.max_connections if _transport() == "aiohttp" else None, tls=tls)

    async def aclose(self) -> None:
        pool, self._pool = self._pool, []
        for shard in pool:
            await shard.aclose()

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    async def complete(self, messages: Sequence[dict[str, str]], params: SamplingParams) -> ChatResult:
        """One chat completion with retries; never raises for a failed request."""
        pool = self._clients()
        shard = pool[self._next % len(pool)]
        self._next += 1
        body = _json_body({"model": self.model, "messages": list(messages), **params.as_request()})
        started = time.monotonic()
        estimate = sum(len(m.get("content") or "") for m in messages) // 4 + params.max_tokens
        attempt = 0
        while True:
            attempt += 1
            await self._limiter.acquire(estimate)
            retry_after: float | None = None
            try:
                data = await shard.post_json(body)
                return _parse_completion(data, (time.monotonic() - started) * 1000, attempt)
            except openai.APIStatusError as exc:
                status = exc.status_code
                error = f"HTTP {status}: {_short(exc.message)}"
                retryable = status in RETRYABLE_STATUS
                retry_after = _retry_after(exc.response)
            except openai.APITimeoutError:
                status, error, retryable = None, f"timeout after {self._timeout_s:g}s", True
            except openai.APIConnectionError as exc:
                status, error, retryable = None, f"connection error: {_short(str(exc.__cause__ or exc))}", True
            except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError) as exc:
                status, error, retryable = None, f"malformed response: {_short(str(exc))}", True
            if not retryable or attempt > self.retry.max_retries:
                return ChatResult(
                    content=None,
                    finish_reason=None,
                    prompt_tokens=0,
                    completion_tokens=0,
                    latency_ms=(time.monotonic() - started) * 1000,
                    attempts=attempt,
                    error=self._redact(error),
                    status=status,
                )
            await asyncio.sleep(self.retry.delay(attempt, retry_after))

    async def stream(
        self,
        items: Sequence[tuple[str, Sequence[dict[str, str]]]],
        params: SamplingParams,
    ) -> AsyncIterator[tuple[str, ChatResult]]:
        """Complete many (key, messages) items with bounded concurrency, yielding as each finishes."""
        queue: asyncio.Queue[tuple[str, ChatResult]] = asyncio.Queue()
        pending = iter(items)

        # A fixed pool of workers, each taking the next item when its request ends: no task or semaphore
        # wait per item, and requests go out in order.
        async def worker() -> None:
            try:
                for key, messages in pending:
                    queue.put_nowait((key, await self.complete(messages, params)))
            except Exception as exc:  # noqa: BLE001 - complete() never raises for a failed request: a bug
                queue.put_nowait(("", exc))  # type: ignore[arg-type]  # surfaces in the consumer, not a hang

        workers = [asyncio.create_task(worker()) for _ in range(min(self.max_concurrency, len(items)))]
        try:
            for _ in range(len(items)):
                key, result = await queue.get()
                if isinstance(result, Exception):
                    raise result
                yield key, result
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)


class _Shard:
    """One `openai.AsyncOpenAI` client (one small connection pool) and its chat completion request.

    The SDK builds every request anew: options copied twice, headers merged and validated, the URL
    parsed and joined, an idempotency key drawn, the auth and provider hooks awaited. For a client
    with a fixed API key all of that comes out the same each time, and it cost about 40% of the
    client's CPU per request (measured, bench/teacher.py). So the request is built once, from the
    client's own URL, headers and timeout (merged exactly as it merges them), and each request
    reuses it with a new body, sent on the client's own HTTP pool. What the SDK does with the
    outcome is kept: a 4xx/5xx is its APIStatusError (same subclass and message), a timeout its
    APITimeoutError, a transport failure its APIConnectionError.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        http: httpx.AsyncClient,
        timeout_s: float,
        *,
        aiohttp_limit: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.client = client
        self._http = http  # the client's HTTP client (its http_client)
        self._timeout_s = timeout_s
        self._prepared: tuple[httpx.URL, httpx.Headers, dict[str, Any]] | None = None
        self._aiohttp_limit = aiohttp_limit
        self._tls = tls
        self._session: Any = None  # aiohttp.ClientSession, opened on the first request (inside the loop)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.client.close()

    async def post_json(self, body: bytes) -> Any:
        """POST /chat/completions and decode the JSON answer; raises the SDK's errors."""
        if self._aiohttp_limit is None:
            return decode_json((await self.post(body)).content)
        return await self._post_aiohttp(body)

    async def _post_aiohttp(self, body: bytes) -> Any:
        """The same request on an aiohttp session: the SDK's URL, headers and timeout, its error types.

        The httpx request/response models cost about half of the client's CPU per request (cProfile,
        bench/teacher.py), so the hot path skips them; an error status still becomes the SDK's
        APIStatusError (built from an httpx.Response of the same status, headers and body).
        """
        import aiohttp

        url, headers, _ = self._prepared or self._prepare()
        if self._session is None:
            self._send_headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "content-length")}
            self._send_headers["accept-encoding"] = "gzip, deflate"  # what aiohttp decodes without extras
            self._url = str(url)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._aiohttp_limit, ssl=self._tls or True),
                timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                auto_decompress=True,
            )
        try:
            async with self._session.post(self._url, data=body, headers=self._send_headers) as response:
                content = await response.read()
                status, raw_headers = response.status, response.raw_headers
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise openai.APITimeoutError(request=self._request(body)) from exc
        except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            raise openai.APIConnectionError(request=self._request(body)) from exc
        if status >= 400:
            failed = httpx.Response(status, headers=list(raw_headers), content=content, request=self._request(body))
            raise self.client._make_status_error_from_response(failed)
        return decode_json(content)

    def _request(self, body: bytes) -> httpx.Request:
        url, headers, extensions = self._prepared or self._prepare()
        return httpx.Request("POST", url, headers=headers, content=body, extensions=extensions)

    def _prepare(self) -> tuple[httpx.URL, httpx.Headers, dict[str, Any]]:
        """URL, headers and timeout as `AsyncOpenAI._build_request` and `httpx.AsyncClient` make them.

        Built on the first request, inside the event loop (X-Stainless-Async names the running one).
        """
        client, http = self.client, self._http
        base = client.base_url
        url = base.copy_with(raw_path=base.raw_path + b"chat/completions")
        sdk = {**client.auth_headers, **client.default_headers}
        headers = httpx.Headers(http.headers)  # the HTTP client's defaults (Accept-Encoding, …) first
        headers.update({k: v for k, v in sdk.items() if isinstance(v, str)})  # Omit() drops a header
        headers["x-stainless-retry-count"] = "0"  # the SDK never retries here (max_retries=0)
        headers["x-stainless-read-timeout"] = str(float(self._timeout_s))
        self._prepared = (url, headers, {"timeout": httpx.Timeout(self._timeout_s).as_dict()})
        return self._prepared

    async def post(self, body: bytes) -> httpx.Response:
        """POST /chat/completions; raises the SDK's errors as `AsyncOpenAI.post` would."""
        url, headers, extensions = self._prepared or self._prepare()
        http = self._http
        # Cookies a server set (a sticky load balancer, say) go back with the request, as in the SDK.
        cookies = http.cookies or None
        request = httpx.Request("POST", url, headers=headers, cookies=cookies, content=body, extensions=extensions)
        # The copied headers forget their encoding, and httpx would re-detect it on every access.
        request.headers.encoding = headers.encoding
        try:
            response = await http.send(request)
        except httpx.TimeoutException as exc:
            raise openai.APITimeoutError(request=request) from exc
        except (httpx.RequestError, ssl.SSLError, anyio.EndOfStream) as exc:
            raise openai.APIConnectionError(request=request) from exc
        if response.status_code >= 400:
            raise self.client._make_status_error_from_response(response)
        return response


# The hot path of a chat completion: aiohttp (default when installed, the `openai[aiohttp]` extra) or the
# SDK's own httpx client. Measured in bench/teacher.py: 0.4 vs 1.3 ms of client CPU per request.
TRANSPORTS: tuple[str, ...] = ("aiohttp", "httpx")


def _transport() -> str:
    """NEXA_HTTP_TRANSPORT (aiohttp | httpx); aiohttp when it is installed and nothing is set."""
    wanted = os.environ.get("NEXA_HTTP_TRANSPORT", "").strip().lower()
    if wanted and wanted not in TRANSPORTS:
        raise ValueError(f"NEXA_HTTP_TRANSPORT={wanted!r}: valid values are {', '.join(TRANSPORTS)}")
    if wanted == "httpx":
        return "httpx"
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        if wanted == "aiohttp":
            raise ImportError("NEXA_HTTP_TRANSPORT=aiohttp needs aiohttp: pip install 'openai[aiohttp]'") from None
        return "httpx"
    return "aiohttp"


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while ~10^5 small acyclic containers are made at once (the top-k
    log-probabilities of a batch of answers): collecting them as they are made doubles the work."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def decode_json(body: bytes) -> Any:
    """A response body as Python objects (orjson; the collector paused for large bodies)."""
    if len(body) < LARGE_BODY:
        return orjson.loads(body)
    with gc_paused():
        return orjson.loads(body)


def _json_body(body: dict[str, Any]) -> bytes:
    """The request body as the SDK encodes JSON (compact, UTF-8, no NaN)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _parse_completion(data: Any, latency_ms: float, attempts: int) -> ChatResult:
    """A chat.completion JSON body as a ChatResult; a body of another shape raises ValueError."""
    try:
        choice = data["choices"][0]
        content = choice["message"].get("content") or ""
        usage = data.get("usage") or {}
        return ChatResult(
            content=content,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            latency_ms=latency_ms,
            attempts=attempts,
            refusal=choice["message"].get("refusal") or None,
            logprobs=_logprobs(choice) if choice.get("logprobs") else None,
        )
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a chat.completion body ({type(exc).__name__}: {exc})") from None


def _logprobs(choice: dict[str, Any]) -> dict[str, list[Any]] | None:
    """A choice's `logprobs.content` as columns, one entry per answer token: token, logprob, top_tokens and
    top_logprobs (lists, most likely first); None when absent. Made at once so the response's ~20 small
    objects per token alternative do not stay alive (and scanned by the collector) until the batch is stored."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not content:
        return None
    with gc_paused():
        tops = [item.get("top_logprobs") or [] for item in content]
        return {
            "token": [item["token"] for item in content],
            "logprob": [float(item["logprob"]) for item in content],
            "top_tokens": [[t["token"] for t in top] for top in tops],
            "top_logprobs": [[float(t["logprob"]) for t in top] for top in tops],
        }


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    headers = response.headers
    if "retry-after-ms" in headers:
        try:
            return float(headers["retry-after-ms"]) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when installed (less CPU per request: bench/teacher.py), else asyncio's default.

    NEXA_EVENT_LOOP=asyncio opts out.
    """
    if os.environ.get("NEXA_EVENT_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run(factory: Callable[[], Awaitable[Any]]) -> Any:
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        return runner.run(factory())  # type: ignore[arg-type]


def run_sync(factory: Callable[[], Awaitable[Any]]) -> Any:
    """Run a coroutine from synchronous code (Dagster asset bodies), even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run(factory)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: _run(factory)).result()
