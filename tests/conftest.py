"""Shared fixtures. Kedro and MLflow telemetry is switched off before either is imported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from helpers.tiny_dataset import make_tiny_mvtec


@pytest.fixture
def tiny_mvtec_root(tmp_path: Path) -> Path:
    """Dataset root with one 32x32 gray category ``widget``: 8 train, 3 good and 3 scratch tests."""
    return make_tiny_mvtec(tmp_path / "mvtec")
