from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from grdnet_kedro.data.cache import CACHE_KEYS, build_cache
from grdnet_kedro.data.images import DataError
from grdnet_kedro.data.mvtec import MANIFEST_COLUMNS, index_mvtec_category, make_manifest


def _row(path: Path, *, label: int = 0, mask: str = "", roi: str = "", size: int = 8) -> dict:
    return {
        "image_path": str(path),
        "split": "test",
        "defect_type": "good" if label == 0 else "scratch",
        "label": label,
        "mask_path": mask,
        "roi_path": roi,
        "width": size,
        "height": size,
        "mode": "L",
    }


def _constant_png(path: Path, value: int, size: int = 8) -> Path:
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)
    return path


def _truncated_png(path: Path) -> Path:
    noise = np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_tiny_dataset_shapes_and_dtypes(tiny_mvtec_root: Path) -> None:
    manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    cache = build_cache(manifest, image_size=(16, 24), channels=1, progress=False)

    assert set(cache) == set(CACHE_KEYS)
    assert cache["images"].shape == (14, 16, 24, 1)
    assert cache["images"].dtype == np.uint8
    assert cache["masks"].shape == (14, 16, 24)
    assert cache["masks"].dtype == np.uint8
    assert cache["rois"].shape == (14, 16, 24)
    assert cache["has_mask"].dtype == np.bool_
    assert cache["labels"].dtype == np.int8
    assert cache["row_index"].tolist() == list(range(14))


def test_tiny_dataset_labels_and_masks(tiny_mvtec_root: Path) -> None:
    manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    cache = build_cache(manifest, image_size=(32, 32), channels=1, progress=False)

    anomalous = manifest["label"].to_numpy() == 1
    assert cache["labels"].tolist() == manifest["label"].tolist()
    assert set(np.unique(cache["masks"]).tolist()) == {0, 1}
    assert cache["has_mask"].all()
    assert int(cache["masks"][~anomalous].max()) == 0
    assert (cache["masks"][anomalous].reshape(3, -1).sum(axis=1) > 0).all()
    assert int(cache["rois"].min()) == 1


def test_mask_matches_file(tiny_mvtec_root: Path) -> None:
    manifest = index_mvtec_category(tiny_mvtec_root, "widget")
    last = len(manifest) - 1
    mask_file = np.asarray(Image.open(manifest["mask_path"].iloc[last]))

    cache = build_cache(manifest, image_size=(32, 32), channels=1, progress=False)

    np.testing.assert_array_equal(cache["masks"][last], (mask_file > 0).astype(np.uint8))


def test_gray_to_three_channels(tiny_mvtec_root: Path) -> None:
    manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    cache = build_cache(manifest, image_size=(32, 32), channels=3, progress=False)

    images = cache["images"]
    assert images.shape == (14, 32, 32, 3)
    np.testing.assert_array_equal(images[..., 0], images[..., 1])
    np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_missing_mask_has_mask_false(tiny_mvtec_root: Path) -> None:
    (tiny_mvtec_root / "widget" / "ground_truth" / "scratch" / "001_mask.png").unlink()
    manifest = index_mvtec_category(tiny_mvtec_root, "widget")

    cache = build_cache(manifest, image_size=(32, 32), channels=1, progress=False)

    assert cache["has_mask"].tolist() == [True] * 12 + [False, True]
    assert cache["labels"][12] == 1
    assert int(cache["masks"][12].max()) == 0


def test_constant_image_resized_keeps_value(tmp_path: Path) -> None:
    manifest = make_manifest([_row(_constant_png(tmp_path / "a.png", 77, size=32), size=32)])

    cache = build_cache(manifest, image_size=(16, 8), channels=1, progress=False)

    assert cache["images"].shape == (1, 16, 8, 1)
    assert np.all(cache["images"] == 77)


def test_mask_of_other_size_resized_nearest(tmp_path: Path) -> None:
    image = _constant_png(tmp_path / "image.png", 50, size=8)
    mask_path = tmp_path / "mask.png"
    small = np.array([[0, 200], [0, 0]], dtype=np.uint8)
    Image.fromarray(small).save(mask_path)
    manifest = make_manifest([_row(image, label=1, mask=str(mask_path))])

    cache = build_cache(manifest, image_size=(4, 4), channels=1, progress=False)

    expected = np.kron(np.array([[0, 1], [0, 0]], dtype=np.uint8), np.ones((2, 2), np.uint8))
    np.testing.assert_array_equal(cache["masks"][0], expected)
    assert bool(cache["has_mask"][0])


def test_shared_roi_applied(tmp_path: Path) -> None:
    roi_path = tmp_path / "roi.png"
    roi = np.zeros((8, 8), dtype=np.uint8)
    roi[2:6, 2:6] = 255
    Image.fromarray(roi).save(roi_path)
    rows = [
        _row(_constant_png(tmp_path / f"{index}.png", 10 * index), roi=str(roi_path))
        for index in range(3)
    ]

    cache = build_cache(make_manifest(rows), image_size=(8, 8), channels=1, progress=False)

    for index in range(3):
        np.testing.assert_array_equal(cache["rois"][index], (roi > 0).astype(np.uint8))


