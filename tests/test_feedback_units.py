"""The loop's arithmetic: CI math, scoring, weak-cell selection, stop rules, request allocation, fulfilment."""

from __future__ import annotations

import math

import polars as pl
import pytest

from nexa_assets.evaluate.rubric import JudgeVerdict
from nexa_assets.evaluate.schema import METRIC_SCHEMA, PREDICTION_SCHEMA
from nexa_assets.evaluate.scoring import cell_metrics, score_rows
from nexa_assets.evaluate.stats import mean_ci, t_critical_95
from nexa_assets.feedback.requests import allocate, build_requests, top_hints
from nexa_assets.feedback.schema import REQUEST_SCHEMA
from nexa_assets.feedback.weakness import (
    ALL_CELLS_PASS,
    NO_IMPROVEMENT,
    ROUND_CAP,
    LoopRules,
    classify_cells,
    focus_cells,
    judge_round,
)
from nexa_assets.raw.feedback import fulfil_requests
from nexa_jobs.feedback_sensor import next_round_config

METRICS = ("correctness", "methodology", "specificity", "clarity", "hallucination_safety")

# ------------------------------------------------------------------------------------------ statistics


def test_mean_ci_matches_the_t_interval_by_hand():
    stats = mean_ci([1, 2, 3, 4, 5])
    # mean 3, sample sd sqrt(2.5), se sqrt(0.5), t(0.975, 4) = 2.776
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)
    assert stats.mean == 3 and stats.n == 5
    assert stats.std == pytest.approx(math.sqrt(2.5))
    assert (stats.ci_low, stats.ci_high) == pytest.approx((3 - half, 3 + half))


def test_mean_ci_clips_to_the_scale_and_handles_tiny_samples():
    assert mean_ci([]).mean is None and mean_ci([]).n == 0
    one = mean_ci([4])
    assert one.mean == 4 and one.std is None and (one.ci_low, one.ci_high) == (1, 5)
    flat = mean_ci([5, 5, 5])
    assert (flat.ci_low, flat.ci_high) == (5, 5)
    wide = mean_ci([1, 5])
    assert wide.ci_low == 1 and wide.ci_high == 5  # t(1) = 12.7: clipped, never outside 1–5


def test_t_critical_values_approach_the_normal():
    assert t_critical_95(1) == pytest.approx(12.706)
    assert t_critical_95(30) == pytest.approx(2.042)
    assert 1.96 < t_critical_95(120) < t_critical_95(60) < 2.042
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_critical_95(0)


# --------------------------------------------------------------------------------------------- scoring


def _predictions(rows: list[dict]) -> pl.DataFrame:
    base = {
        "model_id": "m", "model_kind": "checkpoint", "checkpoint_id": "m", "domain": "physics",
        "task_type": "hypothesis", "prediction": "answer", "finish_reason": "stop", "prompt_tokens": 1,
        "completion_tokens": 1, "latency_ms": 1.0, "cost_usd": 0.0, "error": None, "eval_set": "es",
    }
    return pl.DataFrame([{**base, **r} for r in rows], schema=PREDICTION_SCHEMA)


def test_judge_failures_are_counted_apart_never_averaged_in():
    preds = _predictions(
        [
            {"prompt_id": "a"},
            {"prompt_id": "b", "finish_reason": "length"},
            {"prompt_id": "c"},
            {"prompt_id": "d", "prediction": None, "error": "HTTP 500"},
        ]
    )
    verdicts = [
        JudgeVerdict({m: 4 for m in METRICS}, {"clarity": "shorter sentences"}, None),
        JudgeVerdict({m: 2 for m in METRICS}, {}, None),
        JudgeVerdict(None, {}, "judge_unparsable: no JSON object in the judge's answer"),
        None,
    ]
    scores = score_rows(preds, verdicts, metrics=METRICS, judge_model="j", rubric_version="v")
    assert scores.height == 4 * len(METRICS)
    failed = scores.filter(pl.col("score").is_null())
    assert set(failed["prompt_id"]) == {"c", "d"}
    assert failed.filter(pl.col("prompt_id") == "c")["error"][0].startswith("judge_unparsable")
    assert failed.filter(pl.col("prompt_id") == "d")["error"][0] == "prediction_failed: HTTP 500"
    assert scores.filter((pl.col("prompt_id") == "a") & (pl.col("metric") == "clarity"))["rationale"][0] == (
        "shorter sentences"
    )

    metrics = cell_metrics(scores, preds.select("model_id", "model_kind", "checkpoint_id").unique())
    assert metrics.schema == pl.Schema(METRIC_SCHEMA)
    assert metrics.height == len(METRICS)
    row = metrics.filter(pl.col("metric") == "clarity").row(0, named=True)
    assert row["mean"] == 3.0 and row["n"] == 2  # (4 + 2) / 2: the failures are not zeros
    assert row["judge_failures"] == 2
    assert row["truncation_rate"] == 0.25
    assert row["ci_low"] == 1 and row["ci_high"] == 5  # two scores 4 and 2: t(1) makes it the whole scale


