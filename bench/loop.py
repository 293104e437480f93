"""Feedback-loop benchmark: what each round costs, measured side by side in one run.

Runs the demo's loop (`nexa_jobs.demo.run_loop`: round 0, then every round the real feedback sensor
requests, until it stops) in a temporary lake and Dagster instance, with the teacher on the scripted
OpenAI-compatible server (`--latency-ms` per answer; `--local-teacher` uses the local SmolLM2 server
instead, much slower). The judge, training and evaluation are the real ones.

Printed side by side per round:
- teacher requests the round sent, the new prompts it bought, and their ratio (target: a round after
  round 0 pays only for its new prompts, i.e. requests = new prompts + their own regenerations, never
  a prompt answered before), plus the requests the server actually received;
- wall time per stage (raw, distill, sft, train, evaluate, feedback) and per round.
Exits 1 if a later round sent a request for a prompt answered in an earlier round.
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

STAGES = {
    "raw_prompts": "raw",
    "distill__completions": "distill",
    "distill__pairs": "distill",
    "sft__examples": "sft",
    "train__checkpoints": "train",
    "eval__prompts": "evaluate",
    "eval__predictions": "evaluate",
    "eval__scores": "evaluate",
    "eval__metrics": "evaluate",
    "feedback_loop": "feedback",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=int, default=50, help="scripted teacher latency per answer")
    parser.add_argument("--local-teacher", action="store_true", help="use the local SmolLM2 teacher instead")
    args = parser.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["DAGSTER_DISABLE_TELEMETRY"] = "1"
    with tempfile.TemporaryDirectory(prefix="nexa-bench-loop-") as tmp:
        os.environ["NEXA_LAKE_ROOT"] = f"{tmp}/lake"
        os.environ["NEXA_INPUT_URI"] = f"{tmp}/inputs"
        os.environ["DAGSTER_HOME"] = f"{tmp}/dagster_home"
        Path(f"{tmp}/inputs").mkdir()
        Path(f"{tmp}/dagster_home").mkdir()
        if args.local_teacher:
            return run(None)
        from nexa_testing.scripted_server import ScriptedServer

        with ScriptedServer(latency_ms=args.latency_ms) as server:
            os.environ["NEXA_TEACHER_BASE_URL"] = server.base_url
            os.environ["NEXA_TEACHER_MODEL"] = "scripted-teacher"
            return run(server)


def run(server: object | None) -> int:
    import dagster as dg
    import polars as pl

    from nexa_jobs.demo import run_loop
    from nexa_jobs.loop_report import stage_seconds
    from nexa_resources.lake import LakeResource

    instance = dg.DagsterInstance.get()
    received: list[int] = []

    def log(message: str) -> None:
        print(message, flush=True)

    started = time.monotonic()
    rounds = run_loop(instance, log=log)
    total = time.monotonic() - started
    if server is not None:
        received.append(int(server.stats()["requests"]))  # type: ignore[attr-defined]
    failed = [r for r in rounds if not r["success"]]
    if failed:
        print(f"round {failed[0]['round']} failed (run {failed[0]['run_id']})")
        return 1

    lake = LakeResource.from_env()
    completions = lake.read("distill/completions", columns=["prompt_id", "round", "regenerated_from"])
    prompts = lake.read("raw/prompts", columns=["prompt_id", "origin", "round"])
    stage_rows = stage_seconds(instance, rounds, STAGES)

    answered_before: set[str] = set()
    rows, ok = [], True
    for r in sorted({int(x["round"]) for x in rounds}):
        sent = completions.filter(pl.col("round") == r)
        new_prompts = prompts.filter((pl.col("round") == r) & (pl.col("origin") == "feedback")).height
        originals = sent.filter(pl.col("regenerated_from").is_null())
        repaid = len(set(sent["prompt_id"]) & answered_before)
        ok &= r == 0 or repaid == 0
        rows.append(
            {
                "round": r,
                "teacher_requests": sent.height,
                "first_asks": originals.height,
                "regenerations": sent.height - originals.height,
                "new_prompts": new_prompts,
                "first_asks/new_prompts": round(originals.height / new_prompts, 2) if new_prompts else None,
                "prompts_answered_before": repaid,
            }
        )
        answered_before |= set(sent["prompt_id"])

    with pl.Config(tbl_rows=50, tbl_cols=-1, tbl_hide_dataframe_shape=True, tbl_width_chars=200):
        print("\nTeacher spend per round (round 0 answers the seed prompts; later rounds only what they bought):")
        print(pl.DataFrame(rows))
        print("\nWall time per stage and round (s):")
        print(stage_rows)
    if received:
        print(f"\nrequests the teacher server received in all: {received[0]} (table rows: {completions.height})")
    print(f"loop wall time: {total:.1f}s over {len(rounds)} rounds")
    if len(rows) > 1:
        r0, r1 = rows[0]["teacher_requests"], rows[1]["teacher_requests"]
        print(f"round 1 vs round 0 teacher requests: {r1} vs {r0} ({r1 / r0:.2f}x)" if r0 else "")
    print("PASS: no round paid for a prompt answered before" if ok else "MISS: a round re-sent answered prompts")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
