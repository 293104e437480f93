"""The compute resource: local trainer subprocess, SkyPilot task YAMLs, catalog price plan, budget caps, and the
SkyPilot launch path with the cloud calls replaced at their one seam (FakeSkyClient; there is no cloud account).

SkyPilot runs from `.venv-sky` (made by `make setup`); every SkyPilot call here is offline (task parsing,
the Lambda catalog snapshot in tests/fixtures/skypilot, the credential check) under a temporary HOME and
SKY_RUNTIME_DIR, with the local API server port moved to a free one and stopped if anything started it.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from nexa_resources import compute
from nexa_resources.compute import (
    BudgetExceeded,
    ComputeResource,
    NoCloudCredentials,
    SkyBridge,
    SkyPilotNotInstalled,
    TrainingFailed,
    rank_offers,
    training_job_name,
)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
CATALOG = FIXTURES / "skypilot"
LAMBDA_CSV = CATALOG / "v8" / "lambda" / "vms.csv"
SKY_PYTHON = REPO / ".venv-sky" / "bin" / "python"
CANDIDATES = ["A10:1", "A100:1", "H100:1"]
# Environment variables through which a cloud SDK could find credentials: none may leak into these tests.
_CREDENTIAL_PREFIXES = (
    "AWS_",
    "GOOGLE_",
    "GCLOUD_",
    "CLOUDSDK_",
    "AZURE_",
    "LAMBDA_",
    "OCI_",
    "RUNPOD_",
    "IBM_",
    "DO_",
    "PAPERSPACE_",
    "VAST_",
    "NEBIUS_",
    "KUBECONFIG",
    "SKYPILOT_API_SERVER_ENDPOINT",
)


# ----------------------------------------------------------------------------------------- fixtures


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def sky_python() -> Path:
    """SkyPilot's interpreter; its absence is a setup error, never a skip."""
    if not SKY_PYTHON.exists():
        pytest.fail(f"{SKY_PYTHON} is missing: run `make setup` (it creates .venv-sky with skypilot>=0.14.1,<0.15)")
    return SKY_PYTHON


@pytest.fixture(autouse=True)
def isolated_skypilot(tmp_path_factory, monkeypatch):
    """A private HOME / SKY_RUNTIME_DIR / API-server port per test, no cloud credentials, and no server left."""
    home = tmp_path_factory.mktemp("sky-home")
    port = _free_port()
    for var in list(os.environ):
        if var.startswith(_CREDENTIAL_PREFIXES):
            monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SKY_RUNTIME_DIR", str(home))
    monkeypatch.setenv("SKYPILOT_API_SERVER_LOCAL_PORT", str(port))
    monkeypatch.setenv("SKYPILOT_DISABLE_USAGE_COLLECTION", "1")
    monkeypatch.delenv("NEXA_SKY_PYTHON", raising=False)
    yield home
    if _listening(port):  # something started a local API server: stop it (none of these tests should)
        subprocess.run(
            [str(SKY_PYTHON.with_name("sky")), "api", "stop"],
            env=dict(os.environ),
            timeout=180,
            capture_output=True,
            check=False,
        )
        pytest.fail(f"a SkyPilot API server was started on port {port} (stopped it)")


class RecordingLog:
    """What a Dagster context.log receives."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def _add(self, level: str, message: str) -> None:
        self.lines.append((level, message))

    def info(self, message: str) -> None:
        self._add("info", message)

    def warning(self, message: str) -> None:
        self._add("warning", message)

    def error(self, message: str) -> None:
        self._add("error", message)

    def debug(self, message: str) -> None:
        self._add("debug", message)

    def text(self) -> str:
        return "\n".join(m for _, m in self.lines)


class FakeSkyClient:
    """The only fake: stands in for the SkyPilot seam (check / launch / wait / down) and records each call.

    `on_wait(task)` plays the trainer's part on the cloud node (writing metrics.json to the bucket)."""

    def __init__(self, enabled=("Lambda",), launch_error=None, final_status="SUCCEEDED", record=None, on_wait=None):
        self.enabled = list(enabled)
        self.launch_error = launch_error
        self.final_status = final_status
        self.record = record or {}
        self.on_wait = on_wait
        self.calls: list[tuple] = []
        self.task = None

    def check(self):
        self.calls.append(("check",))
        return {"enabled_clouds": self.enabled, "api_server": "fake"}

    def launch(self, task, *, name, log):
        self.calls.append(("launch", name))
        self.task = task
        if self.launch_error is not None:
            raise self.launch_error
        return {"job_id": 7, "name": name}

    def wait(self, job, *, log):
        self.calls.append(("wait", job["job_id"]))
        if self.on_wait is not None:
            self.on_wait(self.task)
        return {"job_id": job["job_id"], "status": self.final_status, **self.record}

    def down(self, *, name, job_id):
        self.calls.append(("down", name, job_id))
        return {"cancelled": True}

    def methods(self) -> list[str]:
        return [c[0] for c in self.calls]


