"""distill/pairs rows: filters with every reason, then the judge gate, for a batch of completions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from nexa_core.filters import FilterConfig, apply_filters
from nexa_core.rubric import JudgeVerdict
from nexa_resources.tables.distill import METRICS, PAIR_SCHEMA

JUDGE_UNPARSABLE = "judge_unparsable"
JUDGE_REFUSED = "judge_refused"


@dataclass(frozen=True)
class GateConfig:
    """Per-metric minimum judge scores (1–5) a pair needs to pass."""

    thresholds: Mapping[str, int] = field(default_factory=lambda: {m: 3 for m in METRICS})




def evaluate_pairs(
    rows: Sequence[Mapping[str, Any]],
    *,
    filters: FilterConfig,
    gate: GateConfig,
    judge: Callable[[list[dict[str, Any]], list[dict[str, Any]]], list[JudgeVerdict]],
    judge_model: str,
    rubric_version: str,
    anchors: Sequence[Mapping[str, Any]] = (),
) -> pl.DataFrame:
    """Pairs for `rows` (completions joined with their prompt: domain, task_type, instruction, context).

    `anchors` are completions that already passed: a new row copying one of them is a near duplicate.
    Only rows that pass every filter are judged (an LLM judge costs money); a judge answer that
    cannot be parsed rejects the pair as `judge_unparsable` and records no score. `judge(items, corpus)`
    also gets the anchors as `corpus`, so an answer the teacher gives to many prompts is seen across runs.
    """
    all_reasons = apply_filters([*anchors, *rows], filters)[len(anchors):]
    to_judge = [i for i, reasons in enumerate(all_reasons) if not reasons]
    verdicts = judge([_judge_item(rows[i]) for i in to_judge], [_judge_item(a) for a in anchors]) if to_judge else []
    by_row: dict[int, JudgeVerdict] = dict(zip(to_judge, verdicts))
    out = []
    for i, row in enumerate(rows):
        reasons = list(all_reasons[i])
        verdict = by_row.get(i)
        scores: dict[str, int] = {}
        if verdict is not None:
            if verdict.scores is None:
                kind = (verdict.error or "").partition(":")[0]
                reasons.append(kind if kind in (JUDGE_UNPARSABLE, JUDGE_REFUSED) else "judge_error")
            else:
                scores = verdict.scores
                reasons += [f"judge_low_{m}" for m, t in gate.thresholds.items() if scores.get(m, 0) < t]
        out.append(
            {
                "request_id": row["request_id"],
                "prompt_id": row["prompt_id"],
                "domain": row["domain"],
                "task_type": row["task_type"],
                "passed": not reasons,
                "reject_reasons": reasons,
                "judge_model": judge_model if verdict is not None else None,
                "rubric_version": rubric_version if verdict is not None else None,
                **{f"score_{m}": scores.get(m) for m in METRICS},
                "judge_mean": sum(scores.values()) / len(scores) if scores else None,
                "lacking": "; ".join(f"{m}: {v}" for m, v in verdict.lacking.items()) if verdict else None,
                "judge_error": verdict.error if verdict is not None else None,
                "regenerated_from": row.get("regenerated_from"),
                "sample_index": row.get("sample_index") or 0,
                "chosen": False,
                **judge_cost(verdict),
            }
        )
    return pl.DataFrame(out, schema=PAIR_SCHEMA)


def judge_cost(verdict: JudgeVerdict | None) -> dict[str, Any]:
    """The judge cost columns of a row with this verdict (None: not judged, nothing spent)."""
    if verdict is None:
        return {"judge_prompt_tokens": 0, "judge_completion_tokens": 0, "judge_cost_usd": 0.0}
    return {
        "judge_prompt_tokens": verdict.prompt_tokens,
        "judge_completion_tokens": verdict.completion_tokens,
        "judge_cost_usd": verdict.cost_usd,
    }


def _judge_item(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "owner": f"distill/pairs:{row['request_id']}",
        "task_type": row["task_type"],
        "instruction": row["instruction"],
        "context": row.get("context"),
        "answer": row["completion"],
        "finish_reason": row.get("finish_reason"),
    }


def mark_chosen(pairs: pl.DataFrame) -> pl.DataFrame:
    """`chosen` set on each prompt's best passing pair (judge mean, then lower sample index and request id)."""
    if pairs.is_empty():
        return pairs
    ranked = pairs.filter(pl.col("passed")).sort(
        ["prompt_id", "judge_mean", "sample_index", "request_id"],
        descending=[False, True, False, False],
        nulls_last=True,
    )
    best = set(ranked.unique(subset=["prompt_id"], keep="first", maintain_order=True)["request_id"])
    return pairs.with_columns(pl.col("request_id").is_in(list(best)).alias("chosen"))
