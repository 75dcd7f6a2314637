"""End-to-end `kedro run` of the whole DAG on the tiny generated dataset."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image

from helpers.project import TINY_PARAMETERS, make_project, run_kedro
from helpers.tiny_dataset import make_tiny_mvtec

CATEGORIES = ("gadget", "widget")


@pytest.fixture(scope="module")
def finished_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project on which the whole benchmark DAG has run once (full GRD-Net profile)."""
    base = tmp_path_factory.mktemp("e2e")
    dataset = make_tiny_mvtec(base / "dataset", categories=CATEGORIES, n_train=12)
    project = make_project(base / "project", dataset)
    run_kedro(project, "run")
    return project


def test_default_run_writes_every_output(finished_project: Path) -> None:
    for category in CATEGORIES:
        reporting = finished_project / "data" / "08_reporting" / category
        for name in (
            "metrics.json",
            "training_history.csv",
            "roc_curve.png",
            "pr_curve.png",
            "score_histogram.png",
            "loss_curves.png",
            "heatmaps.png",
            "perturbation_preview.png",
            "train_preview.png",
        ):
            assert (reporting / name).is_file(), f"{category}/{name} missing"
        assert (finished_project / "data" / "06_models" / category / "model.pt").is_file()
        assert (finished_project / "data" / "06_models" / category / "threshold.json").is_file()
    assert (finished_project / "data" / "08_reporting" / "benchmark.csv").is_file()


def test_default_run_metrics_schema(finished_project: Path) -> None:
    metrics = json.loads(
        (finished_project / "data" / "08_reporting" / "widget" / "metrics.json").read_text()
    )
    assert metrics["category"] == "widget"
    assert metrics["profile"] == "tiny_test"
    assert metrics["score_method"] == "segmentation"
    assert metrics["threshold_source"] == "validation"
    assert metrics["counts"] == {
        "test_good": 3,
        "test_anomalous": 3,
        "anomalous_without_mask": 0,
        "patches_per_image": 4,
    }
    assert 0.0 <= metrics["image"]["auroc"] <= 1.0
    assert metrics["pixel"]["pixel_auroc"] is not None
    assert metrics["image"]["tp"] + metrics["image"]["fn"] == 3


def test_default_run_history_has_fixed_columns(finished_project: Path) -> None:
    history = pd.read_csv(
        finished_project / "data" / "08_reporting" / "widget" / "training_history.csv"
    )
    assert list(history["epoch"]) == [1, 2]
    assert {"loss_total", "loss_segmentation", "validation_auroc", "patches_per_second"} <= set(
        history.columns
    )
    assert history["loss_total"].notna().all()


def test_benchmark_table_has_mean_row(finished_project: Path) -> None:
    table = pd.read_csv(finished_project / "data" / "08_reporting" / "benchmark.csv")
    assert list(table["category"]) == [*CATEGORIES, "mean"]
    expected_mean = table["image_auroc"].iloc[:2].mean()
    assert table["image_auroc"].iloc[2] == pytest.approx(expected_mean)
    markdown = (finished_project / "data" / "08_reporting" / "benchmark.md").read_text()
    assert "| mean |" in markdown


def test_mlflow_run_read_back(finished_project: Path) -> None:
    client = MlflowClient(f"sqlite:///{finished_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grdnet-kedro")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["kedro.env"] == "tiny"
    assert run.data.tags["profile"] == "tiny_test"
    assert run.data.tags["categories"] == "gadget,widget"
    assert "git_commit" in run.data.tags
    assert run.data.params["model.base_features"] == "4"
    assert "widget.image_auroc" in run.data.metrics
    assert "gadget.pixel_aupro" in run.data.metrics
    history = client.get_metric_history(run.info.run_id, "widget.loss_total")
    assert sorted(metric.step for metric in history) == [1, 2]
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id, "widget")}
    assert {"widget/metrics.json", "widget/model.pt", "widget/roc_curve.png"} <= artifacts