def test_sixteen_bit_same_as_eight_bit(tmp_path: Path) -> None:
    ramp = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    Image.fromarray(ramp).save(tmp_path / "eight.png")
    Image.fromarray(ramp.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    manifest = make_manifest([_row(tmp_path / "eight.png"), _row(tmp_path / "sixteen.png")])

    cache = build_cache(manifest, image_size=(6, 6), channels=1, progress=False)

    np.testing.assert_array_equal(cache["images"][0], cache["images"][1])


def test_conversions_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = []
    for index in range(3):
        path = tmp_path / f"rgba{index}.png"
        Image.fromarray(np.full((8, 8, 4), 60, dtype=np.uint8)).save(path)
        rows.append(_row(path))

    with caplog.at_level(logging.WARNING):
        build_cache(make_manifest(rows), image_size=(8, 8), channels=3, progress=False)

    alpha = [record for record in caplog.records if "alpha" in record.getMessage()]
    assert len(alpha) == 1
    assert "3 image(s)" in alpha[0].getMessage()


def test_decode_failures_listed_together(tmp_path: Path) -> None:
    good = _constant_png(tmp_path / "good.png", 5)
    truncated = _truncated_png(tmp_path / "truncated.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    manifest = make_manifest([_row(good), _row(truncated, size=32), _row(empty)])

    with pytest.raises(DataError) as raised:
        build_cache(manifest, image_size=(8, 8), channels=1, progress=False)

    message = str(raised.value)
    assert "2 of 3 manifest row(s) cannot be decoded" in message
    assert f"{truncated}: OSError: image file is truncated" in message
    assert f"{empty}: not an image format" in message
    assert str(good) not in message


def test_unreadable_mask_listed(tmp_path: Path) -> None:
    image = _constant_png(tmp_path / "image.png", 5)
    broken_mask = tmp_path / "broken_mask.png"
    broken_mask.write_bytes(b"\x89PNG")
    manifest = make_manifest([_row(image, label=1, mask=str(broken_mask))])

    with pytest.raises(DataError, match=r"cannot decode mask .*broken_mask\.png"):
        build_cache(manifest, image_size=(8, 8), channels=1, progress=False)


def test_skip_unreadable_drops_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = _constant_png(tmp_path / "first.png", 5)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    last = _constant_png(tmp_path / "last.png", 9)
    rows = [_row(first), _row(empty, label=1), _row(last, label=1)]

    with caplog.at_level(logging.WARNING, logger="grdnet_kedro.data.cache"):
        cache = build_cache(
            make_manifest(rows),
            image_size=(8, 8),
            channels=1,
            skip_unreadable=True,
            progress=False,
        )

    assert cache["row_index"].tolist() == [0, 2]
    assert cache["labels"].tolist() == [0, 1]
    assert cache["images"][:, 0, 0, 0].tolist() == [5, 9]
    assert len(caplog.records) == 1
    assert "left out 1 of 3" in caplog.records[0].getMessage()


def test_skip_unreadable_all_rows_raises(tmp_path: Path) -> None:
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    manifest = make_manifest([_row(empty)])

    with pytest.raises(DataError, match="none of the 1 manifest row"):
        build_cache(manifest, image_size=(8, 8), channels=1, skip_unreadable=True, progress=False)


def test_size_mismatch_with_manifest(tmp_path: Path) -> None:
    path = _constant_png(tmp_path / "a.png", 5, size=8)
    manifest = make_manifest([_row(path, size=10)])

    with pytest.raises(DataError, match=r"a.png is 8x8 .* manifest says 10x10; re-index"):
        build_cache(manifest, image_size=(8, 8), channels=1, progress=False)


def test_missing_manifest_column(tmp_path: Path) -> None:
    manifest = pd.DataFrame({"image_path": [str(tmp_path / "a.png")]})

    with pytest.raises(DataError, match=r"missing the column\(s\) \['split'"):
        build_cache(manifest, image_size=(8, 8), channels=1, progress=False)


def test_invalid_label(tmp_path: Path) -> None:
    row = _row(_constant_png(tmp_path / "a.png", 1))
    row["label"] = 2

    with pytest.raises(DataError, match=r"only 0 \(normal\) and 1 \(anomalous\), found \[2\]"):
        build_cache(make_manifest([row]), image_size=(8, 8), channels=1, progress=False)


def test_empty_manifest() -> None:
    with pytest.raises(DataError, match="manifest has no rows"):
        build_cache(
            pd.DataFrame(columns=MANIFEST_COLUMNS), image_size=(8, 8), channels=1, progress=False
        )


@pytest.mark.parametrize(
    ("image_size", "channels", "match"),
    [((0, 8), 1, "image_size must be"), ((8,), 1, "image_size must be"), ((8, 8), 2, "channels")],
)
def test_invalid_arguments(
    tmp_path: Path, image_size: tuple[int, ...], channels: int, match: str
) -> None:
    manifest = make_manifest([_row(_constant_png(tmp_path / "a.png", 1))])

    with pytest.raises(DataError, match=match):
        build_cache(manifest, image_size=image_size, channels=channels, progress=False)  # type: ignore[arg-type]


@pytest.mark.parametrize("channels", [1, 3])
def test_mixed_gray_and_rgb_category(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, channels: int
) -> None:
    gray = [_constant_png(tmp_path / f"gray{index}.png", 100) for index in range(2)]
    rgb = []
    for index in range(3):
        path = tmp_path / f"rgb{index}.png"
        Image.fromarray(np.full((8, 8, 3), (100, 100, 100), dtype=np.uint8)).save(path)
        rgb.append(path)
    manifest = make_manifest([_row(path) for path in [*gray, *rgb]])

    with caplog.at_level(logging.INFO, logger="grdnet_kedro.data"):
        cache = build_cache(manifest, image_size=(8, 8), channels=channels, progress=False)

    assert cache["images"].shape == (5, 8, 8, channels)
    assert (cache["images"] == 100).all()
    converted = 3 if channels == 1 else 2
    summaries = [
        record.getMessage() for record in caplog.records if "converted" in record.getMessage()
    ]
    assert len(summaries) == 1
    assert f"{converted} image(s)" in summaries[0]
