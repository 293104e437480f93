"""Paired lifts between two checkpoints on the same eval prompts: hand-computed answers, per-answer pooling,
null and unmatched scores."""

from __future__ import annotations

import math

import polars as pl
import pytest

from nexa_resources.tables.eval import SCORE_SCHEMA
from nexa_assets.feedback.lift import (
    CHANGE_SCHEMA,
    Lift,
    cell_changes,
    format_change,
    lift_of,
    paired_lift,
    paired_scores,
)

HYP = ("physics", "hypothesis")
MET = ("biology", "methodology")


def scores(model: str, rows: list[tuple[str, tuple[str, str], str, int | None]]) -> pl.DataFrame:
    """eval/scores rows of `model` from (prompt_id, (domain, task_type), metric, score)."""
    return pl.DataFrame(
        [
            {
                "model_id": model, "prompt_id": p, "metric": m, "domain": cell[0], "task_type": cell[1],
                "judge_model": "j", "rubric_version": "v", "score": s, "rationale": None, "error": None,
                "truncated": False, "eval_set": "es",
            }
            for p, cell, m, s in rows
        ],
        schema=SCORE_SCHEMA,
    )


def test_paired_lift_by_hand():
    before = scores(
        "a",
        [
            ("p1", HYP, "clarity", 2), ("p1", HYP, "correctness", 3),
            ("p2", HYP, "clarity", 3), ("p2", HYP, "correctness", 3),
            ("p3", HYP, "clarity", 4), ("p3", HYP, "correctness", 2),
        ],
    )
    after = scores(
        "b",
        [
            ("p1", HYP, "clarity", 4), ("p1", HYP, "correctness", 4),  # +2, +1 → +1.5
            ("p2", HYP, "clarity", 3), ("p2", HYP, "correctness", 4),  # 0, +1 → +0.5
            ("p3", HYP, "clarity", 5), ("p3", HYP, "correctness", 3),  # +1, +1 → +1.0
        ],
    )
    lift = paired_lift(before, after)
    # per answer [1.5, 0.5, 1.0]: mean 1.0, sample sd 0.5, se 0.5/sqrt(3), t(0.975, 2) = 4.303
    half = 4.303 * 0.5 / math.sqrt(3)
    assert lift.n == 3 and lift.mean == pytest.approx(1.0)
    assert (lift.ci_low, lift.ci_high) == pytest.approx((1.0 - half, 1.0 + half))
    assert lift.ci_low < 0 and not lift.significant  # three answers: a +1 mean is still within noise
    assert str(lift) == f"+1.00 [{1.0 - half:+.2f}, {1.0 + half:+.2f}]"

    only_clarity = paired_lift(before, after, [(*HYP, "clarity")])
    assert only_clarity.n == 3 and only_clarity.mean == pytest.approx(1.0)  # [2, 0, 1]
    assert paired_lift(before, after, []) == Lift(None, 0, None, None)


def test_per_answer_pooling_is_wider_than_counting_each_metric_as_independent():
    # The three metrics of one answer move together (a better answer scores better on every metric).
    moves = {"p1": 1, "p2": 0, "p3": 2, "p4": 1, "p5": -1}
    metrics = ("clarity", "correctness", "specificity")
    before = scores("a", [(p, HYP, m, 3) for p in moves for m in metrics])
    after = scores("b", [(p, HYP, m, 3 + d) for p, d in moves.items() for m in metrics])
    pooled = paired_lift(before, after)
    naive = lift_of(paired_scores(before, after)["diff"].to_list())  # 15 "independent" differences
    assert pooled.n == 5 and naive.n == 15
    assert pooled.mean == pytest.approx(naive.mean) == pytest.approx(0.6)
    assert pooled.ci_high - pooled.ci_low > 2 * (naive.ci_high - naive.ci_low)
    assert naive.significant and not pooled.significant  # the naive count would call noise a lift


