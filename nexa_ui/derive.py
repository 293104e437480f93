"""What the pages show, computed from lake tables: plain polars in, polars out (no Streamlit here)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import polars as pl

from nexa_assets.evaluate.judge_costs import judge_spend
from nexa_assets.evaluate.stats import mean_ci, t_critical_95
from nexa_assets.feedback.spend import ledger_view
from nexa_core.taxonomy import DOMAINS, TASK_TYPES
from nexa_resources.tables.distill import METRICS

# Where a model's scores come from: eval/scores rows count only under the judge, rubric and eval set that
# model's eval/metrics rows carry.
SCORE_SOURCE: tuple[str, ...] = ("judge_model", "rubric_version", "eval_set")
# How the leaderboard's overall interval was obtained (its `ci_from` column).
PER_ANSWER = "per answer"
UNKNOWN_USD = "unknown"  # a $ the lake cannot tell (a model without a known price), never shown as $0
CELL_BOUND = "cell bound"


def pooled(means: Sequence[float], stds: Sequence[float | None], ns: Sequence[int]) -> tuple[float, int, float | None]:
    """Mean, n and sample std of the union of groups given each group's mean, std and n (exact)."""
    groups = [(m, s, n) for m, s, n in zip(means, stds, ns) if m is not None and n]
    total = sum(n for _, _, n in groups)
    if not total:
        return math.nan, 0, None
    mean = math.fsum(m * n for m, _, n in groups) / total
    if total < 2:
        return mean, total, None
    ss = math.fsum((n - 1) * (s or 0.0) ** 2 + n * (m - mean) ** 2 for m, s, n in groups)
    return mean, total, math.sqrt(ss / (total - 1))


def _ci(mean: float, n: int, std: float | None) -> tuple[float | None, float | None]:
    if n < 2 or std is None:
        return (1.0, 5.0) if n == 1 else (None, None)
    half = t_critical_95(n - 1) * std / math.sqrt(n)
    return max(1.0, mean - half), min(5.0, mean + half)


def _pooled_cells(frame: pl.DataFrame) -> tuple[float, int, float | None]:
    std = frame["std"].to_list() if "std" in frame.columns else [None] * frame.height
    return pooled(frame["mean"].to_list(), std, frame["n"].to_list())


def _pool(frame: pl.DataFrame) -> dict[str, float | int | None]:
    mean, n, sd = _pooled_cells(frame)
    low, high = _ci(mean, n, sd)
    return {"mean": mean, "n": n, "ci_low": low, "ci_high": high}


def answer_means(scores: pl.DataFrame, metrics: pl.DataFrame) -> pl.DataFrame:
    """Each answer's mean over its non-null metric scores (model_id, prompt_id, score), on the judge, rubric
    and eval set its model's eval/metrics rows carry; an answer the judge scored on no metric is left out."""
    on = ["model_id", *(c for c in SCORE_SOURCE if c in scores.columns and c in metrics.columns)]
    carried = metrics.select(on).unique().fill_null("")
    kept = scores.with_columns(pl.col(on).fill_null("")).join(carried, on=on, how="semi")
    return (
        kept.group_by("model_id", "prompt_id")
        .agg(pl.col("score").cast(pl.Float64).mean())
        .drop_nulls("score")
        .sort("model_id", "prompt_id")
    )


def _per_answer(values: Sequence[float]) -> dict[str, object]:
    """Overall mean, n and 95% t-interval over per-answer means (answers are the independent samples)."""
    stats = mean_ci(values)
    return {"overall": stats.mean, "n": stats.n, "ci_low": stats.ci_low, "ci_high": stats.ci_high,
            "ci_from": PER_ANSWER}


def _cell_bound(cells: pl.DataFrame) -> dict[str, object]:
    """Overall from eval/metrics cells alone (no eval/scores): the pooled mean, n = answers (the largest
    per-metric n) and the per-answer std bounded by the mean of the per-metric stds, its worst case (metrics
    moving together), so the interval is never narrower than the per-answer one."""
    per_metric = [_pooled_cells(group) for group in cells.partition_by("metric")]
    stds = [sd for _, _, sd in per_metric]
    n = max((k for _, k, _ in per_metric), default=0)
    std = None if not stds or None in stds else math.fsum(sd for sd in stds if sd is not None) / len(stds)
    mean = _pooled_cells(cells)[0]
    low, high = _ci(mean, n, std)
    return {"overall": None if math.isnan(mean) else mean, "n": n, "ci_low": low, "ci_high": high,
            "ci_from": CELL_BOUND}


