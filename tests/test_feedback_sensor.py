"""The feedback sensor over planted evaluations (no teacher, no training): one run per round, the cursor
moves, and no run when every cell passes or the round cap is reached."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import polars as pl
import pytest

from nexa_assets.evaluate.schema import METRIC_SCHEMA
from nexa_assets.evaluate.stats import mean_ci
from nexa_assets.feedback.assets import feedback_loop
from nexa_jobs.feedback_sensor import feedback_sensor
from nexa_resources.judge import STRUCTURAL_JUDGE_ID, JudgeResource
from nexa_resources.lake import LakeResource, Lineage

METRICS = ("correctness", "methodology", "specificity", "clarity", "hallucination_safety")
CELLS = [("biology", "hypothesis"), ("physics", "methodology")]


def plant_round(lake: LakeResource, round_: int, scores: dict[tuple[str, str], float | list[int]]) -> str:
    """A checkpoint trained in `round_` and its eval/metrics and eval/scores rows. Each cell's value is its
    per-prompt scores (prompt i of the cell scores the same on every metric), or one score for all four prompts."""
    checkpoint = f"ckpt-{round_}"
    lineage = Lineage(run_id=f"plant-{round_}", round=round_)
    lake.write(
        "train/checkpoints",
        pl.DataFrame({"checkpoint_id": [checkpoint], "uri": [f"/nowhere/{checkpoint}"]}),
        mode="merge",
        lineage=Lineage(run_id=f"plant-{round_}", round=round_, created_at=datetime.now(UTC)),
    )
    per_prompt = {cell: v if isinstance(v, list) else [int(v)] * 4 for cell, v in scores.items()}
    rows = []
    for (d, t), values in per_prompt.items():
        stats = mean_ci(values)
        rows += [
            {
                "model_id": checkpoint, "domain": d, "task_type": t, "metric": m, "model_kind": "checkpoint",
                "checkpoint_id": checkpoint, "mean": stats.mean, "n": stats.n, "std": stats.std,
                "ci_low": stats.ci_low, "ci_high": stats.ci_high, "judge_failures": 0, "truncation_rate": 0.0,
                "judge_model": STRUCTURAL_JUDGE_ID, "rubric_version": "v", "eval_set": "es",
            }
            for m in METRICS
        ]
    lake.write("eval/metrics", pl.DataFrame(rows, schema=METRIC_SCHEMA), mode="merge", lineage=lineage)
    score_rows = pl.DataFrame(
        [
            {"model_id": checkpoint, "prompt_id": f"p-{d}-{t}-{i}", "metric": m, "domain": d, "task_type": t,
             "judge_model": STRUCTURAL_JUDGE_ID, "rubric_version": "v", "eval_set": "es", "score": s,
             "rationale": f"more {m}"}
            for (d, t), values in per_prompt.items()
            for i, s in enumerate(values)
            for m in METRICS
        ]
    )
    lake.write("eval/scores", score_rows, mode="merge", lineage=lineage)
    return checkpoint


def judge(lake: LakeResource, instance: dg.DagsterInstance, round_: int, **config) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [feedback_loop],
        resources={"lake": lake, "judge": JudgeResource()},
        instance=instance,
        run_config={"ops": {"feedback_loop": {"config": {"round": round_, **config}}}},
        tags={"nexa/round": str(round_)},
    )


@pytest.fixture()
def instance(tmp_path):
    (tmp_path / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "home"), set_dagster_home=False) as inst:
        yield inst


def evaluate(instance: dg.DagsterInstance, cursor: str | None):
    result = feedback_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    if isinstance(result, dg.SkipReason):
        return [], cursor, result.skip_message
    skip = result.skip_reason.skip_message if result.skip_reason else ""
    return list(result.run_requests or []), result.cursor, skip


def test_one_run_per_round_until_the_round_cap(lake, instance):
    plant_round(lake, 0, {CELLS[0]: 2.0, CELLS[1]: 4.0})
    assert judge(lake, instance, 0, max_rounds=1).success
    requests, cursor, _ = evaluate(instance, None)
    assert [r.run_key for r in requests] == ["feedback-round-1"]
    assert requests[0].tags["nexa/focus_cells"] == "biology/hypothesis"
    assert requests[0].run_config["ops"]["feedback_loop"]["config"] == {"round": 1, "max_rounds": 1}

    assert evaluate(instance, cursor)[0] == []  # nothing new: no second run for round 1
    # Re-judging the same round (e.g. a retried run) asks for the same run key, which the daemon dedupes.
    assert judge(lake, instance, 0, max_rounds=1).success
    again, cursor, _ = evaluate(instance, cursor)
    assert [r.run_key for r in again] == ["feedback-round-1"]

    # Round 1 improved (every answer +1) but one feedback round is the cap: stop, and the sensor launches nothing.
    plant_round(lake, 1, {CELLS[0]: 3.0, CELLS[1]: 4.0})
    assert judge(lake, instance, 1, max_rounds=1).success
    weaknesses = lake.read("feedback/weaknesses").filter(pl.col("round") == 1)
    assert set(weaknesses["stop_reason"]) == {"round_cap"} and set(weaknesses["loop_round"]) == {1}
    requests, next_cursor, skip = evaluate(instance, cursor)
    assert requests == [] and "round_cap" in skip and int(next_cursor) > int(cursor)
    assert lake.read("feedback/requests").filter(pl.col("round") == 1).is_empty()


def test_no_run_when_every_cell_passes(lake, instance):
    plant_round(lake, 0, {CELLS[0]: 4.0, CELLS[1]: 4.5})
    assert judge(lake, instance, 0, default_threshold=3.5).success
    weaknesses = lake.read("feedback/weaknesses")
    assert set(weaknesses["status"]) == {"pass"} and set(weaknesses["stop_reason"]) == {"all_cells_pass"}
    requests, cursor, skip = evaluate(instance, None)
    assert requests == [] and "all_cells_pass" in skip and cursor is not None

    # Raising the bar re-judges the round as a new loop: now it is weak, and the next round is requested.
    assert judge(lake, instance, 0, default_threshold=4.8).success
    requests, _, _ = evaluate(instance, cursor)
    assert [r.run_key for r in requests] == ["feedback-round-1"]
    assert set(requests[0].tags["nexa/focus_cells"].split(",")) == {"biology/hypothesis", "physics/methodology"}
    requests_table = lake.read("feedback/requests")
    assert int(requests_table["n_prompts"].sum()) == 24 and set(requests_table["status"]) == {"open"}
    assert set(requests_table["hints"].explode()) <= {f"more {m}" for m in METRICS}


def _metadata(instance: dg.DagsterInstance) -> dict:
    record = instance.fetch_materializations(dg.AssetKey(["feedback", "weaknesses"]), limit=1).records[0]
    return {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}


NOISY = {0: [2, 3, 2, 2, 3, 2, 2, 3, 2, 2, 3, 2], 1: [4, 2, 3, 3, 2, 4, 2, 2, 4, 3, 2, 1]}  # mean +0.33, ±0.9
CLEAR = {0: NOISY[0], 1: [3, 4, 4, 3, 4, 3, 4, 4, 3, 3, 4, 3]}  # every answer +1 or +2


def test_a_lift_within_noise_stops_the_loop_and_a_clear_lift_goes_on(lake, instance):
    plant_round(lake, 0, {CELLS[0]: NOISY[0], CELLS[1]: 4.0})
    assert judge(lake, instance, 0, default_threshold=4.0).success
    first = _metadata(instance)
    assert first["focus_lift"] is None and first["improved"] is None and first["largest_other_drop"] is None
    requests, cursor, _ = evaluate(instance, None)
    assert [r.run_key for r in requests] == ["feedback-round-1"]

    # The focus cell's mean rose by 0.33 (> 0.05), but its 95% interval includes 0: no_improvement.
    plant_round(lake, 1, {CELLS[0]: NOISY[1], CELLS[1]: [4, 4, 4, 3]})
    assert judge(lake, instance, 1, default_threshold=4.0).success
    meta = _metadata(instance)
    assert meta["stop_reason"] == "no_improvement" and meta["improved"] is False
    assert meta["focus_lift"] == pytest.approx(4 / 12, abs=1e-4)
    low, high = meta["focus_lift_ci"]
    assert low < 0 < high and meta["focus_lift_n"] == 12
    drop = meta["largest_other_drop"]
    assert drop["cell"].startswith("physics/methodology/") and drop["change"] == pytest.approx(-0.25)
    round1 = lake.read("feedback/weaknesses").filter(pl.col("round") == 1)
    assert set(round1["focus"]) == {True, False}
    assert round1.filter(pl.col("focus"))["change"].to_list() == pytest.approx([4 / 12] * len(METRICS))
    assert round1.filter(~pl.col("focus"))["change_n"].to_list() == [4] * len(METRICS)
    requests, cursor, skip = evaluate(instance, cursor)
    assert requests == [] and "no_improvement" in skip

    # Re-judged after a clearer round 1 (every answer +1 or +2): the loop goes on to round 2.
    plant_round(lake, 1, {CELLS[0]: CLEAR[1], CELLS[1]: 4.0})
    assert judge(lake, instance, 1, default_threshold=4.0).success
    meta = _metadata(instance)
    assert meta["stop_reason"] == "" and meta["improved"] is True and meta["focus_lift_ci"][0] > 0
    assert meta["largest_other_drop"] is None
    requests, _, _ = evaluate(instance, cursor)
    assert [r.run_key for r in requests] == ["feedback-round-2"]
    assert requests[0].tags["nexa/focus_cells"] == "biology/hypothesis"


def test_unknown_threshold_metric_fails_with_the_valid_names(lake, instance):
    plant_round(lake, 0, {CELLS[0]: 2.0})
    result = dg.materialize(
        [feedback_loop],
        resources={"lake": lake, "judge": JudgeResource()},
        instance=instance,
        run_config={"ops": {"feedback_loop": {"config": {"thresholds": {"clarty": 4.0}}}}},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "clarty" in message and "clarity" in message and "hallucination_safety" in message
