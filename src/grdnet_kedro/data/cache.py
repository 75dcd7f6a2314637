"""Decode every image, mask and ROI of a manifest once into compact ``uint8`` arrays.

Training epochs read these arrays instead of re-decoding image files. All files are
decoded before anything trains, and every failure is collected so that one error lists
each unreadable file with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from grdnet_kedro.data.images import (
    WARNING_LIST_LIMIT,
    ConversionCounter,
    DataError,
    format_failures,
    load_image,
    load_mask,
)
from grdnet_kedro.data.mvtec import MANIFEST_COLUMNS

logger = logging.getLogger(__name__)

CACHE_KEYS = ("images", "masks", "has_mask", "rois", "labels", "row_index")


@dataclass
class _DecodedRow:
    image: np.ndarray
    mask: np.ndarray
    has_mask: bool
    roi: np.ndarray


@dataclass
class _RoiMemo:
    """Decoded ROI masks by path, so a category-wide ROI file is decoded once."""

    rois: dict[str, np.ndarray] = field(default_factory=dict)

    def get(self, path: str, size_wh: tuple[int, int]) -> np.ndarray:
        if path not in self.rois:
            self.rois[path] = load_mask(Path(path), size_wh)
        return self.rois[path]


def build_cache(
    manifest: pd.DataFrame,
    *,
    image_size: tuple[int, int],
    channels: Literal[1, 3],
    sixteen_bit_max: float | None = None,
    skip_unreadable: bool = False,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Decode and resize the images, masks and ROIs of ``manifest``.

    Images are converted by :func:`~grdnet_kedro.data.images.load_image` and resized
    with Pillow's bilinear filter (which averages over the source footprint when it
    shrinks). Masks and ROIs are resized with nearest neighbour and binarised (> 0).

    Args:
        manifest: Table with ``MANIFEST_COLUMNS``; ``width`` and ``height`` are checked
            against each decoded image.
        image_size: Output ``(height, width)`` in pixels.
        channels: Output channels, 1 (gray) or 3 (RGB).
        sixteen_bit_max: Value mapped to 255 for 16-bit and float images; ``None`` means
            65535.
        skip_unreadable: Drop rows whose image, mask or ROI cannot be decoded, with one
            warning, instead of raising. ``row_index`` then gives the manifest position
            of each remaining row.
        progress: Show a tqdm progress bar.

    Returns:
        Arrays in manifest row order, ``N`` rows (fewer than the manifest only when
        ``skip_unreadable`` dropped some), ``(H, W) = image_size``:

        - ``images``: ``uint8`` ``(N, H, W, channels)``, values in [0, 255];
        - ``masks``: ``uint8`` ``(N, H, W)`` in {0, 1}; all zero for good images and for
          anomalous images without a mask;
        - ``has_mask``: ``bool`` ``(N,)``; true for good images and for anomalous images
          with a mask, false for anomalous images left out of pixel metrics;
        - ``rois``: ``uint8`` ``(N, H, W)`` in {0, 1}; all ones when there is no ROI file;
        - ``labels``: ``int8`` ``(N,)``, 0 normal and 1 anomalous;
        - ``row_index``: ``int64`` ``(N,)``, position of each row in ``manifest``.

    Raises:
        DataError: A manifest column is missing, the manifest is empty, ``image_size`` or
            ``channels`` is invalid, or files cannot be decoded (all listed in one error)
            and ``skip_unreadable`` is false.
    """
    height, width = _check_arguments(manifest, image_size, channels)
    size_wh = (width, height)
    count = len(manifest)

    images = np.zeros((count, height, width, channels), dtype=np.uint8)
    masks = np.zeros((count, height, width), dtype=np.uint8)
    has_mask = np.zeros(count, dtype=bool)
    rois = np.ones((count, height, width), dtype=np.uint8)
    labels = manifest["label"].to_numpy(dtype=np.int8)

    conversions = ConversionCounter()
    roi_memo = _RoiMemo()
    decoded_rows = np.ones(count, dtype=bool)
    failures: list[str] = []

    logger.info("decoding %d image(s) to %dx%d with %d channel(s)", count, height, width, channels)
    rows = manifest[MANIFEST_COLUMNS].itertuples(index=False)
    for position, row in enumerate(
        tqdm(rows, total=count, disable=not progress, desc="decode images", unit="image")
    ):
        try:
            decoded = _decode_row(row, size_wh, channels, sixteen_bit_max, conversions, roi_memo)
        except DataError as error:
            failures.append(str(error))
            decoded_rows[position] = False
            continue
        images[position] = decoded.image
        masks[position] = decoded.mask
        has_mask[position] = decoded.has_mask
        rois[position] = decoded.roi

    conversions.log_summary(f"decoded {count} image(s)")
    _report_failures(failures, skip_unreadable, count)

    cache = {
        "images": images,
        "masks": masks,
        "has_mask": has_mask,
        "rois": rois,
        "labels": labels,
        "row_index": np.arange(count, dtype=np.int64),
    }
    if decoded_rows.all():
        return cache
    # Boolean indexing copies, so the full arrays are dropped only when rows were skipped.
    return {key: values[decoded_rows] for key, values in cache.items()}


