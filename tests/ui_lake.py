"""A small, realistic lake for the dashboard tests: two feedback rounds, written through LakeResource.

Evaluation holds both checkpoints and three reference models (base, external, teacher), with one judge
verdict per (answer, metric) in eval/scores whose metric scores of one answer move together, and the
eval/metrics cells aggregated from those scores.

Every frame uses the pipeline's own schemas (raw, distill, train, evaluate, feedback), so a schema change
upstream shows up here as a failed write or a failed page, not as a silently stale fixture.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from nexa_resources.tables.distill import COMPLETION_SCHEMA
from nexa_resources.tables.distill import METRICS, PAIR_SCHEMA
from nexa_resources.tables.eval import METRIC_SCHEMA, PREDICTION_SCHEMA, SCORE_SCHEMA
from nexa_assets.evaluate.stats import mean_ci
from nexa_resources.tables.feedback import REQUEST_SCHEMA, WEAKNESS_SCHEMA
from nexa_assets.feedback.spend import Cost, CostTables, Estimate, ledger_row, measured, round_costs
from nexa_resources.tables.raw import PROMPT_SCHEMA
from nexa_core.taxonomy import DOMAINS, TASK_TYPES
from nexa_resources.tables.train import CHECKPOINT_SCHEMA
from nexa_resources.lake import LakeResource, Lineage

TEACHERS = {0: "SmolLM2-135M-Instruct", 1: "gpt-4o-mini"}
CHECKPOINTS = {0: "ckpt-r0-3f9a2c", 1: "ckpt-r1-8be41d"}
BASE_MODEL_ID = "base:SmolLM2-135M-Instruct"
TEACHER_MODEL_ID = "teacher:SmolLM2-135M-Instruct"
EXTERNAL_MODEL_ID = "teacher:gpt-4o-mini"
THRESHOLD = 3.0
EVAL_SET = "es-1"
JUDGE = {"judge_model": "structural", "rubric_version": "v1-0123"}
ANSWERS_PER_CELL = 4
# The cells the first round finds weak (every metric listed is below threshold for round 0's checkpoint).
WEAK_R0 = {("physics", "methodology"): ("specificity", "methodology"), ("chemistry", "hypothesis"): ("clarity",)}
# Round 1 fixes chemistry/hypothesis but physics/methodology specificity stays weak.
WEAK_R1 = {("physics", "methodology"): ("specificity",)}
# A regenerated pair: REGEN_CHILD was regenerated from REGEN_PARENT (the parent failed the judge).
REGEN_PARENT = "req-physics-methodology-0-r0"
REGEN_CHILD = "req-physics-methodology-0-r1regen"


@dataclass(frozen=True)
class EvalModel:
    """One evaluated model of the fixture and how its answers score."""

    model_id: str
    kind: str
    checkpoint_id: str | None
    round: int
    label: str | None  # None: written as a lake from before model_label would have it (the UI derives one)
    levels: tuple[int, ...]  # the answer qualities it draws from: every metric of an answer sits near one
    weak: dict[tuple[str, str], tuple[str, ...]]


# Evaluated models in write order: both checkpoints, then the reference rows (base, external, teacher), the
# teacher written last in the latest round so the newest eval/metrics row is not a checkpoint's.
EVAL_MODELS: tuple[EvalModel, ...] = (
    EvalModel(CHECKPOINTS[0], "checkpoint", CHECKPOINTS[0], 0, None, (3, 4, 5), WEAK_R0),
    EvalModel(CHECKPOINTS[1], "checkpoint", CHECKPOINTS[1], 1, "round 1 student", (3, 4, 5), WEAK_R1),
    EvalModel(BASE_MODEL_ID, "base", None, 0, "base (SmolLM2-135M-Instruct)", (1, 2, 3, 4), {}),
    EvalModel(EXTERNAL_MODEL_ID, "external", None, 1, None, (3, 4, 5), {}),
    EvalModel(TEACHER_MODEL_ID, "teacher", None, 1,
              "teacher (local SmolLM2-135M-Instruct, 1 worked example, greedy)", (3, 4, 5), {}),
)
# Verdicts the judge could not give: (model_id, answer index in its first cell) → metrics left null.
JUDGE_FAILURES = {(TEACHER_MODEL_ID, 0): METRICS, (EXTERNAL_MODEL_ID, 1): ("hallucination_safety",)}
# A model's scores on an older eval set: eval/scores keeps them, its eval/metrics rows no longer count them.
STALE_SET = "es-0"


def _metric_score(rng: random.Random, level: int, weak: bool, floor: int) -> int:
    """One metric's score for an answer of quality `level`: near the level (so one answer's metrics move
    together), kept at or above `floor`; a weak metric sits at 1–2, below the threshold."""
    if weak:
        return max(1, level - 3)
    return min(5, max(floor, level + rng.choice((-1, 0, 0, 0, 1))))


def _eval_rows(rng: random.Random, model: EvalModel) -> tuple[list[dict], list[dict]]:
    """(eval/predictions rows, eval/scores rows) for one model: ANSWERS_PER_CELL answers per cell."""
    preds, scores = [], []
    floor = min(model.levels)
    for domain in DOMAINS:
        for task in TASK_TYPES:
            truncated = rng.choice([0, 1]) if model.kind == "checkpoint" else 0
            for j in range(ANSWERS_PER_CELL):
                pid = f"e-{domain}-{task}-{j}"
                cut = j < truncated
                preds.append({
                    "model_id": model.model_id, "prompt_id": pid, "model_kind": model.kind,
                    "model_label": model.label, "checkpoint_id": model.checkpoint_id, "domain": domain,
                    "task_type": task, "prediction": "…", "finish_reason": "length" if cut else "stop",
                    "prompt_tokens": 90, "completion_tokens": 120, "latency_ms": 300.0,
                    "cost_usd": 0.00009 if model.kind == "external" else 0.0, "error": None, "eval_set": EVAL_SET,
                })
                level = rng.choice(model.levels)
                first_cell = (domain, task) == (DOMAINS[0], TASK_TYPES[0])
                failed = JUDGE_FAILURES.get((model.model_id, j), ()) if first_cell else ()
                for metric in METRICS:
                    score = _metric_score(rng, level, metric in model.weak.get((domain, task), ()), floor)
                    scores.append({
                        "model_id": model.model_id, "prompt_id": pid, "metric": metric, "domain": domain,
                        "task_type": task, **JUDGE, "score": None if metric in failed else score,
                        "rationale": None, "error": "judge_unparsable: no JSON" if metric in failed else None,
                        "truncated": cut, "eval_set": EVAL_SET,
                    })
    return preds, scores


def _stale_scores(model: EvalModel) -> list[dict]:
    """Scores of 1 on an older eval set: any page that counted them would drag the model down."""
    return [
        {"model_id": model.model_id, "prompt_id": f"old-{i}", "metric": metric, "domain": DOMAINS[0],
         "task_type": TASK_TYPES[0], **JUDGE, "score": 1, "rationale": None, "error": None, "truncated": False,
         "eval_set": STALE_SET}
        for i in range(3) for metric in METRICS
    ]


def _metric_rows(model: EvalModel, scores: pl.DataFrame) -> list[dict]:
    """eval/metrics rows of one model: each cell's scores as the pipeline aggregates them (mean, 95% t-CI)."""
    rows = []
    for (domain, task, metric), cell in scores.group_by(["domain", "task_type", "metric"], maintain_order=True):
        stats = mean_ci(cell["score"].drop_nulls().cast(pl.Float64).to_list())
        rows.append({
            "model_id": model.model_id, "domain": domain, "task_type": task, "metric": metric,
            "model_kind": model.kind, "model_label": model.label, "checkpoint_id": model.checkpoint_id,
            "mean": stats.mean, "n": stats.n, "std": stats.std, "ci_low": stats.ci_low, "ci_high": stats.ci_high,
            "judge_failures": cell["score"].null_count(), "truncation_rate": float(cell["truncated"].mean()),
            **JUDGE, "eval_set": EVAL_SET,
        })
    return rows


