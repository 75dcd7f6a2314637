"""``export``: one ``export_onnx_model`` node per category (not part of ``__default__``)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from grdnet_kedro.pipelines.export.nodes import export_onnx_model
from grdnet_kedro.pipelines.namespacing import bind_category, per_category


def _template(category: str) -> Pipeline:
    return Pipeline(
        [
            Node(
                bind_category(export_onnx_model, category),
                inputs=["model", "threshold", "parameters"],
                outputs=["onnx_model", "onnx_metadata"],
                name="export_onnx_model",
            )
        ]
    )


def create_pipeline(categories: list[str]) -> Pipeline:
    """Build the ONNX export pipeline for every category."""
    return per_category(_template, categories, ())
