"""Efficacy benchmark: does one feedback round make the student measurably better, on the embedded defaults?

Runs round 0 and one feedback round of the real loop (`nexa_jobs.demo.run_loop`: round 0, then the run
the feedback sensor requests) in a temporary lake and Dagster instance, on the embedded defaults: the local
teacher (SmolLM2-135M-Instruct with a worked example, best of 4), the LoRA student, the structural judge,
12 held-out prompts per cell. The only settings changed are printed (the loop is capped at one feedback
round; the teacher's reference row on eval prompts is skipped unless --teacher-row, to save ~4 minutes).

Printed side by side: base model, round 0 and round 1 on the focus cells (those round 0's feedback bought
prompts for) and on the other cells, each pairing answers to the same prompts, averaging each answer's
metric differences first, with 95% t-intervals; the per-cell changes of the other cells; teacher tokens per
round; wall time per stage. The last line is

    efficacy: focused_lift=<+x.xx> ci95=[<lo>,<hi>] other_min_change=<+x.xx> base_to_round0=<+x.xx> wall_s=<n> PASS|FAIL

With --distill-loss kd, a second arm follows on the same lake: the teacher's top-k token probabilities of every
chosen answer are scored in-process (distill/logprobs, the worked example in context as when it sampled), and
round 1 is trained again on the same sft/examples version with the same config and steps but `distill_loss: kd`,
then evaluated on the same prompts. Printed side by side: each arm's focused lift over the shared round 0,
KD − SFT paired on round 1's answers (focus and all cells), steps, training wall time and the scoring time, and
a line `kd arm: ...` before the last line (which stays the SFT arm's, the loop's default).

focused_lift is round 1 − round 0 on the focus cells; other_min_change is round 1 − round 0 pooled over every
other cell (the per-cell minimum over ~35 cells of 12 prompts is printed too, but it is mostly noise: with
no real change its expected value is about −0.3). PASS: focused_lift ≥ +0.30 with ci95 low > 0,
other_min_change ≥ −0.10, wall under 30 minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loop import STAGES as LOOP_STAGES  # noqa: E402

STAGES = {**LOOP_STAGES, "distill__completions": "teacher", "distill__pairs": "judge+gate"}
TARGET_LIFT, TARGET_OTHER, TARGET_WALL_S = 0.30, -0.10, 1800


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-row", action="store_true", help="also answer the eval prompts with the teacher")
    parser.add_argument("--keep", metavar="DIR", help="keep the lake and Dagster instance in DIR")
    parser.add_argument("--distill-loss", choices=("none", "kd"), default="none",
                        help="kd: also train round 1 with the KD loss on the same data and compare (~+12 minutes)")
    parser.add_argument("--kd-top-k", type=int, default=20, help="teacher probabilities kept per token (kd arm)")
    parser.add_argument("--kd-only", action="store_true",
                        help="with --keep DIR of a finished run: only (re)run the kd arm on that lake")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
    for var in ("NEXA_TEACHER_BASE_URL", "NEXA_JUDGE_BASE_URL"):
        os.environ.pop(var, None)  # the embedded defaults: local teacher, structural judge ...
    os.environ["NEXA_JUDGE"] = "structural"  # ... even where an API key would make an LLM judge the default
    with tempfile.TemporaryDirectory(prefix="nexa-bench-efficacy-") as tmp:
        base = Path(args.keep) if args.keep else Path(tmp)
        for sub in ("inputs", "dagster_home"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        os.environ["NEXA_LAKE_ROOT"] = str(base / "lake")
        os.environ["NEXA_INPUT_URI"] = str(base / "inputs")
        os.environ["DAGSTER_HOME"] = str(base / "dagster_home")
        if args.kd_only:
            return run_kd_arm(args.kd_top_k)
        return run(args.teacher_row, args.distill_loss, args.kd_top_k)


def run(teacher_row: bool, distill_loss: str = "none", kd_top_k: int = 20) -> int:
    import dagster as dg
    import polars as pl

    from nexa_jobs.demo import run_loop
    from nexa_jobs.loop_report import stage_seconds
    from nexa_jobs.efficacy import measure
    from nexa_resources.lake import LakeResource

    config = {
        "ops": {
            "feedback_loop": {"config": {"max_rounds": 1}},
            "eval__predictions": {"config": {"include_teacher": teacher_row}},
        }
    }
    print("settings changed from the defaults:")
    print("  feedback_loop.max_rounds = 1        (stop after one feedback round)")
    if not teacher_row:
        print("  eval__predictions.include_teacher = false   (teacher reference row skipped; --teacher-row adds it)")
    instance = dg.DagsterInstance.get()
    started = time.monotonic()
    rounds = run_loop(instance, log=lambda m: print(m, flush=True), run_config=config)
    wall = time.monotonic() - started
    failed = [r for r in rounds if not r["success"]]
    if failed:
        print(f"round {failed[0]['round']} failed (run {failed[0]['run_id']})")
        print(f"efficacy: focused_lift=+0.00 ci95=[+0.00,+0.00] other_min_change=+0.00 base_to_round0=+0.00 "
              f"wall_s={wall:.0f} FAIL")
        return 1

    lake = LakeResource.from_env()
    report = measure(lake)
    stage_rows = stage_seconds(instance, rounds, STAGES)
    completions = lake.read("distill/completions")
    spend = completions.group_by("round").agg(
        pl.len().alias("teacher_requests"),
        pl.col("prompt_id").n_unique().alias("prompts"),
        pl.col("prompt_tokens").sum().alias("prompt_tokens"),
        pl.col("completion_tokens").sum().alias("completion_tokens"),
    ).sort("round")
    pairs = lake.read("distill/pairs")
    gate = pairs.group_by("round").agg(
        pl.col("passed").sum().alias("samples_passed"), pl.col("chosen").sum().alias("sft_rows_chosen")
    )

    with pl.Config(tbl_rows=60, tbl_cols=-1, tbl_hide_dataframe_shape=True, tbl_width_chars=200, fmt_str_lengths=80):
        print("\nModels:")
        for name, model_id in report.models.items():
            print(f"  {name:8s} {report.labels.get(model_id, model_id)}  [{model_id}]")
        print(f"judge {report.judge_model}, eval set {report.eval_set}")
        print("\nFocus cells (round 0's feedback bought prompts for them):")
        for cell in report.focus:
            print("  " + "/".join(cell))
        print("\nMean score per answer (1–5), side by side:")
        print(report.table)
        print("\nPaired changes (per answer, 95% t-interval over prompts):")
        print(f"  focus cells, round 1 − round 0: {report.focused_lift}  (n={report.focused_lift.n})")
        print(f"  focus cells, round 1 − base:    {report.base_to_round1_focus}  (n={report.base_to_round1_focus.n})")
        print(f"  other cells, round 1 − round 0: {report.other_change}  (n={report.other_change.n})")
        print(f"  all cells,   round 0 − base:    {report.base_to_round0}  (n={report.base_to_round0.n})")
        drop = report.largest_other_drop
        if drop:
            print(f"  largest single other-cell drop: {drop['domain']}/{drop['task_type']}/{drop['metric']} "
                  f"{drop['change']:+.2f} [{drop['ci_low']:+.2f}, {drop['ci_high']:+.2f}] (n={drop['n']})")
        print("\nOther cells, round 0 → round 1:")
        print(report.other_cells.sort("change").select(
            "domain", "task_type", "metric", pl.col("before").round(2), pl.col("after").round(2),
            pl.col("change").round(2), pl.col("ci_low").round(2), pl.col("ci_high").round(2), "n"))
        print("\nTeacher per round:")
        print(spend.join(gate, on="round", how="left"))
        print("\nWall time per stage and round (s):")
        print(stage_rows)

    lift, other, b0 = report.focused_lift, report.other_change, report.base_to_round0
    ok = (
        lift.mean is not None and lift.mean >= TARGET_LIFT and lift.ci_low is not None and lift.ci_low > 0
        and other.mean is not None and other.mean >= TARGET_OTHER and wall < TARGET_WALL_S
    )

    def f(value: float | None) -> str:
        return f"{value:+.2f}" if value is not None else "nan"

    if distill_loss == "kd":
        run_kd_arm(kd_top_k, rounds)
    print(f"\nloop wall time {wall:.0f}s (target < {TARGET_WALL_S}s); targets: focused_lift ≥ +{TARGET_LIFT:.2f} with "
          f"ci95 low > 0, other_min_change ≥ {TARGET_OTHER:+.2f}")
    print(f"efficacy: focused_lift={f(lift.mean)} ci95=[{f(lift.ci_low)},{f(lift.ci_high)}] "
          f"other_min_change={f(other.mean)} base_to_round0={f(b0.mean)} wall_s={wall:.0f} {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def run_kd_arm(top_k: int, rounds: list[dict] | None = None) -> int:
    """Round 1 again with `distill_loss: kd` on the same data and config; both arms printed side by side."""
    import dagster as dg

    from bench.kd_arm import compare_arms, train_and_evaluate_kd

    instance = dg.DagsterInstance.get()
    print(f"\nKD arm: teacher top-{top_k} probabilities, round 1 retrained with distill_loss kd", flush=True)
    arm = train_and_evaluate_kd(instance, top_k, rounds, log=lambda m: print(m, flush=True))
    if arm is None:
        return 1
    print(compare_arms(arm))
    return 0


if __name__ == "__main__":
    sys.exit(main())
