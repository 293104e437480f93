"""Altair charts (rendered locally by Streamlit's bundled Vega; nothing is fetched)."""

from __future__ import annotations

import altair as alt
import polars as pl

SCALE = (1, 5)  # the rubric's score scale


def heatmap(grid: pl.DataFrame, metric: str) -> alt.LayerChart:
    """domain × task type, colored by mean score; weak cells outlined in red and marked."""
    frame = grid.with_columns(
        pl.col("status").fill_null("").alias("status"),
        pl.format("{}{}", pl.col("mean").round(2), pl.when(pl.col("status") == "weak").then(pl.lit(" ⚠")).otherwise(pl.lit(""))).alias("label"),
    ).to_pandas()
    base = alt.Chart(frame).encode(
        x=alt.X("task_type:N", title="task type"),
        y=alt.Y("domain:N", title="domain"),
    )
    rect = base.mark_rect(strokeWidth=4).encode(
        color=alt.Color("mean:Q", title=metric, scale=alt.Scale(domain=list(SCALE), scheme="redyellowgreen")),
        stroke=alt.condition("datum.status == 'weak'", alt.value("#d62728"), alt.value("transparent")),
        tooltip=["domain", "task_type", alt.Tooltip("mean:Q", format=".2f"), alt.Tooltip("ci_low:Q", format=".2f"),
                 alt.Tooltip("ci_high:Q", format=".2f"), "n:Q", "status:N"],
    )
    text = base.mark_text(fontSize=16, fontWeight="bold").encode(text="label:N")
    return (rect + text).properties(height=260)


def history(frame: pl.DataFrame) -> alt.LayerChart | alt.FacetChart:
    """A cell's score per round (with its CI) and the threshold it must reach."""
    pdf = frame.to_pandas()
    base = alt.Chart(pdf).encode(x=alt.X("round:O", title="feedback round"))
    line = base.mark_line(point=True).encode(
        y=alt.Y("score:Q", title="score", scale=alt.Scale(domain=list(SCALE))),
        tooltip=["round", "model_id", alt.Tooltip("score:Q", format=".2f")],
    )
    layers = [line]
    if "ci_low" in frame.columns:
        layers.insert(0, base.mark_errorbar().encode(y="ci_low:Q", y2="ci_high:Q"))
    if "threshold" in frame.columns and frame["threshold"].drop_nulls().len():
        layers.append(
            alt.Chart(pdf).mark_rule(color="#d62728", strokeDash=[6, 4]).encode(y="mean(threshold):Q")
        )
    return alt.layer(*layers).properties(height=260)


def metric_cis(frame: pl.DataFrame) -> alt.FacetChart:
    """Per-metric means with their 95% intervals, one color per model."""
    pdf = frame.to_pandas()
    base = alt.Chart(pdf).encode(
        y=alt.Y("model_id:N", title=None), color=alt.Color("model_id:N", legend=None)
    )
    points = base.mark_point(filled=True, size=70).encode(
        x=alt.X("mean:Q", title="score", scale=alt.Scale(domain=list(SCALE))),
        tooltip=["model_id", "metric", alt.Tooltip("mean:Q", format=".2f"), alt.Tooltip("ci_low:Q", format=".2f"),
                 alt.Tooltip("ci_high:Q", format=".2f"), "n"],
    )
    bars = base.mark_errorbar().encode(x="ci_low:Q", x2="ci_high:Q")
    return alt.layer(bars, points).properties(height=80).facet(row=alt.Row("metric:N", title=None))


def loss(frame: pl.DataFrame) -> alt.Chart:
    return (
        alt.Chart(frame.to_pandas())
        .mark_line(point=True)
        .encode(x=alt.X("step:Q"), y=alt.Y("loss:Q"), color="checkpoint_id:N",
                tooltip=["checkpoint_id", "step", alt.Tooltip("loss:Q", format=".3f")])
        .properties(height=300)
    )


def bars(frame: pl.DataFrame, x: str, y: str, color: str | None = None, title: str | None = None) -> alt.Chart:
    enc = {"x": alt.X(f"{x}:N", title=x), "y": alt.Y(f"{y}:Q", title=title or y),
           "tooltip": [x, alt.Tooltip(f"{y}:Q", format=",.4f")]}
    if color:
        enc["color"] = alt.Color(f"{color}:N")
        enc["xOffset"] = alt.XOffset(f"{color}:N")
    return alt.Chart(frame.to_pandas()).mark_bar().encode(**enc).properties(height=260)