def _answer_scores(scores: pl.DataFrame | None, metrics: pl.DataFrame) -> dict[str, list[float]]:
    """model_id → its per-answer means (empty when eval/scores is missing or lacks the columns needed)."""
    needed = {"model_id", "prompt_id", "score"}
    if scores is None or scores.is_empty() or not needed <= set(scores.columns):
        return {}
    means = answer_means(scores, metrics)
    return {model_id: group["score"].to_list() for (model_id,), group in means.group_by(["model_id"])}


def derived_label(model_id: str, kind: str | None, round_: int | None) -> str:
    """What a lake without model_label calls a model: "round <r> student" for a checkpoint, else its id."""
    return f"round {round_} student" if kind == "checkpoint" and round_ is not None else model_id


def _derived_labels(frame: pl.DataFrame) -> dict[str, str]:
    kind = pl.col("model_kind").drop_nulls().first() if "model_kind" in frame.columns else pl.lit(None, pl.String)
    rnd = pl.col("round").max() if "round" in frame.columns else pl.lit(None, pl.Int64)
    rows = frame.group_by("model_id").agg(kind.alias("kind"), rnd.alias("round"))
    return {r["model_id"]: derived_label(r["model_id"], r["kind"], r["round"]) for r in rows.iter_rows(named=True)}


def _stored_labels(frame: pl.DataFrame) -> dict[str, str]:
    if "model_label" not in frame.columns:
        return {}
    rows = frame.filter(pl.col("model_label").is_not_null())
    if "created_at" in rows.columns:
        rows = rows.sort("created_at")
    return dict(zip(rows["model_id"].to_list(), rows["model_label"].to_list()))


def model_labels(*frames: pl.DataFrame | None) -> dict[str, str]:
    """model_id → readable name: the model_label the lake stores (newest wins), else one derived from the
    model's kind and round in the first frame that names it (eval/metrics before eval/predictions)."""
    derived: dict[str, str] = {}
    stored: dict[str, str] = {}
    for frame in frames:
        if frame is None or frame.is_empty() or "model_id" not in frame.columns:
            continue
        derived = {**_derived_labels(frame), **derived}
        stored.update(_stored_labels(frame))
    return {**derived, **stored}


def with_labels(frame: pl.DataFrame, labels: Mapping[str, str]) -> pl.DataFrame:
    """`frame` with a model_label column right after model_id (the id itself where no label is known)."""
    if "model_id" not in frame.columns:
        return frame
    columns = [c for c in frame.columns if c != "model_label"]
    at = columns.index("model_id") + 1
    label = pl.col("model_id").replace_strict(dict(labels), default=pl.col("model_id"), return_dtype=pl.String)
    return frame.with_columns(label.alias("model_label")).select(*columns[:at], "model_label", *columns[at:])


def model_metrics(metrics: pl.DataFrame) -> pl.DataFrame:
    """One row per (model_id, metric): the cells pooled (n-weighted mean, 95% t-interval over all prompts)."""
    rows = []
    for (model_id, metric), group in metrics.group_by(["model_id", "metric"], maintain_order=True):
        rows.append({"model_id": model_id, "metric": metric, **_pool(group)})
    order = {m: i for i, m in enumerate(METRICS)}
    return pl.DataFrame(
        rows,
        schema={"model_id": pl.String, "metric": pl.String, "mean": pl.Float64, "n": pl.Int64,
                "ci_low": pl.Float64, "ci_high": pl.Float64},
    ).sort(pl.col("metric").replace_strict(order, default=len(order)), "model_id")


def _truncation(group: pl.DataFrame) -> float:
    """Share of a model's answers cut at max_tokens (each cell counted once, not once per metric)."""
    cells = group.unique(["domain", "task_type"], keep="first")
    answered = cells["n"] + cells["judge_failures"].fill_null(0)
    if not answered.sum():
        return 0.0
    return float((cells["truncation_rate"].fill_null(0.0) * answered).sum() / answered.sum())


_BOARD_SCHEMA: dict[str, pl.DataType] = {
    "model_id": pl.String(), "model_label": pl.String(), "model_kind": pl.String(), "checkpoint_id": pl.String(),
    "round": pl.Int64(), "overall": pl.Float64(), "ci_low": pl.Float64(), "ci_high": pl.Float64(), "n": pl.Int64(),
    "ci_from": pl.String(), **{m: pl.Float64() for m in METRICS}, "truncation_rate": pl.Float64(),
    "judge_failures": pl.Int64(),
}