def _csv_rows() -> list[dict[str, str]]:
    with LAMBDA_CSV.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _csv_gpu_gib(row: dict[str, str]) -> float:
    return ast.literal_eval(row["GpuInfo"])["Gpus"][0]["MemoryInfo"]["SizeInMiB"] / 1024


def _csv_cheapest(names: set[str], min_gib: float = 0.0) -> dict:
    """The cheapest single-GPU offer of the snapshot among `names`, computed straight from the CSV:
    {"accelerator", "price", "instance_types" (all tied at that price)}."""
    rows = [
        r
        for r in _csv_rows()
        if r["AcceleratorName"] in names and float(r["AcceleratorCount"]) == 1 and _csv_gpu_gib(r) >= min_gib
    ]
    price = min(float(r["Price"]) for r in rows)
    tied = [r for r in rows if float(r["Price"]) == price]
    assert len({r["AcceleratorName"] for r in tied}) == 1, "the snapshot should have one cheapest accelerator"
    return {
        "accelerator": tied[0]["AcceleratorName"],
        "price": price,
        "instance_types": {r["InstanceType"] for r in tied},
    }


@pytest.fixture(scope="session")
def lambda_rows(sky_python) -> list[dict]:
    """The candidates' offers as SkyPilot's catalog code reads them from the Lambda snapshot."""
    rows, clouds, where = ComputeResource(catalog_dir=str(CATALOG)).offers()
    assert clouds == ["lambda"] and "snapshot" in where
    return rows


def _bucket_metrics_writer(task):
    """What the trainer does on the node: metrics.json into the output prefix of the bucket."""
    import boto3

    uri = task["env_overrides"]["NEXA_OUTPUT_URI"]
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    body = json.dumps({"steps": 10, "train_loss": 0.9, "wall_s": 1700.0, "tokens": 5000})
    boto3.client("s3").put_object(Bucket=bucket, Key=f"{prefix}/metrics.json", Body=body.encode())


def _skypilot_resource(bucket: str, **overrides) -> ComputeResource:
    settings = {
        "backend": "skypilot",
        "bucket": f"s3://{bucket}/nexa",
        "catalog_dir": str(CATALOG),
        "accelerators": CANDIDATES,
        "estimated_hours": 1.0,
        "max_price_per_hour": 4.0,
        "max_total_usd": 10.0,
    }
    settings.update(overrides)
    return ComputeResource(**settings)


def _train_kwargs(bucket: str, run_id: str) -> dict:
    return {
        "sft_uri": f"s3://{bucket}/nexa/lake/sft/examples",
        "sft_version": 4,
        "output_uri": f"s3://{bucket}/nexa/checkpoints/{run_id}",
        "config": {"preset": "smollm2-360m-lora", "max_steps": 10},
        "run_id": run_id,
    }


# ------------------------------------------------------------------------------------ settings


def test_backend_must_be_one_of_the_valid_values():
    with pytest.raises(ValueError, match="backend must be one of local, skypilot; got 'gpu'"):
        ComputeResource(backend="gpu")
    with pytest.raises(ValueError, match="must be a number, e.g. .A100:1."):
        ComputeResource(accelerators=["A100:x"])


def test_job_names_are_unique_per_run_and_valid_for_skypilot():
    a = training_job_name("3f2c9a1e-7b1d-4c55-9d0e-000000000001")
    b = training_job_name("9b7e0c44-1111-4c55-9d0e-000000000002")
    assert a == "nexa-train-3f2c9a1e" and b == "nexa-train-9b7e0c44"
    assert training_job_name("Run_ID/X") == "nexa-train-run-id-x"


