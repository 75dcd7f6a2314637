from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grdnet_kedro.data.images import DataError
from grdnet_kedro.data.mvtec import MANIFEST_COLUMNS, discover_categories, index_mvtec_category

LOGGER = "grdnet_kedro.data.mvtec"


def _write_png(path: Path, size: tuple[int, int] = (8, 8)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, 100, dtype=np.uint8)).save(path)


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and text in record.getMessage()
    ]


def test_index_labels_from_folders(tiny_mvtec_root: Path) -> None:
    manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == 14
    groups = manifest.groupby(["split", "defect_type"])["label"]
    assert groups.size().to_dict() == {
        ("test", "good"): 3,
        ("test", "scratch"): 3,
        ("train", "good"): 8,
    }
    assert groups.unique().map(list).to_dict() == {
        ("test", "good"): [0],
        ("test", "scratch"): [1],
        ("train", "good"): [0],
    }


def test_index_row_order_and_headers(tiny_mvtec_root: Path) -> None:
    manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    assert manifest["split"].tolist() == ["train"] * 8 + ["test"] * 6
    assert manifest["defect_type"].tolist()[8:] == ["good"] * 3 + ["scratch"] * 3
    assert [Path(path).name for path in manifest["image_path"][:3]] == [
        "000.png",
        "001.png",
        "002.png",
    ]
    assert all(Path(path).is_absolute() for path in manifest["image_path"])
    assert set(manifest["width"]) == {32}
    assert set(manifest["height"]) == {32}
    assert set(manifest["mode"]) == {"L"}
    assert str(manifest["label"].dtype) == "int64"


def test_index_masks_only_for_anomalous(tiny_mvtec_root: Path) -> None:
    manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    anomalous = manifest[manifest["label"] == 1]
    good = manifest[manifest["label"] == 0]
    assert [Path(path).name for path in anomalous["mask_path"]] == [
        "000_mask.png",
        "001_mask.png",
        "002_mask.png",
    ]
    assert set(good["mask_path"]) == {""}


