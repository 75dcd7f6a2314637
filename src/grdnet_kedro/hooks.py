"""Kedro hooks: parameter validation before any node, and MLflow tracking of the run."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from kedro.config import MissingConfigException
from kedro.framework.context import KedroContext
from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node

from grdnet_kedro.categories import set_run_data_params
from grdnet_kedro.config import PROJECT_GROUPS, Parameters, validate_parameters
from grdnet_kedro.factory import perturbation_config_from
from grdnet_kedro.perturbation import Perturber
from grdnet_kedro.tracking import RunTracker, flatten_parameters, git_commit, resolve_tracking_uri

logger = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "grdnet-kedro"

# Outputs copied into the MLflow run as artifacts, by the last part of the dataset name.
ARTIFACT_SUFFIXES = (
    "model",
    "threshold",
    "metrics",
    "training_history",
    "predictions",
    "patch_predictions",
    "perturbation_preview",
    "train_preview",
    "roc_curve",
    "pr_curve",
    "score_histogram",
    "loss_curves",
    "heatmaps",
    "benchmark_table",
    "benchmark_markdown",
)


class ParameterValidationHook:
    """Validate every parameter group as soon as the context exists, before any node runs."""

    parameters: Parameters | None = None

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        """Validate parameters and hand the ``data`` group to pipeline registration."""
        # The raw parameters (runtime --params included) are read from the config loader:
        # `context.params` would register the pipelines before the data group is known.
        self.parameters = validate_parameters(context.config_loader["parameters"])
        set_run_data_params(self.parameters.data)
        if self.parameters.perturbation.source_weights.get("texture", 0) > 0:
            # Checks the texture folder now (missing or without images), not after ingestion.
            Perturber(perturbation_config_from(self.parameters.perturbation))
        threads = self.parameters.runtime.num_threads
        if threads > 0:
            torch.set_num_threads(threads)
        logger.info("torch uses %d CPU thread(s)", torch.get_num_threads())
        logger.info(
            "Parameters of env '%s' are valid (profile '%s')",
            context.env or "local",
            self.parameters.profile,
        )


def _dataset_filepath(catalog: DataCatalog, name: str) -> Path | None:
    """Return the local file behind a catalog entry, or None for in-memory datasets."""
    try:
        dataset = catalog.get(name)
    except Exception:
        return None
    filepath = getattr(dataset, "filepath", None) or getattr(dataset, "_filepath", None)
    return Path(str(filepath)) if filepath else None


class TrackingHook:
    """One MLflow run per ``kedro run``; a store failure is logged once, then tracking stops."""

    def __init__(self) -> None:
        self.tracker: RunTracker | None = None
        self.context: KedroContext | None = None
        self.catalog: DataCatalog | None = None
        self._log_checkpoints = True

    @hook_impl
    def after_context_created(self, context: KedroContext) -> None:
        """Keep the context to read parameters and the MLflow settings at pipeline start."""
        self.context = context

    def _settings(self) -> dict[str, Any]:
        if self.context is None:
            return {}
        try:
            settings = dict(self.context.config_loader["mlflow"])
        except (MissingConfigException, KeyError):
            settings = {}
        return settings

    @hook_impl
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Pipeline, catalog: DataCatalog
    ) -> None:
        """Start the MLflow run, set its tags and log the flattened parameters once."""
        if self.context is None:
            return
        self.catalog = catalog
        settings = self._settings()
        project_path = Path(self.context.project_path)
        uri = os.environ.get("MLFLOW_TRACKING_URI") or str(
            settings.get("tracking_uri", DEFAULT_TRACKING_URI)
        )
        self.tracker = RunTracker(
            resolve_tracking_uri(uri, project_path),
            str(settings.get("experiment", DEFAULT_EXPERIMENT)),
            enabled=bool(settings.get("enabled", True)),
        )
        self._log_checkpoints = bool(settings.get("log_checkpoints", True))

        params = {k: v for k, v in self.context.params.items() if k in PROJECT_GROUPS}
        parameters = validate_parameters(params)
        namespaces = sorted(
            {node.namespace.split(".")[0] for node in pipeline.nodes if node.namespace}
        )
        categories = [name for name in namespaces if name != "benchmark"]
        env = run_params.get("env") or self.context.env or "local"
        pipeline_names = run_params.get("pipeline_names") or ["__default__"]
        tags = {
            "kedro.env": str(env),
            "kedro.pipelines": "+".join(pipeline_names),
            "profile": parameters.profile,
            "dataset": parameters.data.source
            + (f":{parameters.data.root}" if parameters.data.root else ""),
            "categories": ",".join(categories),
            "git_commit": git_commit(project_path),
            "seed": str(parameters.runtime.seed),
            "deterministic": str(parameters.runtime.deterministic),
        }
        for key in ("node_names", "namespaces", "tags", "from_nodes", "to_nodes"):
            if run_params.get(key):
                tags[f"kedro.{key}"] = ",".join(str(item) for item in run_params[key])
        if run_params.get("runtime_params"):
            tags["kedro.runtime_params"] = str(run_params["runtime_params"])[:5000]
        run_name = f"{parameters.profile}-{'+'.join(pipeline_names)}"
        self.tracker.start(run_name, tags)
        flat = flatten_parameters(parameters.model_dump(mode="json"))
        flat.update(_package_versions())
        self.tracker.log_params(flat)

    @hook_impl
    def after_node_run(self, node: Node, outputs: dict[str, Any]) -> None:
        """Log the metrics and per-epoch histories a node returned."""
        if self.tracker is None:
            return
        for name, data in outputs.items():
            prefix, _, suffix = name.rpartition(".")
            if suffix == "metrics" and isinstance(data, dict):
                self.tracker.log_metrics(_flatten_metrics(data, prefix or "benchmark"))
            if suffix == "training_history" and isinstance(data, pd.DataFrame):
                records = [{str(k): v for k, v in row.items()} for row in data.to_dict("records")]
                self.tracker.log_history(prefix or "benchmark", records, step_key="epoch")

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        """Copy a saved report, table or checkpoint into the run's artifacts."""
        if self.tracker is None or self.catalog is None:
            return
        prefix, _, suffix = dataset_name.rpartition(".")
        if suffix not in ARTIFACT_SUFFIXES or (suffix == "model" and not self._log_checkpoints):
            return
        filepath = _dataset_filepath(self.catalog, dataset_name)
        if filepath is not None:
            self.tracker.log_artifact(filepath, artifact_path=prefix or "benchmark")

    @hook_impl
    def after_pipeline_run(self) -> None:
        """End the MLflow run as finished."""
        if self.tracker is not None:
            self.tracker.end("FINISHED")

    @hook_impl
    def on_pipeline_error(self) -> None:
        """End the MLflow run as failed."""
        if self.tracker is not None:
            self.tracker.end("FAILED")


def _flatten_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, float | None]:
    """Flatten ``{"image": {"auroc": 0.9}}`` to ``{"mono.image_auroc": 0.9}``."""
    flat: dict[str, float | None] = {}
    for key, value in metrics.items():
        if isinstance(value, dict):
            for inner_key, inner_value in _flatten_metrics(value, "").items():
                # "pixel" metrics are already named pixel_auroc, pixel_ap: no double prefix.
                name = inner_key if inner_key.startswith(f"{key}_") else f"{key}_{inner_key}"
                flat[f"{prefix}.{name}"] = inner_value
        elif (isinstance(value, int | float) and not isinstance(value, bool)) or value is None:
            flat[f"{prefix}.{key}" if prefix else key] = value
    return flat


def _package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("torch", "kedro", "mlflow", "numpy", "scikit-learn"):
        try:
            versions[f"version.{package}"] = version(package)
        except PackageNotFoundError:
            continue
    return versions