def test_missing_sky_venv_says_to_run_make_setup(tmp_path):
    res = ComputeResource(catalog_dir=str(CATALOG), sky_python=str(tmp_path / "no-python"))
    with pytest.raises(SkyPilotNotInstalled, match="run `make setup`"):
        res.plan()


# ------------------------------------------------------------------------------- local backend


def test_local_backend_builds_the_trainer_command_and_returns_its_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(FIXTURES))
    res = ComputeResource(trainer_module="fake_trainer")
    out = tmp_path / "ckpt"
    log = RecordingLog()
    result = res.run_training(
        sft_uri=str(tmp_path / "lake/sft/examples"),
        sft_version=3,
        output_uri=str(out),
        config={"max_steps": 2, "lr": 1e-4},
        run_id="run-1",
        log=log,
    )

    received = json.loads((out / "args.json").read_text())
    assert received["sft_uri"] == str(tmp_path / "lake/sft/examples")
    assert received["sft_version"] == 3
    assert received["output"] == str(out)
    assert received["config_content"] == {"max_steps": 2, "lr": 1e-4}
    assert received["run_id"] == "run-1"
    assert result["steps"] == 3 and result["loss_curve"] == [3.0, 1.5, 1.0]
    assert result["backend"] == "local" and result["cloud"] is None and result["region"] is None
    assert result["accelerator"] == compute.local_accelerator()
    assert result["price_per_hour"] == 0.0 and result["cost_usd"] == 0.0
    assert "step 3 loss 1.000" in log.text()  # the trainer's output is streamed to the log

    cmd = res.trainer_command(sft_uri="s3://b/sft", sft_version=9, output_uri="/o", config_path="/c.json")
    assert cmd == [
        sys.executable,
        "-m",
        "fake_trainer",
        "--sft-uri",
        "s3://b/sft",
        "--sft-version",
        "9",
        "--output",
        "/o",
        "--config",
        "/c.json",
    ]


def test_local_backend_failure_quotes_the_last_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(FIXTURES))
    res = ComputeResource(trainer_module="fake_trainer")
    with pytest.raises(TrainingFailed) as err:
        res.run_training(
            sft_uri="x",
            sft_version=0,
            output_uri=str(tmp_path / "o"),
            config={"fail": True},
            run_id="r",
            log=RecordingLog(),
        )
    message = str(err.value)
    assert "exited with code 3" in message
    assert "CUDA out of memory (pretend)" in message and "step 3 loss" in message


# ------------------------------------------------------------------ task YAMLs, SkyPilot's own parser


def test_task_yamls_parse_with_skypilots_parser(sky_python):
    train = yaml.safe_load((REPO / "sky/train.yaml").read_text())
    serve = yaml.safe_load((REPO / "sky/serve_teacher.yaml").read_text())
    res = ComputeResource(
        backend="skypilot",
        bucket="s3://b/nexa",
        use_spot=True,
        cloud="lambda",
        accelerators=["A100:1", "H100:1"],
        autostop_minutes=15,
        max_total_usd=6.0,
        estimated_hours=3.0,
    )
    per_run = res.train_task(
        sft_uri="s3://b/nexa/lake/sft/examples",
        sft_version=5,
        output_uri="s3://b/nexa/checkpoints/r1",
        config={"a": 1},
        run_id="abcdef0123",
    )
    parsed_train, parsed_serve, parsed_run = SkyBridge(sky_python).call(
        "validate", {"tasks": [{"config": train}, {"config": serve}, per_run]}
    )

    # The file as written: the candidate set, the bucket mount, the envs the run fills in.
    assert parsed_train["name"] == "nexa-train"
    file_any_of = parsed_train["resolved"]["resources"]["any_of"]
    assert sorted(next(iter(r["accelerators"])) for r in file_any_of) == ["A10", "A100", "H100"]
    assert all(r["max_hourly_cost"] == 5.0 and r["job_recovery"]["strategy"] for r in file_any_of)
    mounts = parsed_train["resolved"]["file_mounts"]
    assert mounts["/nexa-bucket"]["mode"] == "MOUNT_CACHED"
    for var in ("NEXA_RUN_ID", "NEXA_SFT_URI", "NEXA_SFT_VERSION", "NEXA_OUTPUT_URI", "NEXA_TRAIN_CONFIG"):
        assert var in parsed_train["envs"]
    assert "pip install" in parsed_train["resolved"]["setup"] and '-m "$NEXA_TRAINER_MODULE"' in train["run"]

    assert parsed_serve["has_service"] and parsed_serve["name"] == "nexa-teacher"
    assert all("ports=['8000']" in r for r in parsed_serve["resources"])

    # One run's task: spot, recovery, the cap, autostop, the pinned cloud, envs and the bucket source.
    any_of = parsed_run["resolved"]["resources"]["any_of"]
    assert sorted(next(iter(r["accelerators"])) for r in any_of) == ["A100", "H100"]
    for r in any_of:
        assert r["use_spot"] is True
        assert r["job_recovery"] == {"strategy": "EAGER_NEXT_REGION", "max_restarts_on_errors": 1}
        assert r["max_hourly_cost"] == 2.0  # min($4/h, $6 / 3 h)
        assert r["autostop"] == {"idle_minutes": 15, "down": True}
        assert r["infra"].lower() == "lambda"
    assert parsed_run["name"] == "nexa-train-abcdef01"
    assert parsed_run["envs"]["NEXA_SFT_VERSION"] == "5"
    assert json.loads(parsed_run["envs"]["NEXA_TRAIN_CONFIG"]) == {"a": 1}
    assert parsed_run["resolved"]["file_mounts"]["/nexa-bucket"]["source"] == "s3://b/nexa"
    assert parsed_run["resolved"]["workdir"] == str(REPO)


