"""Judge calibration: how often each offline judge ranks the good answer of a pair above the bad one.

Reads bench/data/judge_calibration_v1.jsonl (built by bench/make_judge_calibration.py): hand-written good
answers to seed-pack prompts, each paired with a bad answer of every kind (gaming: a fixed answer reused
across prompts, instruction echo, keyword stuffing, invented content, a copy of the worked example;
failures: wrong topic, truncated, repetitive, refusal, invented citations). An answer's score is the mean
of its five rubric metrics; a pair counts as agreement only when the good answer scores strictly higher.
Answers are judged in batches as the loop judges them, one model's answers at a time: all good answers
together, and the bad answers of each kind together (so a fixed answer meets its copies).

Prints per judge (structural v2, and the frozen v1 for comparison) agreement by kind, overall and on the
held-out prompts (never looked at while tuning), and ends with
`judge: agreement=<0.xx> worst_kind=<kind>:<0.xx> PASS|FAIL` for v2 (target: >= 0.90 overall, >= 0.80 per
kind). The judges are deterministic, so run-to-run stability is exact.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nexa_assets.evaluate import structural_judge_v1  # noqa: E402
from nexa_assets.evaluate.rubric import JudgeVerdict  # noqa: E402
from nexa_assets.evaluate.structural_judge import judge_structural_batch  # noqa: E402

CALIBRATION = ROOT / "bench" / "data" / "judge_calibration_v1.jsonl"
TARGET_OVERALL, TARGET_KIND = 0.90, 0.80

Batch = Callable[[Sequence[dict[str, Any]]], list[JudgeVerdict]]


def _v1(items: Sequence[dict[str, Any]]) -> list[JudgeVerdict]:
    return [
        structural_judge_v1.judge_structural(
            i["task_type"], i["instruction"], i.get("context"), i["answer"], i.get("finish_reason")
        )
        for i in items
    ]


JUDGES: dict[str, Batch] = {"structural-v2": judge_structural_batch, "structural-v1": _v1}


def _mean(verdict: JudgeVerdict) -> float:
    return sum(verdict.scores.values()) / len(verdict.scores) if verdict.scores else 0.0


def _item(pair: dict[str, Any], side: str) -> dict[str, Any]:
    return {
        "task_type": pair["task_type"],
        "instruction": pair["instruction"],
        "context": pair["context"],
        "answer": pair[side],
        "finish_reason": pair["bad_finish_reason"] if side == "bad" else "stop",
    }


def agreement(judge: Batch, pairs: list[dict[str, Any]]) -> list[bool]:
    """Whether the judge scores each pair's good answer strictly above its bad one."""
    goods: dict[str, float] = {}
    unique = {p["instruction"] + "\x1f" + (p["context"] or ""): p for p in pairs}
    for key, verdict in zip(unique, judge([_item(p, "good") for p in unique.values()]), strict=True):
        goods[key] = _mean(verdict)
    bad: dict[int, float] = {}
    by_kind: dict[str, list[int]] = defaultdict(list)
    for n, p in enumerate(pairs):
        by_kind[p["kind"]].append(n)
    for indices in by_kind.values():
        for n, verdict in zip(indices, judge([_item(pairs[n], "bad") for n in indices]), strict=True):
            bad[n] = _mean(verdict)
    return [goods[p["instruction"] + "\x1f" + (p["context"] or "")] > bad[n] for n, p in enumerate(pairs)]


def _share(values: list[bool]) -> float:
    return sum(values) / len(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calibration", type=Path, default=CALIBRATION)
    parser.add_argument("--show", metavar="KIND", help="print the pairs of this kind the v2 judge gets wrong")
    args = parser.parse_args(argv)
    pairs = [json.loads(line) for line in args.calibration.read_text(encoding="utf-8").splitlines() if line.strip()]
    kinds = sorted({p["kind"] for p in pairs})
    print(f"{len(pairs)} pairs, {len({p['instruction'] for p in pairs})} prompts, {len(kinds)} kinds of bad answer")
    results = {name: agreement(judge, pairs) for name, judge in JUDGES.items()}
    print(f"{'kind':<20}" + "".join(f"{name:>16}" for name in results) + f"{'pairs':>8}")
    for kind in kinds:
        row = "".join(
            f"{_share([r for r, p in zip(res, pairs) if p['kind'] == kind]):>16.2f}" for res in results.values()
        )
        print(f"{kind:<20}{row}{sum(p['kind'] == kind for p in pairs):>8}")
    for label, keep in (("overall", lambda p: True), ("held out", lambda p: p["holdout"])):
        row = "".join(f"{_share([r for r, p in zip(res, pairs) if keep(p)]):>16.2f}" for res in results.values())
        print(f"{label:<20}{row}{sum(keep(p) for p in pairs):>8}")
    if args.show:
        for ok, p in zip(results["structural-v2"], pairs):
            if p["kind"] == args.show and not ok:
                print(f"--- {p['id']}: {p['instruction']}\n{p['bad']}")
    main_result = results["structural-v2"]
    again = agreement(judge_structural_batch, pairs)
    same = sum(a == b for a, b in zip(again, main_result))
    print(f"stability: structural-v2 is deterministic; a second run gives the same ranking on {same}/{len(pairs)} pairs")
    overall = _share(main_result)
    per_kind = {k: _share([r for r, p in zip(main_result, pairs) if p["kind"] == k]) for k in kinds}
    worst = min(per_kind, key=lambda k: (per_kind[k], k))
    ok = overall >= TARGET_OVERALL and per_kind[worst] >= TARGET_KIND
    print(f"judge: agreement={overall:.2f} worst_kind={worst}:{per_kind[worst]:.2f} {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
