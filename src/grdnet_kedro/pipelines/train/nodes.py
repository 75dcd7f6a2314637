"""Node of ``train``: the GAN loop with validation, checkpoints and resume."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from grdnet_kedro.config import Parameters, validate_parameters
from grdnet_kedro.data.splits import subset_rows
from grdnet_kedro.factory import (
    augmentation_from,
    build_networks,
    checkpoint_metadata,
    loss_weights_from,
    perturbation_config_from,
    scoring_settings_from,
)
from grdnet_kedro.perturbation import Perturber
from grdnet_kedro.reporting.plots import training_previews
from grdnet_kedro.training.checkpoint import build_checkpoint
from grdnet_kedro.training.device import resolve_device, seed_everything
from grdnet_kedro.training.loop import LoopSettings, ValidationData, fit
from grdnet_kedro.training.step import MixedPrecision, build_optimizers

logger = logging.getLogger(__name__)


def resume_settings(params: Parameters) -> dict[str, Any]:
    """Return the parameters a resumed run must share with the run it continues.

    Everything that changes what is learned is included. The number of epochs and the
    checkpoint, preview and validation cadence are not, so a finished run can be extended.
    """
    training = params.training.model_dump(
        mode="json",
        include={"batch_size", "steps_per_epoch", "nonfinite_policy", "max_skipped_steps"},
    )
    return {
        "data": params.data.model_dump(mode="json", exclude={"categories"}),
        "loss": params.loss.model_dump(mode="json"),
        "optimizer": params.optimizer.model_dump(mode="json"),
        "augmentation": params.augmentation.model_dump(mode="json"),
        "perturbation": params.perturbation.model_dump(mode="json"),
        "validation": params.validation.model_dump(mode="json"),
        "training": training,
        "seed": params.runtime.seed,
    }


def train_model(
    manifest: pd.DataFrame,
    image_cache: dict[str, np.ndarray],
    validation_set: dict[str, np.ndarray],
    parameters: dict[str, Any],
    *,
    category: str,
) -> tuple[dict[str, Any], pd.DataFrame, Figure]:
    """Train one category on its good images; return the best checkpoint, history, previews."""
    params = validate_parameters(parameters)

    device = resolve_device(params.runtime.device)
    generator = seed_everything(params.runtime.seed, params.runtime.deterministic)
    networks = build_networks(params.model, params.data.channels)
    optimizers = build_optimizers(
        networks,
        learning_rate=params.optimizer.learning_rate,
        betas=params.optimizer.betas,
        weight_decay=params.optimizer.weight_decay,
    )
    precision = MixedPrecision(
        device,
        enabled=params.runtime.mixed_precision,
        dtype=params.runtime.mixed_precision_dtype,
    )

    rows = subset_rows(manifest, "train")
    if rows.size == 0:
        raise ValueError(f"Category '{category}' has no training image left after the split")

    settings = LoopSettings(
        epochs=params.training.epochs,
        batch_size=params.training.batch_size,
        patch_size=params.model.patch_hw,
        stride=params.model.stride_hw,
        steps_per_epoch=params.training.steps_per_epoch,
        checkpoint_every=params.training.checkpoint_every,
        preview_every=params.training.preview_every,
        validate_every=params.training.validate_every,
        resume=params.training.resume,
        grad_clip_norm=params.optimizer.grad_clip_norm,
        nonfinite_policy=params.training.nonfinite_policy,
        max_skipped_steps=params.training.max_skipped_steps,
        scheduler=params.optimizer.scheduler,
        scheduler_restart_epochs=params.optimizer.scheduler_restart_epochs,
        channels_last=params.runtime.channels_last,
        progress=params.runtime.progress,
        preview_samples=params.report.preview_samples,
    )

    metadata = checkpoint_metadata(params)
    logger.info(
        "Training '%s' on %d good images for %d epochs (batch %d images) on %s",
        category,
        rows.size,
        settings.epochs,
        settings.batch_size,
        device,
    )
    result = fit(
        networks,
        optimizers,
        image_cache["images"][rows],
        image_cache["rois"][rows],
        ValidationData(
            images=validation_set["images"],
            rois=validation_set["rois"],
            labels=validation_set["labels"],
        ),
        settings=settings,
        scoring=scoring_settings_from(params),
        weights=loss_weights_from(params.loss),
        perturber=Perturber(perturbation_config_from(params.perturbation)),
        augmentation=augmentation_from(params.augmentation),
        generator=generator,
        device=device,
        precision=precision,
        checkpoint_dir=Path(params.training.checkpoint_dir) / category,
        metadata=metadata,
        run_settings=resume_settings(params),
    )

    checkpoint = build_checkpoint(
        states=result.best_state,
        optimizers=None,
        epoch=result.best_epoch,
        metadata={**metadata, "category": category, "profile": params.profile},
        best_score=result.best_score,
    )
    return checkpoint, result.history, training_previews(result.previews)
