"""Kedro project settings."""

import os

from kedro.config import OmegaConfigLoader

from grdnet_kedro.hooks import ParameterValidationHook, TrackingHook

# MLflow's usage telemetry is off unless the user opts in (the Kedro side is `.telemetry`).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

HOOKS = (ParameterValidationHook(), TrackingHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Profiles and local overrides only list the keys they change.
    "merge_strategy": {"parameters": "soft"},
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}
