"""The bridge to SkyPilot: every SkyPilot call runs `nexa_resources/sky_bridge.py` under SkyPilot's own Python
(`.venv-sky`, see sky_bridge.py for why); the calls that reach a cloud go through one seam, a `SkyClientLike`
(a `BridgeSkyClient`, replaced by a fake in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from nexa_resources.compute.errors import SkyBridgeError, SkyPilotNotInstalled

REPO_ROOT = Path(__file__).resolve().parents[2]
BRIDGE_SCRIPT = Path(__file__).resolve().parents[1] / "sky_bridge.py"
SKY_VENV_PYTHON = REPO_ROOT / ".venv-sky" / "bin" / "python"
# How many trailing lines of a subprocess's output a failure message quotes.
TAIL_LINES = 30


def sky_python(setting: str = "") -> Path:
    """The Python of SkyPilot's environment: the setting, else $NEXA_SKY_PYTHON, else .venv-sky/bin/python."""
    path = Path(setting or os.environ.get("NEXA_SKY_PYTHON") or SKY_VENV_PYTHON)
    if not path.exists():
        raise SkyPilotNotInstalled(
            f"SkyPilot's environment is missing ({path} not found): run `make setup`, which creates "
            ".venv-sky with skypilot>=0.14.1,<0.15 (kept apart from .venv because skypilot pins click<8.2 "
            "and transformers' huggingface_hub needs click>=8.4.2), or set NEXA_SKY_PYTHON to a Python "
            "that has skypilot installed"
        )
    return path


class SkyBridge:
    """Runs `sky_bridge.py` under SkyPilot's Python and returns its JSON answers."""

    def __init__(self, python: Path, *, env: dict[str, str] | None = None, timeout_s: float | None = 600.0):
        self.python = python
        self.env = env
        self.timeout_s = timeout_s

    def call(
        self,
        method: str,
        args: dict[str, Any] | None = None,
        *,
        on_log: Callable[[str], None] | None = None,
        timeout_s: float | None = -1.0,
        extra_env: dict[str, str] | None = None,
    ) -> Any:
        return self.call_many([(method, args or {})], on_log=on_log, timeout_s=timeout_s, extra_env=extra_env)[0]

    def call_many(
        self,
        calls: Sequence[tuple[str, dict[str, Any]]],
        *,
        on_log: Callable[[str], None] | None = None,
        timeout_s: float | None = -1.0,
        extra_env: dict[str, str] | None = None,
    ) -> list[Any]:
        """Run several calls in one bridge process (SkyPilot's import alone takes seconds)."""
        limit = self.timeout_s if timeout_s == -1.0 else timeout_s
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
        env.update(extra_env or {})
        request = json.dumps({"calls": [{"method": m, "args": a} for m, a in calls]})
        proc = subprocess.Popen(
            [str(self.python), str(BRIDGE_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(REPO_ROOT),
        )
        stderr_tail: deque[str] = deque(maxlen=TAIL_LINES)
        drain = threading.Thread(target=lambda: stderr_tail.extend(line.rstrip() for line in proc.stderr), daemon=True)
        drain.start()
        timer = threading.Timer(limit, proc.kill) if limit else None
        if timer:
            timer.start()
        try:
            results = _answers(proc, request, stderr_tail, on_log)
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            drain.join(timeout=5)
        return [self._result(results.get(i), method, proc.returncode, limit, stderr_tail)
                for i, (method, _args) in enumerate(calls)]

    def _result(
        self, message: dict[str, Any] | None, method: str, code: int | None, limit: float | None, tail: deque[str]
    ) -> Any:
        """One call's result; SkyBridgeError with SkyPilot's words, or the bridge's last output, otherwise."""
        if message is None:
            timed_out = f" (killed after {limit:g} s)" if limit and code in (-9, 137) else ""
            raise SkyBridgeError(
                f"SkyPilot bridge ({self.python}) exited with code {code}{timed_out} before answering "
                f"{method!r}; its last output:\n" + "\n".join(tail)
            )
        if "error" in message:
            error = message["error"]
            raise SkyBridgeError(f"SkyPilot {method} failed: {error.get('type')}: {error.get('message')}")
        return message["result"]


def _answers(
    proc: subprocess.Popen, request: str, stderr_tail: deque[str], on_log: Callable[[str], None] | None
) -> dict[int, dict[str, Any]]:
    """Send the request, forward log events, and collect the answers by call index until the bridge exits."""
    results: dict[int, dict[str, Any]] = {}
    proc.stdin.write(request)
    proc.stdin.close()
    for line in proc.stdout:
        try:
            message = json.loads(line)
        except json.JSONDecodeError:
            stderr_tail.append(line.rstrip())
            continue
        if message.get("event") == "log":
            if on_log is not None:
                on_log(str(message.get("message", "")))
        elif "call" in message:
            results[int(message["call"])] = message
    proc.wait()
    return results


class SkyClientLike(Protocol):
    """The seam: every SkyPilot call that reaches the API server or a cloud."""

    def check(self) -> dict[str, Any]: ...

    def launch(self, task: dict[str, Any], *, name: str, log: Any) -> dict[str, Any]: ...

    def wait(self, job: dict[str, Any], *, log: Any) -> dict[str, Any]: ...

    def down(self, *, name: str, job_id: int | None) -> dict[str, Any]: ...


_SKY_CLIENT_OVERRIDE: list[Any] = []


@contextmanager
def override_sky_client(client: SkyClientLike) -> Iterator[SkyClientLike]:
    """Within this block every ComputeResource uses `client` as its SkyPilot seam.

    For tests that run assets: Dagster builds its own copy of a resource for each run, so a client set
    with `ComputeResource.use_sky_client` on the instance passed to Definitions does not reach the asset."""
    _SKY_CLIENT_OVERRIDE.append(client)
    try:
        yield client
    finally:
        _SKY_CLIENT_OVERRIDE.remove(client)


def overriding_sky_client() -> SkyClientLike | None:
    """The client of the innermost `override_sky_client` block, if any."""
    return _SKY_CLIENT_OVERRIDE[-1] if _SKY_CLIENT_OVERRIDE else None


class BridgeSkyClient:
    """The real SkyClient: forwards each call to `sky_bridge.SkyClient` in SkyPilot's environment."""

    def __init__(self, bridge: SkyBridge, poll_s: float = 30.0):
        self.bridge = bridge
        self.poll_s = poll_s

    def check(self) -> dict[str, Any]:
        return self.bridge.call("check", {})

    def launch(self, task: dict[str, Any], *, name: str, log: Any) -> dict[str, Any]:
        spec = {"config": task["config"], "env_overrides": task["env_overrides"]}
        return self.bridge.call("launch", {"task": spec, "name": name}, on_log=log.info, timeout_s=None)

    def wait(self, job: dict[str, Any], *, log: Any) -> dict[str, Any]:
        return self.bridge.call("wait", {"job": job, "poll_s": self.poll_s}, on_log=log.info, timeout_s=None)

    def down(self, *, name: str, job_id: int | None) -> dict[str, Any]:
        return self.bridge.call("down", {"name": name, "job_id": job_id})
