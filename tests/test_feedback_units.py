"""The loop's arithmetic: CI math, scoring, weak-cell selection, stop rules, request allocation, fulfilment."""

from __future__ import annotations

import math

import polars as pl
import pytest

from nexa_core.rubric import JudgeVerdict
from nexa_resources.tables.eval import METRIC_SCHEMA, PREDICTION_SCHEMA, SCORE_SCHEMA
from nexa_assets.evaluate.scoring import cell_metrics, score_rows
from nexa_assets.evaluate.stats import mean_ci, t_critical_95
from nexa_assets.feedback.requests import allocate, build_requests, top_hints
from nexa_resources.tables.feedback import REQUEST_SCHEMA
from nexa_assets.feedback.weakness import (
    ALL_CELLS_PASS,
    NO_IMPROVEMENT,
    ROUND_CAP,
    LoopRules,
    RoundVerdict,
    classify_cells,
    focus_cells,
    judge_round,
    largest_other_drop,
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


def _planted(model: str, per_prompt: dict[tuple[str, str, str], list[int | None]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """eval/metrics and eval/scores rows of `model` from per-prompt scores of each cell: the i-th score of every
    metric of one (domain, task_type) belongs to the same prompt (answer) `<domain>-<task_type>-<i>`."""
    scores = pl.DataFrame(
        [
            {
                "model_id": model, "prompt_id": f"{d}-{t}-{i}", "metric": m, "domain": d, "task_type": t,
                "judge_model": "j", "rubric_version": "v", "score": s, "rationale": None, "error": None,
                "truncated": False, "eval_set": "es",
            }
            for (d, t, m), values in per_prompt.items()
            for i, s in enumerate(values)
        ],
        schema=SCORE_SCHEMA,
    )
    rows = []
    for (d, t, m), values in per_prompt.items():
        stats = mean_ci([v for v in values if v is not None])
        rows.append(
            {
                "model_id": model, "domain": d, "task_type": t, "metric": m, "model_kind": "checkpoint",
                "checkpoint_id": model, "mean": stats.mean, "n": stats.n, "std": stats.std, "ci_low": stats.ci_low,
                "ci_high": stats.ci_high, "judge_failures": 0, "truncation_rate": 0.0, "judge_model": "j",
                "rubric_version": "v", "eval_set": "es",
            }
        )
    return pl.DataFrame(rows, schema=METRIC_SCHEMA), scores


def _judge(
    rules: LoopRules,
    model: str,
    per_prompt: dict[tuple[str, str, str], list[int | None]],
    previous: RoundVerdict | None = None,
    round_: int = 0,
    before: pl.DataFrame | None = None,
) -> tuple[RoundVerdict, pl.DataFrame]:
    """Classify and judge one planted round against `previous` (round `round_` - 1, scores `before`)."""
    metrics, scores = _planted(model, per_prompt)
    prev = _with_round(previous.cells, round_ - 1) if previous is not None else None
    verdict = judge_round(classify_cells(metrics, model, rules), prev, rules, before, scores if before is not None else None)
    return verdict, scores


FOCUS = ("physics", "hypothesis", "clarity")
OTHER = ("biology", "methodology", "correctness")
# 12 prompts per cell, as in the eval set: round 0 is weak in FOCUS and passes in OTHER.
R0 = {FOCUS: [2, 3, 2, 2, 3, 2, 2, 3, 2, 2, 3, 2], OTHER: [4, 4, 5, 4, 4, 4, 5, 4, 4, 4, 5, 4]}


def test_a_clear_focus_lift_continues_until_the_round_cap():
    rules = LoopRules(default_threshold=4.0, thresholds={"clarity": 4.8}, max_rounds=2)
    r0, s0 = _judge(rules, "c0", R0)
    assert r0.stop_reason is None and r0.loop_round == 0 and r0.focus_lift is None and r0.improved is None
    assert r0.cells["change"].is_null().all() and not r0.cells["focus"].any()

    # Every answer rose by 1 or 2: the interval lies well above 0.
    up = [a + d for a, d in zip(R0[FOCUS], [1, 1, 2, 1, 1, 1, 2, 1, 1, 1, 1, 1], strict=True)]
    r1, s1 = _judge(rules, "c1", {FOCUS: up, OTHER: R0[OTHER]}, r0, 1, s0)
    assert r1.stop_reason is None and r1.loop_round == 1
    assert r1.improved is True and r1.focus_lift.n == 12 and r1.focus_lift.mean == pytest.approx(14 / 12)
    assert r1.focus_lift.ci_low > 0 and r1.focus_lift.significant
    focus_row = r1.cells.filter(pl.col("metric") == "clarity").row(0, named=True)
    assert focus_row["focus"] and focus_row["change"] == pytest.approx(14 / 12) and focus_row["change_n"] == 12
    assert focus_row["focus_lift"] == pytest.approx(14 / 12) and focus_row["improved"] is True
    assert r1.largest_other_drop is None  # OTHER did not move

    r2, _ = _judge(rules, "c2", {FOCUS: [min(5, v + 1) for v in up], OTHER: R0[OTHER]}, r1, 2, s1)
    assert r2.stop_reason == ROUND_CAP and r2.loop_round == 2 and r2.improved is True


def test_a_focus_lift_within_noise_stops_although_its_mean_rose_by_more_than_005():
    rules = LoopRules(default_threshold=4.0, max_rounds=3)
    r0, s0 = _judge(rules, "c0", R0)
    # The mean rises by 4/12 = 0.33 (the old rule, > 0.05, went on), but the answers moved both ways.
    noisy = [a + d for a, d in zip(R0[FOCUS], [2, -1, 1, 1, -1, 2, 0, -1, 2, 1, -1, -1], strict=True)]
    stalled, _ = _judge(rules, "c1", {FOCUS: noisy, OTHER: R0[OTHER]}, r0, 1, s0)
    lift = stalled.focus_lift
    assert lift.mean == pytest.approx(4 / 12) and lift.mean > 0.05
    assert lift.ci_low < 0 < lift.ci_high and not lift.significant
    assert stalled.improved is False and stalled.stop_reason == NO_IMPROVEMENT
    assert set(stalled.cells["stop_reason"]) == {NO_IMPROVEMENT} and set(stalled.cells["improved"]) == {False}


def test_min_improvement_is_a_floor_on_a_significant_lift():
    r0_rules = LoopRules(default_threshold=4.0, min_improvement=1.5)
    r0, s0 = _judge(r0_rules, "c0", R0)
    up = [a + 1 for a in R0[FOCUS]]  # +1 on every answer: significant, but below the 1.5 floor
    r1, _ = _judge(r0_rules, "c1", {FOCUS: up, OTHER: R0[OTHER]}, r0, 1, s0)
    assert r1.focus_lift.significant and r1.improved is False and r1.stop_reason == NO_IMPROVEMENT


def test_nothing_to_pair_never_stops_for_no_improvement():
    rules = LoopRules(default_threshold=4.0)
    r0, s0 = _judge(rules, "c0", R0)
    elsewhere = s0.head(0)  # the previous checkpoint has no scores on this eval set
    r1, _ = _judge(rules, "c1", R0, r0, 1, elsewhere)
    assert r1.focus_lift is not None and r1.focus_lift.n == 0 and r1.improved is None
    assert r1.stop_reason is None and r1.cells["change"].is_null().all()
    # Without scores at all (None) the same: no pairing, no verdict on improvement.
    r1b, _ = _judge(rules, "c1", R0, r0, 1, None)
    assert r1b.focus_lift is None and r1b.improved is None and r1b.stop_reason is None


def test_largest_other_drop_names_the_non_focus_cell_that_fell_most():
    rules = LoopRules(default_threshold=3.5)
    third = ("biology", "methodology", "clarity")
    start = {**R0, third: [4] * 12}
    r0, s0 = _judge(rules, "c0", start)
    after = {
        FOCUS: [a + 1 for a in R0[FOCUS]],
        OTHER: [v - 1 for v in R0[OTHER]],  # -1 on every answer
        third: [4] * 11 + [3],  # -1/12
    }
    r1, _ = _judge(rules, "c1", after, r0, 1, s0)
    drop = r1.largest_other_drop
    assert drop["cell"] == "biology/methodology/correctness" and drop["change"] == pytest.approx(-1.0)
    assert drop["n"] == 12 and drop["ci_low"] == pytest.approx(-1.0) and drop["ci_high"] == pytest.approx(-1.0)
    assert largest_other_drop(r1.cells) == drop
    by = {r["metric"] + r["domain"]: r for r in r1.cells.iter_rows(named=True)}
    assert by["clarityphysics"]["focus"] and not by["correctnessbiology"]["focus"]
    assert by["claritybiology"]["change"] == pytest.approx(-1 / 12)
    assert by["claritybiology"]["change_ci_low"] < 0 < by["claritybiology"]["change_ci_high"]


def test_clearly_weak_only_when_the_whole_interval_is_below_the_threshold():
    rules = LoopRules(default_threshold=3.5)
    metrics, _ = _planted(
        "c",
        {
            ("physics", "hypothesis", "clarity"): [2, 2, 3, 2, 2, 3, 2, 2, 2, 3, 2, 2],  # far below: clearly weak
            ("physics", "hypothesis", "correctness"): [1, 5, 2, 5, 3, 4, 1, 5, 4, 3, 5, 2],  # mean 3.33: weak, noisy
            ("physics", "hypothesis", "specificity"): [None] * 12,  # unscored: weak, not clearly
        },
    )
    cells = classify_cells(metrics, "c", rules)
    by = {r["metric"]: r for r in cells.iter_rows(named=True)}
    assert by["clarity"]["status"] == "weak" and by["clarity"]["clearly_weak"] is True
    assert by["correctness"]["status"] == "weak" and by["correctness"]["clearly_weak"] is False
    assert by["correctness"]["ci_high"] > 3.5 > by["correctness"]["score"]
    assert by["specificity"]["status"] == "weak" and by["specificity"]["clearly_weak"] is False


def test_loop_report_shows_the_lift_with_its_interval(lake):
    from nexa_jobs.loop_report import cell_scores_by_round, rounds_summary
    from nexa_resources.lake import Lineage

    rules = LoopRules(default_threshold=4.0)
    r0, s0 = _judge(rules, "c0", R0)
    noisy = [a + d for a, d in zip(R0[FOCUS], [2, -1, 1, 1, -1, 2, 0, -1, 2, 1, -1, -1], strict=True)]
    r1, _ = _judge(rules, "c1", {FOCUS: noisy, OTHER: [v - 1 for v in R0[OTHER]]}, r0, 1, s0)
    for round_, verdict in enumerate((r0, r1)):
        lake.write("feedback/weaknesses", verdict.cells, mode="merge", lineage=Lineage(run_id=f"r{round_}", round=round_))

    summary = rounds_summary(lake)
    assert summary["round"].to_list() == [0, 1]
    first, second = summary.iter_rows(named=True)
    assert first["focus_lift"] == "—" and first["improved"] is None and first["largest_other_drop"] == "—"
    lift = r1.focus_lift
    assert second["focus_lift"] == f"+0.33 [{lift.ci_low:+.2f}, {lift.ci_high:+.2f}]" and second["improved"] is False
    assert second["largest_other_drop"] == "-1.00 [-1.00, -1.00] biology/methodology/correctness"
    assert second["stop_reason"] == NO_IMPROVEMENT and second["clearly_weak"] == 2

    cells = cell_scores_by_round(lake)
    assert cells.columns == ["domain", "task_type", "metric", "n", "round 0", "round 1"]
    focus = cells.filter(pl.col("metric") == "clarity").row(0, named=True)
    half = (lift.ci_high - lift.ci_low) / 2
    assert focus["n"] == 12 and focus["round 0"] == "2.33**"
    assert focus["round 1"] == f"2.67** (+0.33±{half:.2f})"


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
    assert local.sampling().max_tokens == 256 and local.concurrency == 128 and local.samples == 4
    remote = TeacherResource(base_url="http://127.0.0.1:9/v1", model="m")
    assert remote.sampling().max_tokens == 384 and remote.concurrency == 16
    assert TeacherResource(max_tokens=100).sampling().max_tokens == 100
