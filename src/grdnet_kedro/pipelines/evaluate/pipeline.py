"""``evaluate``: test scores, decisions and metrics, per category."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from grdnet_kedro.pipelines.evaluate.nodes import evaluate_predictions, score_test
from grdnet_kedro.pipelines.namespacing import bind_category, per_category


def _template(category: str) -> Pipeline:
    return Pipeline(
        [
            Node(
                score_test,
                inputs=["model", "manifest", "image_cache", "parameters"],
                outputs=["test_scores", "test_patch_scores", "test_maps"],
                name="score_test",
            ),
            Node(
                bind_category(evaluate_predictions, category),
                inputs=[
                    "test_scores",
                    "test_patch_scores",
                    "test_maps",
                    "image_cache",
                    "threshold",
                    "parameters",
                ],
                outputs=["predictions", "patch_predictions", "metrics"],
                name="evaluate_predictions",
            ),
        ]
    )


def create_pipeline(categories: list[str]) -> Pipeline:
    """Build the evaluation pipeline for every category."""
    return per_category(_template, categories, ())
