"""``train``: one ``train_model`` node per category."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from grdnet_kedro.pipelines.namespacing import bind_category, per_category
from grdnet_kedro.pipelines.train.nodes import train_model


def _template(category: str) -> Pipeline:
    return Pipeline(
        [
            Node(
                bind_category(train_model, category),
                inputs=["manifest", "image_cache", "validation_set", "parameters"],
                outputs=["model", "training_history", "train_preview"],
                name="train_model",
            )
        ]
    )


def create_pipeline(categories: list[str]) -> Pipeline:
    """Build the training pipeline for every category."""
    return per_category(_template, categories, ())