# ------------------------------------------------------------------------- price plan over the snapshot


def test_catalog_offers_are_the_snapshot_rows(lambda_rows):
    expected = {
        (r["InstanceType"], r["Region"], float(r["Price"]))
        for r in _csv_rows()
        if r["AcceleratorName"] in {"A10", "A100", "H100"}
    }
    assert {(r["instance_type"], r["region"], r["price"]) for r in lambda_rows} == expected


def test_plan_chooses_the_cheapest_candidate_in_the_snapshot(lambda_rows):
    expected = _csv_cheapest({"A10", "A100", "H100"})
    plan = rank_offers(
        lambda_rows, candidates=CANDIDATES, clouds=["lambda"], hours=2, max_price_per_hour=10, max_total_usd=100
    )
    chosen = plan.chosen
    assert chosen is not None
    assert (chosen.accelerator, chosen.price_per_hour) == (expected["accelerator"], expected["price"])
    assert chosen.instance_type in expected["instance_types"]
    assert chosen is plan.offers[0] and chosen.cloud == "lambda"
    prices = [o.price_per_hour for o in plan.offers]
    assert prices == sorted(prices)
    assert {o.label for o in plan.offers} == set(CANDIDATES)
    text = plan.format()
    assert f"chosen: {chosen.label} on lambda" in text and chosen.instance_type in text


@pytest.mark.parametrize("min_gib", [30, 48])
def test_min_gpu_memory_filters_candidates(lambda_rows, min_gib):
    expected = _csv_cheapest({"A10", "A100", "H100"}, min_gib=min_gib)
    plan = rank_offers(
        lambda_rows,
        candidates=CANDIDATES,
        clouds=["lambda"],
        min_gpu_memory_gb=min_gib,
        max_price_per_hour=10,
        max_total_usd=100,
    )
    assert (plan.chosen.accelerator, plan.chosen.price_per_hour) == (expected["accelerator"], expected["price"])
    assert plan.chosen.instance_type in expected["instance_types"]
    assert all(o.gpu_memory_gb >= min_gib for o in plan.offers)
    assert "A10:1" not in plan.launchable()
    assert plan.excluded  # the smaller GPUs are counted as left out, not silently dropped


def test_budget_cap_refuses_and_caps_the_hourly_price(lambda_rows):
    cheapest = _csv_cheapest({"A10", "A100", "H100"})["price"]
    # Total cap: 10 h at the cheapest price costs more than allowed.
    plan = rank_offers(
        lambda_rows, candidates=CANDIDATES, hours=10, max_price_per_hour=10, max_total_usd=cheapest * 10 - 0.01
    )
    assert plan.chosen is None
    with pytest.raises(BudgetExceeded, match="budget cap: the cheapest offer.*nothing was launched"):
        plan.raise_if_refused()
    # Hourly cap between the cheapest and the next price: only the cheapest candidate may launch.
    plan = rank_offers(
        lambda_rows, candidates=CANDIDATES, hours=1, max_price_per_hour=cheapest + 0.01, max_total_usd=1000
    )
    assert plan.launchable() == ["A10:1"] and plan.hourly_cap == pytest.approx(cheapest + 0.01)
    assert [o.within_budget for o in plan.offers] == [True] + [False] * (len(plan.offers) - 1)


