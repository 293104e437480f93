"""The loss curve as a PNG embedded in Markdown, for Dagster metadata (no pyplot global state)."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence


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
