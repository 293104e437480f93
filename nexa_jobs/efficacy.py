"""Did the loop make the student better? Paired comparisons of base, round-0 and round-1 students, from the lake.

The focus cells are the (domain, task_type, metric) cells round 0's feedback targeted (bought prompts for);
the other cells are every other cell. Every comparison pairs two models' scores on the same eval prompts,
judge, rubric and eval set, averages each answer's metric differences first, and gives a 95% t-interval
over prompts (`nexa_assets.feedback.lift`). `bench/efficacy.py` and `make demo` print this report.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from nexa_assets.feedback.lift import CELL_KEYS, Lift, cell_changes, paired_lift
from nexa_resources.lake import LakeResource

KEYS = list(CELL_KEYS)


@dataclass(frozen=True)
class Efficacy:
    """The loop's effect between rounds, measured on held-out prompts."""

    models: dict[str, str]  # "base" | "round 0" | "round 1" → model_id
    labels: dict[str, str]  # model_id → readable label
    focus: list[tuple[str, str, str]]
    table: pl.DataFrame  # per group (focus / other / all): mean score of each model, n prompts
    focused_lift: Lift  # round 1 − round 0 on the focus cells
    other_change: Lift  # round 1 − round 0 on every other cell, pooled per answer
    base_to_round0: Lift  # round 0 − base on every cell
    base_to_round1_focus: Lift  # round 1 − base on the focus cells
    other_cells: pl.DataFrame  # per other cell: round 0 → round 1 change with its interval
    judge_model: str
    eval_set: str

    @property
    def largest_other_drop(self) -> dict[str, object] | None:
        drops = self.other_cells.filter(pl.col("change") < 0).sort("change")
        return drops.row(0, named=True) if drops.height else None


def _scores(lake: LakeResource) -> tuple[pl.DataFrame, str, str]:
    weaknesses = lake.read("feedback/weaknesses")
    newest = weaknesses.filter(pl.col("round") == weaknesses["round"].max())
    metrics = lake.read("eval/metrics").filter(pl.col("model_id") == newest["model_id"][0])
    judge_model, eval_set = metrics["judge_model"][0], metrics["eval_set"][0]
    scores = lake.read("eval/scores").filter(
        (pl.col("judge_model") == judge_model)
        & (pl.col("rubric_version") == metrics["rubric_version"][0])
        & (pl.col("eval_set") == eval_set)
    )
    return scores, judge_model, eval_set


def measure(lake: LakeResource) -> Efficacy:
    """The report for the lake's round 0 and round 1 (raises when either round has not been judged)."""
    weaknesses = lake.read("feedback/weaknesses", missing_ok=True)
    rounds = set(weaknesses["round"].to_list()) if weaknesses.height else set()
    if not {0, 1} <= rounds:
        raise ValueError(f"efficacy needs feedback rounds 0 and 1 judged; the lake has rounds {sorted(rounds)}")
    scores, judge_model, eval_set = _scores(lake)
    predictions = lake.read("eval/predictions")
    if "model_label" not in predictions.columns:
        predictions = predictions.with_columns(pl.col("model_id").alias("model_label"))
    labels = dict(predictions.select("model_id", "model_label").unique("model_id").iter_rows())
    r0 = weaknesses.filter(pl.col("round") == 0)
    r1 = weaknesses.filter(pl.col("round") == 1)
    base_ids = predictions.filter(pl.col("model_kind") == "base")["model_id"].unique().to_list()
    models = {"round 0": r0["model_id"][0], "round 1": r1["model_id"][0]}
    if base_ids:
        models = {"base": base_ids[0], **models}
    focus = [tuple(c) for c in r0.filter(pl.col("targeted").fill_null(False)).select(KEYS).iter_rows()]
    of = {name: scores.filter(pl.col("model_id") == mid) for name, mid in models.items()}
    all_cells = [tuple(c) for c in scores.select(KEYS).unique().sort(KEYS).iter_rows()]
    others = [c for c in all_cells if c not in set(focus)]

    def group_mean(frame: pl.DataFrame, cells: list) -> tuple[float | None, int]:
        keep = frame.join(pl.DataFrame(cells, schema=dict.fromkeys(KEYS, pl.String()), orient="row"), on=KEYS)
        per_answer = keep.drop_nulls("score").group_by("prompt_id").agg(pl.col("score").mean())
        return (float(per_answer["score"].mean()) if per_answer.height else None), per_answer.height

    rows = []
    for group, cells in (("focus cells", focus), ("other cells", others), ("all cells", all_cells)):
        row: dict[str, object] = {"cells": group, "n_cells": len(cells)}
        for name, frame in of.items():
            mean, n = group_mean(frame, cells)
            row[name] = round(mean, 3) if mean is not None else None
            row["prompts"] = n
        rows.append(row)
    changes = cell_changes(of["round 0"], of["round 1"])
    other_frame = pl.DataFrame(others, schema=dict.fromkeys(KEYS, pl.String()), orient="row")
    empty = Lift(None, 0, None, None)
    base = of.get("base")
    return Efficacy(
        models=models,
        labels=labels,
        focus=focus,  # type: ignore[arg-type]
        table=pl.DataFrame(rows),
        focused_lift=paired_lift(of["round 0"], of["round 1"], focus) if focus else empty,
        other_change=paired_lift(of["round 0"], of["round 1"], others) if others else empty,
        base_to_round0=paired_lift(base, of["round 0"]) if base is not None else empty,
        base_to_round1_focus=paired_lift(base, of["round 1"], focus) if base is not None and focus else empty,
        other_cells=changes.join(other_frame, on=KEYS),
        judge_model=judge_model,
        eval_set=eval_set,
    )


def side_by_side(lake: LakeResource, report: Efficacy, limit: int = 2, chars: int = 600) -> list[dict[str, str]]:
    """A few eval prompts of one focus cell with the base model's and the round-1 student's answers."""
    if not report.focus or "base" not in report.models:
        return []
    domain, task_type, _ = report.focus[0]
    prompts = lake.read("eval/prompts").filter((pl.col("domain") == domain) & (pl.col("task_type") == task_type))
    predictions = lake.read("eval/predictions")
    out = []
    for row in prompts.sort("prompt_id").head(limit).iter_rows(named=True):
        answers = {}
        for name in ("base", "round 1"):
            hit = predictions.filter(
                (pl.col("model_id") == report.models[name]) & (pl.col("prompt_id") == row["prompt_id"])
            )
            answers[name] = (hit["prediction"][0] or "")[:chars] if hit.height else "(no answer)"
        out.append({"cell": f"{domain}/{task_type}", "instruction": row["instruction"], **answers})
    return out
