"""SkyPilot bridge: run by `.venv-sky/bin/python`, it answers Nexa's SkyPilot calls in JSON lines.

SkyPilot lives in its own virtual environment (`.venv-sky`, made by `make setup`): skypilot 0.14.1 pins
`click<8.2` while huggingface_hub (under transformers 5.x in `.venv`) needs `click>=8.4.2`, so the two
cannot share one environment without downgrading transformers. This file therefore imports only the
standard library and `sky` — never nexa, dagster or anything from `.venv` — and is run as a script:

    .venv-sky/bin/python nexa_resources/sky_bridge.py < request.json

Request (stdin): {"calls": [{"method": "<name>", "args": {...}}, ...]}. Answer (stdout), one JSON
object per line: {"event": "log", "message": "..."} while working, then per call
{"call": i, "result": ...} or {"call": i, "error": {"type": ..., "message": ...}} (later calls still
run). Anything SkyPilot prints goes to stderr, so stdout carries only the protocol.

Methods that read only local files (no API server, no cloud): `validate` (task YAMLs through
`sky.Task.from_yaml_config`), `offers` (GPU offers from SkyPilot's catalog, `sky.catalog.list_accelerators`)
and `catalog_info`. Methods that reach SkyPilot's API server and the clouds are the ones of
`SkyClient`: `check`, `launch`, `wait`, `down` — the only place real SkyPilot calls happen.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

Emit = Callable[[str], None]

# Clouds whose "catalog" is a live cluster, not a price list: never part of a price ranking.
_NON_CATALOG_CLOUDS = {"kubernetes", "ssh", "slurm"}


# --------------------------------------------------------------------------- local-only methods


def _number(value: Any) -> float | None:
    """A float, or None for missing/NaN (the catalog's way of saying 'not offered')."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


def catalog_info(args: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Where SkyPilot reads its price catalog from, and which clouds have a file there already."""
    from sky.skylet import constants, runtime_utils

    version = constants.CATALOG_SCHEMA_VERSION
    # sky/catalog/common.py: <SKY_RUNTIME_DIR or ~>/.sky/catalogs/<version>/<cloud>/vms.csv
    root = runtime_utils.get_runtime_dir_path(os.path.join(".sky/catalogs", version))
    clouds = []
    if os.path.isdir(root):
        for name in sorted(os.listdir(root)):
            if name in _NON_CATALOG_CLOUDS:
                continue
            if os.path.isfile(os.path.join(root, name, "vms.csv")):
                clouds.append(name)
    return {"catalog_dir": root, "version": version, "cached_clouds": clouds}


def offers(args: dict[str, Any], emit: Emit) -> dict[str, Any]:
    """Every catalog row (instance type x region) for the named accelerators on the given clouds.

    clouds None = the clouds whose catalog file is already on disk, so nothing is downloaded."""
    from sky import catalog

    info = catalog_info({}, emit)
    names = sorted({str(n) for n in args["accelerators"]})
    requested = args.get("clouds")
    clouds = info["cached_clouds"] if requested is None else [str(c).lower() for c in requested]
    clouds = [c for c in clouds if c not in _NON_CATALOG_CLOUDS]
    rows: list[dict[str, Any]] = []
    answer = {**info, "clouds": clouds, "offers": rows}
    if not names or not clouds:
        return answer
    pattern = "^(?:" + "|".join(re.escape(n) for n in names) + ")$"
    found = catalog.list_accelerators(
        gpus_only=True,
        name_filter=pattern,
        clouds=clouds,
        case_sensitive=False,
        all_regions=True,  # one row per region: prices differ by region on most clouds
        require_price=True,
    )
    for infos in found.values():
        for item in infos:
            price = _number(item.price)
            if price is None:
                continue
            rows.append(
                {
                    "accelerator": item.accelerator_name,
                    "count": _number(item.accelerator_count),
                    "cloud": str(item.cloud).lower(),
                    "region": item.region,
                    "instance_type": item.instance_type,
                    "gpu_memory_gb": _number(item.device_memory),
                    "vcpus": _number(item.cpu_count),
                    "memory_gb": _number(item.memory),
                    "price": price,
                    "spot_price": _number(item.spot_price),
                }
            )
    return answer


def validate(args: dict[str, Any], emit: Emit) -> list[dict[str, Any]]:
    """Parse task configs with SkyPilot's own parser; return SkyPilot's view of each (secrets redacted)."""
    import sky

    out = []
    for item in args["tasks"]:
        overrides = [(str(k), str(v)) for k, v in (item.get("env_overrides") or {}).items()]
        task = sky.Task.from_yaml_config(dict(item["config"]), env_overrides=overrides or None)
        try:
            resolved = task._to_yaml_config(redact_secrets=True)  # the variant that redacts secrets
        except TypeError:
            resolved = task.to_yaml_config()
        resolved.pop("_user_specified_yaml", None)
        out.append(
            {
                "name": task.name,
                "resolved": resolved,
                "resources": sorted(repr(r) for r in task.resources),
                "envs": dict(task.envs),
                "has_service": task.service is not None,
            }
        )
    return out


# --------------------------------------------------------------------------- the cloud-touching seam


class _LineStream(io.TextIOBase):
    """A text stream that hands every complete line to `emit` (SkyPilot's output_stream)."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self._buf = ""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self._buf += s
        *lines, self._buf = re.split(r"\r?\n|\r", self._buf)
        for line in lines:
            if line.strip():
                self._emit(line)
        return len(s)

    def flush(self) -> None:
        if self._buf.strip():
            self._emit(self._buf)
        self._buf = ""


def _record_dict(record: Any) -> dict[str, Any]:
    if hasattr(record, "model_dump"):
        record = record.model_dump()
    out = {}
    for key, value in dict(record).items():
        if hasattr(value, "value"):  # enums such as ManagedJobStatus
            value = value.value
        try:
            json.dumps(value)
        except TypeError:
            value = str(value)
        out[key] = value
    return out


class SkyClient:
    """Every real SkyPilot call that reaches the API server or a cloud. Tests replace this seam.

    check()  — clouds with usable credentials (what `sky check` reports);
    launch() — a managed job (`sky.jobs.launch`) built with `sky.Task.from_yaml_config`;
    wait()   — streams the job's logs and returns its final queue record;
    down()   — cancels the managed job, which tears its cluster down.
    """

    def check(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        from sky.server import common as server_common

        url = server_common.get_server_url()
        if server_common.is_api_server_local(url):
            # The local API server would run exactly this (sky/check.py) in its own process; running it
            # here needs no server start (~1 min on 2 cores) and leaves no server behind.
            from sky.clouds import cloud as sky_cloud

            from sky import check as sky_check

            found = sky_check.check_capabilities(quiet=True, capabilities=[sky_cloud.CloudCapability.COMPUTE])
            enabled = sorted({str(c) for per_workspace in found.values() for c in per_workspace})
            return {"enabled_clouds": enabled, "api_server": "local"}
        from sky.client import sdk

        enabled = sdk.stream_and_get(sdk.enabled_clouds(), output_stream=_LineStream(emit))
        return {"enabled_clouds": sorted(str(c) for c in enabled), "api_server": url}

    def launch(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        import sky

        task_spec = args["task"]
        overrides = [(str(k), str(v)) for k, v in (task_spec.get("env_overrides") or {}).items()]
        task = sky.Task.from_yaml_config(dict(task_spec["config"]), env_overrides=overrides or None)
        stream = _LineStream(emit)
        request_id = sky.jobs.launch(task, name=args["name"])
        job_ids, _handle = sky.stream_and_get(request_id, output_stream=stream)
        stream.flush()
        job_id = job_ids[0] if job_ids else None
        return {"job_id": job_id, "name": args["name"]}

    def _record(self, job_id: int) -> dict[str, Any] | None:
        import sky

        answer = sky.stream_and_get(sky.jobs.queue_v2(refresh=False, job_ids=[job_id], fields=None))
        records = answer[0] if isinstance(answer, tuple) else answer
        for record in records or []:
            rec = _record_dict(record)
            if rec.get("job_id") == job_id:
                return rec
        return None

    def wait(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        import sky

        terminal = {s.value for s in sky.jobs.ManagedJobStatus.terminal_statuses()}
        job_id = int(args["job"]["job_id"])
        poll_s = float(args.get("poll_s", 30.0))
        stream = _LineStream(emit)
        try:
            # Follows the job through provisioning, setup, run and any spot recovery; returns at the end.
            sky.jobs.tail_logs(job_id=job_id, follow=True, output_stream=stream)
            stream.flush()
        except Exception as exc:  # noqa: BLE001 - logs are a convenience; the status poll below decides
            emit(f"log streaming stopped ({type(exc).__name__}: {exc}); polling the job status")
        last = None
        while True:
            record = self._record(job_id)
            status = (record or {}).get("status")
            if status != last:
                emit(f"managed job {job_id}: {status}")
                last = status
            if record is None or status in terminal:
                return record or {"job_id": job_id, "status": "UNKNOWN"}
            time.sleep(poll_s)

    def down(self, args: dict[str, Any], emit: Emit) -> dict[str, Any]:
        import sky

        job_id = args.get("job_id")
        if job_id is not None:
            request = sky.jobs.cancel(job_ids=[int(job_id)])
        else:
            request = sky.jobs.cancel(name=args["name"])
        sky.stream_and_get(request, output_stream=_LineStream(emit))
        return {"cancelled": True, "job_id": job_id, "name": args["name"]}


_LOCAL_METHODS = {"catalog_info": catalog_info, "offers": offers, "validate": validate}
_CLIENT_METHODS = {"check", "launch", "wait", "down"}


def main() -> int:
    # stdout is the protocol channel: keep a private handle on it, and send fd 1 (anything SkyPilot
    # or its libraries print) to stderr.
    protocol = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(obj: dict[str, Any]) -> None:
        protocol.write(json.dumps(obj, default=str) + "\n")
        protocol.flush()

    def emit(message: str) -> None:
        send({"event": "log", "message": message})

    request = json.load(sys.stdin)
    client = SkyClient()
    for index, call in enumerate(request.get("calls", [])):
        method = call.get("method")
        args = call.get("args") or {}
        try:
            if method in _LOCAL_METHODS:
                result = _LOCAL_METHODS[method](args, emit)
            elif method in _CLIENT_METHODS:
                result = getattr(client, method)(args, emit)
            else:
                valid = ", ".join(sorted([*_LOCAL_METHODS, *_CLIENT_METHODS]))
                raise ValueError(f"unknown bridge method {method!r}; valid: {valid}")
            send({"call": index, "result": result})
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the caller as data
            traceback.print_exc(file=sys.stderr)
            send({"call": index, "error": {"type": type(exc).__name__, "message": str(exc)}})
    protocol.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
