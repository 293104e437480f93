"""What a judged feedback round reports: its log line and the metadata of its three tables."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg
import polars as pl

from nexa_assets.evaluate.report import cell_heatmap_markdown
from nexa_assets.feedback.round import Round
from nexa_assets.feedback.spend import ledger_view, usd_tag
from nexa_assets.metadata import markdown_table, rounded_table
from nexa_assets.rounds import ESTIMATE_TAG


# The weak cells' table in feedback/weaknesses' metadata.
WEAK_COLUMNS = (
    "domain task_type metric score n ci_high threshold gap clearly_weak change change_ci_low change_ci_high".split()
)


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def estimate_text(r: Round) -> str:
    """The next round's estimated $ as the sensor copies it into the run's tags ('unknown' when a price is;
    empty when the loop stopped before estimating)."""
    return usd_tag(r.next_round.total_usd) if r.next_round is not None else ""


def round_log(r: Round) -> str:
    verdict, lift, rules, stop = r.verdict, r.lift, r.rules, r.stop
    if stop:
        outcome = f"loop stops: {stop}" + (f" ({r.stop_detail})" if r.stop_detail else "")
    else:
        outcome = (
            f"requesting {r.requests.height if r.requests is not None else 0} cells for round {r.round + 1}: "
            f"{', '.join(r.focus)}, estimated $ {estimate_text(r)} "
            f"({r.next_round.basis if r.next_round else ''})"
        )
    return (
        f"round {r.round} ({rules.loop_id}, loop round {verdict.loop_round}): {r.weak.height} of {r.cells.height} "
        f"cells weak ({int(verdict.cells['clearly_weak'].sum())} clearly); "
        + (f"focus lift {lift} over {lift.n} prompts, improved: {verdict.improved}; " if lift is not None else "")
        + f"cost {r.cost}, loop spent {usd_tag(r.spent_usd)}"
        + (f" of budget {rules.budget_usd:g}" if rules.budget_usd is not None else "")
        + "; "
        + outcome
    )


def weaknesses_metadata(r: Round, metrics: tuple[str, ...]) -> dict[str, Any]:
    """The round's cells, focus, lift and stop reason, with the heatmap and the weak cells."""
    lift, drop = r.lift, r.verdict.largest_other_drop
    thresholds = {m: r.rules.threshold(m) for m in metrics}
    return {
        "round": r.round,
        "checkpoint_id": r.model_id,
        "weak_cells": r.weak.height,
        "cells": r.cells.height,
        "focus_cells": dg.MetadataValue.json(r.focus),
        "stop_reason": r.stop or "",
        "loop_id": r.rules.loop_id,
        "loop_round": r.verdict.loop_round,
        "clearly_weak_cells": int(r.verdict.cells["clearly_weak"].sum()),
        "focus_lift": _rounded(lift.mean) if lift is not None else None,
        "focus_lift_ci": dg.MetadataValue.json([_rounded(lift.ci_low), _rounded(lift.ci_high)])
        if lift is not None and lift.ci_low is not None
        else None,
        "focus_lift_n": lift.n if lift is not None else None,
        "improved": r.verdict.improved,
        ESTIMATE_TAG: dg.MetadataValue.text(estimate_text(r)),
        "round_usd": _rounded(r.cost.total_usd),
        "loop_spent_usd": _rounded(r.spent_usd),
        "largest_other_drop": dg.MetadataValue.json(
            {k: _rounded(v) if isinstance(v, float) else v for k, v in drop.items()}
        )
        if drop is not None
        else None,
        "thresholds": dg.MetadataValue.json(thresholds),
        "cell_scores": dg.MetadataValue.md(
            cell_heatmap_markdown(r.metrics, f"round {r.round}: weak cells outlined", thresholds)
        ),
        "weak": rounded_table(
            r.weak.sort("gap", descending=True),
            WEAK_COLUMNS,
            rounded=("score", "ci_high", "gap", "change", "change_ci_low", "change_ci_high"),
            rows=20,
        ),
    }


def requests_metadata(r: Round) -> dict[str, Any]:
    """The prompts bought for the next round per focus cell."""
    requests = r.requests
    return {
        "round": r.round,
        "for_round": r.round + 1,
        "requested_prompts": int(requests["n_prompts"].sum()) if requests is not None and requests.height else 0,
        "stop_reason": r.stop or "",
        "requests": dg.MetadataValue.md(
            markdown_table(
                requests.select("domain", "task_type", "n_prompts", pl.col("gap").round(3), "hints")
                if requests is not None
                else pl.DataFrame(),
                rows=20,
            )
        ),
        "focus": dg.MetadataValue.text(json.dumps(r.focus)),
    }


def rounds_metadata(r: Round, ledger: pl.DataFrame) -> dict[str, Any]:
    """The round's $ against the budget, and the ledger's last rounds."""
    return {
        "round": r.round,
        "round_usd": _rounded(r.cost.total_usd),
        "cost_known": not r.cost.unknown,
        "loop_spent_usd": _rounded(r.spent_usd),
        "budget_usd": r.rules.budget_usd,
        "gain_per_usd": _rounded(r.gain),
        ESTIMATE_TAG: dg.MetadataValue.text(estimate_text(r)),
        "stop_reason": r.stop or "",
        "stop_detail": r.stop_detail or "",
        "ledger": dg.MetadataValue.md(markdown_table(ledger_view(ledger).tail(20), rows=20)),
    }
