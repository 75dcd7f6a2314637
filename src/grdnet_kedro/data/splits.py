"""Hold out part of the good training images for model selection and calibration."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

SUBSETS = ("train", "validation", "test")


def assign_subsets(
    manifest: pd.DataFrame, *, validation_fraction: float, seed: int
) -> pd.DataFrame:
    """Add a ``subset`` column: ``train``, ``validation`` (held-out good) or ``test``.

    A seeded random share of the ``train`` rows becomes ``validation``: at least one row,
    while at least one is left to train on. Test rows keep the test split.
    """
    result = manifest.copy()
    result["subset"] = np.where(result["split"] == "test", "test", "train")
    train_rows = np.flatnonzero(result["subset"].to_numpy() == "train")
    held_out = round(len(train_rows) * validation_fraction)
    held_out = min(max(held_out, 1), len(train_rows) - 1) if len(train_rows) > 1 else 0
    chosen = np.random.default_rng(seed).choice(train_rows, size=held_out, replace=False)
    result.loc[result.index[chosen], "subset"] = "validation"
    if held_out == 0:
        logger.warning("Only %d training image(s): no validation images held out", len(train_rows))
    return result


def subset_rows(manifest: pd.DataFrame, subset: str) -> np.ndarray:
    """Return the cache row indices of a manifest subset (``train``, ``validation``, ``test``)."""
    return np.flatnonzero(manifest["subset"].to_numpy() == subset)
