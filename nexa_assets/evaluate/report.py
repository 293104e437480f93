"""Pictures for Dagster metadata: per-cell scores as a heatmap PNG embedded in Markdown."""

from __future__ import annotations

import base64
import io
import math

import polars as pl


def cell_heatmap_png(metrics: pl.DataFrame, title: str = "", thresholds: dict[str, float] | None = None) -> bytes:
    """Rows (domain, task_type) × columns (metric), colored by mean score on the 1–5 scale; a cell below
    its threshold is outlined in red."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = metrics.select("domain", "task_type").unique().sort("domain", "task_type").iter_rows()
    rows = [f"{d}/{t}" for d, t in rows]
    cols = sorted(metrics["metric"].unique().to_list())
    grid = [[float("nan")] * len(cols) for _ in rows]
    for r in metrics.iter_rows(named=True):
        value = r["mean"]
        grid[rows.index(f"{r['domain']}/{r['task_type']}")][cols.index(r["metric"])] = (
            float("nan") if value is None else value
        )
    fig = Figure(figsize=(1.4 + 1.3 * len(cols), 0.9 + 0.42 * len(rows)), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="RdYlGn", vmin=1, vmax=5, aspect="auto")
    ax.set_xticks(range(len(cols)), [c.replace("_", "\n") for c in cols], fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            ax.text(j, i, "–" if math.isnan(value) else f"{value:.2f}", ha="center", va="center", fontsize=7)
            if thresholds and not math.isnan(value) and value < thresholds.get(cols[j], 0):
                ax.add_patch(_outline(i, j))
    fig.colorbar(image, ax=ax, fraction=0.04, label="mean score (1–5)")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _outline(i: int, j: int):
    from matplotlib.patches import Rectangle

    return Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#b91c1c", linewidth=2)


def cell_heatmap_markdown(metrics: pl.DataFrame, title: str = "", thresholds: dict[str, float] | None = None) -> str:
    if metrics.is_empty():
        return "_no scored cells_"
    png = base64.b64encode(cell_heatmap_png(metrics, title, thresholds)).decode()
    return f"![cell scores](data:image/png;base64,{png})"
