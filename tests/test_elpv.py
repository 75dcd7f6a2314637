from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from grdnet_kedro.data import elpv
from grdnet_kedro.data.cache import build_cache
from grdnet_kedro.data.elpv import elpv_root, index_elpv
from grdnet_kedro.data.images import DataError
from grdnet_kedro.data.mvtec import MANIFEST_COLUMNS


def _split_counts(manifest: pd.DataFrame) -> tuple[int, int, int]:
    train = int((manifest["split"] == "train").sum())
    test_good = int(((manifest["split"] == "test") & (manifest["label"] == 0)).sum())
    test_defect = int(((manifest["split"] == "test") & (manifest["label"] == 1)).sum())
    return train, test_good, test_defect


def _names(manifest: pd.DataFrame, split: str, defect_type: str) -> list[str]:
    rows = manifest[(manifest["split"] == split) & (manifest["defect_type"] == defect_type)]
    return [Path(path).name for path in rows["image_path"]]


@pytest.fixture
def fake_elpv(tmp_path: Path) -> Path:
    """Folder with labels.csv of 9 poly cells and 1 mono cell, in shuffled order."""
    lines = [
        "images/cell0007.png  0.0                 poly",
        "images/cell0002.png  0.0                 poly",
        "images/cell0005.png  0.3333333333333333  poly",
        "images/cell0001.png  0.0                 poly",
        "images/cell0009.png  1.0                 poly",
        "images/cell0004.png  0.0                 poly",
        "images/cell0008.png  0.6666666666666666  poly",
        "images/cell0003.png  0.3333333333333333  poly",
        "images/cell0006.png  0.0                 poly",
        "images/cell0010.png  0.0                 mono",
    ]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_elpv_root_contains_labels() -> None:
    root = elpv_root()

    assert (root / "labels.csv").is_file()
    assert (root / "images").is_dir()


def test_elpv_root_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    with pytest.raises(DataError, match="pip install elpv-dataset"):
        elpv.elpv_root()


@pytest.mark.parametrize(
    ("category", "expected"),
    [("mono", (441, 147, 369)), ("poly", (690, 230, 452))],
)
def test_default_split_counts(category: str, expected: tuple[int, int, int]) -> None:
    manifest = index_elpv(category)  # type: ignore[arg-type]

    assert _split_counts(manifest) == expected


@pytest.mark.parametrize(
    ("category", "policy", "expected"),
    [
        # 117 mono and 178 poly cells have probability 1/3.
        # "good": 588 + 117 = 705 functional cells, i % 4 == 3 for 176 of them.
        ("mono", "good", (529, 176, 369)),
        ("mono", "defect", (441, 147, 369 + 117)),
        # "good": 920 + 178 = 1098 functional cells, i % 4 == 3 for 274 of them.
        ("poly", "good", (824, 274, 452)),
        ("poly", "defect", (690, 230, 452 + 178)),
    ],
)
def test_one_third_policy_counts(
    category: str, policy: str, expected: tuple[int, int, int]
) -> None:
    manifest = index_elpv(category, one_third_policy=policy)  # type: ignore[arg-type]

    assert _split_counts(manifest) == expected


def test_real_split_first_cells() -> None:
    manifest = index_elpv("mono")

    # Functional mono cells sorted by name: cell0004, cell0009, cell0011, cell0060, ...
    assert _names(manifest, "train", "good")[:3] == ["cell0004.png", "cell0009.png", "cell0011.png"]
    assert _names(manifest, "test", "good")[:2] == ["cell0060.png", "cell0413.png"]
    assert _names(manifest, "test", "defect")[:3] == [
        "cell0001.png",
        "cell0002.png",
        "cell0003.png",
    ]


