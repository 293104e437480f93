"""A loop that spends by evidence, as plain functions: each round's measured $ from the cost columns, the next
round's estimate, and the money rules (budget_exhausted, low_gain_per_dollar) on planted rounds."""

from __future__ import annotations

import json

import polars as pl
import pytest

from nexa_assets.feedback.spend import (
    Cost,
    CostTables,
    Estimate,
    estimate_made_for,
    estimate_next,
    ledger_row,
    ledger_view,
    measured,
    round_costs,
    spent,
    usd_tag,
)
from nexa_assets.feedback.weakness import (
    BUDGET_EXHAUSTED,
    IMPROVEMENT_RULE,
    LOW_GAIN_PER_DOLLAR,
    NO_IMPROVEMENT,
    STOP_ORDER,
    LoopRules,
    gain_per_usd,
    spending_stop,
)
from nexa_resources.tables.feedback import STOP_REASONS
from nexa_core.text import content_hash

LLM_JUDGE = "gpt-4.1-mini"


def _completions(round_: int, prompts: int, usd_per_request: float | None, samples: int = 2) -> list[dict]:
    """`samples` teacher requests for each of `prompts` new prompts of a round."""
    return [
        {"round": round_, "prompt_id": f"p{round_}-{i}", "request_id": f"r{round_}-{i}-{s}", "cost_usd": usd_per_request}
        for i in range(prompts)
        for s in range(samples)
    ]


def _pairs(round_: int, prompts: int, usd: float | None, judge: str = LLM_JUDGE) -> list[dict]:
    return [
        {"round": round_, "prompt_id": f"p{round_}-{i}", "judge_model": judge, "judge_prompt_tokens": 100,
         "judge_completion_tokens": 20, "judge_cost_usd": usd}
        for i in range(prompts)
    ]


def _scores(round_: int, model: str, answers: int, usd_per_answer: float | None) -> list[dict]:
    """One verdict per answer split over two metric rows, as eval/scores stores it."""
    return [
        {"round": round_, "model_id": model, "prompt_id": f"e{i}", "metric": m, "judge_model": LLM_JUDGE,
         "judge_prompt_tokens": 50, "judge_completion_tokens": 10,
         "judge_cost_usd": None if usd_per_answer is None else usd_per_answer / 2, "error": None}
        for i in range(answers)
        for m in ("clarity", "correctness")
    ]


def _tables(
    completions: list[dict], pairs: list[dict], scores: list[dict], predictions: list[dict], checkpoints: list[dict]
) -> CostTables:
    def frame(rows: list[dict]) -> pl.DataFrame:
        return pl.DataFrame(rows, infer_schema_length=None) if rows else pl.DataFrame()

    return CostTables(frame(completions), frame(pairs), frame(scores), frame(predictions), frame(checkpoints))


def _two_rounds(judge_usd: float | None = 0.002, teacher_usd: float | None = 0.01) -> CostTables:
    """Round 0: 4 seed prompts (2 requests each at $0.01), judged at $0.002 a pair, checkpoint c0 trained for $1
    and evaluated on 8 prompts ($0.001 a verdict), the base model evaluated too ($0.001 a verdict, answers $0.005
    each from a priced teacher reference). Round 1: 6 bought prompts, checkpoint c1 for $1.50."""
    return _tables(
        completions=_completions(0, 4, teacher_usd) + _completions(1, 6, 0.01),
        pairs=_pairs(0, 4, judge_usd) + _pairs(1, 6, 0.002),
        scores=_scores(0, "c0", 8, 0.001) + _scores(0, "base", 8, 0.001) + _scores(1, "c1", 8, 0.001),
        predictions=[{"round": 0, "model_id": "c0", "cost_usd": 0.0}] * 8
        + [{"round": 0, "model_id": "teacher", "cost_usd": 0.005}] * 8
        + [{"round": 1, "model_id": "c1", "cost_usd": 0.0}] * 8,
        checkpoints=[{"round": 0, "checkpoint_id": "c0", "cost_usd": 1.0},
                     {"round": 1, "checkpoint_id": "c1", "cost_usd": 1.5}],
    )


