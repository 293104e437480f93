"""Training: every checkpoint's loss curve, throughput, where it ran (backend, GPU, cloud) and what it cost."""

from __future__ import annotations

import streamlit as st

from nexa_ui import charts, common, data, derive

st.title("Training")

tables = common.require("train/checkpoints", what="no student has been trained")
if tables is not None:
    checkpoints = tables["train/checkpoints"].sort("created_at")
    latest = checkpoints.row(-1, named=True)
    cols = st.columns(4)
    cols[0].metric("Checkpoints", checkpoints.height)
    cols[1].metric("Latest tokens/s", f"{latest['tokens_per_s']:,.0f}" if latest["tokens_per_s"] is not None else "–")
    cols[2].metric("Latest val loss", f"{latest['val_loss']:.3f}" if latest["val_loss"] is not None else "–")
    cols[3].metric("GPU $ (all checkpoints)", common.fmt_usd(checkpoints["cost_usd"].fill_null(0.0).sum()))

    curves = {}
    for row in checkpoints.iter_rows(named=True):
        found = data.checkpoint_metrics(row["uri"])
        if found and found.get("loss_curve"):
            curves[row["checkpoint_id"]] = found["loss_curve"]
    st.subheader("Loss curves")
    if curves:
        st.altair_chart(charts.loss(derive.loss_curves(curves)))
    else:
        st.info("No checkpoint has a metrics.json with a loss curve next to its weights (the `uri` column).")

    st.subheader("Checkpoints")
    common.show_table(
        checkpoints.select(
            "checkpoint_id", "round", "preset", "base_model", "sft_version", "rows", "backend", "cloud", "region",
            "accelerator", "price_per_hour", "wall_s", "cost_usd", "steps", "tokens", "tokens_per_s", "train_loss",
            "val_loss", "uri",
        ),
        key="checkpoints",
                column_config={"cost_usd": common.USD, "price_per_hour": common.USD,
                       "tokens_per_s": st.column_config.NumberColumn(format="%.0f")},
    )
    st.subheader("Throughput")
    st.altair_chart(charts.bars(checkpoints, "checkpoint_id", "tokens_per_s", title="tokens/s"))
