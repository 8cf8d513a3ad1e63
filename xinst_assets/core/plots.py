"""Small figures for materialization metadata: cluster sizes, score histogram, length histograms.

Figures are built with :class:`matplotlib.figure.Figure` directly (no ``pyplot``): no global figure state, no
GUI backend, safe in worker threads and processes; ``savefig`` renders with the Agg canvas.
:func:`figure_png` turns a figure into PNG bytes for the Dagster UI (which shows them as Markdown images).
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn: ~1 s that a run of data stages never needs
    from matplotlib.figure import Figure

# 5 x 3 inches at 80 dpi = 400 x 240 pixels: readable in the asset sidebar, a few tens of KB as PNG.
FIGSIZE = (5.0, 3.0)
DPI = 80
_BLUE, _ORANGE = "#4C72B0", "#DD8452"


def _figure() -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")


def cluster_size_figure(
    cluster_sizes: Sequence[int], selected_sizes: Sequence[int] | None = None, title: str = "Cluster sizes"
) -> Figure:
    """Bars of the pool's cluster sizes, largest first, with the selected rows per cluster over them."""
    sizes = np.asarray(cluster_sizes, dtype=np.int64)
    order = np.argsort(-sizes, kind="stable")
    x = np.arange(len(sizes))
    fig = _figure()
    ax = fig.add_subplot()
    width = 1.0 if len(sizes) > 40 else 0.8
    ax.bar(x, sizes[order], width=width, color=_BLUE, label="pool")
    if selected_sizes is not None:
        chosen = np.asarray(selected_sizes, dtype=np.int64)
        if chosen.shape != sizes.shape:
            raise ValueError(f"{len(chosen)} selected sizes for {len(sizes)} clusters")
        ax.bar(x, chosen[order], width=width, color=_ORANGE, label="selected")
        ax.legend(fontsize=7)
    ax.set_xlabel(f"cluster (by size, {len(sizes)} clusters)", fontsize=8)
    ax.set_ylabel("pairs", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    return fig


def score_histogram_figure(
    scores: Sequence[float], selected_scores: Sequence[float] | None = None, title: str = "Scores"
) -> Figure:
    """Histogram of expected scores on the 1..3 scale (pool, and the selection over it)."""
    fig = _figure()
    ax = fig.add_subplot()
    bins = np.linspace(1.0, 3.0, 21)  # 0.1-wide bins over the 3-level scale
    ax.hist(np.asarray(scores, dtype=float), bins=bins, color=_BLUE, label="pool")
    if selected_scores is not None:
        ax.hist(
            np.asarray(selected_scores, dtype=float), bins=bins, color=_ORANGE, alpha=0.8, label="selected"
        )
        ax.legend(fontsize=7)
    ax.set_xlabel("expected score", fontsize=8)
    ax.set_ylabel("pairs", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    return fig


def length_histogram_figure(
    instruction_lengths: Sequence[int], response_lengths: Sequence[int], title: str = "Lengths (characters)"
) -> Figure:
    """Two histograms side by side: instruction and response lengths in characters (log-spaced bins)."""
    fig = _figure()
    axes = fig.subplots(1, 2)
    for ax, values, name, color in (
        (axes[0], instruction_lengths, "instruction", _BLUE),
        (axes[1], response_lengths, "response", _ORANGE),
    ):
        data = np.asarray(values, dtype=float)
        data = data[data > 0]
        if data.size:
            lo, hi = data.min(), max(data.max(), data.min() + 1)
            ax.hist(data, bins=np.geomspace(lo, hi, 25), color=color)
            ax.set_xscale("log")
            ax.axvline(float(np.mean(data)), color="black", linewidth=0.8, linestyle="--")
        ax.set_xlabel(f"{name} (mean dashed)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("pairs", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render ``fig`` as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def figure_markdown(fig: Figure, alt: str = "figure") -> str:
    """A Markdown image with the PNG inlined (``MetadataValue.md`` renders it in the Dagster UI)."""
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    return f"![{alt}](data:image/png;base64,{data})"


def loss_curve_figure(curve: Sequence[Sequence[float]], title: str = "Training loss") -> Figure:
    """Training loss by step."""
    fig = _figure()
    ax = fig.add_subplot()
    if curve:
        steps, losses = zip(*[(float(s), float(v)) for s, v in curve])
        ax.plot(steps, losses, marker=".", color=_BLUE)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    return fig
