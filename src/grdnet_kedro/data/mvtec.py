"""Index an MVTec-AD-style category folder into a manifest table.

Layout of one category (``<root>/<category>``)::

    train/good/*.png                       normal training images
    test/good/*.png                        normal test images (label 0)
    test/<defect_type>/*.png               anomalous test images (label 1)
    ground_truth/<defect_type>/<stem>_mask.<ext>   pixel mask (``<stem>.<ext>`` also found)
    roi/<split>/<defect_type>/<stem>.<ext>         ROI mask of one image (optional)
    roi/roi.<ext>                                  ROI mask of every image (optional)

Labels come only from the folder names. An anomalous image without a mask keeps label 1
and gets ``mask_path == ""``, so image metrics still count it and pixel metrics leave it
out. An image without a per-image ROI uses ``roi/roi.<ext>`` when it exists, otherwise the
whole image is the ROI (``roi_path == ""``). Both cases are logged once per category with
a count. ``<ext>`` is any of ``IMAGE_EXTENSIONS``, matched case-insensitively.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from grdnet_kedro.data.images import (
    IMAGE_EXTENSIONS,
    WARNING_LIST_LIMIT,
    DataError,
    format_failures,
    list_images,
    read_image_header,
)

logger = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "image_path",
    "split",
    "defect_type",
    "label",
    "mask_path",
    "roi_path",
    "width",
    "height",
    "mode",
]

GOOD = "good"
TRAIN = "train"
TEST = "test"


def make_manifest(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Build a manifest with ``MANIFEST_COLUMNS`` and fixed dtypes from row dictionaries.

    ``label``, ``width`` and ``height`` are ``int64``; the other columns are strings, with
    ``""`` for a missing mask or ROI path.
    """
    frame = pd.DataFrame(list(rows), columns=MANIFEST_COLUMNS)
    for column in ("label", "width", "height"):
        frame[column] = frame[column].astype("int64")
    for column in ("image_path", "split", "defect_type", "mask_path", "roi_path", "mode"):
        frame[column] = frame[column].astype(str)
    return frame.reset_index(drop=True)


