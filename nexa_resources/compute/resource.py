"""The compute resource: where training runs, `local` (a subprocess on this machine) or `skypilot` (the cheapest
GPU in the cloud, within the budget caps)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Unpack

import dagster as dg
from pydantic import Field, PrivateAttr, field_validator

from nexa_resources.compute.bridge import (
    REPO_ROOT,
    BridgeSkyClient,
    SkyBridge,
    SkyClientLike,
    overriding_sky_client,
    sky_python,
)
from nexa_resources.compute.catalog import catalog_offers, snapshot_clouds
from nexa_resources.compute.errors import ComputeError, NoCloudCredentials, NoOffers, SkyBridgeError, TrainingFailed
from nexa_resources.compute.plan import Plan, parse_accelerator, rank_offers
from nexa_resources.compute.runners import (
    TrainRun,
    read_metrics,
    run_local,
    run_managed_job,
    job_name,
    trainer_command,
    where_ran,
)
from nexa_resources.profiles import settings_env

TRAIN_TASK_YAML = REPO_ROOT / "sky" / "train.yaml"
SERVE_TEACHER_YAML = REPO_ROOT / "sky" / "serve_teacher.yaml"
BACKENDS = ("local", "skypilot")
DEFAULT_ACCELERATORS = ["A10:1", "A100:1", "H100:1"]
# The mount point of the bucket on the training node; sky/train.yaml maps URIs under the bucket to it.
BUCKET_MOUNT = "/nexa-bucket"


def _env_flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


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
        fields: dict[str, tuple[str, Callable[[str], Any]]] = {
            "NEXA_COMPUTE_MAX_PRICE_PER_HOUR": ("max_price_per_hour", float),
            "NEXA_COMPUTE_MAX_TOTAL_USD": ("max_total_usd", float),
            "NEXA_COMPUTE_HOURS": ("estimated_hours", float),
            "NEXA_COMPUTE_MIN_GPU_MEMORY_GB": ("min_gpu_memory_gb", float),
            "NEXA_COMPUTE_BUCKET": ("bucket", str),
            "NEXA_COMPUTE_CLOUD": ("cloud", str),
            "NEXA_COMPUTE_REGION": ("region", str),
            "NEXA_SKY_CATALOG_DIR": ("catalog_dir", str),
        }
        for var, (name, convert) in fields.items():
            if env.get(var):
                settings[name] = convert(env[var])
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
        return overriding_sky_client() or BridgeSkyClient(self.bridge(), poll_s=self.poll_seconds)

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
        answer = catalog_offers(self.catalog_dir, python, names, clouds)
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
        return rank_offers(rows, candidates=self.accelerators, clouds=used, catalog=where, **self._price_limits())

    def _price_limits(self) -> dict[str, Any]:
        """What an offer must meet to be planned: GPU memory, spot, region, and the budget over the hours."""
        return {
            "min_gpu_memory_gb": self.min_gpu_memory_gb,
            "use_spot": self.use_spot,
            "region": self.region,
            "hours": self.estimated_hours,
            "max_price_per_hour": self.max_price_per_hour,
            "max_total_usd": self.max_total_usd,
        }

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

    def sky_task(
        self,
        task_yaml: Path,
        kind: str,
        run_id: str,
        env: dict[str, str],
        *,
        accelerators: Sequence[str] | None = None,
        hourly_cap: float | None = None,
    ) -> dict[str, Any]:
        """The SkyPilot task of one run of `kind` (train, eval): `task_yaml` with this resource's settings, its
        job name, and env overrides (the run id, the bucket, then `env`)."""
        import yaml

        cfg = yaml.safe_load(task_yaml.read_text(encoding="utf-8"))
        name = job_name(kind, run_id)
        cfg["name"] = name
        cfg["workdir"] = str(REPO_ROOT)
        self.fill_resources(cfg, accelerators=accelerators, hourly_cap=hourly_cap)
        env_overrides = {"NEXA_RUN_ID": run_id, "NEXA_BUCKET_URI": self._require_bucket(), **env}
        return {"name": name, "config": cfg, "env_overrides": env_overrides}

    def train_task(
        self, *, accelerators: Sequence[str] | None = None, hourly_cap: float | None = None, **run: Unpack[TrainRun]
    ) -> dict[str, Any]:
        """The SkyPilot task for one run: sky/train.yaml with this resource's settings, plus env overrides."""
        env = {
            "NEXA_SFT_URI": run["sft_uri"],
            "NEXA_SFT_VERSION": str(int(run["sft_version"])),
            "NEXA_OUTPUT_URI": run["output_uri"],
            "NEXA_TRAIN_CONFIG": json.dumps(run["config"], sort_keys=True, default=str),
            "NEXA_TRAINER_MODULE": self.trainer_module,
        }
        path = Path(self.task_yaml) if self.task_yaml else TRAIN_TASK_YAML
        return self.sky_task(path, "train", run["run_id"], env, accelerators=accelerators, hourly_cap=hourly_cap)

    # ------------------------------------------------------------------------------- running

    def run_training(self, *, log: Any, **run: Unpack[TrainRun]) -> dict[str, Any]:
        """Train on the configured backend; returns the trainer's metrics.json plus where it ran and the cost."""
        if self.backend == "local":
            return run_local(run, trainer_module=self.trainer_module, log=log)
        return self._run_skypilot(run, log)

    def trainer_command(self, *, sft_uri: str, sft_version: int, output_uri: str, config_path: str | Path) -> list[str]:
        return trainer_command(
            self.trainer_module, sft_uri=sft_uri, sft_version=sft_version, output_uri=output_uri, config_path=config_path
        )

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

    def _run_skypilot(self, run: TrainRun, log: Any) -> dict[str, Any]:
        bucket = self._require_bucket()
        for label in ("sft_uri", "output_uri"):
            uri = run[label]
            if not uri.startswith("s3://"):
                raise ComputeError(
                    f"the skypilot backend trains on a cloud node, which cannot reach {label}={uri!r}: keep the "
                    f"lake on S3 (NEXA_LAKE_ROOT=s3://...) and write checkpoints under {bucket} "
                    "(ComputeResource.output_uri_for)"
                )
        client = self.sky_client()
        plan = self.checked_plan(client, log)
        task = self.train_task(accelerators=plan.launchable(), hourly_cap=plan.hourly_cap, **run)
        job, record, wall_s = self.run_managed_job(client, task, log=log, failure=TrainingFailed)
        metrics = read_metrics(run["output_uri"])
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
        """`runners.run_managed_job` through this resource's bridge: (job, final record, wall seconds)."""
        return run_managed_job(
            client, self.bridge(), task, use_spot=self.use_spot, log=log, failure=failure, down_after=down_after
        )

    def where_ran(self, plan: Plan, record: dict[str, Any], wall_s: float) -> dict[str, Any]:
        """Cloud, region, instance type, accelerator, $/hour and cost of a finished job, from its record."""
        return where_ran(plan, record, wall_s)
