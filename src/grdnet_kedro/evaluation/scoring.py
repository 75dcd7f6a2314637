"""Patch anomaly scores and maps for the two profiles, and image-level scores and decisions.

* Reconstruction (DeepIndustrial-SN) profile: the patch score is ``1 - SSIM(X, X_hat)``
  and the anomaly map is ``|X - X_hat|`` averaged over channels.
* Segmentation (GRD-Net) profile: the anomaly map is the U-Net probability times the
  region of interest (ROI), smoothed by a mean filter, and the patch score is its maximum.

Higher scores and map values are more anomalous in both profiles.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from grdnet_kedro.losses.ssim import ssim

logger = logging.getLogger(__name__)

ImageScoreMethod = Literal["map_max", "patch_max"]


@dataclass(frozen=True)
class PatchScores:
    """Anomaly scores and maps of a batch of patches.

    Attributes:
        scores: Patch anomaly scores, shape ``(N,)``, float32, higher = more anomalous.
            In ``[0, 2]`` for the reconstruction profile and ``[0, 1]`` for segmentation.
        maps: Anomaly map of each patch, shape ``(N, 1, ph, pw)``, float32, in ``[0, 1]``.
    """

    scores: Tensor
    maps: Tensor

    def __post_init__(self) -> None:
        if self.scores.dim() != 1 or self.maps.dim() != 4 or self.maps.shape[1] != 1:
            raise ValueError(
                "PatchScores needs scores of shape (N,) and maps of shape (N, 1, ph, pw), got "
                f"{tuple(self.scores.shape)} and {tuple(self.maps.shape)}."
            )
        if self.scores.shape[0] != self.maps.shape[0]:
            raise ValueError(
                f"PatchScores has {self.scores.shape[0]} scores but {self.maps.shape[0]} maps."
            )


def score_reconstruction(x: Tensor, x_hat: Tensor, *, window_size: int = 11) -> PatchScores:
    """Score patches by how much the reconstruction differs from the input.

    Args:
        x: Input patches, shape ``(N, C, ph, pw)``, float in ``[0, 1]``.
        x_hat: Reconstructions of the same shape, float in ``[0, 1]``.
        window_size: Odd side of the SSIM Gaussian window in pixels. Patches smaller
            than the window use the largest odd window that fits.

    Returns:
        Scores ``1 - SSIM(x, x_hat)`` per patch (0 for a perfect reconstruction) and maps
        ``|x - x_hat|`` averaged over channels. Both are detached float32 tensors.

    Raises:
        ValueError: If the shapes differ or are not 4-D.
    """
    if x.shape != x_hat.shape:
        raise ValueError(
            f"x and x_hat must have the same shape (N, C, ph, pw), got {tuple(x.shape)} "
            f"and {tuple(x_hat.shape)}."
        )

    x = x.detach().float()
    x_hat = x_hat.detach().float()
    scores = 1.0 - ssim(x, x_hat, window_size=window_size, reduction="none")
    maps = (x - x_hat).abs().mean(dim=1, keepdim=True)
    return PatchScores(scores=scores, maps=maps)


def _effective_kernel(kernel_size: int, height: int, width: int) -> int:
    """Clamp the mean filter to the largest odd size that fits in the patch."""
    size = min(kernel_size, height, width)
    if size % 2 == 0:
        size -= 1
    return size


def mean_filter(maps: Tensor, kernel_size: int) -> Tensor:
    """Smooth maps with a ``k x k`` mean filter that keeps their size.

    Args:
        maps: Float tensor of shape ``(N, K, h, w)``.
        kernel_size: Odd filter side in pixels. Values <= 1 return ``maps`` unchanged.
            A kernel larger than the map is clamped to the largest odd size that fits.

    Returns:
        Tensor of the shape and dtype of ``maps``. The borders are padded by repeating
        the edge pixels, so a constant map stays constant.

    Raises:
        ValueError: If ``kernel_size`` is even and greater than 1.
    """
    if kernel_size <= 1:
        return maps
    if kernel_size % 2 == 0:
        raise ValueError(
            f"smoothing_kernel must be odd so the mean filter is centred, got {kernel_size}; "
            f"use {kernel_size + 1} or {kernel_size - 1}."
        )

    size = _effective_kernel(kernel_size, maps.shape[-2], maps.shape[-1])
    if size != kernel_size:
        logger.debug(
            "Mean filter reduced from %d to %d for %dx%d patches",
            kernel_size,
            size,
            maps.shape[-2],
            maps.shape[-1],
        )
    if size <= 1:
        return maps

    pad = size // 2
    padded = F.pad(maps, (pad, pad, pad, pad), mode="replicate")
    return F.avg_pool2d(padded, kernel_size=size, stride=1)


def score_segmentation(
    logits: Tensor, roi: Tensor | None, *, smoothing_kernel: int = 21
) -> PatchScores:
    """Score patches from the segmentation network output inside the ROI.

    The map is ``sigmoid(logits) * roi``, smoothed by a mean filter and multiplied by the
    ROI again, so smoothing does not spread values outside the ROI. The patch score is
    the maximum of the map.

    Args:
        logits: U-Net output before the sigmoid, shape ``(N, 1, ph, pw)``, any float.
        roi: Region of interest, shape ``(N, 1, ph, pw)`` or broadcastable to it, values
            in ``[0, 1]`` with 1 = inspected. ``None`` inspects the whole patch.
        smoothing_kernel: Odd side of the mean filter in pixels; <= 1 turns smoothing
            off, and a kernel larger than the patch is clamped to fit.

    Returns:
        Detached float32 scores in ``[0, 1]`` and maps in ``[0, 1]``.

    Raises:
        ValueError: If ``logits`` does not have one channel, ``roi`` does not broadcast
            to it, or ``smoothing_kernel`` is even.
    """
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"logits must have shape (N, 1, ph, pw), got {tuple(logits.shape)}.")

    probabilities = torch.sigmoid(logits.detach().float())
    if roi is not None:
        try:
            roi = torch.broadcast_to(roi.detach().float(), probabilities.shape)
        except RuntimeError as error:
            raise ValueError(
                f"roi of shape {tuple(roi.shape)} does not broadcast to the logits shape "
                f"{tuple(logits.shape)}; pass one (ph, pw) ROI per patch."
            ) from error
        probabilities = probabilities * roi

    maps = mean_filter(probabilities, smoothing_kernel)
    if roi is not None:
        maps = maps * roi

    scores = maps.flatten(start_dim=1).amax(dim=1)
    return PatchScores(scores=scores, maps=maps)


def _check_patches_per_image(patch_scores: Tensor, patches_per_image: int) -> int:
    """Return the number of images, checking that the patch count divides evenly."""
    if patches_per_image < 1:
        raise ValueError(f"patches_per_image must be at least 1, got {patches_per_image}.")
    if patch_scores.dim() != 1 or patch_scores.shape[0] % patches_per_image != 0:
        raise ValueError(
            f"patch_scores of shape {tuple(patch_scores.shape)} cannot be split into images "
            f"of {patches_per_image} patches; pass a 1-D tensor of B * {patches_per_image} "
            "scores in image-major order."
        )
    return patch_scores.shape[0] // patches_per_image


def image_scores(
    stitched_maps: Tensor | None,
    patch_scores: Tensor,
    patches_per_image: int,
    *,
    method: ImageScoreMethod = "patch_max",
) -> Tensor:
    """Reduce patch scores or stitched maps to one continuous score per image.

    ``"patch_max"`` (the default) takes the maximum patch score of each image. It is on
    the same scale as the patch scores, so one calibrated threshold serves both the
    patch vote and the image decision. In the reconstruction profile it also keeps the
    SSIM-based score instead of the maximum of a per-pixel difference map, which one
    noisy pixel can dominate.
    ``"map_max"`` takes the maximum of the stitched image map instead. Overlapping
    patches are averaged there, so it is never higher than ``"patch_max"`` in the
    segmentation profile.

    Args:
        stitched_maps: Image maps of shape ``(B, 1, H, W)``; needed only for
            ``"map_max"`` and may be ``None`` otherwise.
        patch_scores: Shape ``(B * P,)`` in image-major order.
        patches_per_image: ``P``.
        method: ``"patch_max"`` or ``"map_max"``.

    Returns:
        Float tensor of shape ``(B,)``, higher = more anomalous.

    Raises:
        ValueError: If the shapes do not agree or ``method`` is unknown.
    """
    batch = _check_patches_per_image(patch_scores, patches_per_image)

    if method == "patch_max":
        return patch_scores.reshape(batch, patches_per_image).amax(dim=1)

    if method == "map_max":
        if stitched_maps is None or stitched_maps.dim() != 4 or stitched_maps.shape[0] != batch:
            shape = None if stitched_maps is None else tuple(stitched_maps.shape)
            raise ValueError(
                f"method='map_max' needs stitched_maps of shape ({batch}, 1, H, W) for "
                f"{batch} images, got {shape}."
            )
        return stitched_maps.flatten(start_dim=1).amax(dim=1)

    raise ValueError(f"Unknown image score method {method!r}; use 'patch_max' or 'map_max'.")


def image_decisions(
    patch_scores: Tensor,
    image_score: Tensor,
    patches_per_image: int,
    threshold: float,
    acceptance_ratio: float,
) -> tuple[Tensor, Tensor]:
    """Decide for each image whether it is anomalous.

    With ``acceptance_ratio > 0`` an image is anomalous when the share of its patches
    whose score is greater than ``threshold`` is at least ``acceptance_ratio`` (the vote
    of the reference GRD-Net code). With ``acceptance_ratio == 0`` an image is anomalous
    when ``image_score > threshold``. The reference flags every image at ratio 0 because
    a share is always >= 0, which this function deliberately does not do.

    Args:
        patch_scores: Shape ``(B * P,)`` in image-major order.
        image_score: Shape ``(B,)``, from :func:`image_scores`.
        patches_per_image: ``P``.
        threshold: Calibrated decision threshold on the score scale.
        acceptance_ratio: Share of anomalous patches that flags an image, in ``[0, 1]``.

    Returns:
        ``(decision, anomalous_patch_share)``: bool tensor of shape ``(B,)``, True =
        anomalous, and float32 tensor of shape ``(B,)`` in ``[0, 1]``.

    Raises:
        ValueError: If the shapes do not agree, ``threshold`` is not finite, or
            ``acceptance_ratio`` is outside ``[0, 1]``.
    """
    batch = _check_patches_per_image(patch_scores, patches_per_image)
    if image_score.shape != (batch,):
        raise ValueError(
            f"image_score must have shape ({batch},) for {batch} images, "
            f"got {tuple(image_score.shape)}."
        )
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold}; recalibrate it.")
    if not 0.0 <= acceptance_ratio <= 1.0:
        raise ValueError(
            f"acceptance_ratio must be in [0, 1], got {acceptance_ratio}; use 0 to decide "
            "on the image score."
        )

    anomalous_patches = (patch_scores.reshape(batch, patches_per_image) > threshold).sum(dim=1)
    anomalous_patch_share = anomalous_patches.float() / patches_per_image

    if acceptance_ratio > 0:
        # Compare counts, not float shares, so that e.g. 3 of 9 patches meets a ratio of 1/3.
        decision = anomalous_patches >= acceptance_ratio * patches_per_image - 1e-9
    else:
        decision = image_score > threshold
    return decision, anomalous_patch_share