def _check_arguments(
    manifest: pd.DataFrame, image_size: tuple[int, int], channels: int
) -> tuple[int, int]:
    missing = [column for column in MANIFEST_COLUMNS if column not in manifest.columns]
    if missing:
        raise DataError(
            f"manifest is missing the column(s) {missing}; build it with "
            "index_mvtec_category or index_elpv"
        )
    if manifest.empty:
        raise DataError("manifest has no rows: the category contains no image to decode")
    if len(image_size) != 2 or min(int(size) for size in image_size) < 1:
        raise DataError(
            f"image_size must be (height, width) of positive integers, got {image_size}"
        )
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels!r}")
    invalid_labels = sorted(set(manifest["label"].tolist()) - {0, 1})
    if invalid_labels:
        raise DataError(
            f"manifest column 'label' must contain only 0 (normal) and 1 (anomalous), found "
            f"{invalid_labels}; rebuild it with index_mvtec_category or index_elpv"
        )
    return int(image_size[0]), int(image_size[1])


def _decode_row(
    row: tuple[Any, ...],
    size_wh: tuple[int, int],
    channels: Literal[1, 3],
    sixteen_bit_max: float | None,
    conversions: ConversionCounter,
    roi_memo: _RoiMemo,
) -> _DecodedRow:
    """Decode one manifest row; raises DataError naming the first file that fails."""
    record = dict(zip(MANIFEST_COLUMNS, row, strict=True))
    image_path = Path(record["image_path"])

    pixels = load_image(
        image_path, channels=channels, sixteen_bit_max=sixteen_bit_max, conversions=conversions
    )
    expected = (int(record["height"]), int(record["width"]))
    if pixels.shape[:2] != expected:
        raise DataError(
            f"image {image_path} is {pixels.shape[1]}x{pixels.shape[0]} (width x height) but "
            f"the manifest says {expected[1]}x{expected[0]}; re-index the dataset"
        )
    image = _resize_image(pixels, size_wh)

    mask = np.zeros((size_wh[1], size_wh[0]), dtype=np.uint8)
    has_mask = True
    if int(record["label"]) != 0:
        if record["mask_path"]:
            mask = load_mask(Path(record["mask_path"]), size_wh)
        else:
            has_mask = False

    if record["roi_path"]:
        roi = roi_memo.get(str(record["roi_path"]), size_wh)
    else:
        roi = np.ones((size_wh[1], size_wh[0]), dtype=np.uint8)

    return _DecodedRow(image=image, mask=mask, has_mask=has_mask, roi=roi)


def _resize_image(pixels: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Resize ``uint8`` ``(H, W, C)`` bilinearly to ``size_wh`` = ``(width, height)``."""
    if pixels.shape[1] == size_wh[0] and pixels.shape[0] == size_wh[1]:
        return pixels

    channels = pixels.shape[2]
    source = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
    resized = np.asarray(source.resize(size_wh, Image.Resampling.BILINEAR), dtype=np.uint8)
    return resized[..., np.newaxis] if channels == 1 else resized


def _report_failures(failures: list[str], skip_unreadable: bool, count: int) -> None:
    if not failures:
        return
    if not skip_unreadable:
        raise DataError(
            f"{len(failures)} of {count} manifest row(s) cannot be decoded:\n"
            + format_failures(failures)
            + "\nReplace or delete these files, or set data.skip_unreadable to true to "
            "leave them out"
        )
    if len(failures) == count:
        raise DataError(
            f"none of the {count} manifest row(s) can be decoded:\n" + format_failures(failures)
        )
    logger.warning(
        "left out %d of %d manifest row(s) that cannot be decoded:\n%s",
        len(failures),
        count,
        format_failures(failures, limit=WARNING_LIST_LIMIT),
    )
