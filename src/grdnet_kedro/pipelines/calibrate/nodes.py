"""Nodes of ``calibrate``: score the validation set and choose the decision threshold."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from grdnet_kedro.config import CalibrationParams, parse_group, validate_parameters
from grdnet_kedro.evaluation.calibration import CalibrationError, calibrate_threshold
from grdnet_kedro.factory import load_trained_networks, scoring_settings_from
from grdnet_kedro.inference import score_images
from grdnet_kedro.training.device import resolve_device

logger = logging.getLogger(__name__)


def score_validation(
    model: dict[str, Any], validation_set: dict[str, np.ndarray], parameters: dict[str, Any]
) -> pd.DataFrame:
    """Score every validation image with the trained model."""
    params = validate_parameters(parameters)
    device = resolve_device(params.runtime.device)
    networks = load_trained_networks(model, params, device)
    result = score_images(
        networks,
        validation_set["images"],
        validation_set["rois"],
        scoring_settings_from(params),
        device=device,
        progress=params.runtime.progress,
        description="validation",
    )
    return pd.DataFrame(
        {
            "index": np.arange(len(result.image_scores)),
            "label": validation_set["labels"].astype(int),
            "image_score": result.image_scores,
        }
    )


def fit_threshold(
    validation_scores: pd.DataFrame,
    test_scores: pd.DataFrame,
    calibration: dict[str, Any],
    *,
    category: str,
) -> dict[str, Any]:
    """Choose the threshold on the validation set (or on the test split when asked)."""
    calibration_params = parse_group(CalibrationParams, calibration, "calibration")
    chosen = calibrate_threshold(
        validation_scores["label"].to_numpy(),
        validation_scores["image_score"].to_numpy(),
        criterion=calibration_params.criterion,
        source="validation",
    )
    if calibration_params.on_test:
        try:
            chosen = calibrate_threshold(
                test_scores["label"].to_numpy(),
                test_scores["image_score"].to_numpy(),
                criterion=calibration_params.criterion,
                source="test",
            )
            logger.warning(
                "Category '%s': threshold calibrated on the TEST split (calibration.on_test); "
                "threshold metrics are optimistic",
                category,
            )
        except CalibrationError as error:
            logger.warning(
                "Category '%s': cannot calibrate on the test split (%s); keeping the "
                "validation threshold %.6g",
                category,
                error,
                chosen.threshold,
            )
    logger.info(
        "Category '%s': threshold %.6g (%s %s = %.4f on %d good / %d anomalous)",
        category,
        chosen.threshold,
        chosen.source,
        chosen.criterion,
        chosen.value,
        chosen.n_normal,
        chosen.n_anomalous,
    )
    return {**chosen.to_dict(), "category": category, "optimistic": chosen.source == "test"}
