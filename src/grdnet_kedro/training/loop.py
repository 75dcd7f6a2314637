"""The GAN training loop: epochs, validation, best model, checkpoints and resume.

Each epoch shuffles the good training images, augments them (train-only geometry), cuts
patches, perturbs the patches and runs one :func:`train_step` per batch. After an epoch the
held-out validation set (good images and their synthetic defects) is scored. The epoch with
the best validation AUROC is kept as the model. ``last.pt`` (networks, optimizers, history
and random state) is written atomically every ``checkpoint_every`` epochs, so a killed run
restarted with the same settings continues where it stopped and ends with the same result.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from grdnet_kedro.evaluation.metrics import ranking_metrics
from grdnet_kedro.evaluation.patches import extract_patches
from grdnet_kedro.inference import ImageScoring, ScoringSettings, images_to_tensor, masks_to_tensor
from grdnet_kedro.inference import score_images as score_images_fn
from grdnet_kedro.perturbation import AugmentConfig, Perturber, augment
from grdnet_kedro.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    metadata_differences,
    restore,
    save_checkpoint,
)
from grdnet_kedro.training.device import place_networks
from grdnet_kedro.training.step import (
    LOSS_KEYS,
    LossWeights,
    MixedPrecision,
    Networks,
    NonFiniteLossError,
    Optimizers,
    train_step,
)

logger = logging.getLogger(__name__)

HISTORY_COLUMNS = [
    "epoch",
    *LOSS_KEYS,
    "validation_auroc",
    "validation_ap",
    "validation_score_good",
    "validation_score_defect",
    "learning_rate",
    "skipped_steps",
    "seconds",
    "patches_per_second",
]


@dataclass
class LoopSettings:
    """Settings of :func:`fit` taken from the training, model and runtime parameters."""

    epochs: int
    batch_size: int
    patch_size: tuple[int, int]
    stride: tuple[int, int]
    steps_per_epoch: int | None = None
    checkpoint_every: int = 1
    preview_every: int = 10
    validate_every: int = 1
    resume: bool = True
    grad_clip_norm: float = 1.0
    nonfinite_policy: str = "stop"
    max_skipped_steps: int = 10
    scheduler: str = "none"
    scheduler_restart_epochs: int = 10
    channels_last: bool = False
    progress: bool = True
    preview_samples: int = 6


@dataclass
class ValidationData:
    """Held-out images with labels; anomalous ones carry synthetic (or real) defects."""

    images: np.ndarray  # (M, H, W, C) uint8
    rois: np.ndarray  # (M, H, W) uint8 {0, 1}
    labels: np.ndarray  # (M,) int, 1 = anomalous


@dataclass
class FitResult:
    """Outcome of :func:`fit`: the selected weights and what happened on the way."""

    best_state: dict[str, Any]  # state dicts of the selected epoch (CPU tensors)
    best_epoch: int
    best_score: float | None
    history: pd.DataFrame
    previews: list[tuple[int, dict[str, np.ndarray]]] = field(default_factory=list)


def _state_dicts(networks: Networks) -> dict[str, Any]:
    """Copy every network's weights to CPU (the copy survives further training)."""

    def to_cpu(module: torch.nn.Module | None) -> dict[str, torch.Tensor] | None:
        if module is None:
            return None
        return {
            key: value.detach().to("cpu", copy=True) for key, value in module.state_dict().items()
        }

    return {
        "generator": to_cpu(networks.generator),
        "discriminator": to_cpu(networks.discriminator),
        "segmentator": to_cpu(networks.segmentator),
    }


def _build_scheduler(
    optimizers: Optimizers, settings: LoopSettings
) -> list[torch.optim.lr_scheduler.LRScheduler]:
    if settings.scheduler != "cosine_warm_restarts":
        return []
    return [
        torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=settings.scheduler_restart_epochs
        )
        for optimizer in (optimizers.generator, optimizers.discriminator, optimizers.segmentator)
        if optimizer is not None
    ]


def _load_training_state(
    path: Path, metadata: Mapping[str, Any], run_settings: Mapping[str, Any]
) -> dict[str, Any] | None:
    """Load ``last.pt`` when it exists; another architecture or other settings are errors."""
    if not path.is_file():
        return None
    try:
        state = load_checkpoint(path, expected_metadata=metadata, map_location="cpu")
    except CheckpointError as error:
        raise CheckpointError(
            f"Cannot resume from {path}: {error} Delete {path.parent} to start training "
            "from scratch, or set training.resume: false."
        ) from error
    if state["optimizers"] is None or "random_state" not in state["extra"]:
        raise CheckpointError(
            f"{path} contains no training state to resume from (no optimizers or random "
            f"state); delete it to start training from scratch"
        )
    differences = metadata_differences(
        state["extra"].get("run_settings", {}),
        json.loads(json.dumps(dict(run_settings))),
        found_label="last.pt",
        expected_label="parameters",
    )
    if differences:
        raise CheckpointError(
            f"Cannot resume from {path}: it was trained with other settings ("
            + "; ".join(differences)
            + "). Restore those parameters to continue it, or set training.resume: false "
            "to train from scratch (last.pt is then replaced after the first epoch)."
        )
    return state


