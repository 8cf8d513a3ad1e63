"""Small helpers that turn stage results into Dagster metadata (tables, pictures, counts)."""

from __future__ import annotations

import base64
import io
from typing import Any, Iterable, Mapping, Sequence

from dagster import MetadataValue


def markdown_table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> MetadataValue:
    """A Markdown table for the Dagster UI; cells are shortened and pipes escaped."""

    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        text = text.replace("\n", " ").replace("|", "\\|")
        return text if len(text) <= 120 else text[:117] + "..."

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return MetadataValue.md("\n".join(lines))


def counts_table(counts: Mapping[str, int], key: str = "reason", value: str = "rows") -> MetadataValue:
    """A two-column Markdown table of counts, largest first (an explicit 'none' row when empty)."""
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) or [("(none)", 0)]
    return markdown_table(rows, [key, value])


def figure_markdown(fig: Any, alt: str) -> MetadataValue:
    """A matplotlib figure embedded as a PNG in Markdown (renders in the asset's metadata panel)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")


def loss_curve_markdown(curve: Sequence[Sequence[float]], title: str) -> MetadataValue:
    """The training loss by step as a picture (or a note when the run logged no loss)."""
    if not curve:
        return MetadataValue.md("_no loss logged_")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    steps, losses = zip(*[(float(s), float(v)) for s, v in curve])
    ax.plot(steps, losses, marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    try:
        return figure_markdown(fig, title)
    finally:
        plt.close(fig)