# ------------------------------------------------------------------------------------ weak cells, stops


def _metrics(scores: dict[tuple[str, str, str], float | None], model: str = "ckpt") -> pl.DataFrame:
    rows = [
        {
            "model_id": model, "domain": d, "task_type": t, "metric": m, "model_kind": "checkpoint",
            "checkpoint_id": model, "mean": s, "n": 4 if s is not None else 0, "std": 0.5, "ci_low": s, "ci_high": s,
            "judge_failures": 0, "truncation_rate": 0.0, "judge_model": "j", "rubric_version": "v", "eval_set": "es",
        }
        for (d, t, m), s in scores.items()
    ]
    return pl.DataFrame(rows, schema=METRIC_SCHEMA)


def _with_round(cells: pl.DataFrame, round_: int) -> pl.DataFrame:
    return cells.with_columns(pl.lit(round_, dtype=pl.Int64).alias("round"))


def test_cells_below_their_threshold_are_weak_with_their_gap():
    rules = LoopRules(default_threshold=3.0, thresholds={"clarity": 4.5})
    cells = classify_cells(
        _metrics(
            {
                ("physics", "hypothesis", "correctness"): 2.5,
                ("physics", "hypothesis", "clarity"): 4.0,
                ("biology", "methodology", "correctness"): 3.0,
                ("biology", "methodology", "specificity"): None,
            }
        ).vstack(_metrics({("physics", "hypothesis", "correctness"): 1.0}, model="other")),
        "ckpt",
        rules,
    )
    by = {(r["domain"], r["metric"]): r for r in cells.iter_rows(named=True)}
    assert cells.height == 4  # the other model's cells are not this round's
    assert by[("physics", "correctness")]["status"] == "weak" and by[("physics", "correctness")]["gap"] == 0.5
    assert by[("physics", "clarity")]["status"] == "weak" and by[("physics", "clarity")]["threshold"] == 4.5
    assert by[("biology", "correctness")]["status"] == "pass" and by[("biology", "correctness")]["gap"] == 0
    assert by[("biology", "specificity")]["status"] == "weak" and by[("biology", "specificity")]["gap"] == 3.0
    assert focus_cells(cells.filter(pl.col("status") == "weak")) == ["biology/methodology", "physics/hypothesis"]


def test_stop_rules_every_cell_passes():
    rules = LoopRules(default_threshold=2.0)
    verdict = judge_round(classify_cells(_metrics({("physics", "hypothesis", "clarity"): 3.0}), "ckpt", rules), None, rules)
    assert verdict.stop_reason == ALL_CELLS_PASS and verdict.weak.is_empty()


