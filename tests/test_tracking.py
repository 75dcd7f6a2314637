"""MLflow tracking helpers: URI resolution, flattening, and failures that never raise."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from grdnet_kedro.hooks import _flatten_metrics
from grdnet_kedro.tracking import RunTracker, flatten_parameters, resolve_tracking_uri


def test_relative_sqlite_uri_resolved_against_project(tmp_path: Path) -> None:
    uri = resolve_tracking_uri("sqlite:///mlflow.db", tmp_path)
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_absolute_and_remote_uris_unchanged(tmp_path: Path) -> None:
    assert resolve_tracking_uri("sqlite:////tmp/x.db", tmp_path) == "sqlite:////tmp/x.db"
    assert resolve_tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


def test_flatten_parameters_nested() -> None:
    flat = flatten_parameters({"model": {"stages": [2, 2], "bottleneck": "conv"}, "profile": "x"})
    assert flat == {"model.stages": "[2, 2]", "model.bottleneck": "conv", "profile": "x"}


def test_flatten_metrics_prefixes_category() -> None:
    flat = _flatten_metrics(
        {
            "category": "mono",
            "threshold": 0.5,
            "image": {"auroc": 0.9, "ap": None},
            "pixel": {"pixel_auroc": 0.8, "aupro": 0.7},
        },
        "mono",
    )
    assert flat == {
        "mono.threshold": 0.5,
        "mono.image_auroc": 0.9,
        "mono.image_ap": None,
        "mono.pixel_auroc": 0.8,
        "mono.pixel_aupro": 0.7,
    }


def test_unwritable_store_logs_once_and_disables(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    tracker = RunTracker(f"sqlite:///{blocked}/mlflow.db", "grdnet-kedro")

    with caplog.at_level(logging.WARNING, logger="grdnet_kedro.tracking"):
        tracker.start("run", {"profile": "x"})
        tracker.log_params({"a": "1"})
        tracker.log_metrics({"mono.image_auroc": 0.9})
        tracker.log_artifact(blocked)
        tracker.end("FINISHED")

    assert tracker.enabled is False
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1
    assert str(blocked) in messages[0]


def test_tracker_skips_missing_and_non_finite_metrics(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = RunTracker(uri, "grdnet-kedro")
    tracker.start("run", {})
    run_id = tracker.run_id
    tracker.log_metrics({"mono.a": 0.5, "mono.b": None, "mono.c": float("nan")})
    tracker.log_history("mono", [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}], "epoch")
    tracker.end("FINISHED")

    assert run_id is not None
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.metrics == {"mono.a": 0.5, "mono.loss": 1.0}
    history = MlflowClient(uri).get_metric_history(run_id, "mono.loss")
    assert [(metric.step, metric.value) for metric in history] == [(1, 2.0), (2, 1.0)]
