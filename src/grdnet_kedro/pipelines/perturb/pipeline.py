"""``perturb``: perturbation preview and the synthetic validation set, per category."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from grdnet_kedro.pipelines.namespacing import bind_category, per_category
from grdnet_kedro.pipelines.perturb.nodes import make_validation_set, preview_perturbation

PARAMETERS = (
    "params:augmentation",
    "params:perturbation",
    "params:validation",
    "params:report",
    "params:runtime",
)


def _template(category: str) -> Pipeline:
    return Pipeline(
        [
            Node(
                bind_category(make_validation_set, category),
                inputs=["manifest", "image_cache", "params:perturbation", "params:validation"],
                outputs="validation_set",
                name="make_validation_set",
            ),
            Node(
                bind_category(preview_perturbation, category),
                inputs=[
                    "manifest",
                    "image_cache",
                    "params:augmentation",
                    "params:perturbation",
                    "params:report",
                    "params:runtime",
                ],
                outputs="perturbation_preview",
                name="preview_perturbation",
            ),
        ]
    )


def create_pipeline(categories: list[str]) -> Pipeline:
    """Build the perturbation pipeline for every category."""
    return per_category(_template, categories, PARAMETERS)
