"""``ingest_mvtec``: one ``ingest_category`` node per category namespace."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from grdnet_kedro.pipelines.ingest_mvtec.nodes import ingest_category
from grdnet_kedro.pipelines.namespacing import bind_category, per_category

PARAMETERS = ("params:data", "params:runtime")


def _template(category: str) -> Pipeline:
    return Pipeline(
        [
            Node(
                bind_category(ingest_category, category),
                inputs=list(PARAMETERS),
                outputs=["manifest", "image_cache"],
                name="ingest_category",
            )
        ]
    )


def create_pipeline(categories: list[str]) -> Pipeline:
    """Build the ingestion pipeline for every category."""
    return per_category(_template, categories, PARAMETERS)
