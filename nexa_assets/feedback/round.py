"""One feedback round judged: the newest checkpoint's weak cells, the stop rules, the prompts to buy, and the $."""

from __future__ import annotations

from dataclasses import dataclass, replace

import polars as pl

from nexa_assets.feedback.lift import Lift
from nexa_assets.feedback.requests import build_requests
from nexa_assets.feedback import spend
from nexa_assets.feedback.spend import Cost, Estimate
from nexa_assets.feedback.weakness import (
    LoopRules,
    RoundVerdict,
    classify_cells,
    focus_cells,
    gain_per_usd,
    judge_round,
    spending_stop,
    target,
)
from nexa_resources.lake import LakeResource


class RoundError(ValueError):
    """The round cannot be judged (no eval/metrics rows for its checkpoint)."""


@dataclass(frozen=True)
class Buying:
    """How many prompts a round buys, over how many focus cells, with how many for every weak cell first."""

    prompts_per_round: int
    max_focus_cells: int
    min_per_cell: int


@dataclass(frozen=True)
class Round:
    """A judged round: its verdict and cells, what it cost, and what (if anything) the next round buys."""

    round: int
    rules: LoopRules
    model_id: str
    metrics: pl.DataFrame  # eval/metrics rows of `model_id` by this judge
    cells: pl.DataFrame  # every cell as classified, before the round was paired with the previous one
    weak: pl.DataFrame  # the weak cells of the verdict
    verdict: RoundVerdict
    cost: Cost
    spent_usd: float | None
    gain: float | None
    focus: list[str]
    requests: pl.DataFrame | None
    next_round: Estimate | None
    stop_detail: str | None

    @property
    def lift(self) -> Lift | None:
        return self.verdict.focus_lift

    @property
    def stop(self) -> str | None:
        return self.verdict.stop_reason

    def ledger_row(self, ledger: pl.DataFrame) -> pl.DataFrame:
        """This round's feedback/rounds row; `ledger` holds the estimate made for it the round before."""
        return spend.ledger_row(
            loop_id=self.rules.loop_id,
            loop_round=self.verdict.loop_round,
            checkpoint_id=self.model_id,
            cost=self.cost,
            estimated=spend.estimate_made_for(ledger, self.round),
            spent_usd=self.spent_usd,
            budget_usd=self.rules.budget_usd,
            focus_lift=self.lift.mean if self.lift is not None else None,
            gain_per_usd=self.gain,
            min_gain_per_usd=self.rules.min_gain_per_usd,
            next_round=self.next_round,
            stop_reason=self.stop,
            stop_detail=self.stop_detail,
        )


def _paired(
    lake: LakeResource, judge_model: str, model_id: str, metrics: pl.DataFrame, previous: pl.DataFrame | None
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame | None]:
    """(this checkpoint's scores, the previous round's checkpoint's and this one's on the judge, rubric and eval
    set that this round's eval/metrics rows come from; None without a previous round)."""
    judged = lake.read("eval/scores").filter(pl.col("judge_model") == judge_model)
    scores = judged.filter(pl.col("model_id") == model_id)
    comparable = judged.filter(
        (pl.col("rubric_version") == metrics["rubric_version"][0]) & (pl.col("eval_set") == metrics["eval_set"][0])
    )
    if previous is None or not previous.height:
        return scores, None, None
    before = comparable.filter(pl.col("model_id") == previous["model_id"][0])
    return scores, before, comparable.filter(pl.col("model_id") == model_id)


def _money_stop(
    rules: LoopRules, loop_round: int, lift: float | None, cost: Cost, spent_usd: float | None, next_round: Estimate
) -> tuple[str, str] | None:
    """(stop reason, detail) when a money rule says the next round is not worth paying for."""
    return spending_stop(
        rules,
        loop_round=loop_round,
        lift=lift,
        round_usd=cost.total_usd,
        round_unknown=cost.unknown,
        spent_usd=spent_usd,
        next_usd=next_round.total_usd,
        next_unknown=next_round.cost.unknown,
    )


def _judged(
    lake: LakeResource, judge_model: str, model_id: str, round_: int, rules: LoopRules
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, RoundVerdict]:
    """(the checkpoint's eval/metrics rows, its cells, its scores, the verdict of the stop rules before money)."""
    metrics = lake.read("eval/metrics").filter(pl.col("judge_model") == judge_model)
    cells = classify_cells(metrics, model_id, rules)
    if cells.is_empty():
        raise RoundError(f"eval/metrics has no rows for checkpoint {model_id}: materialize the evaluate group first")
    history = lake.read("feedback/weaknesses", missing_ok=True)
    previous = history.filter(pl.col("round") == round_ - 1) if history.height else None
    mine = metrics.filter(pl.col("model_id") == model_id)
    scores, before, after = _paired(lake, judge_model, model_id, mine, previous)
    return mine, cells, scores, judge_round(cells, previous, rules, before, after)


def judge_feedback_round(
    lake: LakeResource, judge_model: str, model_id: str, round_: int, rules: LoopRules, buying: Buying
) -> Round:
    """Judge round `round_` of checkpoint `model_id`; reads the lake, writes nothing."""
    mine, cells, scores, verdict = _judged(lake, judge_model, model_id, round_, rules)
    weak, lift = verdict.weak, verdict.focus_lift

    # What this round cost (measured) and the loop so far: rounds round_ - loop_round .. round_ are this loop's.
    tables = spend.CostTables.read(lake)
    costs = spend.round_costs(tables)
    cost = spend.measured(costs, round_)
    spent_usd = spend.spent(costs, round_ - verdict.loop_round, round_)
    lift_mean = lift.mean if lift is not None else None
    gain = gain_per_usd(lift_mean, cost.total_usd)

    focus = focus_cells(weak, buying.max_focus_cells) if verdict.stop_reason is None else []
    requests = None
    if verdict.stop_reason is None:
        targeted = target(verdict.cells, focus).filter(pl.col("targeted"))
        requests = build_requests(
            targeted, scores, budget=buying.prompts_per_round, for_round=round_ + 1, min_per_cell=buying.min_per_cell
        )
    # The next round's $, estimated before it runs from this round's unit costs; then the money rules.
    next_round: Estimate | None = None
    stop_detail: str | None = None
    if requests is not None:
        next_round = spend.estimate_next(tables, costs, round_, model_id, int(requests["n_prompts"].sum()))
        money = _money_stop(rules, verdict.loop_round, lift_mean, cost, spent_usd, next_round)
        if money is not None:
            reason, stop_detail = money
            verdict, focus, requests = verdict.stopped(reason), [], None
    verdict = replace(verdict, cells=target(verdict.cells, focus))
    return Round(
        round_,
        rules,
        model_id,
        mine,
        cells,
        weak,
        verdict,
        cost,
        spent_usd,
        gain,
        focus,
        requests,
        next_round,
        stop_detail,
    )
