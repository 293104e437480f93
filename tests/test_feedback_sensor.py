"""The feedback sensor over planted evaluations (no teacher, no training): one run per round, the cursor
moves, and no run when every cell passes or the round cap is reached."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import polars as pl
import pytest

from nexa_resources.tables.eval import METRIC_SCHEMA
from nexa_assets.evaluate.stats import mean_ci
from nexa_assets.feedback.assets import FeedbackConfig, feedback_loop
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
    assert int(requests_table["n_prompts"].sum()) == FeedbackConfig().prompts_per_round
    assert set(requests_table["status"]) == {"open"}
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


# ------------------------------------------------------------------------------ spending by evidence


def plant_costs(lake: LakeResource, round_: int, *, prompts: int, teacher_usd: float | None, gpu_usd: float | None,
                checkpoint: str) -> None:
    """What round `round_` bought: `prompts` prompts answered by the teacher (2 requests each, `teacher_usd` in
    all), the round's checkpoint trained for `gpu_usd`, its eval answers served locally ($0)."""
    lineage = Lineage(run_id=f"plant-{round_}", round=round_)
    per_request = None if teacher_usd is None else teacher_usd / (2 * prompts)
    lake.write(
        "distill/completions",
        pl.DataFrame(
            [{"request_id": f"r{round_}-{i}-{s}", "prompt_id": f"bought-{round_}-{i}", "cost_usd": per_request}
             for i in range(prompts) for s in range(2)],
            schema={"request_id": pl.String, "prompt_id": pl.String, "cost_usd": pl.Float64},
        ),
        mode="merge",
        lineage=lineage,
    )
    lake.write("train/checkpoints", pl.DataFrame({"checkpoint_id": [checkpoint], "cost_usd": [gpu_usd]},
                                                 schema={"checkpoint_id": pl.String, "cost_usd": pl.Float64}),
               mode="merge", lineage=lineage)
    lake.write("eval/predictions", pl.DataFrame({"model_id": [checkpoint], "prompt_id": ["p"], "cost_usd": [0.0]}),
               mode="merge", lineage=lineage)


def _ledger(lake: LakeResource, round_: int) -> dict:
    return lake.read("feedback/rounds").filter(pl.col("round") == round_).row(0, named=True)


# Round 0: 4 prompts for $0.50 ($0.125 each) and a $1.00 checkpoint; it buys 8 prompts for round 1, estimated at
# 8 × $0.125 + $1.00 × (4 + 8) / 4 = $4.00. Round 1 costs what was estimated.
ROUND0_COST = {"prompts": 4, "teacher_usd": 0.5, "gpu_usd": 1.0}
ROUND1_COST = {"prompts": 8, "teacher_usd": 1.0, "gpu_usd": 3.0}


def test_budget_exhausted_after_a_round_whose_successor_would_pass_the_budget(lake, instance):
    config = {"default_threshold": 4.0, "prompts_per_round": 8, "budget_usd": 10.0}
    plant_costs(lake, 0, checkpoint=plant_round(lake, 0, {CELLS[0]: NOISY[0], CELLS[1]: 4.0}), **ROUND0_COST)
    assert judge(lake, instance, 0, **config).success
    row = _ledger(lake, 0)
    assert row["total_usd"] == pytest.approx(1.5) and row["spent_usd"] == pytest.approx(1.5)
    assert row["estimated_usd"] is None and row["next_prompts"] == 8
    assert row["next_estimate_usd"] == pytest.approx(4.0) and row["stop_reason"] is None
    # The estimate is in the next round's run request, before that run starts.
    assert _metadata(instance)["nexa/estimated_cost_usd"] == "4.000000"
    requests, cursor, _ = evaluate(instance, None)
    assert [r.run_key for r in requests] == ["feedback-round-1"]
    assert requests[0].tags["nexa/estimated_cost_usd"] == "4.000000"

    # Round 1 lifted its focus cell clearly and cost $4.00 as estimated ($5.50 so far); the next round would buy 8
    # more prompts for 8 × $0.125 + $3.00 × (12 + 8) / 12 = $6.00: $11.50 > $10.
    plant_costs(lake, 1, checkpoint=plant_round(lake, 1, {CELLS[0]: CLEAR[1], CELLS[1]: 4.0}), **ROUND1_COST)
    assert judge(lake, instance, 1, **config).success
    meta = _metadata(instance)
    assert meta["improved"] is True and meta["stop_reason"] == "budget_exhausted"
    row = _ledger(lake, 1)
    assert row["estimated_usd"] == pytest.approx(4.0) and row["total_usd"] == pytest.approx(4.0)  # before / after
    assert row["spent_usd"] == pytest.approx(5.5) and row["next_estimate_usd"] == pytest.approx(6.0)
    assert row["stop_reason"] == "budget_exhausted" and "would make $11.5000" in row["stop_detail"]
    assert set(lake.read("feedback/weaknesses").filter(pl.col("round") == 1)["stop_reason"]) == {"budget_exhausted"}
    assert lake.read("feedback/requests").filter(pl.col("round") == 1).is_empty()  # nothing bought for round 2
    requests, _, skip = evaluate(instance, cursor)
    assert requests == [] and "budget_exhausted" in skip