def discover_categories(root: Path) -> list[str]:
    """List the category folders under ``root``: non-hidden folders with ``train/`` and ``test/``.

    Returns:
        Sorted folder names; empty when none qualifies.

    Raises:
        DataError: ``root`` does not exist or is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"dataset root {root} not found: set data.root to the folder that contains one "
            "sub-folder per category"
        )
    return sorted(
        folder.name
        for folder in root.iterdir()
        if folder.is_dir()
        and not folder.name.startswith(".")
        and (folder / TRAIN).is_dir()
        and (folder / TEST).is_dir()
    )


def index_mvtec_category(
    root: Path, category: str, *, skip_unreadable: bool = False
) -> pd.DataFrame:
    """Index the train and test images of one category with labels, masks and ROIs.

    Rows are ordered train before test, ``good`` before the defect types (alphabetical),
    then by file name. Paths are absolute. Width, height and mode come from the file
    headers; the pixels are not decoded here.

    Args:
        root: Dataset root that contains the category folder.
        category: Name of the category folder.
        skip_unreadable: Drop images whose header cannot be read, with one warning that
            counts them, instead of raising.

    Returns:
        Manifest with ``MANIFEST_COLUMNS``.

    Raises:
        DataError: The category folder, ``train/`` or ``test/`` is missing, or
            ``train/good`` or ``test/`` contains no image. Also raised when headers cannot
            be read and ``skip_unreadable`` is false. One error lists every bad path.
    """
    category_dir = _category_folder(Path(root), category)
    train_images = _train_images(category_dir)
    test_images = _test_images(category_dir)

    rows: list[dict[str, Any]] = []
    for path in train_images:
        rows.append(_row(path, TRAIN, GOOD))
    for defect_type, paths in test_images.items():
        for path in paths:
            rows.append(_row(path, TEST, defect_type))

    _attach_masks(rows, category_dir, category)
    _attach_rois(rows, category_dir, category)
    rows = _read_headers(rows, category, skip_unreadable)

    manifest = make_manifest(rows)
    _log_counts(manifest, category)
    return manifest


def _category_folder(root: Path, category: str) -> Path:
    category_dir = root / category
    if not category_dir.is_dir():
        found = discover_categories(root) if root.is_dir() else []
        raise DataError(
            f"category folder {category_dir} not found (categories found under {root}: "
            f"{found or 'none'}): fix data.categories or data.root"
        )
    for part in (TRAIN, TEST):
        if not (category_dir / part).is_dir():
            raise DataError(
                f"category {category!r}: folder {category_dir / part} is missing; an "
                f"MVTec-AD-style category needs {TRAIN}/{GOOD}/ and {TEST}/<defect_type>/"
            )
    return category_dir


def _extensions_text() -> str:
    return ", ".join(sorted(IMAGE_EXTENSIONS))


def _train_images(category_dir: Path) -> list[Path]:
    train_dir = category_dir / TRAIN
    good_dir = train_dir / GOOD
    if not good_dir.is_dir():
        raise DataError(
            f"training folder {good_dir} is missing: put the normal training images there"
        )

    ignored = sorted(
        entry.name
        for entry in train_dir.iterdir()
        if entry.name != GOOD and not entry.name.startswith(".")
    )
    if ignored:
        logger.warning(
            "%s: ignoring %s in %s; only %s/ is used for training",
            category_dir.name,
            ignored,
            train_dir,
            GOOD,
        )

    images = list_images(good_dir)
    if not images:
        raise DataError(
            f"training folder {good_dir} contains no image (extensions {_extensions_text()}, "
            "hidden files skipped): add normal training images"
        )
    return images


def _test_images(category_dir: Path) -> dict[str, list[Path]]:
    """Map each test sub-folder name (``good`` first) to its images."""
    test_dir = category_dir / TEST
    folders = sorted(
        (
            entry
            for entry in test_dir.iterdir()
            if entry.is_dir() and not entry.name.startswith(".")
        ),
        key=lambda folder: (folder.name != GOOD, folder.name),
    )

    loose_files = list_images(test_dir)
    if loose_files:
        logger.warning(
            "%s: ignoring %d image(s) directly in %s (first: %s); put test images in "
            "%s/%s/ or %s/<defect_type>/",
            category_dir.name,
            len(loose_files),
            test_dir,
            loose_files[0].name,
            TEST,
            GOOD,
            TEST,
        )

    images = {folder.name: list_images(folder) for folder in folders}
    if not any(images.values()):
        raise DataError(
            f"test folder {test_dir} contains no image in its sub-folders (extensions "
            f"{_extensions_text()}): add {TEST}/{GOOD}/ and {TEST}/<defect_type>/ images"
        )
    for defect_type, paths in images.items():
        if not paths:
            logger.warning("%s: test folder %s is empty", category_dir.name, test_dir / defect_type)
    return images


def _row(path: Path, split: str, defect_type: str) -> dict[str, Any]:
    return {
        "image_path": str(path.resolve()),
        "split": split,
        "defect_type": defect_type,
        "label": 0 if defect_type == GOOD else 1,
        "mask_path": "",
        "roi_path": "",
        "width": 0,
        "height": 0,
        "mode": "",
    }


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """Map file stems in ``folder`` to image paths; an ambiguous stem keeps the first by name."""
    if not folder.is_dir():
        return {}
    by_stem: dict[str, Path] = {}
    for path in list_images(folder):
        if path.stem in by_stem:
            logger.warning(
                "two masks share the stem %r in %s; using %s and ignoring %s",
                path.stem,
                folder,
                by_stem[path.stem].name,
                path.name,
            )
            continue
        by_stem[path.stem] = path
    return by_stem


def _attach_masks(rows: list[dict[str, Any]], category_dir: Path, category: str) -> None:
    ground_truth_dir = category_dir / "ground_truth"
    masks_by_defect: dict[str, dict[str, Path]] = {}
    missing: list[str] = []
    anomalous = 0

    for row in rows:
        if row["label"] == 0:
            continue
        anomalous += 1
        defect_type = row["defect_type"]
        if defect_type not in masks_by_defect:
            masks_by_defect[defect_type] = _images_by_stem(ground_truth_dir / defect_type)
        masks = masks_by_defect[defect_type]
        stem = Path(row["image_path"]).stem
        mask = masks.get(f"{stem}_mask") or masks.get(stem)
        if mask is None:
            missing.append(row["image_path"])
        else:
            row["mask_path"] = str(mask.resolve())

    if missing:
        logger.warning(
            "%s: %d of %d anomalous test image(s) have no mask in %s/<defect_type>/ "
            "(first: %s); they keep label 1 for image metrics and are left out of pixel "
            "metrics",
            category,
            len(missing),
            anomalous,
            ground_truth_dir,
            missing[0],
        )


def _find_category_roi(roi_dir: Path) -> Path | None:
    """Return ``roi/roi.<ext>`` (first by name when several extensions exist), or None."""
    if not roi_dir.is_dir():
        return None
    for path in list_images(roi_dir):
        if path.stem == "roi":
            return path
    return None


def _attach_rois(rows: list[dict[str, Any]], category_dir: Path, category: str) -> None:
    roi_dir = category_dir / "roi"
    category_roi = _find_category_roi(roi_dir)
    rois_by_folder: dict[tuple[str, str], dict[str, Path]] = {}
    missing = 0

    for row in rows:
        key = (row["split"], row["defect_type"])
        if key not in rois_by_folder:
            rois_by_folder[key] = _images_by_stem(roi_dir / row["split"] / row["defect_type"])
        roi = rois_by_folder[key].get(Path(row["image_path"]).stem) or category_roi
        if roi is None:
            missing += 1
        else:
            row["roi_path"] = str(roi.resolve())

    if missing == len(rows):
        logger.warning(
            "%s: no ROI mask found (neither %s/roi.<ext> nor %s/<split>/<defect_type>/<stem>"
            ".<ext>); the whole image is the ROI",
            category,
            roi_dir,
            roi_dir,
        )
    elif missing:
        logger.warning(
            "%s: %d of %d image(s) have no ROI mask under %s; the whole image is their ROI",
            category,
            missing,
            len(rows),
            roi_dir,
        )


def _read_headers(
    rows: list[dict[str, Any]], category: str, skip_unreadable: bool
) -> list[dict[str, Any]]:
    readable: list[dict[str, Any]] = []
    failures: list[str] = []

    for row in rows:
        try:
            row["width"], row["height"], row["mode"] = read_image_header(Path(row["image_path"]))
        except DataError as error:
            failures.append(str(error))
            continue
        readable.append(row)

    if failures and not skip_unreadable:
        raise DataError(
            f"category {category!r}: {len(failures)} image(s) cannot be read:\n"
            + format_failures(failures)
            + "\nReplace or delete these files, or set data.skip_unreadable to true to "
            "leave them out"
        )
    if failures:
        logger.warning(
            "%s: left out %d unreadable image(s):\n%s",
            category,
            len(failures),
            format_failures(failures, limit=WARNING_LIST_LIMIT),
        )
    for split in (TRAIN, TEST):
        if not any(row["split"] == split for row in readable):
            raise DataError(
                f"category {category!r}: no readable {split} image is left after leaving "
                "out the unreadable files; replace them"
            )
    return readable


def _log_counts(manifest: pd.DataFrame, category: str) -> None:
    test = manifest[manifest["split"] == TEST]
    defect_types = sorted(set(test["defect_type"]) - {GOOD})
    logger.info(
        "%s: %d train/good, %d test/good, %d anomalous test image(s) in %d defect type(s) %s",
        category,
        int((manifest["split"] == TRAIN).sum()),
        int((test["label"] == 0).sum()),
        int((test["label"] == 1).sum()),
        len(defect_types),
        defect_types,
    )
