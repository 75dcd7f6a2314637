"""Project pipelines: one per stage, each with one namespace per category."""

from __future__ import annotations

from pathlib import Path

from kedro.pipeline import Pipeline

from grdnet_kedro.categories import load_data_params, resolve_categories
from grdnet_kedro.pipelines.calibrate.pipeline import create_pipeline as create_calibrate
from grdnet_kedro.pipelines.evaluate.pipeline import create_pipeline as create_evaluate
from grdnet_kedro.pipelines.export.pipeline import create_pipeline as create_export
from grdnet_kedro.pipelines.infer.pipeline import create_pipeline as create_infer
from grdnet_kedro.pipelines.ingest_mvtec.pipeline import create_pipeline as create_ingest
from grdnet_kedro.pipelines.perturb.pipeline import create_pipeline as create_perturb
from grdnet_kedro.pipelines.report.pipeline import create_pipeline as create_report
from grdnet_kedro.pipelines.train.pipeline import create_pipeline as create_train


def register_pipelines() -> dict[str, Pipeline]:
    """Register every stage for the configured categories; ``__default__`` is the benchmark."""
    project_path = Path.cwd()
    categories = resolve_categories(load_data_params(project_path), project_path)
    pipelines = {
        "ingest_mvtec": create_ingest(categories),
        "perturb": create_perturb(categories),
        "train": create_train(categories),
        "calibrate": create_calibrate(categories),
        "evaluate": create_evaluate(categories),
        "report": create_report(categories),
        "infer": create_infer(categories),
        "export": create_export(categories),
    }
    benchmark = sum(
        (
            pipelines[name]
            for name in ("ingest_mvtec", "perturb", "train", "calibrate", "evaluate", "report")
        ),
        start=Pipeline([]),
    )
    pipelines["__default__"] = benchmark
    return pipelines
