"""The answering program of sky/eval.yaml, run on the GPU node next to vLLM's OpenAI-compatible server.

It asks the served checkpoint every eval prompt through `predict`, the function the local path uses, and
writes the PREDICTION_SCHEMA rows as parquet, which eval/predictions reads back from the bucket:

    python -m nexa_assets.evaluate.node --prompts prompts.parquet --output predictions.parquet \
        --base-url http://127.0.0.1:8000/v1 --spec '{"model_id": "...", ...}' [--server-pid PID --server-log LOG]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from nexa_core.pricing import FREE
from nexa_assets.evaluate.predict import predict
from nexa_resources.llm_client import ChatClient, SamplingParams, run_sync

# What the node needs to know to ask like the local path; everything but model_id has the local default.
SPEC_DEFAULTS: dict[str, Any] = {
    "model_kind": "checkpoint",
    "model_label": None,
    "checkpoint_id": None,
    "temperature": 0.0,
    "top_p": 1.0,
    "max_tokens": 256,
    "max_concurrency": 128,
    "ready_timeout_s": 1800.0,  # the first start of vLLM compiles kernels and captures CUDA graphs
    "request_timeout_s": 3600.0,
}


def read_spec(text: str) -> dict[str, Any]:
    spec = json.loads(text)
    unknown = sorted(set(spec) - set(SPEC_DEFAULTS) - {"model_id"})
    if "model_id" not in spec or unknown:
        raise ValueError(
            f"spec needs model_id and takes only {', '.join(['model_id', *SPEC_DEFAULTS])}; "
            f"got {', '.join(sorted(spec))}"
        )
    return {**SPEC_DEFAULTS, **spec}


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.exists():
        return ""
    with path.open(encoding="utf-8", errors="replace") as fh:
        return "\n".join(line.rstrip() for line in deque(fh, maxlen=lines))


def wait_until_ready(
    base_url: str,
    *,
    timeout_s: float,
    server_pid: int | None = None,
    server_log: Path | None = None,
    poll_s: float = 2.0,
) -> None:
    """Return once GET <base_url>/models answers 200; fail early when the server process has exited."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{base_url.rstrip('/')}/models", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if not _alive(server_pid):
            raise RuntimeError(f"the model server (pid {server_pid}) exited before it answered; its log:\n"
                               + _tail(server_log))
        if time.monotonic() > deadline:
            raise TimeoutError(f"{base_url} did not answer within {timeout_s:g} s; the server's log:\n"
                               + _tail(server_log))
        time.sleep(poll_s)


def answer(
    prompts: pl.DataFrame, base_url: str, spec: dict[str, Any], log: Callable[[str], None] = print
) -> pl.DataFrame:
    """PREDICTION_SCHEMA rows of the model served at `base_url` (under spec's model_id) for `prompts`."""
    params = SamplingParams(temperature=spec["temperature"], top_p=spec["top_p"], max_tokens=spec["max_tokens"])

    async def answer_all() -> pl.DataFrame:
        client = ChatClient(
            base_url=base_url,
            model=spec["model_id"],
            api_key=os.environ.get("VLLM_API_KEY") or "local",
            max_concurrency=spec["max_concurrency"],
            timeout_s=spec["request_timeout_s"],
        )
        try:
            return await predict(
                prompts,
                client,
                params,
                model_id=spec["model_id"],
                model_kind=spec["model_kind"],
                checkpoint_id=spec["checkpoint_id"],
                model_label=spec["model_label"],
                price=FREE,
                log=log,
                progress=False,
            )
        finally:
            await client.aclose()

    return run_sync(answer_all)


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Written under a temporary name and renamed, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    frame.write_parquet(partial)
    partial.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nexa_assets.evaluate.node", description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", required=True, type=Path, help="eval/prompts rows to answer (parquet)")
    parser.add_argument("--output", required=True, type=Path, help="where the answers go (parquet)")
    parser.add_argument("--base-url", required=True, help="the model server's OpenAI base URL")
    parser.add_argument("--spec", required=True, help="JSON: model_id and how to ask (see SPEC_DEFAULTS)")
    parser.add_argument("--server-pid", type=int, default=None, help="the server's pid: fail early if it exits")
    parser.add_argument("--server-log", type=Path, default=None, help="the server's log, quoted on failure")
    args = parser.parse_args(argv)
    spec = read_spec(args.spec)
    prompts = pl.read_parquet(args.prompts)
    print(f"nexa eval: {prompts.height} prompts for {spec['model_id']} at {args.base_url}", flush=True)
    wait_until_ready(
        args.base_url, timeout_s=spec["ready_timeout_s"], server_pid=args.server_pid, server_log=args.server_log
    )
    rows = answer(prompts, args.base_url, spec, log=lambda line: print(line, flush=True))
    write_parquet(rows, args.output)
    failed = rows.filter(pl.col("error").is_not_null()).height
    print(f"nexa eval: wrote {rows.height} answers ({failed} failed requests) to {args.output}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
