"""Nodes of ``perturb``: a preview of the synthetic defects and the validation set."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from grdnet_kedro.config import (
    AugmentationParams,
    PerturbationParams,
    ReportParams,
    RuntimeParams,
    ValidationParams,
    parse_group,
)
from grdnet_kedro.data.splits import subset_rows
from grdnet_kedro.factory import augmentation_from, perturbation_config_from
from grdnet_kedro.inference import images_to_tensor, masks_to_tensor
from grdnet_kedro.perturbation import Perturber, augment
from grdnet_kedro.reporting.plots import perturbation_grid
from grdnet_kedro.training.validation_set import build_validation_set

logger = logging.getLogger(__name__)


def make_validation_set(
    manifest: pd.DataFrame,
    image_cache: dict[str, np.ndarray],
    perturbation: dict[str, Any],
    validation: dict[str, Any],
    *,
    category: str,
) -> dict[str, np.ndarray]:
    """Build the seeded synthetic validation set from the held-out good training images."""
    perturbation_params = parse_group(PerturbationParams, perturbation, "perturbation")
    validation_params = parse_group(ValidationParams, validation, "validation")
    rows = subset_rows(manifest, "validation")
    if rows.size == 0:
        raise ValueError(
            f"Category '{category}' has no held-out validation image; it needs at least two "
            "good training images (raise data.validation_fraction or add images)"
        )
    validation_set = build_validation_set(
        image_cache["images"][rows],
        image_cache["rois"][rows],
        perturbation_config_from(perturbation_params),
        perturbed_copies=validation_params.perturbed_copies,
        seed=validation_params.seed,
    )
    logger.info(
        "Category '%s': validation set of %d good and %d synthetic defective images",
        category,
        int((validation_set["labels"] == 0).sum()),
        int((validation_set["labels"] == 1).sum()),
    )
    return validation_set


def preview_perturbation(
    manifest: pd.DataFrame,
    image_cache: dict[str, np.ndarray],
    augmentation: dict[str, Any],
    perturbation: dict[str, Any],
    report: dict[str, Any],
    runtime: dict[str, Any],
    *,
    category: str,
) -> Figure:
    """Draw X, X* and M for a few augmented and perturbed training images."""
    augmentation_params = parse_group(AugmentationParams, augmentation, "augmentation")
    perturbation_params = parse_group(PerturbationParams, perturbation, "perturbation")
    report_params = parse_group(ReportParams, report, "report")
    runtime_params = parse_group(RuntimeParams, runtime, "runtime")
    rows = subset_rows(manifest, "train")[: report_params.preview_samples]
    generator = torch.Generator().manual_seed(runtime_params.seed)
    x = images_to_tensor(image_cache["images"][rows])
    roi = masks_to_tensor(image_cache["rois"][rows])
    x, _ = augment(x, augmentation_from(augmentation_params), generator=generator, extra=roi)
    batch = Perturber(perturbation_config_from(perturbation_params))(x, generator=generator)

    def to_numpy(tensor: torch.Tensor) -> np.ndarray:
        return tensor.permute(0, 2, 3, 1).numpy()

    return perturbation_grid(
        to_numpy(batch.x),
        to_numpy(batch.x_perturbed),
        to_numpy(batch.mask),
        title=f"{category}: synthetic perturbation (X, X*, M)",
    )
