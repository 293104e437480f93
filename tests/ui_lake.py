"""A small, realistic lake for the dashboard tests: two feedback rounds, written through LakeResource.

Every frame uses the pipeline's own schemas (raw, distill, train, evaluate, feedback), so a schema change
upstream shows up here as a failed write or a failed page, not as a silently stale fixture.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl

from nexa_assets.distill.assets import COMPLETION_SCHEMA
from nexa_assets.distill.pairs import METRICS, PAIR_SCHEMA
from nexa_assets.evaluate.schema import METRIC_SCHEMA, PREDICTION_SCHEMA
from nexa_assets.feedback.schema import REQUEST_SCHEMA, WEAKNESS_SCHEMA
from nexa_assets.raw.ingest import PROMPT_SCHEMA
from nexa_assets.taxonomy import DOMAINS, TASK_TYPES
from nexa_assets.train.register import CHECKPOINT_SCHEMA
from nexa_resources.lake import LakeResource, Lineage

TEACHERS = {0: "SmolLM2-135M-Instruct", 1: "gpt-4o-mini"}
CHECKPOINTS = {0: "ckpt-r0-3f9a2c", 1: "ckpt-r1-8be41d"}
TEACHER_MODEL_ID = "teacher:gpt-4o-mini"
THRESHOLD = 3.0
# The cells the first round finds weak (every metric listed is below threshold for round 0's checkpoint).
WEAK_R0 = {("physics", "methodology"): ("specificity", "methodology"), ("chemistry", "hypothesis"): ("clarity",)}
# Round 1 fixes chemistry/hypothesis but physics/methodology specificity stays weak.
WEAK_R1 = {("physics", "methodology"): ("specificity",)}
# A regenerated pair: REGEN_CHILD was regenerated from REGEN_PARENT (the parent failed the judge).
REGEN_PARENT = "req-physics-methodology-0-r0"
REGEN_CHILD = "req-physics-methodology-0-r1regen"


def _score(rng: random.Random, weak: bool) -> float:
    return round(rng.uniform(2.0, 2.8) if weak else rng.uniform(3.2, 4.6), 3)


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

    # Evaluation: both checkpoints and the teacher (an external reference row).
    models = [(CHECKPOINTS[0], "checkpoint", CHECKPOINTS[0], 0, WEAK_R0),
              (CHECKPOINTS[1], "checkpoint", CHECKPOINTS[1], 1, WEAK_R1),
              (TEACHER_MODEL_ID, "external", None, 1, {})]
    for model_id, kind, ckpt, rnd, weak in models:
        metric_rows, pred_rows = [], []
        for domain in DOMAINS:
            for task in TASK_TYPES:
                n = 4
                truncated = rng.choice([0, 1]) if kind == "checkpoint" else 0
                for j in range(n):
                    pred_rows.append({
                        "model_id": model_id, "prompt_id": f"e-{domain}-{task}-{j}", "model_kind": kind,
                        "checkpoint_id": ckpt, "domain": domain, "task_type": task, "prediction": "…",
                        "finish_reason": "length" if j < truncated else "stop", "prompt_tokens": 90,
                        "completion_tokens": 120, "latency_ms": 300.0,
                        "cost_usd": 0.00009 if kind == "external" else 0.0, "error": None, "eval_set": "es-1",
                    })
                for metric in METRICS:
                    mean = _score(rng, metric in weak.get((domain, task), ()))
                    std = round(rng.uniform(0.3, 0.9), 3)
                    metric_rows.append({
                        "model_id": model_id, "domain": domain, "task_type": task, "metric": metric,
                        "model_kind": kind, "checkpoint_id": ckpt, "mean": mean, "n": n, "std": std,
                        "ci_low": max(1.0, mean - 1.59 * std), "ci_high": min(5.0, mean + 1.59 * std),
                        "judge_failures": 0, "truncation_rate": truncated / n, "judge_model": "structural",
                        "rubric_version": "v1-0123", "eval_set": "es-1",
                    })
        lineage = Lineage(run_id=f"run-eval-{model_id}", round=rnd)
        lake.write("eval/predictions", pl.DataFrame(pred_rows, schema=PREDICTION_SCHEMA), mode="merge",
                   lineage=lineage)
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
    return lake