def build(root: str | Path) -> LakeResource:
    """Write the fixture lake under `root` and return its LakeResource."""
    lake = LakeResource(root=str(root))
    rng = random.Random(7)

    prompts, completions, pairs = [], [], []
    for rnd in (0, 1):
        lineage = Lineage(run_id=f"run-distill-r{rnd}", round=rnd)
        p_rows, c_rows, pair_rows = [], [], []
        for domain in DOMAINS:
            for task in TASK_TYPES:
                count = 3 if rnd == 0 else (2 if (domain, task) in WEAK_R0 else 0)
                for i in range(count):
                    pid = f"p-{domain}-{task}-{i}-r{rnd}"
                    rid = f"req-{domain}-{task}-{i}-r{rnd}"
                    p_rows.append({
                        "prompt_id": pid, "domain": domain, "task_type": task,
                        "instruction": f"Propose a testable {task} for {domain} question {i} (round {rnd}).",
                        "context": "A passage about lattice defects." if i == 0 else None,
                        "source": "seed_pack.jsonl" if rnd == 0 else "feedback",
                        "locator": f"seed_pack.jsonl:{i + 1}", "origin": "seed" if rnd == 0 else "feedback",
                        "split": "train",
                    })
                    passed = rng.random() > 0.35
                    reasons = [] if passed else rng.choice([["too_short"], ["judge_low_specificity"],
                                                           ["no_structure", "judge_low_clarity"]])
                    if rid == REGEN_PARENT:
                        passed, reasons = False, ["judge_low_specificity"]
                    ptok, ctok = rng.randint(80, 200), rng.randint(150, 256)
                    cost = 0.0 if rnd == 0 else round((ptok * 0.15 + ctok * 0.6) / 1e6, 8)
                    c_rows.append({
                        "request_id": rid, "prompt_id": pid, "teacher_model": TEACHERS[rnd],
                        "template_version": "v1-abc", "system_prompt": "You are a scientist.",
                        "user_prompt": f"Question {i}", "completion": f"Hypothesis: {domain} {task} answer {i}. "
                        "Method: 1. measure 2. control 3. readout.", "finish_reason": "stop",
                        "prompt_tokens": ptok, "completion_tokens": ctok, "latency_ms": rng.uniform(200, 900),
                        "cost_usd": cost, "attempts": 1, "error": None, "regenerated_from": None,
                    })
                    scores = {m: (rng.randint(3, 5) if passed else rng.randint(1, 4)) for m in METRICS}
                    pair_rows.append({
                        "request_id": rid, "prompt_id": pid, "domain": domain, "task_type": task, "passed": passed,
                        "reject_reasons": reasons, "judge_model": "structural", "rubric_version": "v1-0123",
                        **{f"score_{m}": s for m, s in scores.items()},
                        "judge_mean": sum(scores.values()) / len(scores),
                        "lacking": None if passed else "specificity: no numbers", "judge_error": None,
                        "regenerated_from": None,
                    })
        if rnd == 1:  # one regeneration of a rejected round-0 answer
            parent = next(c for c in completions if c["request_id"] == REGEN_PARENT)
            c_rows.append({**parent, "request_id": REGEN_CHILD, "regenerated_from": REGEN_PARENT,
                           "teacher_model": TEACHERS[1], "cost_usd": 0.0001, "attempts": 2})
            parent_pair = next(p for p in pairs if p["request_id"] == REGEN_PARENT)
            pair_rows.append({**parent_pair, "request_id": REGEN_CHILD, "passed": True, "reject_reasons": [],
                              "regenerated_from": REGEN_PARENT})
        lake.write("raw/prompts", pl.DataFrame(p_rows, schema=PROMPT_SCHEMA), mode="merge", lineage=lineage)
        lake.write("distill/completions", pl.DataFrame(c_rows, schema=COMPLETION_SCHEMA), mode="merge",
                   lineage=lineage)
        lake.write("distill/pairs", pl.DataFrame(pair_rows, schema=PAIR_SCHEMA), mode="merge", lineage=lineage)
        prompts += p_rows
        completions += c_rows
        pairs += pair_rows

    # Checkpoints, one per round, with the trainer's metrics.json (loss curve) beside the weights.
    for rnd, ckpt in CHECKPOINTS.items():
        uri = f"{lake.root_uri()}/train/artifacts/{ckpt}"
        curve = [[step, round(10.8 * (0.93 ** step) + 0.1 * rnd, 4)] for step in range(1, 41, 3)]
        Path(uri).mkdir(parents=True, exist_ok=True)
        Path(uri, "metrics.json").write_text(json.dumps({"loss_curve": curve, "val_loss": curve[-1][1] + 0.2}))
        row = {
            "checkpoint_id": ckpt, "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "preset": "tiny",
            "sft_version": 2 + rnd, "rows": 109 + 20 * rnd, "rows_sha256": "ab" * 32, "config": "{}", "uri": uri,
            "backend": "local" if rnd == 0 else "skypilot", "cloud": None if rnd == 0 else "lambda",
            "region": None if rnd == 0 else "us-east-1", "accelerator": "cpu" if rnd == 0 else "A10:1",
            "price_per_hour": 0.0 if rnd == 0 else 1.29, "wall_s": 53.0 if rnd == 0 else 412.0,
            "cost_usd": 0.0 if rnd == 0 else round(1.29 * 412 / 3600, 4), "steps": 40, "tokens": 73_480 + rnd,
            "tokens_per_s": 1837.0 if rnd == 0 else 15_230.5, "train_loss": curve[-1][1], "val_loss": curve[-1][1] + 0.2,
        }
        lake.write("train/checkpoints", pl.DataFrame([row], schema=CHECKPOINT_SCHEMA), mode="merge",
                   lineage=Lineage(run_id=f"run-train-r{rnd}", round=rnd))

    # Evaluation: both checkpoints, then the base model, an external model and the teacher (reference rows).
    for model in EVAL_MODELS:
        pred_rows, score_rows = _eval_rows(rng, model)
        scores = pl.DataFrame(score_rows, schema=SCORE_SCHEMA)
        metric_rows = _metric_rows(model, scores)
        if model.model_id == CHECKPOINTS[0]:
            score_rows += _stale_scores(model)
        lineage = Lineage(run_id=f"run-eval-{model.model_id}", round=model.round)
        lake.write("eval/predictions", pl.DataFrame(pred_rows, schema=PREDICTION_SCHEMA), mode="merge",
                   lineage=lineage)
        lake.write("eval/scores", pl.DataFrame(score_rows, schema=SCORE_SCHEMA), mode="merge", lineage=lineage)
        lake.write("eval/metrics", pl.DataFrame(metric_rows, schema=METRIC_SCHEMA), mode="merge", lineage=lineage)

    # Feedback: every cell of each round's checkpoint against the threshold.
    metrics = lake.read("eval/metrics")
    for rnd, ckpt in CHECKPOINTS.items():
        cells = metrics.filter(pl.col("model_id") == ckpt)
        rows = []
        for cell in cells.iter_rows(named=True):
            weak = cell["mean"] < THRESHOLD
            rows.append({
                "domain": cell["domain"], "task_type": cell["task_type"], "metric": cell["metric"],
                "model_id": ckpt, "score": cell["mean"], "n": cell["n"], "ci_low": cell["ci_low"],
                "ci_high": cell["ci_high"], "threshold": THRESHOLD, "gap": THRESHOLD - cell["mean"] if weak else 0.0,
                "status": "weak" if weak else "pass", "stop_reason": None if rnd == 0 else "round_cap",
                "loop_id": "loop-1", "loop_round": rnd,
            })
        lake.write("feedback/weaknesses", pl.DataFrame(rows, schema=WEAKNESS_SCHEMA), mode="merge",
                   lineage=Lineage(run_id=f"run-feedback-r{rnd}", round=rnd))
    requests = [
        {"domain": d, "task_type": t, "for_round": 1, "n_prompts": 2, "gap": 0.5, "metrics": list(ms),
         "hints": ["give numbers"], "status": "done", "fulfilled_by": "run-distill-r1",
         "prompt_ids": [f"p-{d}-{t}-{i}-r1" for i in range(2)]}
        for (d, t), ms in WEAK_R0.items()
    ]
    lake.write("feedback/requests", pl.DataFrame(requests, schema=REQUEST_SCHEMA), mode="merge",
               lineage=Lineage(run_id="run-feedback-r0", round=0))

    # The ledger, as the feedback step writes it: each round's $ measured from the tables above, round 0's estimate
    # of round 1 (4 prompts bought), and round 1 stopped by the round cap (no next estimate).
    costs = round_costs(CostTables.read(lake))
    estimate = Estimate(Cost(0.0004, 0.0, 0.3, 0.0), 4, "round 0 per prompt: teacher $0.0001 × 4")
    spent = 0.0
    for rnd, ckpt in CHECKPOINTS.items():
        cost = measured(costs, rnd)
        spent += cost.total_usd or 0.0
        row = ledger_row(
            loop_id="loop-1", loop_round=rnd, checkpoint_id=ckpt, cost=cost,
            estimated=(estimate.cost, estimate.basis) if rnd == 1 else None, spent_usd=spent, budget_usd=None,
            focus_lift=None if rnd == 0 else 0.25, gain_per_usd=None if rnd == 0 else 0.25 / cost.total_usd,
            min_gain_per_usd=None, next_round=estimate if rnd == 0 else None,
            stop_reason=None if rnd == 0 else "round_cap", stop_detail=None,
        )
        lake.write("feedback/rounds", row, mode="merge", lineage=Lineage(run_id=f"run-feedback-r{rnd}", round=rnd))
    return lake
