"""Run the trainer program in a subprocess of this machine: the `local` way to train.

`LocalCompute.run_training` has the signature every compute backend offers to the train/checkpoints asset
(`TrainingCompute`), so the asset never knows where training ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nexa_assets.train.trainer import METRICS_MARKER

TAIL_LINES = 40


class TrainingCompute(Protocol):
    """Where training runs: returns the trainer's metrics plus backend, cloud, region, accelerator,
    price_per_hour and cost_usd."""

    def run_training(
        self, *, sft_uri: str, sft_version: int, output_uri: str, config: dict, run_id: str, log: Any
    ) -> dict: ...


class TrainingFailed(RuntimeError):
    """The trainer subprocess exited without metrics; the message ends with its last output lines."""


def _emitter(log: Any) -> Callable[[str], None]:
    """A Dagster log manager (or any logger) → its .info; a plain callable as is."""
    return log.info if hasattr(log, "info") else log


@dataclass
class LocalCompute:
    """Runs `python -m nexa_assets.train` here, streaming every output line to the log."""

    python: str = sys.executable
    env: Mapping[str, str] = field(default_factory=dict)  # extra variables for the subprocess
    timeout_s: float | None = None
    backend: str = "local"

    def command(self, *, sft_uri: str, sft_version: int, output_uri: str, config_path: str) -> list[str]:
        return [
            self.python, "-m", "nexa_assets.train",
            "--sft-uri", sft_uri,
            "--sft-version", str(int(sft_version)),
            "--output", output_uri,
            "--config", config_path,
        ]  # fmt: skip

    def run_training(
        self, *, sft_uri: str, sft_version: int, output_uri: str, config: dict, run_id: str, log: Any
    ) -> dict:
        emit = _emitter(log)
        with tempfile.TemporaryDirectory(prefix="nexa-train-") as tmp:
            config_path = Path(tmp) / "train.json"
            config_path.write_text(json.dumps(config))
            cmd = self.command(
                sft_uri=sft_uri, sft_version=sft_version, output_uri=output_uri, config_path=str(config_path)
            )
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "NEXA_RUN_ID": run_id, **self.env}
            emit(f"local training: {' '.join(cmd)}")
            metrics, code, tail = self._stream(cmd, env, emit)
        if code != 0 or metrics is None:
            raise TrainingFailed(
                f"the trainer exited with code {code} without metrics; last lines:\n" + "\n".join(tail)
            )
        device = str(metrics.get("device", "cpu"))
        return {
            **metrics,
            "backend": self.backend,
            "cloud": "local",
            "region": None,
            "accelerator": "cpu" if device.startswith("cpu") else device,
            "price_per_hour": 0.0,
            "cost_usd": 0.0,
        }

    def _stream(
        self, cmd: list[str], env: dict[str, str], emit: Callable[[str], None]
    ) -> tuple[dict | None, int, list[str]]:
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        metrics = None
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env,
            start_new_session=True,  # so a cancelled run stops the trainer and everything it started
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                if line.startswith(METRICS_MARKER):
                    metrics = json.loads(line[len(METRICS_MARKER) :])
                    continue
                tail.append(line)
                if line.strip():
                    emit(line)
            code = proc.wait(timeout=self.timeout_s)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        return metrics, code, list(tail)
