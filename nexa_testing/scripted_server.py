"""A scripted OpenAI-compatible HTTP server for tests and benchmarks (uvicorn + a raw ASGI app).

Run it with `python -m nexa_testing.scripted_server --port P [--latency-ms 100] [--host 127.0.0.1]`;
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
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from typing import Any

from nexa_testing.scripted_app import DEFAULT_MODEL, FAULTS, ScriptedApp
from nexa_testing.scripted_answers import VERDICT_FAULTS, answer_for, fingerprint, verdict_for

__all__ = ["DEFAULT_MODEL", "FAULTS", "VERDICT_FAULTS", "ScriptedServer", "answer_for", "fingerprint", "main",
           "verdict_for"]


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
        cmd = [sys.executable, "-m", "nexa_testing.scripted_server", "--host", self.host,
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
