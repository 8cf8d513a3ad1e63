import io

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from xinst_assets.core.plots import (
    cluster_size_figure,
    figure_markdown,
    figure_png,
    length_histogram_figure,
    score_histogram_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def rendered_size(fig: Figure) -> tuple[int, int]:
    png = figure_png(fig)
    assert png.startswith(PNG_MAGIC)
    return Image.open(io.BytesIO(png)).size


def test_each_figure_renders_as_a_small_png():
    rng = np.random.default_rng(0)
    figures = [
        cluster_size_figure([50, 30, 8, 2], [10, 10, 8, 2]),
        cluster_size_figure(list(range(640, 0, -1))),  # X-Instruction-sized: 640 clusters
        score_histogram_figure(rng.uniform(1, 3, 500), rng.uniform(2, 3, 100)),
        length_histogram_figure(rng.integers(20, 300, 500), rng.integers(200, 5000, 500)),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
        assert rendered_size(fig) == (400, 240)  # 5 x 3 inches at 80 dpi


def test_empty_inputs_still_render():
    for fig in (cluster_size_figure([]), score_histogram_figure([]), length_histogram_figure([], [])):
        assert figure_png(fig).startswith(PNG_MAGIC)


def test_selected_sizes_must_match_the_clusters():
    with pytest.raises(ValueError, match="2 selected sizes for 3 clusters"):
        cluster_size_figure([3, 2, 1], [1, 1])


def test_markdown_inlines_the_png():
    markdown = figure_markdown(score_histogram_figure([1.5, 2.5]), alt="scores")
    assert markdown.startswith("![scores](data:image/png;base64,iVBORw0KGgo")
