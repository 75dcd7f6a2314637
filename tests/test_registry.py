"""Pipeline registration: one namespace per category, every stage named."""

from __future__ import annotations

from pathlib import Path

import pytest

from grdnet_kedro.categories import set_run_data_params
from grdnet_kedro.pipeline_registry import register_pipelines
from helpers.project import make_project
from helpers.tiny_dataset import make_tiny_mvtec


@pytest.fixture
def pipelines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    dataset = make_tiny_mvtec(tmp_path / "dataset", categories=("gadget", "widget"), n_train=4)
    project = make_project(tmp_path / "project", dataset)
    monkeypatch.chdir(project)
    monkeypatch.setenv("KEDRO_ENV", "tiny")
    set_run_data_params(None)
    return register_pipelines()


def test_every_stage_is_registered(pipelines: dict) -> None:
    assert {
        "ingest_mvtec",
        "perturb",
        "train",
        "calibrate",
        "evaluate",
        "report",
        "infer",
        "__default__",
    } <= set(pipelines)


def test_one_namespace_per_category(pipelines: dict) -> None:
    namespaces = {node.namespace for node in pipelines["__default__"].nodes if node.namespace}
    assert namespaces == {"gadget", "widget"}
    names = {node.name for node in pipelines["train"].nodes}
    assert names == {"gadget.train_model", "widget.train_model"}


def test_default_excludes_infer(pipelines: dict) -> None:
    default_names = {node.name for node in pipelines["__default__"].nodes}
    assert "widget.infer_folder" not in default_names
    assert "widget.evaluate_predictions" in default_names
    assert "build_benchmark" in default_names


def test_parameters_shared_across_namespaces(pipelines: dict) -> None:
    inputs = set().union(*(node.inputs for node in pipelines["perturb"].nodes))
    assert "params:perturbation" in inputs
    assert "params:widget.perturbation" not in inputs


def test_elpv_categories_without_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from grdnet_kedro.categories import resolve_categories
    from grdnet_kedro.config import DataParams

    assert resolve_categories(DataParams(source="elpv"), tmp_path) == ["mono", "poly"]
    assert resolve_categories(DataParams(categories=["a", "b"]), tmp_path) == ["a", "b"]
