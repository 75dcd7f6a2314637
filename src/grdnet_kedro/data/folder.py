"""Index a folder tree of new images for inference (no labels, any size and mode)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from grdnet_kedro.data.images import IMAGE_EXTENSIONS, DataError, format_failures, read_image_header
from grdnet_kedro.data.mvtec import make_manifest

logger = logging.getLogger(__name__)


def list_images_recursive(root: Path) -> list[Path]:
    """List image files below ``root`` (case-insensitive extensions, hidden entries skipped)."""
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            found.append(path)
    return found


def index_folder(root: Path, *, skip_unreadable: bool = False) -> pd.DataFrame:
    """Build a manifest of every image below ``root`` for scoring.

    Rows have split ``infer``, the sub-folder as ``defect_type`` and label 0 (unknown
    labels are not used by inference). Unreadable files are listed together in one
    :class:`DataError`, or left out with one warning when ``skip_unreadable`` is true.
    """
    if not root.is_dir():
        raise DataError(
            f"inference folder {root} not found: pass an existing folder with "
            "--params=infer.input_dir=<folder>"
        )
    paths = list_images_recursive(root)
    if not paths:
        raise DataError(
            f"inference folder {root} contains no image "
            f"({', '.join(sorted(IMAGE_EXTENSIONS))}, any case); add images or fix the path"
        )
    rows, failures = [], []
    for path in paths:
        try:
            width, height, mode = read_image_header(path)
        except DataError as error:
            failures.append(str(error))
            continue
        folder = path.parent.relative_to(root).as_posix()
        rows.append(
            {
                "image_path": str(path.resolve()),
                "split": "infer",
                "defect_type": "" if folder == "." else folder,
                "label": 0,
                "mask_path": "",
                "roi_path": "",
                "width": width,
                "height": height,
                "mode": mode,
            }
        )
    if failures and not skip_unreadable:
        raise DataError(
            f"{len(failures)} image(s) in {root} cannot be read:\n{format_failures(failures)}\n"
            "Replace or delete these files, or set data.skip_unreadable to true"
        )
    if failures:
        logger.warning("Left out %d unreadable image(s) in %s", len(failures), root)
    if not rows:
        raise DataError(f"no readable image in {root}")
    return make_manifest(rows)
