"""Leaderboard: every evaluated model and checkpoint, overall and per metric, with CIs, truncation and cost."""

from __future__ import annotations

import streamlit as st

from nexa_ui import charts, common, data, derive

st.title("Leaderboard")
st.caption("Held-out eval prompts scored 1–5 by the judge. Overall: the mean over answers of each answer's mean "
           "metric score, with a 95% t-interval over answers (n = answers); per-metric columns are per-metric means. "
           "Base, teacher and external models are reference rows beside the trained checkpoints.")

tables = common.require("eval/metrics", what="no model has been evaluated")
if tables is not None:
    metrics = tables["eval/metrics"]
    predictions = data.read("eval/predictions")
    board = derive.leaderboard(metrics, data.read("eval/scores"), data.read("train/checkpoints"), predictions)
    labels = derive.model_labels(metrics, predictions)
    leader = board.row(0, named=True)
    cols = st.columns([3, 2, 2, 1])
    cols[0].metric("Leader", leader["model_id"])
    if leader["model_label"] != leader["model_id"]:
        cols[0].caption(leader["model_label"])
    cols[1].metric("Leader overall score", common.fmt_score(leader["overall"]),
                   help=f"95% CI {common.fmt_score(leader['ci_low'])}–{common.fmt_score(leader['ci_high'])}")
    cols[2].metric("Models evaluated", board.height)
    eval_sets = metrics["eval_set"].n_unique() if "eval_set" in metrics.columns else 1
    cols[3].metric("Eval sets", eval_sets, help="Scores are comparable only within one eval set.")
    if eval_sets > 1:
        st.warning(f"These scores come from {eval_sets} different eval sets (new user files changed the held-out "
                   "prompts): compare models evaluated on the same `eval_set` (SQL page: `eval.metrics`).")

    if (board["ci_from"] == derive.CELL_BOUND).any():
        st.info(
            "No `eval.scores` rows for some models, so their overall interval is a bound from `eval.metrics` "
            "cells (as wide as it can be when an answer's metric scores move together), never narrower than the "
            f"per-answer one (`ci_from` = {derive.CELL_BOUND!r}).",
            icon=":material/info:",
        )

    common.show_table(
        board,
        key="leaderboard",
        column_config={
            "overall": common.SCORE, "ci_low": common.SCORE, "ci_high": common.SCORE,
            **{m: common.SCORE for m in derive.METRICS},
            "truncation_rate": common.PCT, "train_usd": common.USD, "eval_usd": common.USD,
        },
    )

    st.subheader("Per-metric scores with 95% confidence intervals")
    per_metric = derive.model_metrics(metrics)
    st.altair_chart(charts.metric_cis(per_metric))
    with st.expander("Per-metric table"):
        common.show_table(derive.with_labels(per_metric, labels), key="per_metric",
                     column_config={"mean": common.SCORE, "ci_low": common.SCORE, "ci_high": common.SCORE})

    st.subheader("Weak cells")
    weak = derive.weak_cells(data.read("feedback/weaknesses"))
    if data.version("feedback/weaknesses") is None:
        st.info(
            "No feedback round has run yet, so no cell is marked weak: run `make demo` or "
            f"`{common.command_for('feedback/weaknesses')}`.",
            icon=":material/info:",
        )
    elif weak.is_empty():
        st.success("Every cell passes its threshold in the latest round.")
    else:
        st.caption(f"Round {weak['round'][0]}: cells below their threshold, largest gap first. "
                   "Open a cell for its heatmap and history, or go straight to its pairs.")
        for cell in weak.iter_rows(named=True):
            left, mid, right = st.columns([3, 2, 2])
            left.page_link(
                common.CELLS,
                label=f"{cell['domain']} · {cell['task_type']} · {cell['metric']}: "
                      f"{common.fmt_score(cell['score'])} < {common.fmt_score(cell['threshold'])}",
                icon=":material/warning:",
                query_params={"model": cell["model_id"], "metric": cell["metric"], "domain": cell["domain"],
                              "task_type": cell["task_type"]},
            )
            mid.caption(f"gap {common.fmt_score(cell['gap'])} · {common.fmt_model(cell['model_id'], labels)}")
            right.page_link(
                common.INSPECTOR,
                label="Its pairs",
                icon=":material/search:",
                query_params={"domain": cell["domain"], "task_type": cell["task_type"], "metric": cell["metric"]},
            )