def test_spot_on_a_cloud_without_spot_has_no_offer(lambda_rows):
    plan = rank_offers(lambda_rows, candidates=CANDIDATES, use_spot=True, clouds=["lambda"])
    assert plan.chosen is None and not plan.offers
    assert "without a spot price" in plan.refusal()


def test_train_plan_command_prints_ranked_offers_and_the_choice(sky_python, capsys):
    from nexa_jobs import train_plan

    parser = argparse.ArgumentParser(prog="nexa")
    train_plan.register(parser.add_subparsers(dest="command", required=True))
    expected = _csv_cheapest({"A100", "H100"}, min_gib=30)

    args = parser.parse_args(
        [
            "train-plan",
            "--catalog",
            str(CATALOG),
            "--accelerators",
            "A10,A100,H100",
            "--min-gpu-memory",
            "30",
            "--hours",
            "3",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "accelerator" in out and "$/hour" in out and "GPU GB" in out
    chosen_line = next(line for line in out.splitlines() if line.startswith("*"))
    assert f"{expected['accelerator']}:1" in chosen_line and f"{expected['price']:.2f}" in chosen_line
    assert any(t in chosen_line.split() for t in expected["instance_types"])
    assert f"{expected['price'] * 3:.2f}" in chosen_line  # the estimated total for 3 hours
    assert " A10:1 " not in out  # below 30 GB: no row (the header lists it as "A10:1,")

    args = parser.parse_args(["train-plan", "--catalog", str(CATALOG), "--max-total-usd", "1", "--format", "json"])
    assert args.func(args) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["chosen"] is None and answer["refused"].startswith("budget cap")


# ------------------------------------------------------------------- the SkyPilot launch path (fake seam)


def test_skypilot_launch_runs_through_the_seam(s3_env):
    run_id = "5ca1ab1e-0000-4000-8000-000000000001"
    region = min(r["Region"] for r in _csv_rows())
    fake = FakeSkyClient(
        record={"cloud": "Lambda", "region": region, "accelerators": {"A100": 1}, "job_duration": 1800.0},
        on_wait=_bucket_metrics_writer,
    )
    res = _skypilot_resource(s3_env, min_gpu_memory_gb=30).use_sky_client(fake)
    log = RecordingLog()
    result = res.run_training(**_train_kwargs(s3_env, run_id), log=log)

    assert fake.methods() == ["check", "launch", "wait"]  # no teardown after success
    assert fake.calls[1] == ("launch", "nexa-train-5ca1ab1e")
    task = fake.task
    envs = task["env_overrides"]
    assert envs["NEXA_RUN_ID"] == run_id
    assert envs["NEXA_SFT_URI"] == f"s3://{s3_env}/nexa/lake/sft/examples" and envs["NEXA_SFT_VERSION"] == "4"
    assert envs["NEXA_OUTPUT_URI"] == f"s3://{s3_env}/nexa/checkpoints/{run_id}"
    assert json.loads(envs["NEXA_TRAIN_CONFIG"]) == {"preset": "smollm2-360m-lora", "max_steps": 10}
    assert envs["NEXA_BUCKET_URI"] == f"s3://{s3_env}/nexa"
    # SkyPilot's own reading of the task: the memory-filtered candidate set, on-demand, the cap, the mount.
    resolved = task["resolved"]
    assert resolved["name"] == "nexa-train-5ca1ab1e"
    any_of = resolved["resources"]["any_of"]
    assert sorted(next(iter(r["accelerators"])) for r in any_of) == ["A100", "H100"]
    assert all(r["use_spot"] is False and r["max_hourly_cost"] == 4.0 for r in any_of)
    assert resolved["file_mounts"]["/nexa-bucket"]["source"] == f"s3://{s3_env}/nexa"
    assert resolved["envs"]["NEXA_RUN_ID"] == run_id

    expected = _csv_cheapest({"A100"}, min_gib=30)
    assert result["backend"] == "skypilot" and result["cloud"] == "lambda" and result["region"] == region
    assert result["accelerator"] == "A100:1" and result["instance_type"] in expected["instance_types"]
    assert result["price_per_hour"] == expected["price"]
    assert result["cost_usd"] == pytest.approx(expected["price"] * 0.5)  # 1800 s of the job
    assert result["steps"] == 10 and result["job_name"] == "nexa-train-5ca1ab1e" and result["job_id"] == 7
    assert "chosen: A100:1 on lambda" in log.text()


def test_skypilot_tears_down_when_launch_or_job_fails(s3_env):
    run_id = "deadbeef-0000-4000-8000-000000000002"
    fake = FakeSkyClient(launch_error=RuntimeError("ResourcesUnavailableError: no capacity"))
    res = _skypilot_resource(s3_env).use_sky_client(fake)
    with pytest.raises(RuntimeError, match="no capacity"):
        res.run_training(**_train_kwargs(s3_env, run_id), log=RecordingLog())
    assert fake.methods() == ["check", "launch", "down"]
    assert fake.calls[-1] == ("down", "nexa-train-deadbeef", None)

    fake = FakeSkyClient(final_status="FAILED", record={"failure_reason": "trainer exited 1"})
    res = _skypilot_resource(s3_env).use_sky_client(fake)
    log = RecordingLog()
    with pytest.raises(TrainingFailed, match="nexa-train-deadbeef .*ended FAILED: trainer exited 1"):
        res.run_training(**_train_kwargs(s3_env, run_id), log=log)
    assert fake.methods() == ["check", "launch", "wait", "down"]
    assert fake.calls[-1] == ("down", "nexa-train-deadbeef", 7)
    assert "cancelled managed job nexa-train-deadbeef" in log.text()


def test_skypilot_budget_cap_refuses_before_launch(sky_python):
    fake = FakeSkyClient()
    res = _skypilot_resource("b", max_price_per_hour=1.0).use_sky_client(fake)
    with pytest.raises(BudgetExceeded, match="max_price_per_hour=\\$1.00"):
        res.run_training(**_train_kwargs("b", "r-budget"), log=RecordingLog())
    assert fake.methods() == ["check"]  # nothing launched, nothing to tear down


def test_skypilot_without_credentials_fails_fast_naming_sky_check():
    fake = FakeSkyClient(enabled=())
    res = _skypilot_resource("b").use_sky_client(fake)
    with pytest.raises(NoCloudCredentials, match="sky check"):
        res.run_training(**_train_kwargs("b", "r-nocreds"), log=RecordingLog())
    assert fake.methods() == ["check"]

    pinned = _skypilot_resource("b", cloud="aws").use_sky_client(FakeSkyClient(enabled=("Lambda",)))
    with pytest.raises(NoCloudCredentials, match="sky check aws"):
        pinned.run_training(**_train_kwargs("b", "r-pinned"), log=RecordingLog())


def test_skypilot_real_check_without_credentials(sky_python):
    """The real bridge, in an empty HOME: SkyPilot's own credential check finds nothing, no server starts."""
    res = ComputeResource(backend="skypilot", bucket="s3://b/nexa")
    with pytest.raises(NoCloudCredentials) as err:
        res.run_training(**_train_kwargs("b", "r-real"), log=RecordingLog())
    assert "`.venv-sky/bin/sky check`" in str(err.value)
    assert isinstance(err.value, dg.Failure)  # an asset fails with this message, not a stack trace


def test_skypilot_needs_s3_locations():
    res = _skypilot_resource("b").use_sky_client(FakeSkyClient())
    kwargs = {**_train_kwargs("b", "r"), "sft_uri": "/tmp/lake/sft/examples"}
    with pytest.raises(compute.ComputeError, match="cannot reach sft_uri"):
        res.run_training(**kwargs, log=RecordingLog())
    with pytest.raises(compute.ComputeError, match="bucket"):
        ComputeResource(backend="skypilot").run_training(**_train_kwargs("b", "r"), log=RecordingLog())


def test_asset_without_credentials_fails_with_the_message():
    """Through Dagster: the failure is an intentional `dagster.Failure` whose description names `sky check`."""
    import dagster as dg

    @dg.asset
    def checkpoint(context, compute: ComputeResource):
        return compute.run_training(**_train_kwargs("b", context.run_id), log=context.log)

    with compute.override_sky_client(FakeSkyClient(enabled=())):
        result = dg.materialize([checkpoint], resources={"compute": _skypilot_resource("b")}, raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data
    assert failure.user_failure_data is not None and "sky check" in failure.user_failure_data.description