def test_stop_rules_round_cap_and_no_improvement():
    rules = LoopRules(default_threshold=4.0, max_rounds=2, min_improvement=0.1)
    cell = ("physics", "hypothesis", "clarity")

    r0 = judge_round(classify_cells(_metrics({cell: 2.0}, "c0"), "c0", rules), None, rules)
    assert r0.stop_reason is None and r0.loop_round == 0

    r1 = judge_round(classify_cells(_metrics({cell: 2.5}, "c1"), "c1", rules), _with_round(r0.cells, 0), rules)
    assert r1.stop_reason is None and r1.loop_round == 1 and r1.improvement == pytest.approx(0.5)

    r2 = judge_round(classify_cells(_metrics({cell: 3.0}, "c2"), "c2", rules), _with_round(r1.cells, 1), rules)
    assert r2.stop_reason == ROUND_CAP and r2.loop_round == 2

    stalled = judge_round(classify_cells(_metrics({cell: 2.55}, "c2"), "c2", rules), _with_round(r1.cells, 1), rules)
    assert stalled.stop_reason == NO_IMPROVEMENT and stalled.improvement == pytest.approx(0.05)
    assert set(stalled.cells["stop_reason"]) == {NO_IMPROVEMENT}


def test_new_thresholds_start_a_new_loop():
    cell = ("physics", "hypothesis", "clarity")
    old = LoopRules(default_threshold=3.0, max_rounds=1)
    r0 = judge_round(classify_cells(_metrics({cell: 2.0}, "c"), "c", old), None, old)
    capped = judge_round(classify_cells(_metrics({cell: 2.5}, "c"), "c", old), _with_round(r0.cells, 0), old)
    assert capped.stop_reason == ROUND_CAP
    raised = LoopRules(default_threshold=4.0, max_rounds=1)
    assert raised.loop_id != old.loop_id
    again = judge_round(classify_cells(_metrics({cell: 2.5}, "c"), "c", raised), _with_round(r0.cells, 0), raised)
    assert again.stop_reason is None and again.loop_round == 0


# ------------------------------------------------------------------------------------------- requests


def test_allocation_is_proportional_to_the_gap_and_sums_to_the_budget():
    gaps = {("biology", "hypothesis"): 3.0, ("physics", "methodology"): 1.0, ("chemistry", "hypothesis"): 0.0}
    assert allocate(gaps, 8, min_per_cell=0) == {("biology", "hypothesis"): 6, ("physics", "methodology"): 2}
    assert allocate(gaps, 2, min_per_cell=1) == {("biology", "hypothesis"): 1, ("physics", "methodology"): 1}
    one = allocate(gaps, 1, min_per_cell=1)
    assert one == {("biology", "hypothesis"): 1, ("physics", "methodology"): 0}
    for budget in range(30):
        assert sum(allocate({("a", "x"): 0.7, ("b", "y"): 1.3, ("c", "z"): 2.9}, budget).values()) == budget
    assert allocate({}, 5) == {}
    with pytest.raises(ValueError):
        allocate(gaps, -1)


def test_requests_carry_the_judges_most_frequent_hints():
    assert top_hints(["a  b", "a b", "c", None, " "]) == ["a b", "c"]
    rules = LoopRules(default_threshold=4.0)
    cells = classify_cells(
        _metrics({("physics", "hypothesis", "clarity"): 2.0, ("physics", "hypothesis", "specificity"): 3.0}),
        "ckpt",
        rules,
    )
    scores = pl.DataFrame(
        {
            "domain": ["physics"] * 3,
            "task_type": ["hypothesis"] * 3,
            "metric": ["clarity", "clarity", "hallucination_safety"],
            "rationale": ["shorter sentences", "shorter sentences", "no citations"],
        }
    )
    requests = build_requests(cells.filter(pl.col("status") == "weak"), scores, budget=5, for_round=3)
    assert requests.schema == pl.Schema(REQUEST_SCHEMA)
    row = requests.row(0, named=True)
    assert row["n_prompts"] == 5 and row["for_round"] == 3 and row["status"] == "open"
    assert row["gap"] == pytest.approx(3.0) and row["metrics"] == ["clarity", "specificity"]
    assert row["hints"] == ["shorter sentences"]  # only the weak metrics' notes


