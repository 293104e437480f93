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

With the teacher's answers to the calibration prompts (bench/data/judge_calibration_v1_references.jsonl, built
by bench/make_judge_references.py exactly as eval/predictions' teacher row asks), it also runs v2 with each
prompt's reference (`structural-v2+ref`, nexa_core/reference.py) in the same run, side by side; prints
how many pairs the reference flips from a correct ranking to a wrong one and back, how often the good answer
agrees with the reference more than the bad one does, and the same agreement for other weights and with every
reference (not only those the judge trusts). The last line stays the loop's default judge, v2 without reference.
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

from nexa_core import structural_judge_v1  # noqa: E402
from nexa_core.reference import (  # noqa: E402
    MIN_REFERENCE_CORRECTNESS,
    REFERENCE_WEIGHT,
    ReferenceSet,
    reference_correctness,
)
from nexa_core.rubric import JudgeVerdict  # noqa: E402
from nexa_core.structural_judge import judge_structural_batch  # noqa: E402

CALIBRATION = ROOT / "bench" / "data" / "judge_calibration_v1.jsonl"
REFERENCES = ROOT / "bench" / "data" / "judge_calibration_v1_references.jsonl"
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


# The reference option as it would ship (weight REFERENCE_WEIGHT, references the judge gives correctness >= 3),
# then a sweep: weight x (trusted references only | every reference).
SWEEP: tuple[tuple[float, int], ...] = tuple((w, g) for w in (0.25, 0.5, 1.0) for g in (MIN_REFERENCE_CORRECTNESS, 1))


def load_reference_rows(path: Path) -> list[dict[str, Any]] | None:
    """The teacher's stored answers to the calibration prompts (answered ones), or None when the file is absent."""
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if r["error"] is None]


def with_reference(references: ReferenceSet) -> Batch:
    return lambda items: judge_structural_batch(items, references=references)


def flips(base: list[bool], res: list[bool], pairs: list[dict[str, Any]]) -> str:
    lost = [p for a, b, p in zip(base, res, pairs) if a and not b]
    won = sum(not a and b for a, b in zip(base, res))
    kinds = ", ".join(sorted({p["kind"] for p in lost}))
    return f"flips {len(lost)}/{sum(base)} correct rankings to wrong{f' ({kinds})' if kinds else ''}, " \
           f"{won}/{len(base) - sum(base)} wrong to correct"


def reference_signal(references: ReferenceSet, pairs: list[dict[str, Any]]) -> tuple[int, int, int]:
    """Pairs where the good answer shares more / as much / less of the reference's own content than the bad."""
    more = same = less = 0
    for p in pairs:
        good, bad = references.agreement(_item(p, "good")), references.agreement(_item(p, "bad"))
        if good is None or bad is None:
            continue
        more, same, less = more + (good > bad), same + (good == bad), less + (good < bad)
    return more, same, less


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
    parser.add_argument("--references", type=Path, default=REFERENCES)
    args = parser.parse_args(argv)
    pairs = [json.loads(line) for line in args.calibration.read_text(encoding="utf-8").splitlines() if line.strip()]
    kinds = sorted({p["kind"] for p in pairs})
    print(f"{len(pairs)} pairs, {len({p['instruction'] for p in pairs})} prompts, {len(kinds)} kinds of bad answer")
    judges = dict(JUDGES)
    reference_rows = load_reference_rows(args.references)
    if reference_rows is None:
        print(f"no teacher references ({args.references.relative_to(ROOT)} missing): v2 with reference not run")
    else:
        shipped = ReferenceSet.build(reference_rows)
        judges["structural-v2+ref"] = with_reference(shipped)
        own = reference_correctness(reference_rows)
        print(f"teacher references: {len(reference_rows)} prompts answered (the judge's own correctness of them: mean "
              f"{sum(own) / len(own):.2f}, max {max(own)}); {len(shipped)} trusted (correctness >= "
              f"{MIN_REFERENCE_CORRECTNESS}), {len(shipped.terms)} of those with enough own content to compare")
    results = {name: agreement(judge, pairs) for name, judge in judges.items()}
    width = max(16, *(len(name) + 2 for name in results))
    print(f"{'kind':<20}" + "".join(f"{name:>{width}}" for name in results) + f"{'pairs':>8}")
    for kind in kinds:
        row = "".join(
            f"{_share([r for r, p in zip(res, pairs) if p['kind'] == kind]):>{width}.2f}" for res in results.values()
        )
        print(f"{kind:<20}{row}{sum(p['kind'] == kind for p in pairs):>8}")
    for label, keep in (("overall", lambda p: True), ("held out", lambda p: p["holdout"])):
        row = "".join(f"{_share([r for r, p in zip(res, pairs) if keep(p)]):>{width}.2f}" for res in results.values())
        print(f"{label:<20}{row}{sum(keep(p) for p in pairs):>8}")
    if args.show:
        for ok, p in zip(results["structural-v2"], pairs):
            if p["kind"] == args.show and not ok:
                print(f"--- {p['id']}: {p['instruction']}\n{p['bad']}")
    if reference_rows is not None:
        base = results["structural-v2"]
        print(f"structural-v2+ref (weight {REFERENCE_WEIGHT}, trusted references): the reference "
              f"{flips(base, results['structural-v2+ref'], pairs)}")
        every = ReferenceSet.build(reference_rows, min_correctness=1)
        more, same, less = reference_signal(every, pairs)
        print(f"reference signal (every reference with enough own content, {len(every.terms)} prompts): the good "
              f"answer shares more of it than the bad in {more} pairs, as much in {same}, less in {less}")
        for weight, floor in SWEEP:
            res = agreement(with_reference(ReferenceSet.build(reference_rows, weight, floor)), pairs)
            per_kind = {k: _share([r for r, p in zip(res, pairs) if p["kind"] == k]) for k in kinds}
            worst = min(per_kind, key=lambda k: (per_kind[k], k))
            which = "trusted references" if floor > 1 else "every reference"
            print(f"  weight {weight:.2f}, {which:<18}: agreement={_share(res):.3f} worst_kind={worst}:"
                  f"{per_kind[worst]:.2f}; {flips(base, res, pairs)}")
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
