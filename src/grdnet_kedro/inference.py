"""Score whole images: patches in, patch scores, stitched anomaly maps and image scores out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from grdnet_kedro.evaluation.patches import extract_patches, patch_grid, stitch_patches
from grdnet_kedro.evaluation.scoring import (
    PatchScores,
    image_scores,
    score_reconstruction,
    score_segmentation,
)
from grdnet_kedro.models.generator import reconstruct
from grdnet_kedro.training.step import Networks

logger = logging.getLogger(__name__)


def images_to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """Convert uint8 images ``(N, H, W, C)`` to float32 ``(N, C, H, W)`` in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return tensor.permute(0, 3, 1, 2).float().div_(255.0)


def masks_to_tensor(masks: np.ndarray, device: torch.device | str = "cpu") -> Tensor:
    """Convert {0, 1} uint8 masks ``(N, H, W)`` to float32 ``(N, 1, H, W)``."""
    return torch.from_numpy(np.ascontiguousarray(masks)).to(device).unsqueeze(1).float()


@dataclass
class ScoringSettings:
    """Patch cutting and scoring settings, built from the model and inference parameters."""

    patch_size: tuple[int, int]
    stride: tuple[int, int]
    method: Literal["ssim", "segmentation"]
    smoothing_kernel: int = 21
    ssim_window: int = 11
    image_score: Literal["patch_max", "map_max"] = "map_max"
    batch_size: int = 16
    channels_last: bool = False


class PatchScorer(Protocol):
    """Any scorer of patches, such as the ONNX Runtime scorer of :mod:`grdnet_kedro.export`.

    It takes patches ``(N, C, ph, pw)`` float32 in ``[0, 1]`` and returns
    ``(patch_scores, anomaly_maps)`` of shapes ``(N,)`` and ``(N, 1, ph, pw)``, float32,
    as tensors or numpy arrays, on the scale of :func:`score_reconstruction` or
    :func:`score_segmentation` with the whole patch as region of interest.
    """

    def __call__(self, patches: Tensor) -> tuple[Tensor | np.ndarray, Tensor | np.ndarray]:
        """Score a batch of patches."""
        ...


@dataclass
class ImageScoring:
    """Scores of N images of size H x W cut into P patches each."""

    patch_scores: np.ndarray  # (N, P) float32, patches in row-major grid order
    anomaly_maps: np.ndarray  # (N, H, W) float32, stitched (mean over overlapping patches)
    image_scores: np.ndarray  # (N,) float32, continuous, higher = more anomalous
    patch_origins: list[tuple[int, int]]  # (row, col) of each patch's top-left corner


def _score_with_networks(
    networks: Networks, patches: Tensor, roi_patches: Tensor | None, settings: ScoringSettings
) -> PatchScores:
    """Score patches ``(N, C, ph, pw)`` with the generator and, for segmentation, the U-Net."""
    memory_format = torch.channels_last if settings.channels_last else torch.contiguous_format
    patches = patches.contiguous(memory_format=memory_format)
    reconstruction = reconstruct(networks.generator, patches)

    if settings.method == "segmentation":
        if networks.segmentator is None:
            raise ValueError("segmentation scoring needs a U-Net (model.use_segmentator: true)")
        logits = networks.segmentator(torch.cat([patches, reconstruction], dim=1))
        return score_segmentation(
            logits.float(), roi_patches, smoothing_kernel=settings.smoothing_kernel
        )
    return score_reconstruction(
        patches.float(), reconstruction.float(), window_size=settings.ssim_window
    )


@torch.no_grad()
def score_images(
    networks: Networks | None,
    images: np.ndarray,
    rois: np.ndarray | None,
    settings: ScoringSettings,
    *,
    device: torch.device,
    progress: bool = False,
    description: str = "scoring",
    patch_scorer: PatchScorer | None = None,
) -> ImageScoring:
    """Score uint8 images ``(N, H, W, C)`` (with optional {0,1} ROI masks ``(N, H, W)``).

    The SN profile scores each patch by 1 - SSIM(X, X_hat) with the map |X - X_hat|; the full
    profile scores by the max of the smoothed U-Net map inside the ROI.

    With ``patch_scorer`` (for example an ONNX Runtime session) the patches are scored by
    it instead of ``networks``, which may then be ``None``. Such a scorer inspects whole
    patches, so ``rois`` must be ``None`` for the segmentation score.
    """
    if patch_scorer is not None:
        if rois is not None and settings.method == "segmentation":
            raise ValueError(
                "A patch_scorer inspects whole patches and cannot apply ROI masks; pass "
                "rois=None or score with the torch networks."
            )
    elif networks is None:
        raise ValueError("score_images needs the trained networks or a patch_scorer.")
    else:
        networks.generator.eval()
        if networks.segmentator is not None:
            networks.segmentator.eval()
        elif settings.method == "segmentation":
            raise ValueError("segmentation scoring needs a U-Net (model.use_segmentator: true)")

    count, height, width = images.shape[0], images.shape[1], images.shape[2]
    origins = patch_grid((height, width), settings.patch_size, settings.stride)
    patches_per_image = len(origins)

    all_patch_scores = np.zeros((count, patches_per_image), dtype=np.float32)
    all_maps = np.zeros((count, height, width), dtype=np.float32)
    all_image_scores = np.zeros(count, dtype=np.float32)
    starts = range(0, count, settings.batch_size)
    for start in tqdm(starts, desc=description, disable=not progress, leave=False):
        stop = min(start + settings.batch_size, count)
        x = images_to_tensor(images[start:stop], device)
        patches = extract_patches(x, settings.patch_size, settings.stride)

        if patch_scorer is not None:
            scores, patch_maps = patch_scorer(patches)
            scored = PatchScores(
                scores=torch.as_tensor(scores, device=device),
                maps=torch.as_tensor(patch_maps, device=device),
            )
        else:
            if networks is None:
                raise ValueError("score_images needs the networks or a patch_scorer")
            roi_patches = None
            if rois is not None and settings.method == "segmentation":
                roi = masks_to_tensor(rois[start:stop], device)
                roi_patches = extract_patches(roi, settings.patch_size, settings.stride)
            scored = _score_with_networks(networks, patches, roi_patches, settings)

        maps = stitch_patches(scored.maps, (height, width), settings.patch_size, settings.stride)
        batch_scores = image_scores(
            maps, scored.scores, patches_per_image, method=settings.image_score
        )
        all_patch_scores[start:stop] = scored.scores.view(-1, patches_per_image).cpu().numpy()
        all_maps[start:stop] = maps[:, 0].cpu().numpy()
        all_image_scores[start:stop] = batch_scores.cpu().numpy()

    return ImageScoring(all_patch_scores, all_maps, all_image_scores, origins)