# --------------------------------------------------------------------------------------------- measured


def test_each_round_costs_the_sum_of_its_rows_by_part():
    costs = round_costs(_two_rounds())
    r0, r1 = measured(costs, 0), measured(costs, 1)
    assert r0.teacher_usd == pytest.approx(4 * 2 * 0.01)
    assert r0.judge_usd == pytest.approx(4 * 0.002 + 16 * 0.001)  # pairs + both evaluated models' verdicts
    assert r0.gpu_usd == 1.0 and r0.eval_usd == pytest.approx(8 * 0.005)
    assert r0.total_usd == pytest.approx(0.08 + 0.024 + 1.0 + 0.04) and not r0.unknown
    assert r1.total_usd == pytest.approx(0.12 + 0.012 + 0.008 + 1.5)
    assert costs.filter(pl.col("round") == 1)["prompts"].to_list() == [6]
    assert spent(costs, 0, 1) == pytest.approx(r0.total_usd + r1.total_usd)
    assert measured(costs, 7) == Cost()  # a round with no rows bought nothing


def test_an_unknown_price_stays_unknown_never_zero():
    costs = round_costs(_two_rounds(judge_usd=None))
    r0 = measured(costs, 0)
    assert r0.judge_usd is None and r0.total_usd is None and r0.unknown == ("judge",)
    assert r0.teacher_usd == pytest.approx(0.08)  # the other parts are still known
    assert spent(costs, 0, 1) is None and spent(costs, 1, 1) is not None
    assert usd_tag(None) == "unknown" and usd_tag(0.0) == "0.000000" and usd_tag(1.234567891) == "1.234568"
    # A table without a cost column (a planted or older table) cannot say what it cost either.
    no_column = _two_rounds()
    no_column = CostTables(no_column.completions, no_column.pairs, no_column.scores, no_column.predictions,
                           no_column.checkpoints.drop("cost_usd"))
    assert measured(round_costs(no_column), 0).unknown == ("gpu",)


def test_the_structural_judge_and_local_runs_cost_zero():
    free = _tables(
        _completions(0, 3, 0.0), _pairs(0, 3, None, judge="structural-v2"), [], [],
        [{"round": 0, "checkpoint_id": "c0", "cost_usd": 0.0}],
    )
    cost = measured(round_costs(free), 0)
    assert cost == Cost(0.0, 0.0, 0.0, 0.0) and cost.total_usd == 0.0


# --------------------------------------------------------------------------------------------- estimate


def test_the_next_round_is_estimated_from_the_last_rounds_unit_costs():
    tables = _two_rounds()
    costs = round_costs(tables)
    estimate = estimate_next(tables, costs, 1, "c1", prompts=12)
    assert estimate.prompts == 12
    assert estimate.cost.teacher_usd == pytest.approx(12 * 2 * 0.01)  # round 1's $0.02 per prompt
    # Distill judge per prompt, plus evaluating c1 again (8 verdicts); the base model's are not repeated.
    assert estimate.cost.judge_usd == pytest.approx(12 * 0.002 + 8 * 0.001)
    # Training replays every row: c1's $1.50 × (10 prompts so far + 12) / 10.
    assert estimate.cost.gpu_usd == pytest.approx(1.5 * 22 / 10)
    assert estimate.cost.eval_usd == 0.0  # the checkpoint is served locally; references are answered once
    assert estimate.total_usd == pytest.approx(0.24 + 0.032 + 3.3)
    assert "round 1 per prompt" in estimate.basis and "× 12" in estimate.basis


def test_a_round_that_answered_no_prompt_is_estimated_from_the_newest_that_did():
    tables = _two_rounds()
    rejudged = CostTables(tables.completions.filter(pl.col("round") == 0), tables.pairs.filter(pl.col("round") == 0),
                          tables.scores, tables.predictions, tables.checkpoints)
    estimate = estimate_next(rejudged, round_costs(rejudged), 1, "c1", prompts=4)
    assert estimate.cost.teacher_usd == pytest.approx(4 * 0.02) and "round 0 per prompt" in estimate.basis


