"""Small helpers that turn stage results into Dagster metadata (tables, pictures, counts)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from dagster import MetadataValue

from xinst_assets.core.plots import figure_markdown, loss_curve_figure


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


def loss_curve_markdown(curve: Sequence[Sequence[float]], title: str) -> MetadataValue:
    """The training loss by step as a picture (or a note when the run logged no loss)."""
    if not curve:
        return MetadataValue.md("_no loss logged_")
    return MetadataValue.md(figure_markdown(loss_curve_figure(curve, title), title))
