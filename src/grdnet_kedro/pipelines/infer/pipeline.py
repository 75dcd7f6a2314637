"""``infer``: score a folder of new images with each category's trained model."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from grdnet_kedro.pipelines.infer.nodes import infer_folder
from grdnet_kedro.pipelines.namespacing import bind_category, per_category


def _template(category: str) -> Pipeline:
    return Pipeline(
        [
            Node(
                bind_category(infer_folder, category),
                inputs=["model", "threshold", "parameters", "onnx_model"],
                outputs=["infer_predictions", "infer_patch_predictions", "infer_overlays"],
                name="infer_folder",
            )
        ]
    )


def create_pipeline(categories: list[str]) -> Pipeline:
    """Build the inference pipeline for every category (not part of ``__default__``)."""
    return per_category(_template, categories, ())