def test_null_scores_are_dropped_pairwise():
    before = scores(
        "a",
        [("p1", HYP, "clarity", 2), ("p1", HYP, "correctness", None), ("p2", HYP, "clarity", None),
         ("p3", HYP, "clarity", 3)],
    )
    after = scores(
        "b",
        [("p1", HYP, "clarity", 3), ("p1", HYP, "correctness", 5), ("p2", HYP, "clarity", 4),
         ("p3", HYP, "clarity", None)],
    )
    lift = paired_lift(before, after)
    # only p1/clarity has both scores: +1; a judge failure is never a 0
    assert lift == Lift(1.0, 1, None, None) and not lift.significant


def test_unmatched_prompts_and_metrics_are_dropped():
    before = scores("a", [("p1", HYP, "clarity", 2), ("p2", HYP, "clarity", 2), ("gone", HYP, "clarity", 1)])
    after = scores(
        "b",
        [("p1", HYP, "clarity", 3), ("p2", HYP, "clarity", 4), ("new", HYP, "clarity", 5),
         ("p1", HYP, "correctness", 5)],
    )
    pairs = paired_scores(before, after)
    assert sorted(pairs["prompt_id"]) == ["p1", "p2"] and set(pairs["metric"]) == {"clarity"}
    lift = paired_lift(before, after)
    assert lift.n == 2 and lift.mean == pytest.approx(1.5)
    assert (lift.ci_low, lift.ci_high) == pytest.approx((1.5 - 12.706 * 0.5, 1.5 + 12.706 * 0.5))


def test_cell_changes_per_cell_with_interval_and_n():
    before = scores(
        "a",
        [("h1", HYP, "clarity", 2), ("h2", HYP, "clarity", 3), ("h3", HYP, "clarity", 2), ("h4", HYP, "clarity", None),
         ("m1", MET, "clarity", 4), ("m2", MET, "clarity", 4)],
    )
    after = scores(
        "b",
        [("h1", HYP, "clarity", 3), ("h2", HYP, "clarity", 4), ("h3", HYP, "clarity", 4), ("h4", HYP, "clarity", 5),
         ("m1", MET, "clarity", 3)],
    )
    changes = cell_changes(before, after)
    assert changes.schema == pl.Schema(CHANGE_SCHEMA)
    hyp, met = (changes.filter(pl.col("domain") == d).row(0, named=True) for d in ("physics", "biology"))
    # hypothesis: pairs h1..h3 (h4 has no before score): 2→3, 3→4, 2→4; before 7/3, after 11/3
    assert hyp["n"] == 3 and hyp["before"] == pytest.approx(7 / 3) and hyp["after"] == pytest.approx(11 / 3)
    sd = math.sqrt(((1 - 4 / 3) ** 2 * 2 + (2 - 4 / 3) ** 2) / 2)
    half = 4.303 * sd / math.sqrt(3)
    assert hyp["change"] == pytest.approx(4 / 3)
    assert (hyp["ci_low"], hyp["ci_high"]) == pytest.approx((4 / 3 - half, 4 / 3 + half))
    # methodology: one pair (m2 has no after): a change, no interval
    assert met["n"] == 1 and met["change"] == -1.0 and met["ci_low"] is None and met["ci_high"] is None


def test_several_models_on_one_side_are_refused():
    two = scores("a", [("p1", HYP, "clarity", 2)]).vstack(scores("c", [("p1", HYP, "clarity", 4)]))
    with pytest.raises(ValueError, match="one model_id"):
        paired_lift(two, scores("b", [("p1", HYP, "clarity", 3)]))


def test_format_change():
    assert format_change(0.4213, 0.1, 0.74) == "+0.42 [+0.10, +0.74]"
    assert format_change(-0.5, -0.9, -0.1) == "-0.50 [-0.90, -0.10]"
    assert format_change(0.5, None, None) == "+0.50" and format_change(None, None, None) == "—"