def test_an_estimate_with_an_unknown_price_or_no_evidence_is_unknown():
    tables = _two_rounds(teacher_usd=None)
    assert estimate_next(tables, round_costs(tables), 0, "c0", 8).cost.unknown == ("teacher",)
    nothing = _tables([], [], _scores(0, "c0", 4, 0.0), [], [{"round": 0, "checkpoint_id": "c0", "cost_usd": 0.0}])
    estimate = estimate_next(nothing, round_costs(nothing), 0, "c0", 8)
    assert estimate.total_usd is None and estimate.cost.unknown == ("teacher", "judge")
    assert "no round has answered a prompt yet" in estimate.basis


# ------------------------------------------------------------------------------------------ money rules


def _stop(rules: LoopRules, **kwargs) -> tuple[str, str] | None:
    values = {"loop_round": 1, "lift": 0.5, "round_usd": 2.0, "spent_usd": 3.0, "next_usd": 1.0} | kwargs
    return spending_stop(rules, **values)


def test_budget_exhausted_when_the_next_rounds_estimate_would_pass_the_budget():
    # Planted: round 0 cost $1.14, round 1 $1.64; the next round is estimated at $3.57.
    tables = _two_rounds()
    costs = round_costs(tables)
    so_far = spent(costs, 0, 1)
    next_usd = estimate_next(tables, costs, 1, "c1", prompts=12).total_usd
    assert so_far is not None and next_usd is not None
    tight = LoopRules(budget_usd=so_far + next_usd - 0.01)
    reason, why = _stop(tight, spent_usd=so_far, next_usd=next_usd)
    assert reason == BUDGET_EXHAUSTED
    assert f"spent ${so_far:,.4f} of ${tight.budget_usd:,.2f}" in why and f"${next_usd:,.4f}" in why
    assert _stop(LoopRules(budget_usd=so_far + next_usd), spent_usd=so_far, next_usd=next_usd) is None  # fits exactly
    assert _stop(LoopRules(), spent_usd=so_far, next_usd=next_usd) is None  # no budget (the default)
    # Round 0 of a loop is counted too: a budget it already spent stops the loop before any feedback round.
    assert _stop(LoopRules(budget_usd=1.0), loop_round=0, spent_usd=1.14, next_usd=0.0)[0] == BUDGET_EXHAUSTED


def test_with_a_budget_an_unknown_price_stops_the_loop_and_says_which():
    rules = LoopRules(budget_usd=100.0)
    reason, why = _stop(rules, next_usd=None, next_unknown=("judge",))
    assert reason == BUDGET_EXHAUSTED and "next round's estimate is unknown (judge" in why and "`prices`" in why
    reason, why = _stop(rules, spent_usd=None, round_unknown=("teacher",))
    assert reason == BUDGET_EXHAUSTED and "spend so far is unknown (teacher" in why
    assert _stop(LoopRules(), spent_usd=None, next_usd=None) is None  # no budget: unknown is recorded, not a stop


def test_low_gain_per_dollar_when_the_last_rounds_lift_per_dollar_is_below_the_floor():
    # Planted: the focus cells rose +0.50 for the round's $2.00: 0.25 points per $.
    assert gain_per_usd(0.5, 2.0) == 0.25
    reason, why = _stop(LoopRules(min_gain_per_usd=0.3))
    assert reason == LOW_GAIN_PER_DOLLAR and "+0.500 for $2.0000 = 0.25 points/$, below the floor 0.3" in why
    assert _stop(LoopRules(min_gain_per_usd=0.25)) is None  # at the floor goes on
    assert _stop(LoopRules(min_gain_per_usd=0.3), loop_round=0) is None  # a new loop: no lift of its own yet
    assert _stop(LoopRules(min_gain_per_usd=0.3), lift=None) is None  # nothing paired: no evidence either way
    reason, why = _stop(LoopRules(min_gain_per_usd=0.3), round_usd=None, round_unknown=("gpu",))
    assert reason == LOW_GAIN_PER_DOLLAR and "this round's $ is unknown (gpu" in why