def fit(
    networks: Networks,
    optimizers: Optimizers,
    train_images: np.ndarray,
    train_rois: np.ndarray,
    validation: ValidationData,
    *,
    settings: LoopSettings,
    scoring: ScoringSettings,
    weights: LossWeights,
    perturber: Perturber,
    augmentation: AugmentConfig,
    generator: torch.Generator,
    device: torch.device,
    precision: MixedPrecision,
    checkpoint_dir: Path,
    metadata: Mapping[str, Any],
    run_settings: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train the networks on good images ``(N, H, W, C)`` uint8 with ROIs ``(N, H, W)``.

    ``generator`` drives every random draw (shuffling, augmentation, perturbation), so the
    same seed gives the same run. ``metadata`` is the architecture signature stored with the
    checkpoints; a ``last.pt`` of another architecture is rejected with a clear message.
    ``run_settings`` (JSON values: data, loss, optimizer, perturbation, ...) is stored too,
    and resuming with other values is rejected, so a changed setting never continues an old
    run silently. The number of epochs may grow between runs.
    """
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    last_path = checkpoint_dir / "last.pt"
    history: list[dict[str, float]] = []
    previews: list[tuple[int, dict[str, np.ndarray]]] = []
    best_epoch, best_score = 0, None
    best_state = _state_dicts(networks)
    start_epoch = 0
    schedulers = _build_scheduler(optimizers, settings)

    if settings.resume:
        state = _load_training_state(last_path, metadata, run_settings or {})
        if state is not None:
            start_epoch = restore(networks, optimizers, state)
            extra = state["extra"]
            history = list(extra["history"])
            generator.set_state(extra["random_state"])
            best_epoch, best_score, best_state = (
                extra["best_epoch"],
                state["best_score"],
                extra["best_state"],
            )
            for scheduler in schedulers:
                scheduler.last_epoch = start_epoch - 1
                scheduler.step()
            logger.info(
                "Resuming from %s: %d of %d epochs done", last_path, start_epoch, settings.epochs
            )
    elif last_path.exists():
        logger.info("training.resume is false: %s will be overwritten", last_path)

    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    place_networks(
        (networks.generator, networks.discriminator, networks.segmentator),
        device,
        channels_last=settings.channels_last,
    )
    for optimizer in (optimizers.generator, optimizers.discriminator, optimizers.segmentator):
        if optimizer is not None:
            for optimizer_state in optimizer.state.values():
                for key, value in optimizer_state.items():
                    if isinstance(value, torch.Tensor) and key != "step":
                        optimizer_state[key] = value.to(device)

    count = train_images.shape[0]
    steps = settings.steps_per_epoch or max(1, math.ceil(count / settings.batch_size))
    for epoch in range(start_epoch + 1, settings.epochs + 1):
        started = time.perf_counter()
        sums = dict.fromkeys(LOSS_KEYS, 0.0)
        done_steps, skipped, patches_seen = 0, 0, 0
        order = torch.randperm(count, generator=generator)
        bar = tqdm(
            range(steps),
            desc=f"epoch {epoch}/{settings.epochs}",
            disable=not settings.progress,
            leave=False,
        )
        for step in bar:
            index = order[(torch.arange(settings.batch_size) + step * settings.batch_size) % count]
            x = images_to_tensor(train_images[index.numpy()], device)
            roi = masks_to_tensor(train_rois[index.numpy()], device)
            x, roi_augmented = augment(x, augmentation, generator=generator, extra=roi)
            patches = extract_patches(x, settings.patch_size, settings.stride)
            roi_patches = extract_patches(
                roi if roi_augmented is None else roi_augmented,
                settings.patch_size,
                settings.stride,
            )
            batch = perturber(patches.contiguous(memory_format=memory_format), generator=generator)
            try:
                losses = train_step(
                    networks,
                    optimizers,
                    batch,
                    weights,
                    roi=roi_patches,
                    grad_clip_norm=settings.grad_clip_norm,
                    precision=precision,
                )
            except NonFiniteLossError as error:
                where = f"epoch {epoch}, step {step + 1}"
                if settings.nonfinite_policy == "skip" and skipped < settings.max_skipped_steps:
                    skipped += 1
                    logger.warning("Skipped %s: %s (%d skipped so far)", where, error, skipped)
                    continue
                raise NonFiniteLossError(error.term, error.value, context=where) from error
            for key in LOSS_KEYS:
                sums[key] += losses[key]
            done_steps += 1
            patches_seen += patches.shape[0]
            if settings.progress:
                bar.set_postfix(
                    loss=f"{losses['loss_total']:.3f}",
                    patches_s=f"{patches_seen / max(time.perf_counter() - started, 1e-9):.1f}",
                )
        for scheduler in schedulers:
            scheduler.step()

        train_seconds = time.perf_counter() - started
        row: dict[str, float] = {"epoch": epoch}
        row.update({key: sums[key] / max(done_steps, 1) for key in LOSS_KEYS})
        row.update(_validate(networks, validation, scoring, device, epoch, settings))
        row["learning_rate"] = optimizers.generator.param_groups[0]["lr"]
        row["skipped_steps"] = skipped
        row["seconds"] = round(time.perf_counter() - started, 3)
        row["patches_per_second"] = round(patches_seen / max(train_seconds, 1e-9), 2)
        history.append(row)

        score = row["validation_auroc"]
        if not math.isnan(score) and (best_score is None or score >= best_score):
            best_epoch, best_score, best_state = epoch, score, _state_dicts(networks)
        elif best_score is None:
            best_epoch, best_state = epoch, _state_dicts(networks)

        if epoch % settings.preview_every == 0 or epoch == settings.epochs:
            previews.append((epoch, _preview(networks, batch, settings.preview_samples)))
        logger.info(
            "Epoch %d/%d: loss_total %.4f, validation AUROC %s, %.1f patches/s, %.1f s",
            epoch,
            settings.epochs,
            row["loss_total"],
            "n/a" if math.isnan(score) else f"{score:.4f}",
            row["patches_per_second"],
            row["seconds"],
        )
        if epoch % settings.checkpoint_every == 0 or epoch == settings.epochs:
            save_checkpoint(
                last_path,
                networks=networks,
                optimizers=optimizers,
                epoch=epoch,
                metadata=metadata,
                best_score=best_score,
                extra={
                    "history": history,
                    "random_state": generator.get_state(),
                    "best_epoch": best_epoch,
                    "best_state": best_state,
                    "run_settings": dict(run_settings or {}),
                },
            )

    frame = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    logger.info("Selected epoch %d (validation AUROC %s)", best_epoch, best_score)
    return FitResult(copy.deepcopy(best_state), best_epoch, best_score, frame, previews)


def _validate(
    networks: Networks,
    validation: ValidationData,
    scoring: ScoringSettings,
    device: torch.device,
    epoch: int,
    settings: LoopSettings,
) -> dict[str, float]:
    """Score the validation set; AUROC / AP are NaN when it has one class or is skipped."""
    empty = {
        "validation_auroc": math.nan,
        "validation_ap": math.nan,
        "validation_score_good": math.nan,
        "validation_score_defect": math.nan,
    }
    if epoch % settings.validate_every and epoch != settings.epochs:
        return empty
    result: ImageScoring = score_images_fn(
        networks, validation.images, validation.rois, scoring, device=device
    )
    for module in (networks.generator, networks.discriminator, networks.segmentator):
        if module is not None:
            module.train()
    labels = validation.labels.astype(int)
    metrics = ranking_metrics(labels, result.image_scores, level="validation")
    good = result.image_scores[labels == 0]
    defect = result.image_scores[labels == 1]
    return {
        "validation_auroc": math.nan if metrics["auroc"] is None else float(metrics["auroc"]),
        "validation_ap": math.nan if metrics["ap"] is None else float(metrics["ap"]),
        "validation_score_good": float(good.mean()) if good.size else math.nan,
        "validation_score_defect": float(defect.mean()) if defect.size else math.nan,
    }


@torch.no_grad()
def _preview(networks: Networks, batch: Any, samples: int) -> dict[str, np.ndarray]:
    """Return X, X*, M and X_hat of the first samples of the last batch as arrays."""
    networks.generator.eval()
    count = min(samples, batch.x.shape[0])
    _, reconstruction, _ = networks.generator(batch.x_perturbed[:count])
    networks.generator.train()

    def to_numpy(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().float().cpu().permute(0, 2, 3, 1).numpy()

    return {
        "x": to_numpy(batch.x[:count]),
        "x_perturbed": to_numpy(batch.x_perturbed[:count]),
        "mask": to_numpy(batch.mask[:count]),
        "reconstruction": to_numpy(reconstruction),
    }
