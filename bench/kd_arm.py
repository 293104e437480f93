"""The KD arm of bench/efficacy.py: round 1 trained again with `distill_loss: kd` on the same data, then compared.

Both arms share round 0 and round 1's sft/examples version, training config and steps; they differ only in the
loss. The teacher's probabilities are scored once (distill/logprobs) over every chosen answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

ROUND_TAG = "nexa/round"


@dataclass(frozen=True)
class KDArm:
    sft_model: str
    kd_model: str
    round0_model: str
    focus: list[tuple[str, str, str]]
    scores: pl.DataFrame  # eval/scores of the three models on one judge, rubric and eval set
    checkpoints: pl.DataFrame  # the two round-1 checkpoint rows
    seconds: dict[str, float]  # logprobs / kd train / kd eval
    logprob_rows: int
    logprob_answers: int


def _round1_run_config(instance: Any, rounds: list[dict] | None) -> dict[str, Any]:
    import dagster as dg

    if rounds:
        run_id = next(str(r["run_id"]) for r in rounds if int(r["round"]) == 1)  # type: ignore[call-overload]
        run = instance.get_run_by_id(run_id)
    else:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={ROUND_TAG: "1"}, statuses=[dg.DagsterRunStatus.SUCCESS]))
        if not runs:
            raise SystemExit("no successful round-1 run in this instance: run bench/efficacy.py --keep DIR first")
        run = runs[0]
    return {"ops": {op: dict(cfg) for op, cfg in (run.run_config.get("ops") or {}).items()}}


def _op(config: dict[str, Any], op: str, **overrides: Any) -> dict[str, Any]:
    return {op: {"config": {**(config["ops"].get(op, {}).get("config") or {}), **overrides}}}


def _materialize(selection: str, ops: dict[str, Any], log: Callable[[str], None]) -> float:
    from nexa_jobs.materialize import materialize

    started = time.monotonic()
    result = materialize(selection, {"ops": ops}, tags={ROUND_TAG: "1", "nexa/bench": "efficacy-kd"})
    if not result.success:
        raise SystemExit(f"kd arm: {selection} failed (run {result.run_id})")
    seconds = time.monotonic() - started
    log(f"kd arm: {selection} done in {seconds:.0f}s")
    return seconds


def train_and_evaluate_kd(
    instance: Any, top_k: int, rounds: list[dict] | None, log: Callable[[str], None] = print
) -> KDArm:
    """Score the teacher's probabilities, train round 1 with kd on round 1's SFT version, evaluate it."""
    from nexa_jobs.efficacy import measure
    from nexa_resources.lake import LakeResource

    lake = LakeResource.from_env()
    report = measure(lake)
    config = _round1_run_config(instance, rounds)
    checkpoints = lake.read("train/checkpoints")
    sft_row = checkpoints.filter(pl.col("checkpoint_id") == report.models["round 1"]).row(0, named=True)
    seconds = {"logprobs": _materialize(
        'key:"distill/logprobs"',
        _op(config, "distill__logprobs", top_k=top_k, with_worked_example=True, round=1), log)}
    train_ops = _op(config, "train__checkpoints", distill_loss="kd", sft_version=int(sft_row["sft_version"]), round=1)
    seconds["kd train"] = _materialize('key:"train/checkpoints"', train_ops, log)
    checkpoints = lake.read("train/checkpoints")
    kd_id = checkpoints.sort("created_at")["checkpoint_id"][-1]
    eval_ops = {
        **_op(config, "eval__predictions", checkpoint_id=kd_id, include_base=False, include_teacher=False, round=1),
        **_op(config, "eval__scores", round=1),
        **_op(config, "eval__metrics", round=1),
    }
    seconds["kd eval"] = _materialize('key:"eval/predictions" or key:"eval/scores" or key:"eval/metrics"',
                                      eval_ops, log)
    from nexa_jobs.efficacy import _scores  # the judge, rubric and eval set the loop's report uses

    scores, _, _ = _scores(lake)
    logprobs = lake.read("distill/logprobs", columns=["request_id"])
    return KDArm(
        sft_model=report.models["round 1"],
        kd_model=kd_id,
        round0_model=report.models["round 0"],
        focus=report.focus,
        scores=scores,
        checkpoints=checkpoints.filter(pl.col("checkpoint_id").is_in([report.models["round 1"], kd_id])),
        seconds=seconds,
        logprob_rows=logprobs.height,
        logprob_answers=logprobs["request_id"].n_unique(),
    )


def compare_arms(arm: KDArm) -> str:
    """Both arms side by side, and the `kd arm:` summary line."""
    from nexa_assets.feedback.lift import CELL_KEYS, paired_lift

    of = {m: arm.scores.filter(pl.col("model_id") == m) for m in (arm.round0_model, arm.sft_model, arm.kd_model)}
    cells = [tuple(c) for c in arm.scores.select(CELL_KEYS).unique().iter_rows()]
    others = [c for c in cells if c not in set(arm.focus)]
    r0, sft, kd = of[arm.round0_model], of[arm.sft_model], of[arm.kd_model]
    lifts = {
        "sft": (paired_lift(r0, sft, arm.focus), paired_lift(r0, sft, others)),
        "kd": (paired_lift(r0, kd, arm.focus), paired_lift(r0, kd, others)),
    }
    kd_vs_sft_focus, kd_vs_sft_all = paired_lift(sft, kd, arm.focus), paired_lift(sft, kd)
    by_id = {r["checkpoint_id"]: r for r in arm.checkpoints.iter_rows(named=True)}
    lines = ["", "SFT vs SFT+KD, round 1 on the same sft/examples version and config (round 0 shared):",
             f"  {'arm':4s} {'checkpoint':18s} {'steps':>5s} {'train s':>8s} {'tok/s':>6s}  "
             f"{'focus: round 1 − round 0':28s} other: round 1 − round 0"]
    for name, model in (("sft", arm.sft_model), ("kd", arm.kd_model)):
        row = by_id.get(model, {})
        focus, other = lifts[name]
        lines.append(f"  {name:4s} {model[:18]:18s} {row.get('steps') or 0:5d} {row.get('wall_s') or 0:8.0f} "
                     f"{row.get('tokens_per_s') or 0:6.0f}  {str(focus):28s} {other}")
    lines += [
        f"  kd − sft on round 1's answers: focus {kd_vs_sft_focus} (n={kd_vs_sft_focus.n}), "
        f"all cells {kd_vs_sft_all} (n={kd_vs_sft_all.n})",
        f"  teacher probabilities: {arm.logprob_rows} rows over {arm.logprob_answers} answers "
        f"({arm.logprob_rows / max(arm.logprob_answers, 1):.0f} tokens each), scored in {arm.seconds['logprobs']:.0f}s; "
        f"kd training run {arm.seconds['kd train']:.0f}s, kd eval {arm.seconds['kd eval']:.0f}s",
    ]

    def f(value: float | None) -> str:
        return f"{value:+.2f}" if value is not None else "nan"

    sft_row, kd_row = by_id.get(arm.sft_model, {}), by_id.get(arm.kd_model, {})
    lines.append(
        f"kd arm: sft_focused_lift={f(lifts['sft'][0].mean)} kd_focused_lift={f(lifts['kd'][0].mean)} "
        f"kd_minus_sft={f(kd_vs_sft_focus.mean)} ci95=[{f(kd_vs_sft_focus.ci_low)},{f(kd_vs_sft_focus.ci_high)}] "
        f"train_s sft={sft_row.get('wall_s') or 0:.0f} kd={kd_row.get('wall_s') or 0:.0f} "
        f"{'KD WINS' if kd_vs_sft_focus.significant else 'KD does not win'}"
    )
    return "\n".join(lines)