def test_the_floor_is_checked_before_the_budget():
    both = LoopRules(budget_usd=1.0, min_gain_per_usd=10.0)
    assert _stop(both)[0] == LOW_GAIN_PER_DOLLAR
    assert STOP_ORDER.index(NO_IMPROVEMENT) < STOP_ORDER.index(LOW_GAIN_PER_DOLLAR) < STOP_ORDER.index(BUDGET_EXHAUSTED)
    assert set(STOP_ORDER) == set(STOP_REASONS)


def test_a_free_loop_never_stops_for_money():
    strict = LoopRules(budget_usd=0.0, min_gain_per_usd=1000.0)
    assert gain_per_usd(0.01, 0.0) is None
    assert _stop(strict, lift=0.01, round_usd=0.0, spent_usd=0.0, next_usd=0.0) is None
    assert _stop(strict, lift=-0.2, round_usd=0.0, spent_usd=0.0, next_usd=0.0) is None


def test_money_rules_join_the_loop_id_only_when_set():
    old_spec = {"default_threshold": 3.5, "thresholds": {}, "max_rounds": 3, "min_improvement": 0.0,
                "improvement_rule": IMPROVEMENT_RULE}
    assert LoopRules().loop_id == "loop-" + content_hash(json.dumps(old_spec, sort_keys=True))[:10]
    ids = {LoopRules().loop_id, LoopRules(budget_usd=5.0).loop_id, LoopRules(budget_usd=6.0).loop_id,
           LoopRules(min_gain_per_usd=0.1).loop_id}
    assert len(ids) == 4


# ------------------------------------------------------------------------------------------------ ledger


def test_the_ledger_keeps_the_estimate_made_before_beside_the_measured_after():
    estimate = Estimate(Cost(0.24, 0.032, 3.3, 0.0), 12, "round 1 per prompt")
    row0 = ledger_row(loop_id="loop-a", loop_round=0, checkpoint_id="c0", cost=Cost(0.08, 0.024, 1.0, None),
                      estimated=None, spent_usd=None, budget_usd=None, focus_lift=None, gain_per_usd=None,
                      min_gain_per_usd=None, next_round=estimate, stop_reason=None, stop_detail=None)
    ledger = row0.with_columns(pl.lit(0, dtype=pl.Int64).alias("round"))
    assert estimate_made_for(ledger, 0) is None
    before, basis = estimate_made_for(ledger, 1)
    assert before == estimate.cost and basis == "round 1 per prompt"
    row1 = ledger_row(loop_id="loop-a", loop_round=1, checkpoint_id="c1", cost=Cost(0.2, 0.03, 3.0, 0.0),
                      estimated=(before, basis), spent_usd=None, budget_usd=5.0, focus_lift=0.4, gain_per_usd=0.4 / 3.23,
                      min_gain_per_usd=None, next_round=None, stop_reason=BUDGET_EXHAUSTED, stop_detail="spent …")
    assert row1["estimated_usd"][0] == pytest.approx(3.572) and row1["total_usd"][0] == pytest.approx(3.23)
    view = ledger_view(pl.concat([ledger, row1.with_columns(pl.lit(1, dtype=pl.Int64).alias("round"))]))
    first, second = view.iter_rows(named=True)
    assert first["estimated"] == "—" and first["measured"] == "unknown" and first["eval"] == "unknown"
    assert first["next_estimate"] == "$3.572000" and first["budget"] == "none" and first["stop_reason"] == "—"
    assert second["estimated"] == "$3.572000" and second["measured"] == "$3.230000"
    assert second["next_estimate"] == "—" and second["budget"] == "$5.000000" and second["focus_lift"] == "+0.400"
    assert second["stop_reason"] == BUDGET_EXHAUSTED

