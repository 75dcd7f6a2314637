"""A throw-away copy of the Kedro project (config only) for end-to-end `kedro run` tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
KEDRO = Path(sys.executable).with_name("kedro")

# Tiny sizes: a run of the whole DAG on the tiny dataset takes seconds.
TINY_PARAMETERS: dict[str, Any] = {
    "profile": "tiny_test",
    "data": {
        "source": "mvtec",
        "root": "raw",
        "image_size": 32,
        "channels": 1,
        "validation_fraction": 0.25,
    },
    "model": {
        "patch_size": 16,
        "patch_stride": 16,
        "base_features": 4,
        "stages": [1, 1],
        "latent_dim": 8,
        "use_segmentator": True,
        "segmentator_base_features": 4,
    },
    # The full GRD-Net losses (conf/base uses the SN ones).
    "loss": {"noise_weight": 0.0, "contextual_base": "l1", "contextual_base_weight": 1.0},
    "training": {"epochs": 2, "batch_size": 4, "preview_every": 1},
    "inference": {"smoothing_kernel": 3, "batch_size": 8, "image_score": "map_max"},
    "runtime": {"progress": False, "device": "cpu", "num_threads": 1},
}


def make_project(root: Path, dataset_root: Path, parameters: dict[str, Any] | None = None) -> Path:
    """Copy pyproject.toml and the shipped envs into ``root`` and add an env ``tiny``."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPOSITORY / "pyproject.toml", root / "pyproject.toml")
    for env in ("base", "grdnet_2023", "deepindustrial_sn_2026"):
        shutil.copytree(REPOSITORY / "conf" / env, root / "conf" / env)
    (root / "conf" / "tiny").mkdir(parents=True)
    (root / "src").mkdir()
    link = root / "raw"
    if not link.exists():
        link.symlink_to(dataset_root, target_is_directory=True)
    values = parameters if parameters is not None else TINY_PARAMETERS
    (root / "conf" / "tiny" / "parameters.yml").write_text(yaml.safe_dump(values))
    return root


def run_kedro(
    project: Path,
    *arguments: str,
    env: str = "tiny",
    check: bool = True,
    timeout: int = 300,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``kedro <arguments>`` in ``project`` with telemetry off; output is captured."""
    environment = {
        **os.environ,
        "KEDRO_ENV": env,
        "DO_NOT_TRACK": "true",
        "KEDRO_DISABLE_TELEMETRY": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "COLUMNS": "200",
    }
    environment.pop("MLFLOW_TRACKING_URI", None)
    environment.update(extra_env or {})
    result = subprocess.run(
        [str(KEDRO), *arguments],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"kedro {' '.join(arguments)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-6000:]}"
        )
    return result
