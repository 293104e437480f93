"""Cells: domain × task type per metric for one model, each cell's score across rounds, weak cells marked."""

from __future__ import annotations

import streamlit as st

from nexa_ui import charts, common, data, derive

st.title("Cells")
st.caption("A cell is (domain, task type, metric). Weak cells (below threshold in feedback/weaknesses) are "
           "outlined in red and marked ⚠.")

tables = common.require("eval/metrics", what="no model has been evaluated")
if tables is not None:
    metrics = tables["eval/metrics"]
    weaknesses = data.read("feedback/weaknesses")
    labels = derive.model_labels(metrics, data.read("eval/predictions"))
    models = metrics.sort("round", descending=True)["model_id"].unique(maintain_order=True).to_list()
    left, right = st.columns(2)
    model = common.url_select("Model", models, "model", default=derive.latest_checkpoint(metrics), page="cells",
                              container=left, format_func=lambda m: common.fmt_model(m, labels))
    metric_options = [m for m in derive.METRICS if m in set(metrics["metric"].to_list())] or sorted(
        metrics["metric"].unique().to_list()
    )
    weakest = derive.weak_cells(weaknesses)
    weakest = weakest.filter(weakest["model_id"] == model) if not weakest.is_empty() else weakest
    metric = common.url_select("Metric", metric_options, "metric", page="cells",
                               default=weakest["metric"][0] if weakest.height else None, container=right)

    grid = derive.cell_grid(metrics, model, metric, weaknesses)
    st.altair_chart(charts.heatmap(grid, metric))
    common.show_table(
        grid, key="cell_grid",
        column_config={"mean": common.SCORE, "ci_low": common.SCORE, "ci_high": common.SCORE,
                       "threshold": common.SCORE},
    )

    st.subheader("One cell across rounds")
    a, b = st.columns(2)
    domains = [d for d in derive.DOMAINS if d in set(grid["domain"].to_list())] or sorted(
        metrics["domain"].unique().to_list()
    )
    task_types = [t for t in derive.TASK_TYPES if t in set(grid["task_type"].to_list())] or sorted(
        metrics["task_type"].unique().to_list()
    )
    weak_here = grid.filter(grid["status"] == "weak") if "status" in grid.columns else grid.clear()
    domain = common.url_select("Domain", domains, "domain",
                               default=weak_here["domain"][0] if weak_here.height else None, page="cells", container=a)
    task_type = common.url_select("Task type", task_types, "task_type",
                                  default=weak_here["task_type"][0] if weak_here.height else None, page="cells", container=b)
    chosen = grid.filter((grid["domain"] == domain) & (grid["task_type"] == task_type))
    if chosen.height:
        cell = chosen.row(0, named=True)
        m1, m2, m3 = st.columns(3)
        m1.metric(f"{model} score", common.fmt_score(cell["mean"]),
                  help=f"{labels.get(model, model)}: 95% CI {common.fmt_score(cell['ci_low'])}–"
                       f"{common.fmt_score(cell['ci_high'])}, n={cell['n']}")
        m2.metric("Threshold", common.fmt_score(cell.get("threshold")))
        m3.metric("Status", cell.get("status") or "not judged by feedback")
    hist = derive.cell_history(weaknesses, metrics, domain, task_type, metric)
    if hist.is_empty():
        st.info(f"No checkpoint has a score for {domain} · {task_type} · {metric} yet.")
    else:
        st.altair_chart(charts.history(hist))
        common.show_table(derive.with_labels(hist, labels), key="cell_history",
                     column_config={"score": common.SCORE, "threshold": common.SCORE,
                                    "ci_low": common.SCORE, "ci_high": common.SCORE})
    st.page_link(
        common.INSPECTOR,
        label=f"Pairs behind {domain} · {task_type} (lowest {metric} first)",
        icon=":material/search:",
        query_params={"domain": domain, "task_type": task_type, "metric": metric},
    )
