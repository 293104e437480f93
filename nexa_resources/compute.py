"""Where training runs: `local` (a subprocess on this machine) or `skypilot` (the cheapest GPU in the cloud).

The `skypilot` backend builds a managed job from `sky/train.yaml`, offers a *set* of candidate
accelerators so SkyPilot's optimizer picks the cheapest, ranks the same candidates beforehand from
SkyPilot's own price catalog (filtered by the GPU memory the model needs) and refuses to launch above
the budget caps. SkyPilot lives in its own environment (`.venv-sky`, see `sky_bridge.py` for why), so
every SkyPilot call goes through `.venv-sky/bin/python nexa_resources/sky_bridge.py`; the calls that
reach a cloud go through one seam, `sky_client()` (a `BridgeSkyClient`, replaced by a fake in tests).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import dagster as dg
from pydantic import Field, PrivateAttr, field_validator

from nexa_resources.profiles import settings_env

REPO_ROOT = Path(__file__).resolve().parents[1]
BRIDGE_SCRIPT = Path(__file__).resolve().with_name("sky_bridge.py")
TRAIN_TASK_YAML = REPO_ROOT / "sky" / "train.yaml"
SERVE_TEACHER_YAML = REPO_ROOT / "sky" / "serve_teacher.yaml"
SKY_VENV_PYTHON = REPO_ROOT / ".venv-sky" / "bin" / "python"

BACKENDS = ("local", "skypilot")
DEFAULT_ACCELERATORS = ["A10:1", "A100:1", "H100:1"]
# The mount point of the bucket on the training node; sky/train.yaml maps URIs under the bucket to it.
BUCKET_MOUNT = "/nexa-bucket"
# How many trailing lines of the trainer's output a failure message quotes.
TAIL_LINES = 30
# SkyPilot names clusters and jobs [a-z][-a-z0-9]*; a Dagster run id is a uuid.
_NAME_SAFE = re.compile(r"[^a-z0-9-]+")


class ComputeError(dg.Failure, RuntimeError):
    """A training run could not be started or did not finish; the message says what to do.

    A `dagster.Failure`, so an asset that lets it through fails with this message, not a stack trace."""

    def __init__(self, message: str):
        super().__init__(description=message)


class SkyPilotNotInstalled(ComputeError):
    """`.venv-sky` (SkyPilot's own environment) is missing."""


class NoCloudCredentials(ComputeError):
    """SkyPilot sees no cloud it may launch on."""


class BudgetExceeded(ComputeError):
    """Every candidate offer costs more than the budget caps allow."""


class NoOffers(ComputeError):
    """No catalog offer matches the candidates, the GPU memory floor, the region or spot."""


class TrainingFailed(ComputeError):
    """The trainer (local subprocess or managed job) ended without success."""


class SkyBridgeError(ComputeError):
    """A call into SkyPilot (through the bridge) raised; the message carries SkyPilot's own words."""


# --------------------------------------------------------------------------------------- small helpers


def parse_accelerator(spec: str) -> tuple[str, float]:
    """'A100:2' -> ('A100', 2.0); 'A10' -> ('A10', 1.0)."""
    name, _, count = spec.strip().partition(":")
    if not name:
        raise ValueError(f"accelerator {spec!r}: expected NAME or NAME:COUNT, e.g. 'A100:1'")
    try:
        value = float(count) if count else 1.0
    except ValueError:
        raise ValueError(f"accelerator {spec!r}: the count after ':' must be a number, e.g. 'A100:1'") from None
    if value <= 0:
        raise ValueError(f"accelerator {spec!r}: the count must be positive")
    return name, value


def accelerator_label(name: str, count: float) -> str:
    return f"{name}:{int(count) if float(count).is_integer() else count}"


def job_name(kind: str, run_id: str) -> str:
    """A SkyPilot job name unique to a Dagster run: nexa-<kind>-<first 8 characters of the run id>."""
    slug = _NAME_SAFE.sub("-", run_id.lower()).strip("-")[:8] or "manual"
    return f"nexa-{kind}-{slug}"


def training_job_name(run_id: str) -> str:
    return job_name("train", run_id)


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


def _env_flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


# ------------------------------------------------------------------------------------ the price plan


@dataclass(frozen=True)
class Offer:
    """One priced way to get the accelerators: an instance type on a cloud, in one or more regions."""

    accelerator: str
    count: float
    cloud: str
    regions: tuple[str, ...]
    instance_type: str | None
    gpu_memory_gb: float | None
    price_per_hour: float  # what this run would pay: the spot price with use_spot, else on-demand
    est_total_usd: float
    within_budget: bool

    @property
    def label(self) -> str:
        return accelerator_label(self.accelerator, self.count)

    @property
    def region(self) -> str:
        return self.regions[0] if self.regions else ""

    def as_row(self) -> dict[str, Any]:
        return {
            "accelerator": self.label,
            "cloud": self.cloud,
            "region": self.region,
            "regions": len(self.regions),
            "instance_type": self.instance_type,
            "gpu_memory_gb": self.gpu_memory_gb,
            "price_per_hour": self.price_per_hour,
            "est_total_usd": round(self.est_total_usd, 2),
            "within_budget": self.within_budget,
        }


@dataclass
class Plan:
    """Candidate offers ranked by price, the one SkyPilot's optimizer would take, and the budget verdict."""

    candidates: list[str]
    clouds: list[str]
    min_gpu_memory_gb: float
    use_spot: bool
    hours: float
    max_price_per_hour: float
    max_total_usd: float
    offers: list[Offer]
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> catalog rows left out
    catalog: str = ""

    @property
    def hourly_cap(self) -> float:
        """The $/hour no instance may exceed: the hourly cap, or the total cap spread over the hours."""
        return min(self.max_price_per_hour, self.max_total_usd / self.hours)

    @property
    def chosen(self) -> Offer | None:
        return next((o for o in self.offers if o.within_budget), None)

    def launchable(self) -> list[str]:
        """Candidates with at least one offer within budget and memory: the set handed to SkyPilot."""
        keep = {o.label for o in self.offers if o.within_budget}
        return [c for c in self.candidates if c in keep]

    def refusal(self) -> str | None:
        """Why nothing may launch, or None when an offer fits."""
        if self.chosen is not None:
            return None
        if not self.offers:
            why = "; ".join(f"{n} rows {reason}" for reason, n in sorted(self.excluded.items())) or "none in catalog"
            return (
                f"no offer for {', '.join(self.candidates)} on {', '.join(self.clouds) or 'no cloud'}"
                f"{f' with >= {self.min_gpu_memory_gb:g} GB GPU memory' if self.min_gpu_memory_gb else ''}"
                f"{' as spot' if self.use_spot else ''} ({why}); add candidates (accelerators), lower "
                "min_gpu_memory_gb, or enable another cloud (`sky check`)"
            )
        cheapest = self.offers[0]
        return (
            f"budget cap: the cheapest offer, {cheapest.label} on {cheapest.cloud} ({cheapest.instance_type}, "
            f"{cheapest.region}) at ${cheapest.price_per_hour:.2f}/h x {self.hours:g} h = "
            f"${cheapest.est_total_usd:.2f}, exceeds max_price_per_hour=${self.max_price_per_hour:.2f} or "
            f"max_total_usd=${self.max_total_usd:.2f}; nothing was launched. Raise a cap, lower "
            "estimated_hours, or add cheaper accelerators"
        )

    def raise_if_refused(self) -> Offer:
        reason = self.refusal()
        if reason is None:
            assert self.chosen is not None
            return self.chosen
        raise (NoOffers if not self.offers else BudgetExceeded)(reason)

    def format(self, limit: int | None = None) -> str:
        """A table of the ranked offers; '*' marks the one that would be chosen."""
        header = (
            "",
            "accelerator",
            "cloud",
            "region",
            "instance type",
            "GPU GB",
            "$/hour",
            f"$ x {self.hours:g}h",
            "budget",
        )
        rows = []
        chosen = self.chosen
        shown = self.offers if limit is None else self.offers[:limit]
        for offer in shown:
            regions = offer.region + (f" (+{len(offer.regions) - 1})" if len(offer.regions) > 1 else "")
            rows.append(
                (
                    "*" if offer is chosen else "",
                    offer.label,
                    offer.cloud,
                    regions,
                    offer.instance_type or "-",
                    "?" if offer.gpu_memory_gb is None else f"{offer.gpu_memory_gb:g}",
                    f"{offer.price_per_hour:.2f}",
                    f"{offer.est_total_usd:.2f}",
                    "ok" if offer.within_budget else "over",
                )
            )
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        summary = (
            f"candidates {', '.join(self.candidates)} on {', '.join(self.clouds) or '-'}"
            f"{f' ({self.catalog})' if self.catalog else ''}; GPU memory >= {self.min_gpu_memory_gb:g} GB; "
            f"{'spot' if self.use_spot else 'on-demand'}; caps ${self.max_price_per_hour:.2f}/h and "
            f"${self.max_total_usd:.2f} total over {self.hours:g} h (=> at most ${self.hourly_cap:.2f}/h)"
        )
        lines = [summary, "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
        lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        if limit is not None and len(self.offers) > limit:
            lines.append(f"... {len(self.offers) - limit} more offers")
        if self.excluded:
            lines.append("left out: " + ", ".join(f"{n} rows {r}" for r, n in sorted(self.excluded.items())))
        if chosen is not None:
            lines.append(
                f"chosen: {chosen.label} on {chosen.cloud} {chosen.region} ({chosen.instance_type}) at "
                f"${chosen.price_per_hour:.2f}/h, est. ${chosen.est_total_usd:.2f} for {self.hours:g} h"
            )
        else:
            lines.append(f"refused: {self.refusal()}")
        return "\n".join(lines)


def rank_offers(
    rows: Sequence[dict[str, Any]],
    *,
    candidates: Sequence[str],
    clouds: Sequence[str] = (),
    min_gpu_memory_gb: float = 0.0,
    use_spot: bool = False,
    hours: float = 1.0,
    max_price_per_hour: float = math.inf,
    max_total_usd: float = math.inf,
    region: str | None = None,
    catalog: str = "",
) -> Plan:
    """Rank catalog rows (the bridge's `offers`) for the candidate accelerators by $/hour.

    Rows of the same instance type at the same price in several regions collapse into one offer. Ties
    are broken by more GPU memory first, so the plan names what SkyPilot's optimizer would pick."""
    if hours <= 0:
        raise ValueError(f"hours must be positive, got {hours}")
    wanted = {}
    for spec in candidates:
        name, count = parse_accelerator(spec)
        wanted[(name.lower(), count)] = accelerator_label(name, count)
    excluded: dict[str, int] = {}

    def skip(reason: str) -> None:
        excluded[reason] = excluded.get(reason, 0) + 1

    grouped: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = (str(row["accelerator"]).lower(), float(row["count"]))
        if key not in wanted:
            continue  # another count of a candidate (e.g. 8x A100 when A100:1 was asked)
        if region and row.get("region") != region:
            skip(f"outside region {region}")
            continue
        price = row.get("spot_price") if use_spot else row.get("price")
        if price is None:
            skip("without a spot price" if use_spot else "without a price")
            continue
        memory = row.get("gpu_memory_gb")
        if min_gpu_memory_gb > 0 and (memory is None or memory < min_gpu_memory_gb):
            skip(f"below {min_gpu_memory_gb:g} GB GPU memory")
            continue
        label = wanted[key]
        group_key = (label, row["cloud"], row.get("instance_type"), float(price), memory)
        group = grouped.setdefault(
            group_key,
            {
                "accelerator": label.split(":")[0],
                "count": key[1],
                "cloud": row["cloud"],
                "instance_type": row.get("instance_type"),
                "gpu_memory_gb": memory,
                "price": float(price),
                "regions": set(),
            },
        )
        group["regions"].add(row.get("region") or "")
    hourly_cap = min(max_price_per_hour, max_total_usd / hours)
    offers = [
        Offer(
            accelerator=g["accelerator"],
            count=g["count"],
            cloud=g["cloud"],
            regions=tuple(sorted(g["regions"])),
            instance_type=g["instance_type"],
            gpu_memory_gb=g["gpu_memory_gb"],
            price_per_hour=g["price"],
            est_total_usd=g["price"] * hours,
            within_budget=g["price"] <= hourly_cap + 1e-9,
        )
        for g in grouped.values()
    ]
    offers.sort(key=lambda o: (o.price_per_hour, -(o.gpu_memory_gb or 0), o.label, o.cloud, o.instance_type or ""))
    return Plan(
        candidates=list(wanted.values()),
        clouds=sorted({c.lower() for c in clouds}),
        min_gpu_memory_gb=min_gpu_memory_gb,
        use_spot=use_spot,
        hours=hours,
        max_price_per_hour=max_price_per_hour,
        max_total_usd=max_total_usd,
        offers=offers,
        excluded=excluded,
        catalog=catalog,
    )


# --------------------------------------------------------------------------------------- the bridge


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
        results: dict[int, dict[str, Any]] = {}
        try:
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
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            drain.join(timeout=5)
        out = []
        for index, (method, _args) in enumerate(calls):
            message = results.get(index)
            if message is None:
                timed_out = f" (killed after {limit:g} s)" if limit and proc.returncode in (-9, 137) else ""
                raise SkyBridgeError(
                    f"SkyPilot bridge ({self.python}) exited with code {proc.returncode}{timed_out} before answering "
                    f"{method!r}; its last output:\n" + "\n".join(stderr_tail)
                )
            if "error" in message:
                error = message["error"]
                raise SkyBridgeError(f"SkyPilot {method} failed: {error.get('type')}: {error.get('message')}")
            out.append(message["result"])
        return out


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


# ------------------------------------------------------------------------------------ catalog snapshot


def snapshot_clouds(catalog_dir: str | Path) -> tuple[Path, list[str]]:
    """The versioned folder of a catalog snapshot (`<dir>/v8`) and the clouds that have a vms.csv in it."""
    root = Path(catalog_dir).expanduser()
    versions = sorted(p for p in root.glob("v*") if p.is_dir()) if root.is_dir() else []
    if not versions:
        raise ValueError(
            f"catalog_dir {str(root)!r} holds no SkyPilot catalog: expected <dir>/v8/<cloud>/vms.csv, the "
            "layout of ~/.sky/catalogs (e.g. tests/fixtures/skypilot)"
        )
    version = versions[-1]
    clouds = sorted(p.parent.name for p in version.glob("*/vms.csv"))
    return version, clouds


# A snapshot folder does not change while a process runs: its offers are read once per process.
_SNAPSHOT_OFFERS: dict[tuple, dict[str, Any]] = {}


def _snapshot_key(catalog_dir: str, python: Path, names: Sequence[str], clouds: Sequence[str] | None) -> tuple:
    version, _clouds = snapshot_clouds(catalog_dir)
    files = tuple(sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in version.rglob("*.csv")))
    return (str(python), files, tuple(names), tuple(clouds) if clouds is not None else None)


@contextmanager
def catalog_runtime(catalog_dir: str | None) -> Iterator[dict[str, str]]:
    """Environment for the bridge that makes SkyPilot read prices from a snapshot folder, offline.

    SkyPilot 0.14 reads `<SKY_RUNTIME_DIR or ~>/.sky/catalogs/v8/<cloud>/vms.csv` and never re-fetches a
    file that has no `.meta/<cloud>/vms.csv.md5` beside it, so a copy into a temporary runtime dir is
    used as is. Nothing else moves: the API server, credentials and ~/.sky/config.yaml stay where they are."""
    if not catalog_dir:
        yield {}
        return
    version, _clouds = snapshot_clouds(catalog_dir)
    with tempfile.TemporaryDirectory(prefix="nexa-sky-catalog-") as tmp:
        target = Path(tmp) / ".sky" / "catalogs" / version.name
        shutil.copytree(version, target, ignore=shutil.ignore_patterns(".meta"))
        for csv_file in target.rglob("*.csv"):
            csv_file.chmod(0o644)
            csv_file.touch()
        yield {"SKY_RUNTIME_DIR": tmp}


# ------------------------------------------------------------------------------------------ resource


class ComputeResource(dg.ConfigurableResource):
    """Runs the trainer: `local` in a subprocess here, or `skypilot` as a managed job on the cheapest GPU."""

    backend: str = Field(default="local", description="Where training runs: local | skypilot.")
    trainer_module: str = Field(
        default="nexa_assets.train", description="`python -m <module>` is the trainer program (tests use a stand-in)."
    )
    accelerators: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ACCELERATORS),
        description="Candidate accelerators NAME:COUNT, offered as a set: SkyPilot takes the cheapest.",
    )
    min_gpu_memory_gb: float = Field(default=0.0, ge=0, description="Leave out GPUs with less memory (per GPU).")
    use_spot: bool = Field(default=False, description="Spot instances (cheaper, preemptible; jobs recover).")
    job_recovery: str | None = Field(
        default="EAGER_NEXT_REGION", description="Managed-job recovery strategy (EAGER_NEXT_REGION, FAILOVER)."
    )
    max_restarts_on_errors: int = Field(default=1, ge=0, description="Relaunches when the trainer itself fails.")
    max_price_per_hour: float = Field(default=4.0, gt=0, description="Budget cap in USD per hour.")
    max_total_usd: float = Field(default=20.0, gt=0, description="Budget cap in USD for the estimated run.")
    estimated_hours: float = Field(default=2.0, gt=0, description="Expected training time, for the total cap.")
    bucket: str = Field(default="", description="s3://bucket/prefix for data and checkpoints (skypilot).")
    autostop_minutes: int = Field(default=10, ge=1, description="Idle minutes before a cluster deletes itself.")
    cloud: str | None = Field(default=None, description="Pin one cloud (e.g. lambda, aws); None = any enabled.")
    region: str | None = Field(default=None, description="Pin one region; None = any.")
    catalog_dir: str | None = Field(
        default=None, description="A SkyPilot catalog snapshot (<dir>/v8/<cloud>/vms.csv) to price from offline."
    )
    sky_python: str = Field(default="", description="Python with skypilot; default $NEXA_SKY_PYTHON or .venv-sky.")
    task_yaml: str = Field(default="", description="SkyPilot task file; default sky/train.yaml.")
    poll_seconds: float = Field(default=30.0, gt=0, description="Managed-job status poll interval.")

    _sky_client: Any = PrivateAttr(default=None)

    @field_validator("backend")
    @classmethod
    def _valid_backend(cls, value: str) -> str:
        if value not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {value!r}")
        return value

    @field_validator("accelerators")
    @classmethod
    def _valid_accelerators(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("accelerators needs at least one candidate, e.g. ['A10:1', 'A100:1', 'H100:1']")
        for spec in value:
            parse_accelerator(spec)
        return value

    @classmethod
    def from_env(cls) -> ComputeResource:
        """NEXA_COMPUTE_BACKEND, NEXA_COMPUTE_ACCELERATORS (A10:1,A100:1), NEXA_COMPUTE_BUCKET, NEXA_COMPUTE_SPOT,
        NEXA_COMPUTE_MAX_PRICE_PER_HOUR, NEXA_COMPUTE_MAX_TOTAL_USD, NEXA_COMPUTE_HOURS,
        NEXA_COMPUTE_MIN_GPU_MEMORY_GB, NEXA_COMPUTE_CLOUD, NEXA_COMPUTE_REGION, NEXA_SKY_CATALOG_DIR."""
        env = settings_env()
        settings: dict[str, Any] = {}
        if env.get("NEXA_COMPUTE_BACKEND"):
            settings["backend"] = env["NEXA_COMPUTE_BACKEND"].strip().lower()
        if env.get("NEXA_COMPUTE_ACCELERATORS"):
            settings["accelerators"] = [a.strip() for a in env["NEXA_COMPUTE_ACCELERATORS"].split(",") if a.strip()]
        if env.get("NEXA_COMPUTE_SPOT"):
            settings["use_spot"] = _env_flag(env["NEXA_COMPUTE_SPOT"])
        numbers = {
            "NEXA_COMPUTE_MAX_PRICE_PER_HOUR": "max_price_per_hour",
            "NEXA_COMPUTE_MAX_TOTAL_USD": "max_total_usd",
            "NEXA_COMPUTE_HOURS": "estimated_hours",
            "NEXA_COMPUTE_MIN_GPU_MEMORY_GB": "min_gpu_memory_gb",
        }
        for var, name in numbers.items():
            if env.get(var):
                settings[name] = float(env[var])
        texts = {
            "NEXA_COMPUTE_BUCKET": "bucket",
            "NEXA_COMPUTE_CLOUD": "cloud",
            "NEXA_COMPUTE_REGION": "region",
            "NEXA_SKY_CATALOG_DIR": "catalog_dir",
        }
        for var, name in texts.items():
            if env.get(var):
                settings[name] = env[var]
        return cls(**settings)

    # ------------------------------------------------------------------ seams and small accessors

    def use_sky_client(self, client: SkyClientLike) -> ComputeResource:
        """Replace the SkyPilot seam (tests pass a FakeSkyClient); returns self."""
        self._sky_client = client
        return self

    def bridge(self) -> SkyBridge:
        return SkyBridge(sky_python(self.sky_python))

    def sky_client(self) -> SkyClientLike:
        """The one object through which launch, wait, teardown and the credential check reach SkyPilot."""
        if self._sky_client is not None:
            return self._sky_client
        if _SKY_CLIENT_OVERRIDE:
            return _SKY_CLIENT_OVERRIDE[-1]
        return BridgeSkyClient(self.bridge(), poll_s=self.poll_seconds)

    def output_uri_for(self, run_id: str, local_root: str | Path) -> str:
        """Where a run's checkpoint goes: <bucket>/checkpoints/<run_id> (skypilot) or <local_root>/<run_id>."""
        if self.backend == "skypilot":
            return f"{self._require_bucket()}/checkpoints/{run_id}"
        return str(Path(local_root) / run_id)

    def _require_bucket(self) -> str:
        bucket = self.bucket.rstrip("/")
        if not bucket.startswith("s3://") or len(bucket) <= len("s3://"):
            raise ComputeError(
                f"the skypilot backend needs `bucket` set to an S3 URI for data and checkpoints "
                f"(e.g. s3://my-bucket/nexa, or NEXA_COMPUTE_BUCKET); got {self.bucket!r}"
            )
        return bucket

    # ------------------------------------------------------------------------------- planning

    def offers(self, clouds: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], list[str], str]:
        """Catalog rows for the candidates; returns (rows, clouds used, where the prices came from).

        clouds None = the pinned `cloud`, else the snapshot's clouds (catalog_dir), else every cloud whose
        catalog file SkyPilot has already cached (nothing is downloaded)."""
        names = sorted({parse_accelerator(a)[0] for a in self.accelerators})
        if clouds is None and self.cloud:
            clouds = [self.cloud]
        if self.catalog_dir:
            _version, snapshot = snapshot_clouds(self.catalog_dir)
            if clouds is None:
                clouds = snapshot
            missing = sorted({c.lower() for c in clouds} - set(snapshot))
            if missing:
                raise ValueError(
                    f"catalog_dir {self.catalog_dir!r} has no prices for {', '.join(missing)} "
                    f"(it has {', '.join(snapshot) or 'none'})"
                )
        if clouds is not None:
            clouds = sorted({c.lower() for c in clouds})
            if not clouds:
                raise NoOffers("no cloud to price the candidates on")
        python = sky_python(self.sky_python)
        memo_key = _snapshot_key(self.catalog_dir, python, names, clouds) if self.catalog_dir else None
        answer = _SNAPSHOT_OFFERS.get(memo_key) if memo_key else None
        if answer is None:
            with catalog_runtime(self.catalog_dir) as extra_env:
                answer = SkyBridge(python).call(
                    "offers", {"accelerators": names, "clouds": clouds}, extra_env=extra_env
                )
            if memo_key:
                _SNAPSHOT_OFFERS[memo_key] = answer
        if not answer["clouds"]:
            raise NoOffers(
                f"no SkyPilot price catalog is cached in {answer['catalog_dir']}: name clouds (e.g. "
                "--clouds lambda,aws; SkyPilot fetches their catalogs once), or point catalog_dir / --catalog "
                "at a snapshot folder (<dir>/v8/<cloud>/vms.csv)"
            )
        where = f"snapshot {self.catalog_dir}" if self.catalog_dir else f"SkyPilot catalog {answer['catalog_dir']}"
        return answer["offers"], answer["clouds"], where

    def plan(self, clouds: Sequence[str] | None = None) -> Plan:
        """Rank the candidate offers by price from SkyPilot's catalog, with the budget verdict."""
        rows, used, where = self.offers(clouds)
        return rank_offers(
            rows,
            candidates=self.accelerators,
            clouds=used,
            min_gpu_memory_gb=self.min_gpu_memory_gb,
            use_spot=self.use_spot,
            hours=self.estimated_hours,
            max_price_per_hour=self.max_price_per_hour,
            max_total_usd=self.max_total_usd,
            region=self.region,
            catalog=where,
        )

    # ------------------------------------------------------------------------------- the task

    def fill_resources(
        self, cfg: dict[str, Any], *, accelerators: Sequence[str] | None = None, hourly_cap: float | None = None
    ) -> None:
        """Set a task config's resources from this resource's settings: the candidate set, spot, recovery,
        the budget cap, autostop and the pinned cloud/region (shared by sky/train.yaml and sky/eval.yaml)."""
        resources = cfg.setdefault("resources", {})
        # A mapping is SkyPilot's YAML form of a *set* ({A10:1, A100:1} parses to {'A10:1': None, ...}).
        resources["accelerators"] = {spec: None for spec in (accelerators or self.accelerators)}
        resources["use_spot"] = self.use_spot
        if self.job_recovery:
            resources["job_recovery"] = {
                "strategy": self.job_recovery,
                "max_restarts_on_errors": self.max_restarts_on_errors,
            }
        else:
            resources.pop("job_recovery", None)
        cap = (
            hourly_cap
            if hourly_cap is not None
            else min(self.max_price_per_hour, self.max_total_usd / self.estimated_hours)
        )
        resources["max_hourly_cost"] = round(cap, 4)
        resources["autostop"] = {"idle_minutes": self.autostop_minutes, "down": True}
        if self.cloud or self.region:
            resources["infra"] = f"{(self.cloud or '*').lower()}{f'/{self.region}' if self.region else ''}"

    def train_task(
        self,
        *,
        sft_uri: str,
        sft_version: int,
        output_uri: str,
        config: dict[str, Any],
        run_id: str,
        accelerators: Sequence[str] | None = None,
        hourly_cap: float | None = None,
    ) -> dict[str, Any]:
        """The SkyPilot task for one run: sky/train.yaml with this resource's settings, plus env overrides."""
        import yaml

        path = Path(self.task_yaml) if self.task_yaml else TRAIN_TASK_YAML
        cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
        name = training_job_name(run_id)
        cfg["name"] = name
        cfg["workdir"] = str(REPO_ROOT)
        self.fill_resources(cfg, accelerators=accelerators, hourly_cap=hourly_cap)
        env_overrides = {
            "NEXA_RUN_ID": run_id,
            "NEXA_BUCKET_URI": self._require_bucket(),
            "NEXA_SFT_URI": sft_uri,
            "NEXA_SFT_VERSION": str(int(sft_version)),
            "NEXA_OUTPUT_URI": output_uri,
            "NEXA_TRAIN_CONFIG": json.dumps(config, sort_keys=True, default=str),
            "NEXA_TRAINER_MODULE": self.trainer_module,
        }
        return {"name": name, "config": cfg, "env_overrides": env_overrides}

    # ------------------------------------------------------------------------------- running

    def run_training(
        self,
        *,
        sft_uri: str,
        sft_version: int,
        output_uri: str,
        config: dict[str, Any],
        run_id: str,
        log: Any,
    ) -> dict[str, Any]:
        """Train on the configured backend; returns the trainer's metrics.json plus where it ran and the cost."""
        if self.backend == "local":
            return self._run_local(
                sft_uri=sft_uri, sft_version=sft_version, output_uri=output_uri, config=config, run_id=run_id, log=log
            )
        return self._run_skypilot(
            sft_uri=sft_uri, sft_version=sft_version, output_uri=output_uri, config=config, run_id=run_id, log=log
        )

    def trainer_command(self, *, sft_uri: str, sft_version: int, output_uri: str, config_path: str | Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            self.trainer_module,
            "--sft-uri",
            sft_uri,
            "--sft-version",
            str(int(sft_version)),
            "--output",
            output_uri,
            "--config",
            str(config_path),
        ]

    def _run_local(self, *, sft_uri, sft_version, output_uri, config, run_id, log) -> dict[str, Any]:
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="nexa-train-") as tmp:
            config_path = Path(tmp) / "train_config.json"
            config_path.write_text(json.dumps(config, indent=1, sort_keys=True, default=str), encoding="utf-8")
            cmd = self.trainer_command(
                sft_uri=sft_uri, sft_version=sft_version, output_uri=output_uri, config_path=config_path
            )
            log.info(f"local training: {shlex.join(cmd)}")
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "NEXA_RUN_ID": run_id}
            tail: deque[str] = deque(maxlen=TAIL_LINES)
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, errors="replace"
            )
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
        if code != 0:
            raise TrainingFailed(
                f"the trainer `python -m {self.trainer_module}` exited with code {code}; its last "
                f"{len(tail)} lines:\n" + "\n".join(tail)
            )
        metrics = read_metrics(output_uri)
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

    def _enabled_clouds(self, client: SkyClientLike) -> list[str]:
        try:
            status = client.check()
        except SkyBridgeError as exc:
            raise NoCloudCredentials(
                f"SkyPilot could not check cloud credentials ({exc}); run `.venv-sky/bin/sky check` to see why"
            ) from None
        enabled = sorted({str(c).lower() for c in status.get("enabled_clouds") or []})
        if not enabled:
            raise NoCloudCredentials(
                "backend 'skypilot' is selected but SkyPilot has no cloud with usable credentials: set up one "
                "(e.g. ~/.lambda_cloud/lambda_keys, `aws configure`, `gcloud auth application-default login`), "
                "then run `.venv-sky/bin/sky check` until it lists it as enabled; or use backend 'local'"
            )
        if self.cloud and self.cloud.lower() not in enabled:
            raise NoCloudCredentials(
                f"cloud {self.cloud!r} is pinned but not enabled in SkyPilot (enabled: {', '.join(enabled)}); "
                f"run `.venv-sky/bin/sky check {self.cloud.lower()}` to see what is missing"
            )
        return [self.cloud.lower()] if self.cloud else enabled

    def _run_skypilot(self, *, sft_uri, sft_version, output_uri, config, run_id, log) -> dict[str, Any]:
        bucket = self._require_bucket()
        for label, uri in (("sft_uri", sft_uri), ("output_uri", output_uri)):
            if not uri.startswith("s3://"):
                raise ComputeError(
                    f"the skypilot backend trains on a cloud node, which cannot reach {label}={uri!r}: keep the "
                    f"lake on S3 (NEXA_LAKE_ROOT=s3://...) and write checkpoints under {bucket} "
                    "(ComputeResource.output_uri_for)"
                )
        client = self.sky_client()
        plan = self.checked_plan(client, log)
        task = self.train_task(
            sft_uri=sft_uri,
            sft_version=sft_version,
            output_uri=output_uri,
            config=config,
            run_id=run_id,
            accelerators=plan.launchable(),
            hourly_cap=plan.hourly_cap,
        )
        job, record, wall_s = self.run_managed_job(client, task, log=log, failure=TrainingFailed)
        metrics = read_metrics(output_uri)
        return {
            **metrics,
            "wall_s": metrics.get("wall_s", round(wall_s, 3)),
            "backend": "skypilot",
            **self.where_ran(plan, record, wall_s),
            "job_name": task["name"],
            "job_id": job.get("job_id"),
            "use_spot": self.use_spot,
        }

    def checked_plan(self, client: SkyClientLike, log: Any) -> Plan:
        """The price plan over the clouds SkyPilot may launch on, logged; raises when nothing fits the budget."""
        clouds = self._enabled_clouds(client)
        if self.catalog_dir:
            _version, snap = snapshot_clouds(self.catalog_dir)
            unpriced = [c for c in clouds if c not in snap]
            if unpriced:
                log.warning(f"catalog_dir has no prices for enabled {', '.join(unpriced)}; planning without them")
            clouds = [c for c in clouds if c in snap]
            if not clouds:
                raise NoOffers(
                    f"catalog_dir {self.catalog_dir!r} prices none of the enabled clouds ({', '.join(unpriced)})"
                )
        plan = self.plan(clouds=clouds)
        for line in plan.format(limit=12).splitlines():
            log.info(line)
        plan.raise_if_refused()
        return plan

    def run_managed_job(
        self,
        client: SkyClientLike,
        task: dict[str, Any],
        *,
        log: Any,
        failure: type[ComputeError] = TrainingFailed,
        down_after: bool = False,
    ) -> tuple[dict[str, Any], dict[str, Any], float]:
        """Validate `task` with SkyPilot's parser, launch it as a managed job and follow it to its end.

        Returns (job, final queue record, wall seconds); a job that does not end SUCCEEDED raises `failure`.
        The job is cancelled (SkyPilot then tears its cluster down) when anything fails, and after success
        too with `down_after`."""
        parsed = self.bridge().call("validate", {"tasks": [task]})[0]  # SkyPilot's own parser, before any cloud
        task["resolved"] = parsed["resolved"]
        name = task["name"]
        log.info(
            f"launching managed job {name}: {'spot' if self.use_spot else 'on-demand'}, one of "
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
                # Whatever went wrong (launch error, failed job, interrupted run), leave nothing running.
                job_id = (job or {}).get("job_id")
                try:
                    client.down(name=name, job_id=job_id)
                    if succeeded:
                        log.info(f"managed job {name} finished; cancelled it so that its cluster is down")
                    else:
                        log.warning(f"cancelled managed job {name}; SkyPilot tears its cluster down")
                except Exception as exc:  # noqa: BLE001 - report, but keep the original error
                    report = log.info if succeeded else log.error  # a finished job may have nothing left
                    report(
                        f"could not cancel managed job {name} ({exc}): run `sky jobs cancel -n {name}` and "
                        "check `sky status`"
                    )
        wall_s = float(record.get("job_duration") or (time.monotonic() - started))
        return job, record, wall_s

    def where_ran(self, plan: Plan, record: dict[str, Any], wall_s: float) -> dict[str, Any]:
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
        import boto3

        bucket, _, prefix = output_uri[len("s3://") :].partition("/")
        key = f"{prefix.rstrip('/')}/metrics.json" if prefix else "metrics.json"
        try:
            body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:  # noqa: BLE001 - botocore's ClientError/NoCredentialsError carry the useful words
            raise TrainingFailed(f"the run ended but s3://{bucket}/{key} could not be read: {exc}") from None
        return json.loads(body)
    path = Path(output_uri) / "metrics.json"
    if not path.exists():
        raise TrainingFailed(f"the trainer exited 0 but wrote no {path}")
    return json.loads(path.read_text(encoding="utf-8"))