def test_manifest_columns_and_values() -> None:
    manifest = index_elpv("poly")

    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert set(manifest["mask_path"]) == {""}
    assert set(manifest["roi_path"]) == {""}
    assert set(manifest["width"]) == {300}
    assert set(manifest["height"]) == {300}
    assert set(manifest["mode"]) == {"L"}
    assert manifest.loc[manifest["defect_type"] == "defect", "label"].eq(1).all()
    assert manifest.loc[manifest["defect_type"] == "good", "label"].eq(0).all()
    assert Path(manifest["image_path"].iloc[0]).is_file()


def test_exclude_policy_on_small_labels(fake_elpv: Path) -> None:
    manifest = index_elpv("poly", root=fake_elpv)

    # Functional: 0001 0002 0004 0006 0007 -> index 3 (cell0006) is the only test cell.
    assert _names(manifest, "train", "good") == [
        "cell0001.png",
        "cell0002.png",
        "cell0004.png",
        "cell0007.png",
    ]
    assert _names(manifest, "test", "good") == ["cell0006.png"]
    assert _names(manifest, "test", "defect") == ["cell0008.png", "cell0009.png"]


def test_good_policy_splits_after_merging(fake_elpv: Path) -> None:
    manifest = index_elpv("poly", one_third_policy="good", root=fake_elpv)

    # Functional: 0001 0002 0003 0004 0005 0006 0007 -> index 3 (cell0004) goes to test.
    assert _names(manifest, "train", "good") == [
        "cell0001.png",
        "cell0002.png",
        "cell0003.png",
        "cell0005.png",
        "cell0006.png",
        "cell0007.png",
    ]
    assert _names(manifest, "test", "good") == ["cell0004.png"]
    assert _names(manifest, "test", "defect") == ["cell0008.png", "cell0009.png"]


def test_defect_policy_adds_one_third(fake_elpv: Path) -> None:
    manifest = index_elpv("poly", one_third_policy="defect", root=fake_elpv)

    assert _names(manifest, "test", "good") == ["cell0006.png"]
    assert _names(manifest, "test", "defect") == [
        "cell0003.png",
        "cell0005.png",
        "cell0008.png",
        "cell0009.png",
    ]


def test_invalid_category() -> None:
    with pytest.raises(DataError, match=r"one of \('mono', 'poly'\), got 'cdte'"):
        index_elpv("cdte")  # type: ignore[arg-type]


def test_invalid_policy() -> None:
    with pytest.raises(DataError, match="one_third_policy must be one of"):
        index_elpv("mono", one_third_policy="maybe")  # type: ignore[arg-type]


def test_unexpected_probability(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("images/cell0001.png 0.1 mono\n")

    with pytest.raises(DataError, match=r"unexpected defect probabilities \[0\.1\]"):
        index_elpv("mono", root=tmp_path)


def test_malformed_labels(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("images/cell0001.png mono\n")

    with pytest.raises(DataError, match=r"labels\.csv"):
        index_elpv("mono", root=tmp_path)


def test_build_cache_real_images() -> None:
    manifest = index_elpv("mono").iloc[[0, 1, 2, -2, -1]].reset_index(drop=True)

    cache = build_cache(manifest, image_size=(64, 64), channels=1, progress=False)

    assert cache["images"].dtype == np.uint8
    assert cache["images"].shape == (5, 64, 64, 1)
    assert cache["labels"].tolist() == [0, 0, 0, 1, 1]
    assert cache["has_mask"].tolist() == [True, True, True, False, False]
    assert int(cache["masks"].max()) == 0
    assert int(cache["rois"].min()) == 1
    # Real EL images are neither blank nor saturated.
    assert 0 < float(cache["images"].mean()) < 255


def test_build_cache_real_image_resized_bilinear() -> None:
    manifest = index_elpv("mono").iloc[[0]].reset_index(drop=True)
    original = np.asarray(Image.open(manifest["image_path"].iloc[0]))

    cache = build_cache(manifest, image_size=(300, 300), channels=1, progress=False)

    np.testing.assert_array_equal(cache["images"][0, ..., 0], original)
