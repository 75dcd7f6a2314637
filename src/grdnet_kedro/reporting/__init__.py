"""Report figures and the benchmark table (no Kedro imports)."""

from grdnet_kedro.reporting.plots import (
    heatmap_overlays,
    loss_curves,
    perturbation_grid,
    pr_figure,
    roc_figure,
    score_histogram,
    training_previews,
)
from grdnet_kedro.reporting.tables import (
    BENCHMARK_COLUMNS,
    MEAN_ROW,
    benchmark_markdown,
    benchmark_table,
)

__all__ = [
    "BENCHMARK_COLUMNS",
    "MEAN_ROW",
    "benchmark_markdown",
    "benchmark_table",
    "heatmap_overlays",
    "loss_curves",
    "perturbation_grid",
    "pr_figure",
    "roc_figure",
    "score_histogram",
    "training_previews",
]
