"""What train/checkpoints reports: its metadata, and the loss curve as a PNG in Markdown (no pyplot global state)."""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg


def loss_plot_png(curve: Sequence[Sequence[float]], val_loss: float | None = None, title: str = "") -> bytes:
    """A small PNG of training loss by step, with the final val loss as a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if curve:
        steps, losses = zip(*[(step, loss) for step, loss in curve])
        ax.plot(steps, losses, color="#4f46e5", linewidth=1.5, label="train loss")
    if val_loss is not None:
        ax.axhline(val_loss, color="#dc2626", linestyle="--", linewidth=1, label=f"val loss {val_loss:.3f}")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (completion tokens)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def loss_plot_markdown(curve: Sequence[Sequence[float]], val_loss: float | None = None, title: str = "") -> str:
    if not curve:
        return "_no loss logged_"
    png = base64.b64encode(loss_plot_png(curve, val_loss, title)).decode()
    return f"![loss](data:image/png;base64,{png})"


def _text(value: Any) -> str:
    return "none" if value is None else str(value)


def checkpoint_metadata(result: Mapping[str, Any], uri: str, checkpoint: str) -> dict[str, Any]:
    """What one trained checkpoint reports: where it trained, at what price and speed, its losses and config."""
    uri_value = dg.MetadataValue.url(uri) if "://" in uri else dg.MetadataValue.path(uri)
    title = f"{result.get('preset')} on sft/examples v{result.get('sft_version')}"
    return {
        "checkpoint_id": checkpoint,
        "checkpoint_uri": uri_value,
        "sft_version": int(result["sft_version"]),
        "sft_rows": result.get("rows"),
        "preset": result.get("preset"),
        "base_model": result.get("base_model"),
        "backend": result.get("backend"),
        "cloud": _text(result.get("cloud")),
        "region": _text(result.get("region")),
        "accelerator": _text(result.get("accelerator")),
        "price_per_hour": float(result.get("price_per_hour") or 0.0),
        "cost_usd": float(result.get("cost_usd") or 0.0),
        "tokens_per_s": float(result.get("tokens_per_s") or 0.0),
        "tokens": int(result.get("tokens") or 0),
        "steps": int(result.get("steps") or 0),
        "wall_s": float(result.get("wall_s") or 0.0),
        "train_loss": float(result["train_loss"]) if result.get("train_loss") is not None else None,
        "val_loss": float(result["val_loss"]) if result.get("val_loss") is not None else None,
        "resumed_from_step": result.get("resumed_from_step"),
        "loss_curve": dg.MetadataValue.md(
            loss_plot_markdown(result.get("loss_curve") or [], result.get("val_loss"), title)
        ),
        "config": dg.MetadataValue.json(result.get("config") or {}),
        **({"distill_loss": "kd", "logprobs_version": int(result["logprobs_version"]),
            "kd": dg.MetadataValue.json(result.get("kd") or {})} if result.get("distill_loss") == "kd" else {}),
    }
