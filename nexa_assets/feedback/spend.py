"""What a feedback round costs: its teacher, judge, GPU and evaluation $ measured from the lake's cost columns,
and the next round's $ estimated from the last round's unit costs (before that round runs).

Plain polars in, plain values out (no Dagster). A $ of None is *unknown* (a model with no known price, a table
that does not record a price), never $0, and a sum with an unknown part is unknown. A table that does not
exist, or has no rows of a round, means nothing was bought ($0).

The $ of round r are the rows whose lineage `round` is r (a cached request is not asked again, so its row keeps
the round that paid for it):
- teacher: distill/completions.cost_usd, one row per request paid;
- judge: distill/pairs.judge_cost_usd and eval/scores.judge_cost_usd (`judge_costs.judge_spend`: the structural
  judge costs $0, an LLM judge without a price is unknown);
- gpu: train/checkpoints.cost_usd (SkyPilot: the catalog $/hour × job time; the local backend $0);
- eval: eval/predictions.cost_usd (answers of priced models: the teacher and external reference rows, and a
  checkpoint answered on a SkyPilot GPU node, its job's $ split over its rows; local answers cost $0, an
  unpriced model's are unknown).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import polars as pl

from nexa_assets.evaluate.judge_costs import format_usd, judge_spend
from nexa_resources.tables.feedback import ROUND_SCHEMA

if TYPE_CHECKING:
    from nexa_resources.lake import LakeResource

PARTS: tuple[str, ...] = ("teacher", "judge", "gpu", "eval")
UNKNOWN = "unknown"  # how an unknown $ is written where a string is needed (run tags, metadata)


@dataclass(frozen=True)
class Cost:
    """Dollars of one round by part; None is unknown."""

    teacher_usd: float | None = 0.0
    judge_usd: float | None = 0.0
    gpu_usd: float | None = 0.0
    eval_usd: float | None = 0.0

    @property
    def total_usd(self) -> float | None:
        """The sum of the parts; None when any part is unknown."""
        parts = [getattr(self, f.name) for f in fields(self)]
        return None if any(p is None for p in parts) else float(sum(parts))

    @property
    def unknown(self) -> tuple[str, ...]:
        """The parts whose $ is unknown, e.g. ('judge',)."""
        return tuple(f.name.removesuffix("_usd") for f in fields(self) if getattr(self, f.name) is None)

    def __str__(self) -> str:
        parts = ", ".join(f"{p} {_usd(getattr(self, f'{p}_usd'))}" for p in PARTS)
        return f"{_usd(self.total_usd)} ({parts})"


@dataclass(frozen=True)
class Estimate:
    """The next round's $ before it runs: by part, the prompts it buys, and how the figures were made."""

    cost: Cost
    prompts: int
    basis: str  # e.g. "round 1: teacher $0.0004/prompt, judge $0.0001/prompt × 24 prompts; ..."

    @property
    def total_usd(self) -> float | None:
        return self.cost.total_usd


@dataclass(frozen=True)
class CostTables:
    """The cost-bearing tables (only the columns the $ need); an empty frame for a table that does not exist."""

    completions: pl.DataFrame
    pairs: pl.DataFrame
    scores: pl.DataFrame
    predictions: pl.DataFrame
    checkpoints: pl.DataFrame

    @classmethod
    def read(cls, lake: LakeResource) -> CostTables:
        judge = ["round", "prompt_id", "judge_model", "judge_prompt_tokens", "judge_completion_tokens", "judge_cost_usd"]
        return cls(
            completions=_read(lake, "distill/completions", ["round", "prompt_id", "cost_usd"]),
            pairs=_read(lake, "distill/pairs", judge),
            scores=_read(lake, "eval/scores", [*judge, "model_id", "error"]),
            predictions=_read(lake, "eval/predictions", ["round", "model_id", "cost_usd"]),
            checkpoints=_read(lake, "train/checkpoints", ["round", "checkpoint_id", "cost_usd", "created_at"]),
        )


def _read(lake: LakeResource, table: str, wanted: list[str]) -> pl.DataFrame:
    """The wanted columns a table has (an older table may lack some); empty when the table does not exist."""
    if not lake.exists(table):
        return pl.DataFrame()
    present = {f.name for f in lake.delta_table(table).schema().fields}
    return lake.read(table, columns=[c for c in wanted if c in present])


