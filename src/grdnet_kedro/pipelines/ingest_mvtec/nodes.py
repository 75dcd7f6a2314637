"""Nodes of ``ingest_mvtec``: index a category and decode its images once."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import pandas as pd

from grdnet_kedro.config import DataParams, RuntimeParams, parse_group
from grdnet_kedro.data.cache import build_cache
from grdnet_kedro.data.elpv import ELPV_CATEGORIES, index_elpv
from grdnet_kedro.data.mvtec import index_mvtec_category
from grdnet_kedro.data.splits import assign_subsets

logger = logging.getLogger(__name__)


def ingest_category(
    data: dict[str, Any], runtime: dict[str, Any], *, category: str
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Index one category into a manifest and decode its images into a uint8 cache."""
    data_params = parse_group(DataParams, data, "data")
    runtime_params = parse_group(RuntimeParams, runtime, "runtime")

    if data_params.source == "elpv":
        if category not in ELPV_CATEGORIES:
            raise ValueError(
                f"ELPV has the categories {list(ELPV_CATEGORIES)}, not '{category}'; fix "
                "data.categories or set data.source: mvtec"
            )
        manifest = index_elpv(
            cast(Literal["mono", "poly"], category),
            one_third_policy=data_params.elpv_one_third_policy,
        )
    else:
        manifest = index_mvtec_category(
            Path(data_params.root or ""), category, skip_unreadable=data_params.skip_unreadable
        )
    manifest = assign_subsets(
        manifest,
        validation_fraction=data_params.validation_fraction,
        seed=data_params.split_seed,
    )

    cache = build_cache(
        manifest,
        image_size=data_params.image_hw,
        channels=data_params.channels,
        sixteen_bit_max=data_params.sixteen_bit_max,
        skip_unreadable=data_params.skip_unreadable,
        progress=runtime_params.progress,
    )
    # Rows whose files could not be decoded (data.skip_unreadable) are not in the cache.
    manifest = manifest.iloc[cache["row_index"]].reset_index(drop=True)
    cache["row_index"] = np.arange(len(manifest))

    counts = manifest.groupby(["subset", "label"]).size().to_dict()
    logger.info(
        "Category '%s': %d images (train %d, validation %d, test good %d, test defective %d)",
        category,
        len(manifest),
        counts.get(("train", 0), 0),
        counts.get(("validation", 0), 0),
        counts.get(("test", 0), 0),
        counts.get(("test", 1), 0),
    )
    return manifest, cache
