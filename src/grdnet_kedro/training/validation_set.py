"""The synthetic validation set: held-out good images plus perturbed copies of them.

It is used for model selection during training and for threshold calibration, so the
test split is never seen before evaluation.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from grdnet_kedro.inference import images_to_tensor, masks_to_tensor
from grdnet_kedro.perturbation import PerturbationConfig, Perturber


def build_validation_set(
    images: np.ndarray,
    rois: np.ndarray,
    perturbation: PerturbationConfig,
    *,
    perturbed_copies: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Return good images and ``perturbed_copies`` synthetic-defect copies of each.

    Args:
        images: Held-out good images ``(N, H, W, C)`` uint8.
        rois: Their ROI masks ``(N, H, W)`` uint8 {0, 1}.
        perturbation: Perturbation settings; every copy is perturbed (probability 1).
            Pixels outside the defect mask (or outside the ROI) stay those of the clean
            image, so a copy differs from its original only where it is labelled.
        perturbed_copies: Number of defective copies of each good image.
        seed: Seed of the perturbation, so the set is identical across runs.

    Returns:
        ``images`` ``(M, H, W, C)`` uint8, ``masks`` ``(M, H, W)`` uint8 {0, 1}, ``rois``
        ``(M, H, W)`` uint8 and ``labels`` ``(M,)`` int8 (1 = synthetic defect), with
        ``M = N * (1 + perturbed_copies)``; the good images come first.
    """
    count = images.shape[0]
    always = dataclasses.replace(perturbation, probability=1.0)
    perturber = Perturber(always)
    generator = torch.Generator().manual_seed(seed)

    x = images_to_tensor(images)
    out_images = [images]
    out_masks = [np.zeros(images.shape[:3], dtype=np.uint8)]
    for _ in range(perturbed_copies):
        batch = perturber(x, generator=generator)
        mask = batch.mask[:, 0] * masks_to_tensor(rois)[:, 0]
        blended = batch.x_perturbed * mask.unsqueeze(1) + x * (1 - mask.unsqueeze(1))
        out_images.append(
            (blended.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        )
        out_masks.append(mask.to(torch.uint8).numpy())

    copies = 1 + perturbed_copies
    return {
        "images": np.concatenate(out_images),
        "masks": np.concatenate(out_masks),
        "rois": np.concatenate([rois] * copies),
        "labels": np.repeat(np.array([0, 1], dtype=np.int8), [count, count * perturbed_copies]),
    }
