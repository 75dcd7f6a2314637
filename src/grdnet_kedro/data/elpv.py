"""ELPV solar-cell images (PyPI package ``elpv-dataset``) presented as two categories.

The package ships 2,624 electroluminescence images of solar cells (300x300, 8-bit ``L``)
and ``labels.csv`` (whitespace-separated, no header): image path relative to the data
folder, defect probability (0, 1/3, 2/3 or 1) and cell type (``mono`` or ``poly``).
Data licence CC-BY-NC-SA-4.0.

Split of one cell type:

- functional cells (probability 0), sorted by file name: the cell at index ``i`` goes to
  ``test/good`` when ``i % 4 == 3`` and to ``train/good`` otherwise;
- cells with probability >= 0.5 go to ``test/defect``;
- cells with probability 1/3 depend on ``one_third_policy``: ``"exclude"`` (default)
  leaves them out as label noise, ``"good"`` counts them as functional before the
  modulo-4 split, ``"defect"`` puts them in ``test/defect``.

With the default policy this gives mono 441 / 147 / 369 and poly 690 / 230 / 452
images (train/good, test/good, test/defect). There are no pixel masks, so ELPV supports
image-level metrics only.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from grdnet_kedro.data.images import DataError
from grdnet_kedro.data.mvtec import GOOD, TEST, TRAIN, make_manifest

logger = logging.getLogger(__name__)

ElpvCategory = Literal["mono", "poly"]
OneThirdPolicy = Literal["exclude", "good", "defect"]

ELPV_CATEGORIES: tuple[str, ...] = get_args(ElpvCategory)
ONE_THIRD_POLICIES: tuple[str, ...] = get_args(OneThirdPolicy)
ELPV_DEFECT_TYPE = "defect"

# Every image of elpv-dataset 1.0.0.post1 has this size and mode (checked on all 2,624
# files), so indexing reads only labels.csv. build_cache raises if a decoded size differs.
ELPV_IMAGE_WIDTH = 300
ELPV_IMAGE_HEIGHT = 300
ELPV_IMAGE_MODE = "L"

_TEST_EVERY = 4
_TEST_REMAINDER = 3
_DEFECT_THRESHOLD = 0.5
_ONE_THIRD = 1.0 / 3.0
_INSTALL_HINT = "install it with: pip install elpv-dataset"


def elpv_root() -> Path:
    """Return the data folder of the installed ``elpv-dataset`` package.

    The folder contains ``labels.csv`` and ``images/``. The package is located without
    importing it.

    Raises:
        DataError: The package is not installed or its ``data/labels.csv`` is missing.
    """
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the ELPV images need the Python package elpv-dataset; {_INSTALL_HINT}")

    root = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not (root / "labels.csv").is_file():
        raise DataError(
            f"{root / 'labels.csv'} not found: the elpv-dataset installation is incomplete; "
            f"reinstall it with: pip install --force-reinstall elpv-dataset"
        )
    return root


def read_elpv_labels(root: Path) -> pd.DataFrame:
    """Read ``labels.csv`` into columns ``image_path`` (absolute), ``probability``, ``cell_type``.

    Raises:
        DataError: The file does not have three whitespace-separated columns with a
            numeric probability.
    """
    labels_path = root / "labels.csv"
    try:
        labels = pd.read_csv(
            labels_path,
            sep=r"\s+",
            header=None,
            names=["image_path", "probability", "cell_type"],
            dtype={"image_path": str, "probability": float, "cell_type": str},
        )
    except (ValueError, pd.errors.ParserError) as error:
        raise DataError(
            f"cannot parse {labels_path}: {error}. Each line must be '<image path> "
            f"<probability> <cell type>'; {_INSTALL_HINT}"
        ) from error

    if labels.isna().any().any():
        raise DataError(f"{labels_path} has lines with fewer than three columns")
    labels["image_path"] = [str((root / name).resolve()) for name in labels["image_path"]]
    return labels


def index_elpv(
    category: ElpvCategory,
    *,
    one_third_policy: OneThirdPolicy = "exclude",
    root: Path | None = None,
) -> pd.DataFrame:
    """Index one ELPV cell type as an MVTec-style category.

    Args:
        category: Cell type, ``"mono"`` or ``"poly"``.
        one_third_policy: What to do with cells of defect probability 1/3: ``"exclude"``,
            ``"good"`` (functional, before the modulo-4 split) or ``"defect"``.
        root: Folder with ``labels.csv`` and ``images/``; ``None`` uses :func:`elpv_root`.

    Returns:
        Manifest with ``MANIFEST_COLUMNS``: train/good rows, then test/good, then
        test/defect, each sorted by file name. Mask and ROI paths are ``""``.

    Raises:
        DataError: ``category`` or ``one_third_policy`` is invalid, the package is
            missing, or ``labels.csv`` contains a probability other than 0, 1/3 or >= 0.5.
    """
    if category not in ELPV_CATEGORIES:
        raise DataError(f"ELPV category must be one of {ELPV_CATEGORIES}, got {category!r}")
    if one_third_policy not in ONE_THIRD_POLICIES:
        raise DataError(
            f"ELPV one_third_policy must be one of {ONE_THIRD_POLICIES}, got {one_third_policy!r}"
        )
    root = elpv_root() if root is None else Path(root)

    labels = read_elpv_labels(root)
    cells = labels[labels["cell_type"] == category].sort_values("image_path", kind="stable")
    if cells.empty:
        raise DataError(f"{root / 'labels.csv'} lists no cell of type {category!r}")

    probability = cells["probability"].to_numpy()
    functional = np.isclose(probability, 0.0)
    one_third = np.isclose(probability, _ONE_THIRD)
    defective = probability >= _DEFECT_THRESHOLD
    unknown = ~(functional | one_third | defective)
    if unknown.any():
        raise DataError(
            f"{root / 'labels.csv'}: unexpected defect probabilities "
            f"{sorted(set(probability[unknown].tolist()))}; expected 0, 1/3, 2/3 or 1"
        )

    if one_third_policy == "good":
        functional |= one_third
    elif one_third_policy == "defect":
        defective |= one_third

    good_paths = cells["image_path"][functional].tolist()
    is_test = np.arange(len(good_paths)) % _TEST_EVERY == _TEST_REMAINDER
    train_paths = [path for path, test in zip(good_paths, is_test, strict=True) if not test]
    test_good_paths = [path for path, test in zip(good_paths, is_test, strict=True) if test]
    defect_paths = cells["image_path"][defective].tolist()

    rows = [_row(path, TRAIN, GOOD) for path in train_paths]
    rows += [_row(path, TEST, GOOD) for path in test_good_paths]
    rows += [_row(path, TEST, ELPV_DEFECT_TYPE) for path in defect_paths]
    manifest = make_manifest(rows)

    logger.info(
        "ELPV %s: %d train/good, %d test/good, %d test/defect (probability-1/3 cells: %s, "
        "%d of them); no pixel masks, so image-level metrics only",
        category,
        len(train_paths),
        len(test_good_paths),
        len(defect_paths),
        one_third_policy,
        int(one_third.sum()),
    )
    return manifest


def _row(path: str, split: str, defect_type: str) -> dict[str, Any]:
    return {
        "image_path": path,
        "split": split,
        "defect_type": defect_type,
        "label": 0 if defect_type == GOOD else 1,
        "mask_path": "",
        "roi_path": "",
        "width": ELPV_IMAGE_WIDTH,
        "height": ELPV_IMAGE_HEIGHT,
        "mode": ELPV_IMAGE_MODE,
    }
