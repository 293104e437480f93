"""The loop end to end: round 0 through Dagster (scripted teacher, tiny student served by `transformers
serve`), the feedback sensor on a persistent instance, round 1 run from the sensor's request, and a real
Dagster daemon launching a refresh run for a planted weakness."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from nexa_assets.rounds import FOCUS_TAG, ROUND_TAG, latest_round
from nexa_jobs.catalog import ASSET_CHECKS, ASSETS
from nexa_jobs.feedback_sensor import feedback_sensor
from nexa_jobs.jobs import refresh_job
from nexa_resources.compute import ComputeResource
from nexa_resources.inputs import InputsResource
from nexa_resources.judge import JudgeResource
from nexa_resources.lake import LakeResource
from nexa_resources.teacher import TeacherResource

REPO = Path(__file__).resolve().parent.parent
MODEL = "scripted-teacher"
TEACHER_ROW = f"teacher:{MODEL}:shots=1"  # the teacher answering eval prompts as it is asked for data
# Small and quick: 2 seed prompts per cell, a 1-step student, 1 eval prompt per cell, 64-token answers.
ROUND0_CONFIG = {
    "ops": {
        "distill__completions": {"config": {"per_cell": 2}},
        "train__checkpoints": {"config": {"preset": "tiny", "max_steps": 1, "batch_size": 4, "max_seq_len": 256}},
        "eval__prompts": {"config": {"per_cell": 1}},
        "eval__predictions": {"config": {"max_tokens": 32, "include_teacher": False}},
        "feedback_loop": {"config": {"default_threshold": 3.5, "prompts_per_round": 6, "min_improvement": 10.0}},
    }
}
pytestmark = pytest.mark.slow


def resources(lake_root: Path, inputs: Path, base_url: str) -> dict:
    return {
        "lake": LakeResource(root=str(lake_root)),
        "inputs": InputsResource(uri=str(inputs)),
        "teacher": TeacherResource(base_url=base_url, model=MODEL, api_key="sk-test", max_retries=1),
        "judge": JudgeResource(),
        "compute": ComputeResource(),
    }


@pytest.fixture(scope="module")
def loop(tmp_path_factory, scripted_server):
    """Round 0 materialized on a persistent instance; yields what the tests need."""
    base = tmp_path_factory.mktemp("loop")
    (base / "inputs").mkdir()
    res = resources(base / "lake", base / "inputs", scripted_server.base_url)
    (base / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(base / "dagster_home"), set_dagster_home=False) as instance:
        scripted_server.reset()
        result = dg.materialize([*ASSETS, *ASSET_CHECKS], resources=res, run_config=ROUND0_CONFIG, instance=instance)
        assert result.success
        yield {"instance": instance, "resources": res, "lake": res["lake"], "base": base, "round0": result}


def test_round_zero_evaluates_the_checkpoint_and_finds_weak_cells(loop):
    lake: LakeResource = loop["lake"]
    eval_prompts = lake.read("eval/prompts")
    raw_eval = lake.read("raw/prompts").filter(pl.col("split") == "eval")
    assert eval_prompts.height == 8 and set(eval_prompts["prompt_id"]) <= set(raw_eval["prompt_id"])
    assert eval_prompts["eval_set"].n_unique() == 1
    # Held out: no eval prompt in any training table (the blocking check passed too).
    for table in ("distill/completions", "sft/examples"):
        assert not set(lake.read(table)["prompt_id"]) & set(eval_prompts["prompt_id"])
    checks = {c.check_name: c.passed for c in loop["round0"].get_asset_check_evaluations()}
    assert checks["held_out"]

    [checkpoint] = lake.read("train/checkpoints").to_dicts()
    predictions = lake.read("eval/predictions")
    assert predictions.height == 8 and set(predictions["model_id"]) == {checkpoint["checkpoint_id"]}
    assert predictions["finish_reason"].is_in(["stop", "length"]).all()
    assert (predictions["completion_tokens"] <= 32).all()

    scores = lake.read("eval/scores")
    metrics = lake.read("eval/metrics")
    assert scores.height == 8 * 5 and metrics.height == 8 * 5
    # eval/metrics is exactly the aggregate of eval/scores.
    recomputed = scores.group_by("domain", "task_type", "metric").agg(
        pl.col("score").mean().alias("expect"), pl.col("score").count().alias("n_expect")
    )
    joined = metrics.join(recomputed, on=["domain", "task_type", "metric"])
    assert joined.height == metrics.height
    assert (joined["mean"] - joined["expect"]).abs().max() < 1e-9
    assert (joined["n"] == joined["n_expect"]).all()
    assert set(metrics["round"]) == {0}

    weaknesses = lake.read("feedback/weaknesses")
    assert weaknesses.height == 40 and set(weaknesses["round"]) == {0}
    weak = weaknesses.filter(pl.col("status") == "weak")
    assert weak.height > 0 and weaknesses["stop_reason"].null_count() == weaknesses.height
    assert (weak["score"] < 3.5).all() and ((weak["gap"] - (3.5 - weak["score"])).abs() < 1e-9).all()
    requests = lake.read("feedback/requests")
    assert int(requests["n_prompts"].sum()) == 6 and set(requests["status"]) == {"open"}
    assert set(requests["for_round"]) == {1}
    weak_cells = set(weak.select("domain", "task_type").unique().iter_rows())
    assert set(requests.select("domain", "task_type").iter_rows()) <= weak_cells


def test_every_materialization_explains_itself_in_the_ui(loop):
    """Row count, the Delta version written and a Markdown preview or plot on every asset; the loss
    curve and the per-cell scores as pictures."""
    events = loop["round0"].get_asset_materialization_events()
    assert len(events) == len(loop["lake"].tables())
    for event in events:
        metadata = event.materialization.metadata
        key = event.asset_key.to_user_string()
        assert "dagster/row_count" in metadata and "delta_version" in metadata, key
        assert any(isinstance(v, dg.MarkdownMetadataValue) for v in metadata.values()), key
    pictures = {
        e.asset_key.to_user_string(): [k for k, v in e.materialization.metadata.items()
                                       if isinstance(v, dg.MarkdownMetadataValue) and "data:image/png" in v.value]
        for e in events
    }
    assert pictures["train/checkpoints"] == ["loss_curve"]
    assert pictures["eval/metrics"] == ["cell_scores"] and pictures["feedback/weaknesses"] == ["cell_scores"]


def test_reference_models_answer_once_and_join_the_leaderboard(loop, scripted_server):
    """The teacher and another OpenAI-compatible model as reference rows; the checkpoint is not asked again."""
    lake: LakeResource = loop["lake"]
    evaluate = [a for a in ASSETS if a.op.name in ("eval__predictions", "eval__scores", "eval__metrics")]
    config = {
        "include_teacher": True,
        "external_models": [{"base_url": scripted_server.base_url, "model": "reference-model", "api_key_env": None}],
        "max_tokens": 32,
    }
    for attempt in range(2):
        scripted_server.reset()
        result = dg.materialize(
            evaluate, resources=loop["resources"], instance=loop["instance"],
            run_config={"ops": {"eval__predictions": {"config": config}}},
        )
        assert result.success
        # 8 eval prompts for each reference model the first time; nothing at all the second time.
        assert scripted_server.stats()["requests"] == (16 if attempt == 0 else 0)
    predictions = lake.read("eval/predictions")
    references = predictions.filter(pl.col("model_kind").is_in(["teacher", "external"]))
    assert set(references["model_id"]) == {TEACHER_ROW, "reference-model"} and references.height == 16
    assert references["checkpoint_id"].null_count() == 16 and references["error"].null_count() == 16
    labels = dict(zip(references["model_id"], references["model_label"]))
    assert labels == {TEACHER_ROW: f"teacher ({MODEL}, 1 worked example, greedy)", "reference-model": "reference-model"}
    metrics = lake.read("eval/metrics")
    kinds = dict(zip(metrics["model_id"], metrics["model_kind"]))
    assert kinds[TEACHER_ROW] == "teacher" and kinds["reference-model"] == "external"
    # The scripted teacher writes structured answers: as a reference it outscores the 1-step student.
    overall = metrics.group_by("model_id").agg(pl.col("mean").mean())
    score = dict(zip(overall["model_id"], overall["mean"]))
    checkpoint = lake.read("train/checkpoints").sort("created_at")["checkpoint_id"][-1]
    assert score[TEACHER_ROW] > score[checkpoint]


def test_sensor_requests_one_refresh_run_then_round_one_buys_only_new_prompts(loop, scripted_server):
    instance, lake = loop["instance"], loop["lake"]
    context = dg.build_sensor_context(instance=instance)
    result = feedback_sensor(context)
    assert isinstance(result, dg.SensorResult) and len(result.run_requests) == 1
    [request] = result.run_requests
    assert request.run_key == "feedback-round-1" and request.job_name == "refresh_job"
    assert request.tags[ROUND_TAG] == "1"
    focus = request.tags[FOCUS_TAG].split(",")
    targeted = lake.read("feedback/weaknesses").filter(pl.col("targeted"))
    assert targeted.height and (targeted["status"] == "weak").all()
    assert focus and set(focus) == {f"{d}/{t}" for d, t in targeted.select("domain", "task_type").unique().iter_rows()}
    assert len(focus) <= 2  # max_focus_cells: the weakest cells, not every weak one
    ops = request.run_config["ops"]
    assert ops["distill__completions"]["config"] == {"per_cell": 2, "round": 1}  # the user's settings carry on
    assert ops["feedback_loop"]["config"]["min_improvement"] == 10.0
    cursor = result.cursor
    assert cursor is not None

    # Nothing new since: the cursor moved, so no second request for the same round.
    again = feedback_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    assert isinstance(again, dg.SkipReason) or not again.run_requests

    # Round 1, exactly as the daemon would launch it.
    before = lake.read("distill/completions", columns=["request_id"]).height
    scripted_server.reset()
    defs = dg.Definitions(
        assets=ASSETS, asset_checks=ASSET_CHECKS, jobs=[refresh_job], resources=loop["resources"],
        executor=dg.in_process_executor,
    )
    run = defs.resolve_job_def("refresh_job").execute_in_process(
        run_config=request.run_config, tags=request.tags, instance=instance
    )
    assert run.success

    prompts = lake.read("raw/prompts")
    # The weak cells' unanswered seed prompts first, then generated ones (none needed here).
    bought = prompts.filter((pl.col("origin") == "feedback") | (pl.col("bought_for_round") == 1))
    assert bought.height == 6 and set(bought["round"]) == {1} and set(bought["split"]) == {"train"}
    requests = lake.read("feedback/requests")
    assert set(requests.filter(pl.col("round") == 0)["status"]) == {"done"}
    assert sorted(requests.filter(pl.col("round") == 0)["prompt_ids"].explode()) == sorted(bought["prompt_id"])

    completions = lake.read("distill/completions")
    new = completions.filter(pl.col("round") == 1)
    # Only the new prompts reached the teacher (plus regenerations of their own rejected answers).
    assert set(new["prompt_id"]) == set(bought["prompt_id"])
    assert scripted_server.stats()["requests"] == new.height == completions.height - before

    checkpoints = lake.read("train/checkpoints").sort("created_at")
    assert checkpoints.height == 2 and checkpoints["round"].to_list() == [0, 1]
    metrics = lake.read("eval/metrics")
    assert set(metrics.filter(pl.col("model_id") == checkpoints["checkpoint_id"][1])["round"]) == {1}
    round1 = lake.read("feedback/weaknesses").filter(pl.col("round") == 1)
    assert round1.height == 40 and set(round1["loop_round"]) == {1}
    # min_improvement 10 cannot be met on a 1–5 scale: the loop stops and the sensor launches nothing more.
    assert set(round1["stop_reason"]) == {"no_improvement"} or set(round1["stop_reason"]) == {"all_cells_pass"}
    final = feedback_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    assert isinstance(final, dg.SensorResult) and not final.run_requests
    assert "loop stopped" in (final.skip_reason.skip_message if final.skip_reason else "")
    assert int(final.cursor) > int(cursor)


def _daemon_env(home: Path, lake_root: Path, inputs: Path, base_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "NEXA_LAKE_ROOT": str(lake_root),
        "NEXA_INPUT_URI": str(inputs),
        "NEXA_TEACHER_BASE_URL": base_url,
        "NEXA_TEACHER_MODEL": MODEL,
        "OMP_NUM_THREADS": "1",
    }


def test_daemon_launches_a_refresh_run_for_a_planted_weakness_within_60s(loop, tmp_path, scripted_server):
    """A real dagster-daemon over the real workspace: re-judging round 0 with a raised threshold."""
    lake_root = tmp_path / "lake"
    shutil.copytree(loop["base"] / "lake", lake_root)
    lake = LakeResource(root=str(lake_root))
    judged = latest_round(lake)  # the newest round, re-judged below with a raised threshold
    home = tmp_path / "dagster_home"
    home.mkdir()
    # Runs queue but never start: the test is about the sensor's decision, not the run itself.
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\n"
        "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: QueuedRunCoordinator\n"
        "  config:\n    max_concurrent_runs: 0\n"
    )
    env = _daemon_env(home, lake_root, tmp_path, scripted_server.base_url)
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        os.environ["DAGSTER_HOME"], saved = str(home), os.environ.get("DAGSTER_HOME")
        try:
            with dg.DagsterInstance.get() as instance:
                res = resources(lake_root, tmp_path, scripted_server.base_url)
                feedback = [a for a in ASSETS if a.op.name == "feedback_loop"]
                planted = dg.materialize(
                    feedback,
                    resources=res,
                    instance=instance,
                    run_config={"ops": {"feedback_loop": {"config": {"default_threshold": 4.9}}}},
                )
                assert planted.success
                deadline = time.monotonic() + 60
                runs = []
                while time.monotonic() < deadline and not runs:
                    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "feedback_sensor"}))
                    time.sleep(1)
                assert runs, "the daemon's feedback sensor launched no run within 60 s"
                [run] = runs
                assert run.job_name == "refresh_job"
                assert run.tags[ROUND_TAG] == str(judged + 1)
                assert run.tags["dagster/run_key"] == f"feedback-round-{judged + 1}"
                weak = lake.read("feedback/weaknesses").filter((pl.col("round") == judged) & pl.col("targeted"))
                assert set(run.tags[FOCUS_TAG].split(",")) == {
                    f"{d}/{t}" for d, t in weak.select("domain", "task_type").unique().iter_rows()
                }
                assert run.run_config["ops"]["feedback_loop"]["config"]["default_threshold"] == 4.9
        finally:
            if saved is None:
                os.environ.pop("DAGSTER_HOME", None)
            else:
                os.environ["DAGSTER_HOME"] = saved
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)