def test_rerun_one_node_uses_persisted_inputs(finished_project: Path) -> None:
    metrics_path = finished_project / "data" / "08_reporting" / "widget" / "metrics.json"
    model_path = finished_project / "data" / "06_models" / "widget" / "model.pt"
    before = json.loads(metrics_path.read_text())
    model_mtime = model_path.stat().st_mtime_ns
    metrics_path.unlink()

    result = run_kedro(
        finished_project, "run", "--namespaces=widget", "--nodes=widget.evaluate_predictions"
    )

    assert "train_model" not in result.stdout + result.stderr
    assert model_path.stat().st_mtime_ns == model_mtime
    assert json.loads(metrics_path.read_text()) == before
    client = MlflowClient(f"sqlite:///{finished_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("grdnet-kedro")
    assert experiment is not None
    latest = client.search_runs([experiment.experiment_id], order_by=["start_time DESC"])[0]
    assert latest.data.tags["kedro.node_names"] == "widget.evaluate_predictions"
    assert latest.data.tags["kedro.namespaces"] == "widget"


def test_sn_profile_runs_end_to_end(tmp_path: Path) -> None:
    dataset = make_tiny_mvtec(tmp_path / "dataset", categories=("widget",), n_train=8)
    parameters = copy.deepcopy(TINY_PARAMETERS)
    parameters["profile"] = "tiny_sn"
    parameters["model"].update(
        {"use_segmentator": False, "bottleneck": "dense", "patch_size": 32, "patch_stride": 32}
    )
    parameters["loss"] = {"noise_weight": 3.0, "contextual_base": "huber"}
    parameters["inference"] = {"score": "ssim", "image_score": "patch_max"}
    project = make_project(tmp_path / "project", dataset, parameters)

    run_kedro(project, "run")

    metrics = json.loads(
        (project / "data" / "08_reporting" / "widget" / "metrics.json").read_text()
    )
    assert metrics["score_method"] == "ssim"
    assert metrics["counts"]["patches_per_image"] == 1
    history = pd.read_csv(project / "data" / "08_reporting" / "widget" / "training_history.csv")
    assert (history["loss_segmentation"] == 0).all()
    assert (history["loss_noise"] > 0).all()


def test_unwritable_mlflow_store_keeps_outputs(finished_project: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store's folder should be")
    heatmaps = finished_project / "data" / "08_reporting" / "widget" / "heatmaps.png"
    heatmaps.unlink()

    result = run_kedro(
        finished_project,
        "run",
        "--pipelines=report",
        extra_env={"MLFLOW_TRACKING_URI": f"sqlite:///{blocked}/mlflow.db"},
    )

    output = result.stdout + result.stderr
    assert heatmaps.is_file()
    assert output.count("tracking is off for the rest of this run") == 1
    assert str(blocked) in output


# Tiny sizes for the grdnet_2023 and deepindustrial_sn_2026 envs, given with --params as a
# user would shrink them for a CPU smoke run.
PAPER_PROFILE_OVERRIDES = ",".join(
    [
        "data.source=mvtec",
        "data.root=raw",
        "data.image_size=32",
        "data.validation_fraction=0.25",
        "model.base_features=4",
        "model.latent_dim=8",
        "training.epochs=1",
        "training.batch_size=4",
        "runtime.progress=false",
        "runtime.num_threads=1",
    ]
)


@pytest.mark.parametrize(
    ("env", "sizes", "score_method"),
    [
        (
            "grdnet_2023",
            "model.patch_size=16,model.patch_stride=16,model.segmentator_base_features=4,"
            "inference.smoothing_kernel=3",
            "segmentation",
        ),
        ("deepindustrial_sn_2026", "model.patch_size=32,model.patch_stride=32", "ssim"),
    ],
)
def test_paper_profile_runs_at_tiny_size(
    tmp_path: Path, env: str, sizes: str, score_method: str
) -> None:
    dataset = make_tiny_mvtec(tmp_path / "dataset", categories=("widget",), n_train=8)
    project = make_project(tmp_path / "project", dataset)

    run_kedro(
        project, "run", f"--env={env}", f"--params={PAPER_PROFILE_OVERRIDES},{sizes}", env=env
    )

    metrics = json.loads(
        (project / "data" / "08_reporting" / "widget" / "metrics.json").read_text()
    )
    assert metrics["profile"] == env
    assert metrics["score_method"] == score_method
    assert (project / "data" / "08_reporting" / "benchmark.csv").is_file()


def _write_new_images(folder: Path) -> list[Path]:
    """Write three gray PNGs of other sizes: one in a sub-folder, one with an upper-case suffix."""
    rng = np.random.default_rng(7)
    paths = [folder / "first.png", folder / "nested" / "second.png", folder / "THIRD.PNG"]
    for index, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(60, 200, size=(36 + 4 * index, 40), dtype=np.uint8)
        pixels[10:18, 12:20] = 255 * (index % 2)
        Image.fromarray(pixels).save(path)
    return paths


def test_export_then_infer_with_both_runtimes(finished_project: Path, tmp_path: Path) -> None:
    models = finished_project / "data" / "06_models"
    output = finished_project / "data" / "07_model_output" / "widget" / "infer"
    images = tmp_path / "new images"
    written = _write_new_images(images)

    # Run before the export: the lazy ONNX input must not fail a run that never reads it.
    unset = run_kedro(
        finished_project, "run", "--pipelines=infer", "--namespaces=widget", check=False
    )
    run_kedro(finished_project, "run", "--pipelines=export", "--namespaces=widget")
    runs = {}
    logs = {}
    for runtime in ("torch", "onnx"):
        result = run_kedro(
            finished_project,
            "run",
            "--pipelines=infer",
            "--namespaces=widget",
            f"--params=infer.input_dir={images},infer.runtime={runtime}",
        )
        logs[runtime] = result.stdout + result.stderr
        runs[runtime] = (
            pd.read_csv(output / "predictions.csv"),
            pd.read_csv(output / "patch_predictions.csv"),
        )

    assert unset.returncode != 0
    assert "infer.input_dir is not set" in unset.stdout + unset.stderr
    assert (models / "widget" / "model.onnx").is_file()
    assert not (models / "gadget" / "model.onnx").exists()
    metadata = json.loads((models / "widget" / "model.onnx.json").read_text())
    threshold = json.loads((models / "widget" / "threshold.json").read_text())
    metrics = json.loads(
        (finished_project / "data" / "08_reporting" / "widget" / "metrics.json").read_text()
    )
    assert metadata["category"] == "widget"
    assert metadata["threshold"] == pytest.approx(threshold["threshold"])
    assert metadata["score_method"] == metrics["score_method"]

    assert "Opened the ONNX model" in logs["onnx"]
    assert "Opened the ONNX model" not in logs["torch"]
    torch_predictions, torch_patches = runs["torch"]
    onnx_predictions, onnx_patches = runs["onnx"]
    assert sorted(torch_predictions["image_path"]) == sorted(str(path) for path in written)
    assert list(onnx_predictions["image_path"]) == list(torch_predictions["image_path"])
    np.testing.assert_allclose(
        onnx_predictions["image_score"], torch_predictions["image_score"], atol=1e-4
    )
    np.testing.assert_allclose(onnx_patches["patch_score"], torch_patches["patch_score"], atol=1e-4)
    assert list(onnx_predictions["decision"]) == list(torch_predictions["decision"])
