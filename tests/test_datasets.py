"""Atomic local datasets: round trips, no partial files, helpful missing-file errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.io import DatasetError
from matplotlib.figure import Figure

from grdnet_kedro.atomic import atomic_open
from grdnet_kedro.datasets import (
    CSVDataset,
    FigureDataset,
    JSONDataset,
    NpzDataset,
    TextDataset,
    TorchCheckpointDataset,
)
from grdnet_kedro.training.checkpoint import CheckpointError, build_checkpoint


def test_csv_round_trip_keeps_empty_strings(tmp_path: Path) -> None:
    dataset = CSVDataset(str(tmp_path / "table.csv"))
    frame = pd.DataFrame({"image_path": ["a.png", "b.png"], "mask_path": ["", "m.png"]})
    dataset.save(frame)
    loaded = dataset.load()
    assert loaded["mask_path"].fillna("").tolist() == ["", "m.png"]


def test_json_round_trip(tmp_path: Path) -> None:
    dataset = JSONDataset(str(tmp_path / "nested" / "threshold.json"))
    dataset.save({"threshold": 0.25, "source": "validation", "missing": None})
    assert dataset.load() == {"threshold": 0.25, "source": "validation", "missing": None}


def test_npz_round_trip(tmp_path: Path) -> None:
    dataset = NpzDataset(str(tmp_path / "cache.npz"))
    arrays = {"images": np.arange(12, dtype=np.uint8).reshape(1, 3, 4, 1), "labels": np.array([1])}
    dataset.save(arrays)
    loaded = dataset.load()
    assert np.array_equal(loaded["images"], arrays["images"])
    assert loaded["labels"].tolist() == [1]


def test_text_and_figure(tmp_path: Path) -> None:
    TextDataset(str(tmp_path / "a.md")).save("# title\n")
    assert (tmp_path / "a.md").read_text() == "# title\n"
    figure = Figure(figsize=(1, 1))
    figure.add_subplot().plot([0, 1])
    FigureDataset(str(tmp_path / "f.png")).save(figure)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_text("old complete content\n")

    with pytest.raises(RuntimeError, match="killed"), atomic_open(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("killed mid-write")

    assert target.read_text() == "old complete content\n"
    assert [path.name for path in tmp_path.iterdir()] == ["report.csv"]


def test_missing_file_error_names_command(tmp_path: Path) -> None:
    dataset = JSONDataset(
        str(tmp_path / "threshold.json"), missing_hint="run `kedro run --namespaces=mono`"
    )
    with pytest.raises(DatasetError, match=r"threshold\.json does not exist: run `kedro run"):
        dataset.load()


def test_checkpoint_dataset_round_trip(tmp_path: Path) -> None:
    dataset = TorchCheckpointDataset(str(tmp_path / "model.pt"))
    weights = {"weight": torch.ones(2)}
    dataset.save(
        build_checkpoint(
            states={"generator": weights, "discriminator": weights, "segmentator": None},
            optimizers=None,
            epoch=3,
            metadata={"channels": 1},
        )
    )
    loaded = dataset.load()
    assert loaded["epoch"] == 3
    assert torch.equal(loaded["generator"]["weight"], torch.ones(2))


def test_checkpoint_dataset_rejects_bare_tensor(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(DatasetError, match="contains a Tensor, not a checkpoint") as raised:
        TorchCheckpointDataset(str(path)).load()
    assert isinstance(raised.value.__cause__, CheckpointError)


@pytest.mark.parametrize(
    ("dataset", "command"),
    [
        ("mono.model", "kedro run --pipelines=train --namespaces=mono"),
        ("mono.threshold", "kedro run --namespaces=mono"),
        ("mono.manifest", "kedro run --pipelines=ingest_mvtec --namespaces=mono"),
    ],
)
def test_catalog_missing_output_names_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: str, command: str
) -> None:
    import yaml
    from kedro.io import DataCatalog

    config = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "conf" / "base" / "catalog.yml").read_text()
    )
    monkeypatch.chdir(tmp_path)
    catalog = DataCatalog.from_config(config)

    with pytest.raises(DatasetError, match=command):
        catalog.load(dataset)
