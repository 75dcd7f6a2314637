"""``report``: per-category figures and the cross-category benchmark table."""

from __future__ import annotations

import warnings

from kedro.pipeline import Node, Pipeline

from grdnet_kedro.pipelines.namespacing import bind_category, per_category
from grdnet_kedro.pipelines.report.nodes import (
    build_benchmark,
    plot_heatmaps,
    plot_loss_curves,
    plot_score_reports,
)


def _template(category: str) -> Pipeline:
    return Pipeline(
        [
            Node(
                bind_category(plot_score_reports, category),
                inputs="predictions",
                outputs=["roc_curve", "pr_curve", "score_histogram"],
                name="plot_score_reports",
            ),
            Node(
                plot_loss_curves,
                inputs="training_history",
                outputs="loss_curves",
                name="plot_loss_curves",
            ),
            Node(
                plot_heatmaps,
                inputs=["predictions", "test_maps", "image_cache", "params:report"],
                outputs="heatmaps",
                name="plot_heatmaps",
            ),
        ]
    )


def create_pipeline(categories: list[str]) -> Pipeline:
    """Build the report pipeline: figures per category, then the benchmark table."""
    with warnings.catch_warnings():
        # The benchmark reads every namespace's metrics; Kedro warns about dotted names
        # outside their namespace, which is exactly what this node needs.
        warnings.filterwarnings("ignore", message="One or more dataset names contain")
        benchmark = Pipeline(
            [
                Node(
                    build_benchmark,
                    inputs=[f"{category}.metrics" for category in categories],
                    outputs=["benchmark_table", "benchmark_markdown"],
                    name="build_benchmark",
                )
            ]
        )
    return per_category(_template, categories, ("params:report",)) + benchmark