def test_missing_mask_keeps_label_and_warns_once(
    tiny_mvtec_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    masks = tiny_mvtec_root / "widget" / "ground_truth" / "scratch"
    (masks / "000_mask.png").unlink()
    (masks / "002_mask.png").unlink()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    anomalous = manifest[manifest["defect_type"] == "scratch"]
    assert anomalous["label"].tolist() == [1, 1, 1]
    assert [Path(path).name if path else "" for path in anomalous["mask_path"]] == [
        "",
        "001_mask.png",
        "",
    ]
    mask_warnings = _warnings(caplog, "no mask")
    assert len(mask_warnings) == 1
    assert "2 of 3 anomalous" in mask_warnings[0]


def test_mask_found_by_stem_and_upper_case(tiny_mvtec_root: Path) -> None:
    masks = tiny_mvtec_root / "widget" / "ground_truth" / "scratch"
    (masks / "000_mask.png").rename(masks / "000.png")
    (masks / "001_mask.png").rename(masks / "001_mask.PNG")

    manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    anomalous = manifest[manifest["label"] == 1]
    assert [Path(path).name for path in anomalous["mask_path"]] == [
        "000.png",
        "001_mask.PNG",
        "002_mask.png",
    ]


def test_missing_roi_warns_once(tiny_mvtec_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    assert set(manifest["roi_path"]) == {""}
    roi_warnings = _warnings(caplog, "ROI")
    assert len(roi_warnings) == 1
    assert "whole image is the ROI" in roi_warnings[0]


def test_category_roi_used_for_every_image(
    tiny_mvtec_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    roi = tiny_mvtec_root / "widget" / "roi" / "roi.png"
    _write_png(roi, (32, 32))

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    assert set(manifest["roi_path"]) == {str(roi.resolve())}
    assert _warnings(caplog, "ROI") == []


def test_per_image_roi_before_category_roi(tiny_mvtec_root: Path) -> None:
    roi_dir = tiny_mvtec_root / "widget" / "roi"
    _write_png(roi_dir / "roi.png")
    _write_png(roi_dir / "test" / "scratch" / "001.png")

    manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    rois = [Path(path).relative_to(roi_dir.resolve()) for path in manifest["roi_path"]]
    assert rois[:12] == [Path("roi.png")] * 12
    assert rois[12] == Path("test/scratch/001.png")
    assert rois[13] == Path("roi.png")


def test_partial_per_image_rois_warn_with_count(
    tiny_mvtec_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _write_png(tiny_mvtec_root / "widget" / "roi" / "train" / "good" / "000.png")

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    assert manifest["roi_path"].iloc[0].endswith("roi/train/good/000.png")
    assert (manifest["roi_path"] == "").sum() == 13
    roi_warnings = _warnings(caplog, "ROI")
    assert len(roi_warnings) == 1
    assert "13 of 14" in roi_warnings[0]


def test_upper_case_extensions_and_hidden_files(tiny_mvtec_root: Path) -> None:
    train = tiny_mvtec_root / "widget" / "train" / "good"
    _write_png(train / "upper.PNG")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(train / "jpeg.Jpeg", format="JPEG")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(train / "jpg.JPG", format="JPEG")
    (train / ".DS_Store").write_bytes(b"\x00\x01")
    (train / "._000.png").write_bytes(b"\x00\x05\x16\x07")

    manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    train_names = {
        Path(path).name for path in manifest.loc[manifest["split"] == "train", "image_path"]
    }
    assert len(train_names) == 11
    assert {"upper.PNG", "jpeg.Jpeg", "jpg.JPG"} <= train_names
    assert not {".DS_Store", "._000.png"} & train_names


def test_unreadable_headers_listed_together(tiny_mvtec_root: Path) -> None:
    good = tiny_mvtec_root / "widget" / "test" / "good"
    (good / "zero.png").write_bytes(b"")
    (good / "text.png").write_bytes(b"plain text, not an image")

    with pytest.raises(DataError) as raised:
        index_mvtec_category(tiny_mvtec_root, "widget")

    message = str(raised.value)
    assert "2 image(s) cannot be read" in message
    assert str((good / "zero.png").resolve()) in message
    assert str((good / "text.png").resolve()) in message
    assert "skip_unreadable" in message


def test_unreadable_headers_skipped_with_warning(
    tiny_mvtec_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = tiny_mvtec_root / "widget" / "test" / "good"
    (good / "zero.png").write_bytes(b"")
    (good / "text.png").write_bytes(b"plain text, not an image")

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        manifest = index_mvtec_category(tiny_mvtec_root, "widget", skip_unreadable=True)

    assert len(manifest) == 14
    skip_warnings = _warnings(caplog, "left out")
    assert len(skip_warnings) == 1
    assert "left out 2 unreadable image(s)" in skip_warnings[0]
    assert "zero.png" in skip_warnings[0]
    assert "text.png" in skip_warnings[0]


def test_missing_category_named(tiny_mvtec_root: Path) -> None:
    with pytest.raises(DataError, match=r"category folder .*gadget not found.*\['widget'\]"):
        index_mvtec_category(tiny_mvtec_root, "gadget")


@pytest.mark.parametrize("part", ["train", "test"])
def test_missing_train_or_test_named(tiny_mvtec_root: Path, part: str) -> None:
    shutil.rmtree(tiny_mvtec_root / "widget" / part)

    with pytest.raises(DataError, match=rf"folder .*widget/{part} is missing"):
        index_mvtec_category(tiny_mvtec_root, "widget")


def test_empty_train_good_named(tiny_mvtec_root: Path) -> None:
    train = tiny_mvtec_root / "widget" / "train" / "good"
    for path in train.iterdir():
        path.unlink()
    (train / ".DS_Store").write_bytes(b"")

    with pytest.raises(DataError, match=r"training folder .*widget/train/good contains no image"):
        index_mvtec_category(tiny_mvtec_root, "widget")


def test_missing_train_good_named(tiny_mvtec_root: Path) -> None:
    shutil.rmtree(tiny_mvtec_root / "widget" / "train" / "good")

    with pytest.raises(DataError, match=r"training folder .*widget/train/good is missing"):
        index_mvtec_category(tiny_mvtec_root, "widget")


def test_test_without_images_named(tiny_mvtec_root: Path) -> None:
    test = tiny_mvtec_root / "widget" / "test"
    shutil.rmtree(test)
    (test / "good").mkdir(parents=True)
    (test / "scratch").mkdir()

    with pytest.raises(DataError, match=r"test folder .*widget/test contains no image"):
        index_mvtec_category(tiny_mvtec_root, "widget")


def test_test_without_defects_allowed(tiny_mvtec_root: Path) -> None:
    shutil.rmtree(tiny_mvtec_root / "widget" / "test" / "scratch")

    manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    assert manifest["label"].sum() == 0
    assert len(manifest) == 11


def test_discover_categories(tmp_path: Path) -> None:
    for name in ("zeta", "alpha", ".hidden"):
        (tmp_path / name / "train").mkdir(parents=True)
        (tmp_path / name / "test").mkdir()
    (tmp_path / "only_train" / "train").mkdir(parents=True)
    (tmp_path / "file.txt").write_text("not a category")

    assert discover_categories(tmp_path) == ["alpha", "zeta"]


def test_discover_categories_empty_root(tmp_path: Path) -> None:
    assert discover_categories(tmp_path) == []


def test_discover_categories_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset root .*absent not found"):
        discover_categories(tmp_path / "absent")


def test_extra_folders_ignored_with_warning(
    tiny_mvtec_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    category = tiny_mvtec_root / "widget"
    _write_png(category / "train" / "bad" / "000.png")
    _write_png(category / "test" / "loose.png")
    (category / "test" / "crack").mkdir()

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    assert len(manifest) == 14
    assert len(_warnings(caplog, "only good/ is used for training")) == 1
    assert len(_warnings(caplog, "ignoring 1 image(s) directly in")) == 1
    assert len(_warnings(caplog, "test/crack is empty")) == 1


def test_ambiguous_mask_stem_uses_first(
    tiny_mvtec_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    masks = tiny_mvtec_root / "widget" / "ground_truth" / "scratch"
    _write_png(masks / "000_mask.bmp")

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    assert Path(manifest["mask_path"].iloc[11]).name == "000_mask.bmp"
    assert len(_warnings(caplog, "two masks share the stem '000_mask'")) == 1


def test_all_test_images_unreadable_raises(tiny_mvtec_root: Path) -> None:
    test = tiny_mvtec_root / "widget" / "test"
    for path in test.rglob("*.png"):
        path.write_bytes(b"")

    with pytest.raises(DataError, match="no readable test image is left"):
        index_mvtec_category(tiny_mvtec_root, "widget", skip_unreadable=True)