def _board_row(model_id: str, group: pl.DataFrame, answers: list[float], label: str) -> dict[str, object]:
    overall = _per_answer(answers) if answers else _cell_bound(group)
    row: dict[str, object] = {
        "model_id": model_id,
        "model_label": label,
        "model_kind": group["model_kind"][0] if "model_kind" in group.columns else None,
        "checkpoint_id": group["checkpoint_id"][0] if "checkpoint_id" in group.columns else None,
        "round": int(group["round"].max()) if "round" in group.columns else None,
        **overall,
    }
    for metric in METRICS:
        sub = group.filter(pl.col("metric") == metric)
        row[metric] = _pool(sub)["mean"] if sub.height else None
    row["truncation_rate"] = _truncation(group)
    row["judge_failures"] = int(group["judge_failures"].fill_null(0).sum())
    return row


def leaderboard(
    metrics: pl.DataFrame,
    scores: pl.DataFrame | None,
    checkpoints: pl.DataFrame | None = None,
    predictions: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per evaluated model (checkpoints, and base, teacher and external models as reference rows),
    best overall first: its readable label, the overall score with its 95% CI over answers (each answer's
    mean metric score from eval/scores; without scores, the cell bound, `ci_from` says which), per-metric
    means, truncation rate, judge failures, and what it cost (GPU $ to train a checkpoint, $ for its answers)."""
    answers = _answer_scores(scores, metrics)
    labels = model_labels(metrics, predictions)
    rows = [
        _board_row(model_id, group, answers.get(model_id, []), labels.get(model_id, model_id))
        for (model_id,), group in metrics.group_by(["model_id"], maintain_order=True)
    ]
    board = pl.DataFrame(rows, schema=_BOARD_SCHEMA)
    train_cost = pl.DataFrame(schema={"checkpoint_id": pl.String, "train_usd": pl.Float64})
    if checkpoints is not None and not checkpoints.is_empty():
        train_cost = checkpoints.group_by("checkpoint_id").agg(pl.col("cost_usd").fill_null(0.0).sum().alias("train_usd"))
    eval_cost = pl.DataFrame(schema={"model_id": pl.String, "eval_usd": pl.Float64})
    if predictions is not None and not predictions.is_empty():
        eval_cost = predictions.group_by("model_id").agg(pl.col("cost_usd").fill_null(0.0).sum().alias("eval_usd"))
    return (
        board.join(train_cost, on="checkpoint_id", how="left")
        .join(eval_cost, on="model_id", how="left")
        .sort("overall", descending=True, nulls_last=True)
    )


def latest_checkpoint(metrics: pl.DataFrame) -> str | None:
    """The most recent evaluated checkpoint (highest round, then newest row), else any model."""
    if metrics.is_empty():
        return None
    ranked = metrics.with_columns(pl.col("model_kind").eq("checkpoint").fill_null(False).alias("_ckpt")).sort(
        ["_ckpt", "round", "created_at"], descending=True, nulls_last=True
    )
    return ranked["model_id"][0]


def cell_grid(metrics: pl.DataFrame, model_id: str, metric: str, weaknesses: pl.DataFrame | None = None) -> pl.DataFrame:
    """domain × task_type for one model and metric: mean, CI, n, and weak/pass from feedback/weaknesses."""
    grid = metrics.filter((pl.col("model_id") == model_id) & (pl.col("metric") == metric)).select(
        "domain", "task_type", "mean", "ci_low", "ci_high", "n"
    )
    status = pl.DataFrame(schema={"domain": pl.String, "task_type": pl.String, "status": pl.String,
                                  "threshold": pl.Float64})
    if weaknesses is not None and not weaknesses.is_empty():
        status = (
            weaknesses.filter((pl.col("model_id") == model_id) & (pl.col("metric") == metric))
            .sort("round")
            .unique(["domain", "task_type"], keep="last")
            .select("domain", "task_type", "status", "threshold")
        )
    order = {d: i for i, d in enumerate(DOMAINS)}
    return grid.join(status, on=["domain", "task_type"], how="left").sort(
        pl.col("domain").replace_strict(order, default=len(order)), "task_type"
    )


def cell_history(
    weaknesses: pl.DataFrame, metrics: pl.DataFrame, domain: str, task_type: str, metric: str
) -> pl.DataFrame:
    """One cell's score per feedback round with the threshold it was held to (feedback/weaknesses), or,
    before any feedback ran, each evaluated checkpoint's mean by its round (eval/metrics)."""
    cell = (pl.col("domain") == domain) & (pl.col("task_type") == task_type) & (pl.col("metric") == metric)
    if not weaknesses.is_empty() and weaknesses.filter(cell).height:
        return (
            weaknesses.filter(cell)
            .select("round", "model_id", "score", "threshold", "status", "ci_low", "ci_high")
            .sort("round")
        )
    if metrics.is_empty():
        return pl.DataFrame()
    return (
        metrics.filter(cell & (pl.col("model_kind") == "checkpoint"))
        .select("round", "model_id", pl.col("mean").alias("score"), "ci_low", "ci_high")
        .sort("round")
    )


def weak_cells(weaknesses: pl.DataFrame) -> pl.DataFrame:
    """The weak cells of the latest round, largest gap first."""
    if weaknesses.is_empty():
        return weaknesses
    last = weaknesses["round"].max()
    return (
        weaknesses.filter((pl.col("round") == last) & (pl.col("status") == "weak"))
        .select("round", "domain", "task_type", "metric", "model_id", "score", "threshold", "gap")
        .sort("gap", descending=True)
    )


def reject_reasons(pairs: pl.DataFrame) -> list[str]:
    if pairs.is_empty():
        return []
    return sorted(pairs["reject_reasons"].explode().drop_nulls().unique().to_list())


def filter_pairs(
    pairs: pl.DataFrame,
    *,
    domain: str | None = None,
    task_type: str | None = None,
    passed: bool | None = None,
    reasons: Sequence[str] = (),
    rounds: Sequence[int] = (),
) -> pl.DataFrame:
    """Pairs matching every filter given (None / empty = any); `reasons` matches a pair with any of them."""
    out = pairs
    if domain:
        out = out.filter(pl.col("domain") == domain)
    if task_type:
        out = out.filter(pl.col("task_type") == task_type)
    if passed is not None:
        out = out.filter(pl.col("passed") == passed)
    if reasons:
        out = out.filter(pl.col("reject_reasons").list.eval(pl.element().is_in(list(reasons))).list.any())
    if rounds:
        out = out.filter(pl.col("round").is_in(list(rounds)))
    return out


def completions_with_cells(completions: pl.DataFrame, prompts: pl.DataFrame) -> pl.DataFrame:
    """Completions with their prompt's domain and task type (completions only carry prompt_id)."""
    if completions.is_empty():
        return completions
    if prompts.is_empty():
        return completions.with_columns(pl.lit(None, pl.String).alias("domain"), pl.lit(None, pl.String).alias("task_type"))
    return completions.join(prompts.select("prompt_id", "domain", "task_type"), on="prompt_id", how="left")


def regeneration_chain(completions: pl.DataFrame, request_id: str) -> list[str]:
    """Every request in the pair's regeneration chain, oldest first: the originals it was regenerated
    from, itself, then the regenerations made from it."""
    if completions.is_empty() or "regenerated_from" not in completions.columns:
        return [request_id]
    parent = dict(zip(completions["request_id"].to_list(), completions["regenerated_from"].to_list()))
    children: dict[str, list[str]] = {}
    for child, par in parent.items():
        if par:
            children.setdefault(par, []).append(child)
    back: list[str] = []
    seen = {request_id}
    current = parent.get(request_id)
    while current and current not in seen:
        back.append(current)
        seen.add(current)
        current = parent.get(current)
    forward: list[str] = []
    queue = list(children.get(request_id, []))
    while queue:
        nxt = queue.pop(0)
        if nxt in seen:
            continue
        seen.add(nxt)
        forward.append(nxt)
        queue.extend(children.get(nxt, []))
    return [*reversed(back), request_id, *forward]


def teacher_costs(completions: pl.DataFrame) -> pl.DataFrame:
    """Teacher requests, tokens and $ by (round, teacher_model)."""
    if completions.is_empty():
        return completions
    return (
        completions.group_by("round", "teacher_model")
        .agg(
            pl.len().alias("requests"),
            pl.col("prompt_tokens").fill_null(0).sum().alias("prompt_tokens"),
            pl.col("completion_tokens").fill_null(0).sum().alias("completion_tokens"),
            pl.col("cost_usd").fill_null(0.0).sum().alias("cost_usd"),
        )
        .sort("round", "teacher_model")
    )


def judge_costs(pairs: pl.DataFrame, scores: pl.DataFrame) -> pl.DataFrame:
    """Judge verdicts, requests paid, tokens and $ by (round, judge_model, table); `cost_usd` null when unknown."""
    return judge_spend(pairs, scores)


def judge_total(costs: pl.DataFrame) -> float | None:
    """All judge $ in `judge_costs`; None when any part is unknown."""
    if costs.is_empty():
        return 0.0
    return None if costs["cost_usd"].null_count() else float(costs["cost_usd"].sum())


def usd_text(frame: pl.DataFrame, column: str = "cost_usd") -> pl.DataFrame:
    """`column` as text for display: "$0.000123", or "unknown" for a null (never shown as $0)."""
    text = [UNKNOWN_USD if v is None else f"${v:,.6f}" for v in frame[column].to_list()]
    return frame.with_columns(pl.Series(column, text, dtype=pl.String))


def eval_costs(predictions: pl.DataFrame) -> pl.DataFrame:
    """Evaluation answers: tokens and $ by (round, model_id)."""
    if predictions.is_empty():
        return predictions
    return (
        predictions.group_by("round", "model_id", "model_kind")
        .agg(
            pl.len().alias("predictions"),
            pl.col("completion_tokens").fill_null(0).sum().alias("completion_tokens"),
            pl.col("cost_usd").fill_null(0.0).sum().alias("cost_usd"),
        )
        .sort("round", "model_id")
    )


def gpu_costs(checkpoints: pl.DataFrame) -> pl.DataFrame:
    """GPU $ per checkpoint, with where it ran and for how long."""
    if checkpoints.is_empty():
        return checkpoints
    return checkpoints.select(
        "checkpoint_id", "round", "backend", "cloud", "accelerator", "price_per_hour", "wall_s",
        pl.col("cost_usd").fill_null(0.0),
    ).sort("round", "checkpoint_id")


def round_ledger(rounds: pl.DataFrame) -> pl.DataFrame:
    """feedback/rounds per round, oldest first: the $ estimated before and measured after (teacher, judge, GPU,
    evaluation), the loop's spend and budget, the focus lift per $, the next round's estimate and the stop
    reason; $ as text ("unknown" for a null price, never $0)."""
    return ledger_view(rounds)


def next_round(rounds: pl.DataFrame) -> dict[str, object] | None:
    """The newest round's ledger row as the next round's outlook: `round` (the next round), `estimate` ($ text,
    "unknown"), `stop_reason`/`stop_detail` when the loop stopped instead, `spent`, `budget`; None without a ledger."""
    if rounds.is_empty():
        return None
    newest = ledger_view(rounds).row(-1, named=True)
    stopped = newest["stop_reason"] != "—"
    return {
        "round": int(newest["round"]) + 1,
        "estimate": None if stopped else newest["next_estimate"],
        "stop_reason": newest["stop_reason"] if stopped else None,
        "stop_detail": newest["stop_detail"] or None,
        "spent": newest["spent"],
        "budget": newest["budget"],
    }


def loss_curves(curves: dict[str, list[list[float]]]) -> pl.DataFrame:
    """checkpoint_id → [[step, loss], …] as long rows for a line chart."""
    rows = [
        {"checkpoint_id": ckpt, "step": int(step), "loss": float(loss)}
        for ckpt, curve in curves.items()
        for step, loss in curve
    ]
    return pl.DataFrame(rows, schema={"checkpoint_id": pl.String, "step": pl.Int64, "loss": pl.Float64})


__all__ = [
    "DOMAINS",
    "METRICS",
    "TASK_TYPES",
    "cell_grid",
    "cell_history",
    "completions_with_cells",
    "eval_costs",
    "judge_costs",
    "judge_total",
    "filter_pairs",
    "gpu_costs",
    "answer_means",
    "derived_label",
    "latest_checkpoint",
    "leaderboard",
    "loss_curves",
    "model_labels",
    "next_round",
    "round_ledger",
    "model_metrics",
    "pooled",
    "regeneration_chain",
    "reject_reasons",
    "teacher_costs",
    "usd_text",
    "weak_cells",
    "with_labels",
]