def _usd(value: float | None) -> str:
    return UNKNOWN if value is None else f"${value:,.4f}"


def usd_tag(value: float | None) -> str:
    """A $ as a run tag or metadata text: '0.012345', or 'unknown' (tags are strings; never '0' for unknown)."""
    return format_usd(value)


def _with(frame: pl.DataFrame, columns: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """`frame` with the columns it lacks added as nulls (a planted or older table)."""
    missing = [pl.lit(None, dtype).alias(name) for name, dtype in columns.items() if name not in frame.columns]
    return frame.with_columns(missing) if missing else frame


def _part_by_round(frame: pl.DataFrame, column: str, name: str) -> pl.DataFrame:
    """round, `name` (the sum of `column`, unknown parts left out) and `name`_known (no null in the round)."""
    schema = {"round": pl.Int64(), name: pl.Float64(), f"{name}_known": pl.Boolean()}
    if frame.is_empty() or "round" not in frame.columns:
        return pl.DataFrame(schema=schema)
    frame = _with(frame, {column: pl.Float64()})
    return (
        frame.group_by("round")
        .agg(pl.col(column).sum().alias(name), (pl.col(column).null_count() == 0).alias(f"{name}_known"))
        .cast(schema)  # type: ignore[arg-type]
    )


def _judge_rows(tables: CostTables) -> tuple[pl.DataFrame, pl.DataFrame]:
    """distill/pairs and eval/scores with what judge_spend needs (rows of a planted or older table may lack it)."""
    pairs = _with(tables.pairs, {"judge_model": pl.String()}) if not tables.pairs.is_empty() else tables.pairs
    scores = (
        _with(tables.scores, {"error": pl.String(), "judge_model": pl.String()})
        if not tables.scores.is_empty()
        else tables.scores
    )
    return pairs, scores


def round_costs(tables: CostTables) -> pl.DataFrame:
    """Per round: teacher_usd, judge_distill_usd, judge_eval_usd, judge_usd, gpu_usd, eval_usd (null: unknown),
    and `prompts`, the distinct prompts the teacher answered in it."""
    pairs, scores = _judge_rows(tables)
    parts = [
        _part_by_round(tables.completions, "cost_usd", "teacher_usd"),
        _part_by_round(judge_spend(pairs, pl.DataFrame()), "cost_usd", "judge_distill_usd"),
        _part_by_round(judge_spend(pl.DataFrame(), scores), "cost_usd", "judge_eval_usd"),
        _part_by_round(tables.checkpoints, "cost_usd", "gpu_usd"),
        _part_by_round(tables.predictions, "cost_usd", "eval_usd"),
    ]
    rounds = pl.concat([p.select("round") for p in parts]).unique()
    if not tables.completions.is_empty() and "prompt_id" in tables.completions.columns:
        prompts = tables.completions.group_by("round").agg(pl.col("prompt_id").n_unique().alias("prompts"))
    else:
        prompts = pl.DataFrame(schema={"round": pl.Int64(), "prompts": pl.UInt32()})
    out = rounds.join(prompts.cast({"round": pl.Int64()}), on="round", how="left")
    for part in parts:
        out = out.join(part, on="round", how="left")
    names = [c for p in parts for c in p.columns if c != "round" and not c.endswith("_known")]
    known = {n: pl.col(f"{n}_known").fill_null(True) for n in names}
    out = out.with_columns(
        *(pl.when(known[n]).then(pl.col(n).fill_null(0.0)).otherwise(None).alias(n) for n in names),
        pl.col("prompts").fill_null(0).cast(pl.Int64),
    ).with_columns((pl.col("judge_distill_usd") + pl.col("judge_eval_usd")).alias("judge_usd"))  # null + x = null
    return out.select(
        "round", "teacher_usd", "judge_distill_usd", "judge_eval_usd", "judge_usd", "gpu_usd", "eval_usd", "prompts"
    ).sort("round")


def measured(costs: pl.DataFrame, round_: int) -> Cost:
    """Round `round_`'s $ by part from `round_costs` rows ($0 for a round with no rows: nothing was bought)."""
    row = costs.filter(pl.col("round") == round_)
    if row.is_empty():
        return Cost()
    values = row.row(0, named=True)
    return Cost(*(values[f"{p}_usd"] for p in PARTS))


def spent(costs: pl.DataFrame, first: int, last: int) -> float | None:
    """What rounds first..last (inclusive) cost in all; None when any of them has an unknown part."""
    total = 0.0
    for round_ in range(first, last + 1):
        usd = measured(costs, round_).total_usd
        if usd is None:
            return None
        total += usd
    return total


def _checkpoint_judge_usd(scores: pl.DataFrame, checkpoint_id: str) -> float | None:
    mine = scores.filter(pl.col("model_id") == checkpoint_id) if not scores.is_empty() else scores
    spend = judge_spend(pl.DataFrame(), mine)
    return None if spend["cost_usd"].null_count() else float(spend["cost_usd"].sum())


def _sum_known(frame: pl.DataFrame, column: str) -> float | None:
    """The column's sum; None when the column is missing or any value is null; 0 for no rows."""
    if frame.is_empty():
        return 0.0
    if column not in frame.columns or frame[column].null_count():
        return None
    return float(frame[column].sum())


def estimate_next(
    tables: CostTables, costs: pl.DataFrame, round_: int, checkpoint_id: str, prompts: int
) -> Estimate:
    """Round `round_ + 1`'s $, made after round `round_` and before the next one runs, if it buys `prompts` prompts.

    - teacher and distill judge: $ per prompt the teacher answered in the newest round ≤ `round_` that answered
      any, × `prompts` (best-of samples and regenerations are in that per-prompt figure);
    - evaluation judge and answers: what evaluating `checkpoint_id` (this round's checkpoint) cost, again (the
      eval set is stable; the base, teacher and external reference rows are answered once per eval set and do
      not recur);
    - GPU: `checkpoint_id`'s $ × (P + prompts) / P, P = prompts the teacher answered up to round `round_`: each
      round trains on every SFT row so far, so its time grows with the data.
    A part with no evidence (no round answered a prompt yet) or an unknown price is unknown.
    """
    pairs, scores = _judge_rows(tables)
    answered = costs.filter((pl.col("round") <= round_) & (pl.col("prompts") > 0)).sort("round")
    notes: list[str] = []
    teacher: float | None = None
    judge_distill: float | None = None
    if answered.is_empty():
        notes.append("teacher and distill judge unknown: no round has answered a prompt yet")
    else:
        basis = answered.row(-1, named=True)
        per = {k: None if basis[f"{k}_usd"] is None else basis[f"{k}_usd"] / basis["prompts"]
               for k in ("teacher", "judge_distill")}  # fmt: skip
        teacher = None if per["teacher"] is None else per["teacher"] * prompts
        judge_distill = None if per["judge_distill"] is None else per["judge_distill"] * prompts
        notes.append(
            f"round {basis['round']} per prompt: teacher {_usd(per['teacher'])}, distill judge "
            f"{_usd(per['judge_distill'])} ({basis['prompts']} prompts) × {prompts}"
        )
    judge_eval = _checkpoint_judge_usd(scores, checkpoint_id)
    evaluation = _sum_known(
        tables.predictions.filter(pl.col("model_id") == checkpoint_id) if not tables.predictions.is_empty() else
        tables.predictions, "cost_usd",
    )
    notes.append(f"evaluating {checkpoint_id} again: judge {_usd(judge_eval)}, answers {_usd(evaluation)}")
    checkpoint = (
        tables.checkpoints.filter(pl.col("checkpoint_id") == checkpoint_id)
        if not tables.checkpoints.is_empty() and "checkpoint_id" in tables.checkpoints.columns
        else pl.DataFrame()
    )
    gpu_last = None if checkpoint.is_empty() else _sum_known(checkpoint, "cost_usd")
    so_far = int(costs.filter(pl.col("round") <= round_)["prompts"].sum()) if not costs.is_empty() else 0
    scale = (so_far + prompts) / so_far if so_far else 1.0
    gpu = None if gpu_last is None else gpu_last * scale
    notes.append(f"GPU {_usd(gpu_last)} × ({so_far} + {prompts}) / {so_far} prompts" if so_far
                 else f"GPU {_usd(gpu_last)} (no prompts answered to scale by)")
    judge = None if judge_distill is None or judge_eval is None else judge_distill + judge_eval
    return Estimate(Cost(teacher, judge, gpu, evaluation), prompts, "; ".join(notes))


def estimate_made_for(ledger: pl.DataFrame, round_: int) -> tuple[Cost, str] | None:
    """The estimate made for round `round_` before it ran (the previous round's next_* columns in feedback/rounds)
    with its basis; None when none was made (round 0, a loop that stopped, a lake from before the ledger)."""
    if ledger.is_empty():
        return None
    previous = ledger.filter(pl.col("round") == round_ - 1)
    if previous.is_empty() or previous["next_prompts"][0] is None:
        return None
    row = previous.row(0, named=True)
    return Cost(*(row[f"next_{p}_usd"] for p in PARTS)), row["next_estimate_basis"] or ""


def ledger_row(
    *,
    loop_id: str,
    loop_round: int,
    checkpoint_id: str,
    cost: Cost,
    estimated: tuple[Cost, str] | None,
    spent_usd: float | None,
    budget_usd: float | None,
    focus_lift: float | None,
    gain_per_usd: float | None,
    min_gain_per_usd: float | None,
    next_round: Estimate | None,
    stop_reason: str | None,
    stop_detail: str | None,
) -> pl.DataFrame:
    """One feedback/rounds row (ROUND_SCHEMA); lineage columns are added on write."""
    before = estimated[0] if estimated is not None else None
    row: dict[str, Any] = {
        "loop_id": loop_id,
        "loop_round": loop_round,
        "checkpoint_id": checkpoint_id,
        **{f"{p}_usd": getattr(cost, f"{p}_usd") for p in PARTS},
        "total_usd": cost.total_usd,
        "cost_known": not cost.unknown,
        **{f"estimated_{p}_usd": getattr(before, f"{p}_usd") if before else None for p in PARTS},
        "estimated_usd": before.total_usd if before else None,
        "estimate_basis": estimated[1] if estimated is not None else None,
        "spent_usd": spent_usd,
        "budget_usd": budget_usd,
        "focus_lift": focus_lift,
        "gain_per_usd": gain_per_usd,
        "min_gain_per_usd": min_gain_per_usd,
        "next_prompts": next_round.prompts if next_round else None,
        **{f"next_{p}_usd": getattr(next_round.cost, f"{p}_usd") if next_round else None for p in PARTS},
        "next_estimate_usd": next_round.total_usd if next_round else None,
        "next_estimate_basis": next_round.basis if next_round else None,
        "stop_reason": stop_reason,
        "stop_detail": stop_detail,
    }
    return pl.DataFrame([row], schema=ROUND_SCHEMA)


def _money(value: float | None, made: bool = True, absent: str = "—") -> str:
    if not made:
        return absent
    return UNKNOWN if value is None else f"${value:,.6f}"


def ledger_view(ledger: pl.DataFrame) -> pl.DataFrame:
    """feedback/rounds for people, oldest round first: $ as text, "unknown" for a null price (never $0), "—" where
    no figure was made (no estimate before round 0, none after a stop), "none" for no budget."""
    columns = ["round", "loop_round", "estimated", "measured", "teacher", "judge", "gpu", "eval", "spent", "budget",
               "focus_lift", "gain_per_usd", "next_estimate", "stop_reason", "stop_detail"]  # fmt: skip
    schema = {c: pl.String() for c in columns} | {"round": pl.Int64(), "loop_round": pl.Int64()}
    if ledger.is_empty():
        return pl.DataFrame(schema=schema)
    rows = []
    for r in ledger.sort("round").iter_rows(named=True):
        rows.append(
            {
                "round": r["round"],
                "loop_round": r["loop_round"],
                "estimated": _money(r["estimated_usd"], r["estimate_basis"] is not None),
                "measured": _money(r["total_usd"]),
                **{p: _money(r[f"{p}_usd"]) for p in PARTS},
                "spent": _money(r["spent_usd"]),
                "budget": _money(r["budget_usd"], r["budget_usd"] is not None, "none"),
                "focus_lift": "—" if r["focus_lift"] is None else f"{r['focus_lift']:+.3f}",
                "gain_per_usd": "—" if r["gain_per_usd"] is None else f"{r['gain_per_usd']:.4g}",
                "next_estimate": _money(r["next_estimate_usd"], r["next_prompts"] is not None),
                "stop_reason": r["stop_reason"] or "—",
                "stop_detail": r["stop_detail"] or "",
            }
        )
    return pl.DataFrame(rows, schema=schema)
