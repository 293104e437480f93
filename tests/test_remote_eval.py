"""eval/predictions on the compute backend: a SkyPilot-trained checkpoint answers on a GPU node (sky/eval.yaml:
vLLM serving it, nexa_assets/evaluate/node.py asking it) and the rows come back through the bucket.

No cloud account: the cloud calls go through the training path's one seam, replaced by `FakeSkyClient` (from
test_compute, with its isolated SkyPilot home), whose `wait` plays the node: it runs the real answering program
against the scripted OpenAI-compatible server (standing in for vLLM) and writes its parquet to the moto bucket.
SkyPilot's own parser (`.venv-sky`) reads the eval task, as a real launch would.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import dagster as dg
import polars as pl
import pytest
import yaml
from test_compute import (  # noqa: F401 - the fixtures are used by name
    CANDIDATES,
    CATALOG,
    REPO,
    FakeSkyClient,
    RecordingLog,
    _csv_cheapest,
    _csv_rows,
    _skypilot_resource,
    isolated_skypilot,
    sky_python,
)
from test_crash_recovery import _eval_prompts

from nexa_assets.evaluate import node
from nexa_assets.evaluate.assets import eval_predictions
from nexa_assets.evaluate.remote import RemoteEvalFailed, answer_backend, answer_on_compute, eval_task
from nexa_resources.tables.eval import PREDICTION_SCHEMA
from nexa_assets.train.register import checkpoint_row
from nexa_resources.compute import ComputeResource, SkyBridge, override_sky_client
from nexa_resources.storage import split_s3_uri
from nexa_resources.lake import LakeResource, Lineage
from nexa_resources.teacher import TeacherResource

CKPT = "ck-remote-1"
PROMPTS = 5
LINEAGE_COLUMNS = {"run_id", "round", "created_at"}


def node_playing(base_url: str, work: Path, *, drop: int = 0):
    """What the eval task does on the GPU node, with the scripted server standing in for vLLM: the real
    answering program over the prompts in the bucket, its parquet written back (`drop` rows left out)."""

    def play(task):
        envs = task["env_overrides"]
        s3 = boto3.client("s3")
        work.mkdir(parents=True, exist_ok=True)
        s3.download_file(*split_s3_uri(envs["NEXA_EVAL_PROMPTS_URI"]), str(work / "prompts.parquet"))
        spec = json.loads(envs["NEXA_EVAL_SPEC"])
        # The node serves the checkpoint under model_id; the scripted server answers any model name.
        code = node.main(["--prompts", str(work / "prompts.parquet"), "--output", str(work / "answers.parquet"),
                          "--base-url", base_url, "--spec", json.dumps({**spec, "ready_timeout_s": 30})])
        assert code == 0
        answers = pl.read_parquet(work / "answers.parquet")
        buffer = io.BytesIO()
        answers.head(answers.height - drop).write_parquet(buffer)
        bucket, key = split_s3_uri(envs["NEXA_EVAL_OUTPUT_URI"])
        s3.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())

    return play


@pytest.fixture
def eval_lake(tmp_path, s3_env) -> LakeResource:
    """eval/prompts and one checkpoint trained on SkyPilot, its files under the bucket."""
    lake = LakeResource(root=str(tmp_path / "lake"))
    lineage = Lineage(run_id="setup", round=0)
    lake.write("eval/prompts", _eval_prompts(PROMPTS), mode="overwrite", lineage=lineage)
    uri = f"s3://{s3_env}/nexa/lake/train/artifacts/{CKPT}"
    result = {"sft_version": 1, "preset": "tiny", "base_model": "scratch:tiny", "backend": "skypilot",
              "cloud": "lambda", "accelerator": "A10:1"}
    lake.write("train/checkpoints", checkpoint_row(CKPT, uri, result), mode="merge", lineage=lineage)
    return lake


def _materialize(lake: LakeResource, compute: ComputeResource, base_url: str, fake: FakeSkyClient, **config):
    resources = {
        "lake": lake,
        "teacher": TeacherResource(base_url=base_url, model="scripted-teacher", api_key="sk-test", max_retries=1),
        "compute": compute,
    }
    run_config = {"ops": {"eval__predictions": {"config": {"include_base": False, "include_teacher": False,
                                                          "max_tokens": 32, **config}}}}
    with override_sky_client(fake):
        return dg.materialize([eval_predictions], resources=resources, run_config=run_config, raise_on_error=False)


# ---------------------------------------------------------------------------------------------- selection


def test_backend_auto_follows_where_the_checkpoint_trained():
    remote, local = ComputeResource(backend="skypilot", bucket="s3://b/nexa"), ComputeResource()
    assert answer_backend("auto", "skypilot", remote) == "compute"
    assert answer_backend("auto", "local", remote) == "local"
    assert answer_backend("local", "skypilot", remote) == "local"
    assert answer_backend("compute", "local", remote) == "compute"
    with pytest.raises(RemoteEvalFailed, match="trained on skypilot.*NEXA_COMPUTE_BACKEND=skypilot.*backend: local"):
        answer_backend("auto", "skypilot", local)
    with pytest.raises(ValueError, match="backend must be one of auto, local, compute; got 'gpu'"):
        answer_backend("gpu", "skypilot", remote)


def test_checkpoint_outside_the_bucket_is_refused_before_launch(s3_env):
    fake = FakeSkyClient()
    with pytest.raises(RemoteEvalFailed, match="not under s3://.*/nexa.*backend: local"):
        answer_on_compute(_skypilot_resource(s3_env).use_sky_client(fake), _eval_prompts(PROMPTS),
                          checkpoint_uri="s3://elsewhere/ck", spec={"model_id": CKPT}, run_id="r", log=RecordingLog())
    assert fake.calls == []


# ------------------------------------------------------------------------------ the task, SkyPilot's parser


def test_eval_task_yaml_parses_with_skypilots_parser(sky_python):
    raw = yaml.safe_load((REPO / "sky/eval.yaml").read_text())
    res = ComputeResource(backend="skypilot", bucket="s3://b/nexa", use_spot=True, cloud="lambda",
                          accelerators=["A100:1", "H100:1"], max_total_usd=6.0, estimated_hours=3.0)
    spec = {"model_id": CKPT, "max_tokens": 64}
    per_run = eval_task(res, checkpoint_uri=f"s3://b/nexa/lake/train/artifacts/{CKPT}",
                        prompts_uri="s3://b/nexa/eval/p.parquet", output_uri="s3://b/nexa/eval/a.parquet",
                        spec=spec, run_id="abcdef0123")
    parsed_file, parsed_run = SkyBridge(sky_python).call("validate", {"tasks": [{"config": raw}, per_run]})

    assert parsed_file["name"] == "nexa-eval" and not parsed_file["has_service"]
    assert parsed_file["resolved"]["file_mounts"]["/nexa-bucket"]["mode"] == "MOUNT_CACHED"
    for var in ("NEXA_CHECKPOINT_URI", "NEXA_EVAL_PROMPTS_URI", "NEXA_EVAL_OUTPUT_URI", "NEXA_EVAL_SPEC"):
        assert var in parsed_file["envs"]
    assert "vllm serve" in raw["run"] and "-m nexa_assets.evaluate.node" in raw["run"]
    assert "vllm==" in parsed_file["resolved"]["setup"]

    # The run's task: the same resources as training (set, spot, recovery, the cap, autostop, the cloud).
    assert parsed_run["name"] == "nexa-eval-abcdef01"
    any_of = parsed_run["resolved"]["resources"]["any_of"]
    assert sorted(next(iter(r["accelerators"])) for r in any_of) == ["A100", "H100"]
    for r in any_of:
        assert r["use_spot"] is True and r["max_hourly_cost"] == 2.0 and r["infra"].lower() == "lambda"
        assert r["autostop"] == {"idle_minutes": 10, "down": True}
    assert json.loads(parsed_run["envs"]["NEXA_EVAL_SPEC"]) == spec
    assert parsed_run["resolved"]["file_mounts"]["/nexa-bucket"]["source"] == "s3://b/nexa"
    assert parsed_run["resolved"]["workdir"] == str(REPO)


# --------------------------------------------------------------------------------------- the node program


def test_node_answers_through_predict_and_writes_prediction_rows(srv, tmp_path):
    _eval_prompts(PROMPTS).write_parquet(tmp_path / "prompts.parquet")
    spec = {"model_id": CKPT, "checkpoint_id": CKPT, "model_label": "round 1 student (tiny)", "max_tokens": 32}
    out = tmp_path / "out" / "answers.parquet"
    assert node.main(["--prompts", str(tmp_path / "prompts.parquet"), "--output", str(out),
                      "--base-url", srv.base_url, "--spec", json.dumps(spec)]) == 0
    rows = pl.read_parquet(out)
    assert rows.schema == pl.Schema(PREDICTION_SCHEMA)
    assert sorted(rows["prompt_id"]) == [f"ep-{i}" for i in range(PROMPTS)]
    assert set(rows["model_id"]) == {CKPT} and set(rows["model_kind"]) == {"checkpoint"}
    assert rows["error"].null_count() == PROMPTS and rows["prediction"].null_count() == 0
    with pytest.raises(ValueError, match="spec needs model_id and takes only"):
        node.read_spec(json.dumps({"model": CKPT}))


def test_node_fails_early_when_the_server_exits(tmp_path):
    log = tmp_path / "vllm.log"
    log.write_text("torch.OutOfMemoryError: CUDA out of memory\n")
    with pytest.raises(RuntimeError, match="exited before it answered(?s:.*)CUDA out of memory"):
        node.wait_until_ready("http://127.0.0.1:9/v1", timeout_s=30, server_pid=2**22 + 12345, server_log=log,
                              poll_s=0.01)


# ------------------------------------------------------------------------------- the asset, through the seam


def test_skypilot_checkpoint_answers_on_the_compute_backend(eval_lake, s3_env, srv, tmp_path):
    region = min(r["Region"] for r in _csv_rows())
    fake = FakeSkyClient(record={"cloud": "Lambda", "region": region, "accelerators": {"A10": 1},
                                 "job_duration": 720.0},
                         on_wait=node_playing(srv.base_url, tmp_path / "node"))
    result = _materialize(eval_lake, _skypilot_resource(s3_env), srv.base_url, fake)
    assert result.success

    assert fake.methods() == ["check", "launch", "wait", "down"]  # torn down after success too
    run_id = result.run_id
    name = f"nexa-eval-{run_id[:8]}"
    assert fake.calls[1] == ("launch", name) and fake.calls[-1] == ("down", name, 7)
    envs = fake.task["env_overrides"]
    assert envs["NEXA_CHECKPOINT_URI"] == f"s3://{s3_env}/nexa/lake/train/artifacts/{CKPT}"
    assert json.loads(envs["NEXA_EVAL_SPEC"])["max_tokens"] == 32
    assert fake.task["resolved"]["name"] == name  # SkyPilot's parser read it before launch

    table = eval_lake.read("eval/predictions")
    assert set(table.columns) == set(PREDICTION_SCHEMA) | LINEAGE_COLUMNS
    assert {c: table.schema[c] for c in PREDICTION_SCHEMA} == PREDICTION_SCHEMA
    assert table.height == PROMPTS and sorted(table["prompt_id"]) == sorted(_eval_prompts(PROMPTS)["prompt_id"])
    assert set(table["model_id"]) == {CKPT} and set(table["checkpoint_id"]) == {CKPT}
    assert set(table["model_kind"]) == {"checkpoint"} and set(table["model_label"]) == {"round 0 student (tiny)"}
    assert table["error"].null_count() == PROMPTS and set(table["run_id"]) == {run_id}
    price = _csv_cheapest({"A10"})["price"]
    assert table["cost_usd"].sum() == pytest.approx(round(price * 720 / 3600, 4))  # the job's $ over its rows

    metadata = result.asset_materializations_for_node("eval__predictions")[0].metadata
    assert metadata["checkpoint_answered_on"].value == "compute"
    assert metadata["eval_job"].value["accelerator"] == "A10:1"

    # Answered once: a second materialization sends nothing and launches nothing.
    again = FakeSkyClient()
    assert _materialize(eval_lake, _skypilot_resource(s3_env), srv.base_url, again).success
    assert again.calls == [] and eval_lake.read("eval/predictions").height == PROMPTS


@pytest.mark.parametrize(
    "fake_args, calls, message",
    [
        ({"launch_error": RuntimeError("ResourcesUnavailableError: no capacity")}, ["check", "launch", "down"],
         "no capacity"),
        ({"final_status": "FAILED", "record": {"failure_reason": "vLLM exited 1"}},
         ["check", "launch", "wait", "down"], "ended FAILED: vLLM exited 1"),
        ({"partial": True}, ["check", "launch", "wait", "down"], "not one answer of ck-remote-1 per prompt asked"),
    ],
    ids=["launch-error", "job-failed", "answers-missing"],
)
def test_failed_eval_job_tears_down_and_leaves_predictions_as_they_were(eval_lake, s3_env, srv, tmp_path,
                                                                        fake_args, calls, message):
    before = pl.DataFrame([{c: None for c in PREDICTION_SCHEMA} | {"model_id": "other", "prompt_id": "ep-0",
                                                                   "eval_set": "es-test"}], schema=PREDICTION_SCHEMA)
    eval_lake.write("eval/predictions", before, mode="merge", lineage=Lineage(run_id="earlier", round=0))
    version = eval_lake.version("eval/predictions")
    fake_args = dict(fake_args)
    if fake_args.pop("partial", False):
        fake_args["on_wait"] = node_playing(srv.base_url, tmp_path / "node", drop=2)
    fake = FakeSkyClient(**fake_args)

    result = _materialize(eval_lake, _skypilot_resource(s3_env), srv.base_url, fake)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data
    text = failure.user_failure_data.description if failure.user_failure_data else failure.error.to_string()
    assert message in text
    assert fake.methods() == calls
    assert eval_lake.version("eval/predictions") == version
    assert eval_lake.read("eval/predictions").select(list(PREDICTION_SCHEMA)).equals(before)


def test_local_backend_keeps_a_skypilot_checkpoint_off_the_cloud(eval_lake, s3_env, srv, tmp_path, monkeypatch):
    """backend: local never calls SkyPilot (it serves the checkpoint here; no model files: the serve fails)."""
    monkeypatch.setenv("NEXA_CACHE_DIR", str(tmp_path / "cache"))
    fake = FakeSkyClient()
    result = _materialize(eval_lake, _skypilot_resource(s3_env), srv.base_url, fake, backend="local")
    assert not result.success and fake.calls == []
