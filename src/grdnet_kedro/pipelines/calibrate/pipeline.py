"""``calibrate``: validation scores and the saved threshold, per category."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from grdnet_kedro.pipelines.calibrate.nodes import fit_threshold, score_validation
from grdnet_kedro.pipelines.namespacing import bind_category, per_category


def _template(category: str) -> Pipeline:
    return Pipeline(
        [
            Node(
                score_validation,
                inputs=["model", "validation_set", "parameters"],
                outputs="validation_scores",
                name="score_validation",
            ),
            Node(
                bind_category(fit_threshold, category),
                inputs=["validation_scores", "test_scores", "params:calibration"],
                outputs="threshold",
                name="fit_threshold",
            ),
        ]
    )


def create_pipeline(categories: list[str]) -> Pipeline:
    """Build the calibration pipeline for every category."""
    return per_category(_template, categories, ("params:calibration",))
