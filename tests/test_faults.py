"""Faults seen by a user: bad parameters fail before any node, a killed run resumes."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from helpers.project import KEDRO, TINY_PARAMETERS, make_project, run_kedro
from helpers.tiny_dataset import make_tiny_mvtec


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    dataset = make_tiny_mvtec(tmp_path / "dataset", categories=("widget",), n_train=8)
    return make_project(tmp_path / "project", dataset)


def test_invalid_parameter_fails_before_any_node(tiny_project: Path) -> None:
    result = run_kedro(tiny_project, "run", "--params=training.epochs=-1", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "training.epochs" in output
    assert "Running node" not in output


def test_missing_texture_folder_fails_before_any_node(tiny_project: Path) -> None:
    result = run_kedro(
        tiny_project,
        "run",
        "--params=perturbation.texture_dir=/no/such/textures,perturbation.source_weights.texture=1.0",
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "/no/such/textures" in output
    assert "Running node" not in output


def test_validate_params_command_reports_typo(tiny_project: Path) -> None:
    (tiny_project / "conf" / "tiny" / "parameters_typo.yml").write_text("model:\n  pach_size: 32\n")
    result = run_kedro(tiny_project, "validate-params", "--env=tiny", check=False)
    assert result.returncode != 0
    assert "model.pach_size: unknown key" in result.stdout + result.stderr


def test_validate_params_command_accepts_paper_profile(tiny_project: Path) -> None:
    result = run_kedro(tiny_project, "validate-params", "--env=grdnet_2023", env="grdnet_2023")
    assert "valid (profile 'grdnet_2023'" in result.stdout


def test_killed_training_resumes(tiny_project: Path) -> None:
    parameters = copy.deepcopy(TINY_PARAMETERS)
    parameters["training"] = {"epochs": 40, "batch_size": 4, "preview_every": 40}
    (tiny_project / "conf" / "tiny" / "parameters.yml").write_text(yaml.safe_dump(parameters))
    last = tiny_project / "data" / "06_models" / "checkpoints" / "widget" / "last.pt"
    environment = {
        **os.environ,
        "KEDRO_ENV": "tiny",
        "DO_NOT_TRACK": "true",
        "KEDRO_DISABLE_TELEMETRY": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    process = subprocess.Popen(
        [str(KEDRO), "run"],
        cwd=tiny_project,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)

    assert last.exists(), "no checkpoint was written before the kill"
    stopped_at = torch.load(last, weights_only=True)["epoch"]
    assert 1 <= stopped_at < 40

    result = run_kedro(tiny_project, "run")

    assert f"{stopped_at} of 40 epochs done" in result.stdout + result.stderr
    history = pd.read_csv(
        tiny_project / "data" / "08_reporting" / "widget" / "training_history.csv"
    )
    assert history["epoch"].tolist() == list(range(1, 41))
    assert (tiny_project / "data" / "08_reporting" / "widget" / "metrics.json").is_file()