@pytest.mark.parametrize("floor", [0.5, 0.25])
def test_low_gain_per_dollar_after_a_clear_but_expensive_lift(lake, instance, floor):
    # Round 1 lifts its focus cell by +1.17 (every answer +1 or +2) for $4.00: 0.29 points per $.
    config = {"default_threshold": 4.0, "prompts_per_round": 8, "min_gain_per_usd": floor}
    plant_costs(lake, 0, checkpoint=plant_round(lake, 0, {CELLS[0]: NOISY[0], CELLS[1]: 4.0}), **ROUND0_COST)
    assert judge(lake, instance, 0, **config).success
    requests, cursor, _ = evaluate(instance, None)
    assert [r.run_key for r in requests] == ["feedback-round-1"]  # round 0 has no lift to weigh yet
    plant_costs(lake, 1, checkpoint=plant_round(lake, 1, {CELLS[0]: CLEAR[1], CELLS[1]: 4.0}), **ROUND1_COST)
    assert judge(lake, instance, 1, **config).success
    meta = _metadata(instance)
    row = _ledger(lake, 1)
    assert meta["improved"] is True
    assert row["focus_lift"] == pytest.approx(14 / 12) and row["gain_per_usd"] == pytest.approx(14 / 12 / 4.0)
    requests, _, skip = evaluate(instance, cursor)
    if floor > 14 / 12 / 4.0:
        assert meta["stop_reason"] == row["stop_reason"] == "low_gain_per_dollar"
        assert f"below the floor {floor:g}" in row["stop_detail"] and row["next_estimate_usd"] is not None
        assert requests == [] and "low_gain_per_dollar" in skip
    else:  # the same lift clears a lower floor: the loop goes on
        assert meta["stop_reason"] == "" and row["stop_reason"] is None
        assert [r.run_key for r in requests] == ["feedback-round-2"]


def test_an_unknown_price_is_unknown_in_the_tag_and_stops_a_loop_with_a_budget(lake, instance):
    # Planted rounds record no GPU price: the estimate is unknown, never a made-up $0.
    plant_costs(lake, 0, checkpoint=plant_round(lake, 0, {CELLS[0]: 2.0}), prompts=4, teacher_usd=0.5, gpu_usd=None)
    assert judge(lake, instance, 0).success
    row = _ledger(lake, 0)
    assert row["cost_known"] is False and row["gpu_usd"] is None and row["teacher_usd"] == pytest.approx(0.5)
    assert row["next_estimate_usd"] is None and row["next_prompts"] == FeedbackConfig().prompts_per_round
    requests, cursor, _ = evaluate(instance, None)
    assert requests[0].tags["nexa/estimated_cost_usd"] == "unknown"

    assert judge(lake, instance, 0, budget_usd=100.0).success
    row = _ledger(lake, 0)
    assert row["stop_reason"] == "budget_exhausted" and "unknown (gpu" in row["stop_detail"]
    requests, _, skip = evaluate(instance, cursor)
    assert requests == [] and "budget_exhausted" in skip
