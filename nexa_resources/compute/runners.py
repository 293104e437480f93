"""The runners: the trainer in a subprocess here, or a managed job followed to its end through the SkyPilot seam,
and what a finished run reports (its metrics.json, where it ran, what it cost)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, TypedDict

from nexa_resources.compute.bridge import TAIL_LINES, SkyBridge, SkyClientLike
from nexa_resources.compute.errors import ComputeError, TrainingFailed
from nexa_resources.compute.plan import Offer, Plan, accelerator_label
from nexa_resources.storage import read_s3_object

# SkyPilot names clusters and jobs [a-z][-a-z0-9]*; a Dagster run id is a uuid.
_NAME_SAFE = re.compile(r"[^a-z0-9-]+")


class TrainRun(TypedDict):
    """One training run, as every backend takes it: the SFT table (uri, version), where the checkpoint goes,
    the trainer's config and the Dagster run id."""

    sft_uri: str
    sft_version: int
    output_uri: str
    config: dict[str, Any]
    run_id: str


def job_name(kind: str, run_id: str) -> str:
    """A SkyPilot job name unique to a Dagster run: nexa-<kind>-<first 8 characters of the run id>."""
    slug = _NAME_SAFE.sub("-", run_id.lower()).strip("-")[:8] or "manual"
    return f"nexa-{kind}-{slug}"


def training_job_name(run_id: str) -> str:
    return job_name("train", run_id)


def trainer_command(
    trainer_module: str, *, sft_uri: str, sft_version: int, output_uri: str, config_path: str | Path
) -> list[str]:
    """`python -m <trainer_module>` with the run's arguments."""
    return [
        sys.executable,
        "-m",
        trainer_module,
        "--sft-uri",
        sft_uri,
        "--sft-version",
        str(int(sft_version)),
        "--output",
        output_uri,
        "--config",
        str(config_path),
    ]


def run_local(run: TrainRun, *, trainer_module: str, log: Any) -> dict[str, Any]:
    """Train in a subprocess here, its output streamed to `log`; the trainer's metrics plus where it ran."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nexa-train-") as tmp:
        config_path = Path(tmp) / "train_config.json"
        config_path.write_text(json.dumps(run["config"], indent=1, sort_keys=True, default=str), encoding="utf-8")
        cmd = trainer_command(
            trainer_module,
            sft_uri=run["sft_uri"],
            sft_version=run["sft_version"],
            output_uri=run["output_uri"],
            config_path=config_path,
        )
        log.info(f"local training: {shlex.join(cmd)}")
        code, tail = _stream(cmd, {**os.environ, "PYTHONUNBUFFERED": "1", "NEXA_RUN_ID": run["run_id"]}, log)
    if code != 0:
        raise TrainingFailed(
            f"the trainer `python -m {trainer_module}` exited with code {code}; its last "
            f"{len(tail)} lines:\n" + "\n".join(tail)
        )
    metrics = read_metrics(run["output_uri"])
    wall_s = time.monotonic() - started
    return {
        **metrics,
        "wall_s": metrics.get("wall_s", round(wall_s, 3)),
        "backend": "local",
        "cloud": None,
        "region": None,
        "instance_type": None,
        "accelerator": metrics.get("device") or local_accelerator(),
        "price_per_hour": 0.0,
        "cost_usd": 0.0,
    }


def _stream(cmd: list[str], env: dict[str, str], log: Any) -> tuple[int, deque[str]]:
    """Run `cmd`, logging each line of its output; its exit code and last TAIL_LINES lines."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, errors="replace")
    try:
        for raw in proc.stdout:
            # Progress bars redraw with '\r': log the last state of the line only.
            line = raw.rstrip("\n").rsplit("\r", 1)[-1].rstrip()
            if line:
                tail.append(line)
                log.info(line)
        code = proc.wait()
    finally:
        if proc.poll() is None:  # the run was interrupted: do not leave the trainer running
            proc.kill()
            proc.wait()
    return code, tail