def test_fulfilment_makes_new_train_prompts_once():
    request = pl.DataFrame(
        [
            {
                "domain": "physics", "task_type": "methodology", "for_round": 1, "n_prompts": 3, "gap": 2.0,
                "metrics": ["clarity"], "hints": ["state the control explicitly"], "status": "open",
                "fulfilled_by": None, "prompt_ids": [],
            }
        ],
        schema=REQUEST_SCHEMA,
    )
    first = fulfil_requests(request, {}, run_id="r1")
    prompts = first.prompts
    assert prompts.height == 3
    assert set(prompts["origin"]) == {"feedback"} and set(prompts["split"]) == {"train"}
    assert all("state the control explicitly" in text for text in prompts["instruction"])
    assert first.requests["status"].to_list() == ["done"] and first.requests["fulfilled_by"][0] == "r1"
    assert sorted(first.requests["prompt_ids"][0]) == sorted(prompts["prompt_id"])

    # A run that wrote the prompts but died before marking the request done: the re-run adds none.
    existing = dict(zip(prompts["prompt_id"], prompts["locator"]))
    again = fulfil_requests(request, existing, run_id="r2")
    assert again.prompts.height == 0 and sorted(again.requests["prompt_ids"][0]) == sorted(prompts["prompt_id"])

    # Earlier prompts of the same cell that the generator could repeat are skipped, not duplicated.
    later = request.with_columns(pl.lit(2, dtype=pl.Int64).alias("for_round"))
    other = fulfil_requests(later, existing, run_id="r3")
    assert other.prompts.height == 3 and not set(other.prompts["prompt_id"]) & set(existing)


def test_the_next_round_inherits_the_judging_runs_settings():
    base = {
        "ops": {
            "distill__completions": {"config": {"per_cell": 2, "round": 0}},
            "raw_prompts": {"config": {"files": ["a.jsonl"], "generated_per_cell": 1}},
            "not_an_op": {"config": {"x": 1}},
        },
        "resources": {"lake": {"config": {"root": "/elsewhere"}}},
    }
    config = next_round_config(base, 2)
    ops = config["ops"]
    assert set(config) == {"ops"} and "not_an_op" not in ops
    assert ops["distill__completions"]["config"] == {"per_cell": 2, "round": 2}
    assert ops["raw_prompts"]["config"] == {"generated_per_cell": 1, "round": 2}  # files belong to one run
    assert ops["feedback_loop"]["config"]["round"] == 2 and ops["eval__metrics"]["config"]["round"] == 2


def test_new_files_run_with_the_loops_last_settings():
    from nexa_jobs.arrival import Batch, run_request
    from nexa_jobs.feedback_sensor import inherited_config

    last = {
        "ops": {
            "distill__completions": {"config": {"per_cell": 2, "round": 3}},
            "raw_prompts": {"config": {"files": ["old.jsonl"], "generated_per_cell": 0}},
            "eval__predictions": {"config": {"checkpoint_id": "pinned", "max_tokens": 64}},
        }
    }
    settings = inherited_config(last)
    request = run_request(Batch(files=("new.jsonl",), hashes=("h",)), 1, 1, settings)
    ops = request.run_config["ops"]
    assert ops["distill__completions"]["config"] == {"per_cell": 2}  # round: the run resolves its own
    assert ops["raw_prompts"]["config"] == {"generated_per_cell": 0, "files": ["new.jsonl"]}
    assert ops["eval__predictions"]["config"] == {"max_tokens": 64}
    assert last["ops"]["raw_prompts"]["config"]["files"] == ["old.jsonl"]  # the source is not modified


def test_teacher_defaults_do_not_depend_on_who_builds_the_resource(monkeypatch):
    """The demo, the CLI and make up's daemon must compute the same request ids for the same prompt."""
    from nexa_resources.teacher import TeacherResource

    for var in ("NEXA_TEACHER_BASE_URL", "NEXA_TEACHER_MODEL", "NEXA_TEACHER_MAX_TOKENS", "NEXA_TEACHER_MAX_CONCURRENCY"):
        monkeypatch.delenv(var, raising=False)
    local = TeacherResource.from_env()
    assert local.sampling().max_tokens == 256 and local.concurrency == 8
    remote = TeacherResource(base_url="http://127.0.0.1:9/v1", model="m")
    assert remote.sampling().max_tokens == 384 and remote.concurrency == 16
    assert TeacherResource(max_tokens=100).sampling().max_tokens == 100
