"""The efficacy report (bench/efficacy.py, make demo) on a planted lake: focus cells, paired lifts by hand."""

from __future__ import annotations

import math

import polars as pl
import pytest

from nexa_resources.tables.eval import METRIC_SCHEMA, PREDICTION_SCHEMA, SCORE_SCHEMA
from nexa_assets.evaluate.stats import t_critical_95
from nexa_resources.tables.feedback import WEAKNESS_SCHEMA
from nexa_jobs.efficacy import measure, side_by_side
from nexa_resources.lake import Lineage

FOCUS = ("physics", "methodology", "specificity")
OTHER = ("biology", "hypothesis", "clarity")
PROMPTS = {FOCUS: [f"pm{i}" for i in range(6)], OTHER: [f"bh{i}" for i in range(6)]}
# model → cell → one score per prompt
SCORES = {
    "base": {FOCUS: [2, 2, 3, 2, 1, 2], OTHER: [3, 3, 3, 4, 3, 3]},
    "c0": {FOCUS: [2, 3, 3, 2, 2, 3], OTHER: [4, 4, 3, 4, 4, 4]},
    "c1": {FOCUS: [4, 4, 5, 3, 4, 4], OTHER: [4, 3, 4, 4, 4, 3]},
}
KIND = {"base": "base", "c0": "checkpoint", "c1": "checkpoint"}


def _interval(diffs: list[float]) -> tuple[float, float, float]:
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t_critical_95(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


@pytest.fixture
def planted(lake):
    scores, predictions = [], []
    for model, cells in SCORES.items():
        for cell, values in cells.items():
            for prompt, value in zip(PROMPTS[cell], values, strict=True):
                scores.append({"model_id": model, "prompt_id": prompt, "metric": cell[2], "domain": cell[0],
                               "task_type": cell[1], "judge_model": "structural-v1", "rubric_version": "r1",
                               "score": value, "eval_set": "es-1", "truncated": False})
                predictions.append({"model_id": model, "prompt_id": prompt, "model_kind": KIND[model],
                                    "model_label": f"{model} label", "domain": cell[0], "task_type": cell[1],
                                    "prediction": f"answer of {model} to {prompt}", "eval_set": "es-1"})
    lake.write("eval/scores", pl.DataFrame(scores, schema=SCORE_SCHEMA), mode="overwrite", lineage=Lineage("r", 0))
    lake.write("eval/predictions", pl.DataFrame(predictions, schema=PREDICTION_SCHEMA), mode="overwrite",
               lineage=Lineage("r", 0))
    lake.write("eval/prompts", pl.DataFrame([
        {"prompt_id": p, "domain": c[0], "task_type": c[1], "instruction": f"instruction {p}"}
        for c, ps in PROMPTS.items() for p in ps
    ]), mode="overwrite", lineage=Lineage("r", 0))
    metrics = [{"model_id": "c1", "domain": c[0], "task_type": c[1], "metric": c[2], "judge_model": "structural-v1",
                "rubric_version": "r1", "eval_set": "es-1", "mean": 3.0, "n": 6} for c in PROMPTS]
    lake.write("eval/metrics", pl.DataFrame(metrics, schema=METRIC_SCHEMA), mode="overwrite", lineage=Lineage("r", 1))
    for round_, model in ((0, "c0"), (1, "c1")):
        rows = [{"domain": c[0], "task_type": c[1], "metric": c[2], "model_id": model, "status": "weak",
                 "targeted": round_ == 0 and c == FOCUS} for c in PROMPTS]
        lake.write("feedback/weaknesses", pl.DataFrame(rows, schema=WEAKNESS_SCHEMA), mode="merge",
                   lineage=Lineage(f"r{round_}", round_))
    return lake


def test_focus_cells_are_those_round_0_targeted_and_lifts_are_paired_by_prompt(planted):
    report = measure(planted)
    assert report.models == {"base": "base", "round 0": "c0", "round 1": "c1"}
    assert report.focus == [FOCUS]
    diffs = [b - a for a, b in zip(SCORES["c0"][FOCUS], SCORES["c1"][FOCUS], strict=True)]
    mean, low, high = _interval(diffs)
    assert report.focused_lift.mean == pytest.approx(mean)
    assert (report.focused_lift.ci_low, report.focused_lift.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert report.focused_lift.significant
    other = [b - a for a, b in zip(SCORES["c0"][OTHER], SCORES["c1"][OTHER], strict=True)]
    assert report.other_change.mean == pytest.approx(sum(other) / 6) and report.other_change.n == 6
    base = [c0 - b for cell in PROMPTS for b, c0 in zip(SCORES["base"][cell], SCORES["c0"][cell], strict=True)]
    assert report.base_to_round0.mean == pytest.approx(sum(base) / 12) and report.base_to_round0.n == 12
    table = {r["cells"]: r for r in report.table.iter_rows(named=True)}
    assert table["focus cells"]["round 1"] == pytest.approx(sum(SCORES["c1"][FOCUS]) / 6, abs=1e-3)
    drop = report.largest_other_drop
    assert drop is not None and (drop["domain"], drop["task_type"], drop["metric"]) == OTHER


def test_side_by_side_shows_base_and_trained_answers_of_a_focus_cell(planted):
    [first, second] = side_by_side(planted, measure(planted))
    assert first["cell"] == "physics/methodology"
    assert first["base"] == "answer of base to pm0" and first["round 1"] == "answer of c1 to pm0"
    assert second["instruction"] == "instruction pm1"


def test_a_lake_without_a_feedback_round_says_what_is_missing(lake):
    with pytest.raises(ValueError, match="rounds 0 and 1"):
        measure(lake)


def test_eval_metrics_overall_pools_each_answer_once(planted):
    from nexa_assets.evaluate.summary import overall_by_model

    scores = planted.read("eval/scores")
    metrics = pl.DataFrame(
        [{"model_id": m, "model_label": f"{m} label", "truncation_rate": 0.0} for m in SCORES]
    )
    overall = {r["model_id"]: r for r in overall_by_model(scores, metrics).iter_rows(named=True)}
    assert overall["c1"]["answers"] == 12 and overall["c1"]["model_label"] == "c1 label"
    values = SCORES["c1"][FOCUS] + SCORES["c1"][OTHER]
    assert overall["c1"]["overall"] == pytest.approx(sum(values) / 12, abs=1e-3)