def run_managed_job(
    client: SkyClientLike,
    bridge: SkyBridge,
    task: dict[str, Any],
    *,
    use_spot: bool,
    log: Any,
    failure: type[ComputeError] = TrainingFailed,
    down_after: bool = False,
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """Validate `task` with SkyPilot's parser, launch it as a managed job and follow it to its end.

    Returns (job, final queue record, wall seconds); a job that does not end SUCCEEDED raises `failure`.
    The job is cancelled (SkyPilot then tears its cluster down) when anything fails, and after success
    too with `down_after`."""
    parsed = bridge.call("validate", {"tasks": [task]})[0]  # SkyPilot's own parser, before any cloud
    task["resolved"] = parsed["resolved"]
    name = task["name"]
    log.info(
        f"launching managed job {name}: {'spot' if use_spot else 'on-demand'}, one of "
        f"{', '.join(parsed['resources'])}"
    )
    job: dict[str, Any] | None = None
    succeeded = False
    started = time.monotonic()
    try:
        job = client.launch(task, name=name, log=log)
        log.info(
            f"managed job {name} submitted (id {job.get('job_id')}); `sky jobs logs {job.get('job_id')}` "
            "follows it from a terminal"
        )
        record = client.wait(job, log=log)
        status = record.get("status")
        if status != "SUCCEEDED":
            raise failure(
                f"managed job {name} (id {job.get('job_id')}) ended {status}"
                f"{': ' + str(record['failure_reason']) if record.get('failure_reason') else ''}; "
                f"see `sky jobs logs {job.get('job_id')}`"
            )
        succeeded = True
    finally:
        if not succeeded or down_after:
            _cancel(client, name, (job or {}).get("job_id"), succeeded, log)
    wall_s = float(record.get("job_duration") or (time.monotonic() - started))
    return job, record, wall_s


def _cancel(client: SkyClientLike, name: str, job_id: int | None, succeeded: bool, log: Any) -> None:
    """Whatever went wrong (launch error, failed job, interrupted run), leave nothing running."""
    try:
        client.down(name=name, job_id=job_id)
        if succeeded:
            log.info(f"managed job {name} finished; cancelled it so that its cluster is down")
        else:
            log.warning(f"cancelled managed job {name}; SkyPilot tears its cluster down")
    except Exception as exc:  # noqa: BLE001 - report, but keep the original error
        report = log.info if succeeded else log.error  # a finished job may have nothing left
        report(f"could not cancel managed job {name} ({exc}): run `sky jobs cancel -n {name}` and check `sky status`")


def where_ran(plan: Plan, record: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """Cloud, region, instance type, accelerator, $/hour and cost of a finished job, from its record."""
    ran = _match_offer(plan, record) or plan.chosen
    assert ran is not None  # checked_plan refused a plan without a chosen offer
    return {
        "cloud": (record.get("cloud") or ran.cloud).lower(),
        "region": record.get("region") or ran.region,
        "instance_type": ran.instance_type,
        "accelerator": _record_accelerator(record) or ran.label,
        "price_per_hour": ran.price_per_hour,
        "cost_usd": round(ran.price_per_hour * wall_s / 3600.0, 4),
    }


def _record_accelerator(record: dict[str, Any]) -> str | None:
    accelerators = record.get("accelerators") or {}
    if len(accelerators) == 1:
        ((name, count),) = accelerators.items()
        return accelerator_label(name, float(count))
    return None


def _match_offer(plan: Plan, record: dict[str, Any]) -> Offer | None:
    """The plan's offer that matches where the job actually ran (cloud, accelerator, region), if any."""
    cloud = str(record.get("cloud") or "").lower()
    label = _record_accelerator(record)
    region = record.get("region")
    for offer in plan.offers:  # cheapest first
        if offer.cloud == cloud and (label is None or offer.label == label) and (not region or region in offer.regions):
            return offer
    return None


def local_accelerator() -> str:
    """'cuda:<GPU name>' when nvidia-smi sees a GPU here, else 'cpu'."""
    if shutil.which("nvidia-smi"):
        try:
            out = (
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=True,
                )
                .stdout.strip()
                .splitlines()
            )
            if out:
                return f"cuda:{out[0].strip()}"
        except (OSError, subprocess.SubprocessError):
            pass
    return "cpu"


def read_metrics(output_uri: str) -> dict[str, Any]:
    """The trainer's metrics.json from a local folder or s3://bucket/prefix."""
    if output_uri.startswith("s3://"):
        uri = f"{output_uri.rstrip('/')}/metrics.json"
        try:
            body = read_s3_object(uri)
        except Exception as exc:  # noqa: BLE001 - botocore's ClientError/NoCredentialsError carry the useful words
            raise TrainingFailed(f"the run ended but {uri} could not be read: {exc}") from None
        return json.loads(body)
    path = Path(output_uri) / "metrics.json"
    if not path.exists():
        raise TrainingFailed(f"the trainer exited 0 but wrote no {path}")
    return json.loads(path.read_text(encoding="utf-8"))
