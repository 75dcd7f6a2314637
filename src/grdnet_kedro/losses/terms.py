"""Loss terms of GRD-Net and DeepIndustrial-SN.

Every function returns a scalar float tensor averaged over all elements (mean reduction).
Images are ``(B, C, H, W)`` tensors with values in [0, 1].
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import Tensor

from grdnet_kedro.losses.ssim import ssim


def _check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape; got {tuple(a.shape)} and "
            f"{tuple(b.shape)}."
        )


def adversarial_loss(features_real: Tensor, features_fake: Tensor) -> Tensor:
    """Compute the feature-matching adversarial loss MSE(F_C(X), F_C(X_hat)).

    The real features are detached, so the gradient reaches the generator only through
    ``features_fake``.

    Args:
        features_real: Discriminator features of the real images, shape ``(B, C', h, w)``.
        features_fake: Discriminator features of the reconstructions, same shape.

    Returns:
        Scalar tensor, the mean squared difference (>= 0).
    """
    _check_same_shape("features_real", features_real, "features_fake", features_fake)
    return F.mse_loss(features_fake, features_real.detach())


def contextual_loss(
    x: Tensor,
    x_hat: Tensor,
    *,
    base: Literal["l1", "huber"],
    huber_delta: float = 1.0,
    base_weight: float = 1.0,
    ssim_weight: float = 1.0,
    window_size: int = 11,
) -> Tensor:
    """Compute ``base_weight * base(X, X_hat) + ssim_weight * (1 - SSIM(X, X_hat))``.

    With ``base="huber"`` and ``huber_delta=1`` on images in [0, 1], every difference is
    below delta, so the Huber term equals ``0.5 * MSE``.

    Args:
        x: Original images, shape ``(B, C, H, W)``, values in [0, 1].
        x_hat: Reconstructions, same shape, values in [0, 1].
        base: ``"l1"`` (mean absolute error) or ``"huber"`` (smooth L1 with ``huber_delta``).
        huber_delta: Threshold between the quadratic and linear parts of the Huber loss.
        base_weight: Weight of the pixel term.
        ssim_weight: Weight of the structural term ``1 - SSIM``.
        window_size: Odd SSIM window side in pixels.

    Returns:
        Scalar tensor, >= 0 for non-negative weights.

    Raises:
        ValueError: If ``base`` is unknown, ``huber_delta`` <= 0 or the shapes differ.
    """
    _check_same_shape("x", x, "x_hat", x_hat)

    if base == "l1":
        pixel_term = F.l1_loss(x_hat, x)
    elif base == "huber":
        if huber_delta <= 0:
            raise ValueError(f"huber_delta must be > 0; got {huber_delta}.")
        pixel_term = F.huber_loss(x_hat, x, delta=huber_delta)
    else:
        raise ValueError(f"contextual base must be 'l1' or 'huber'; got {base!r}.")

    structural_term = 1.0 - ssim(x, x_hat, window_size=window_size)
    return base_weight * pixel_term + ssim_weight * structural_term.to(pixel_term.dtype)


def encoder_loss(z: Tensor, z_hat: Tensor) -> Tensor:
    """Compute the latent consistency loss L1(z, z_hat).

    Args:
        z: Latent code of the input, shape ``(B, latent_dim, ...)``.
        z_hat: Latent code of the reconstruction, same shape.

    Returns:
        Scalar tensor, the mean absolute difference (>= 0).
    """
    _check_same_shape("z", z, "z_hat", z_hat)
    return F.l1_loss(z_hat, z)


def noise_loss(
    x_hat: Tensor, x_perturbed: Tensor, mask: Tensor, beta: Tensor, noise: Tensor
) -> Tensor:
    """Compute the noise loss MSE(|(1 - beta) M X_hat - M X_n|, beta N).

    Inside the mask the perturbed input is ``(1 - beta) X + beta N``, so for a perfect
    reconstruction ``X_hat = X`` the left side equals ``beta N`` and the loss is zero (up
    to the Gaussian noise and clamping added after the blend).

    Args:
        x_hat: Reconstructions, shape ``(B, C, H, W)``, values in [0, 1].
        x_perturbed: Perturbed inputs X_n, same shape.
        mask: Perturbation masks M, shape ``(B, 1, H, W)``, values in {0, 1}.
        beta: Blend factors, shape ``(B,)``, values in [0.5, 1] (0 for unperturbed patches).
        noise: Masked noise N, shape ``(B, C, H, W)``, zero outside the mask.

    Returns:
        Scalar tensor, the mean squared difference (>= 0).
    """
    _check_same_shape("x_hat", x_hat, "x_perturbed", x_perturbed)
    _check_same_shape("x_hat", x_hat, "noise", noise)
    if beta.ndim != 1 or beta.shape[0] != x_hat.shape[0]:
        raise ValueError(
            f"beta must have shape (B,) = ({x_hat.shape[0]},); got {tuple(beta.shape)}."
        )
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2:] != x_hat.shape[2:]:
        raise ValueError(
            f"mask must have shape (B, 1, H, W) = ({x_hat.shape[0]}, 1, "
            f"{x_hat.shape[2]}, {x_hat.shape[3]}); got {tuple(mask.shape)}."
        )

    beta = beta.view(-1, 1, 1, 1).to(x_hat.dtype)
    removed = torch.abs((1.0 - beta) * mask * x_hat - mask * x_perturbed)
    return F.mse_loss(removed, beta * noise)


def discriminator_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Compute 0.5 * (BCEWithLogits(C(X), 1) + BCEWithLogits(C(X_hat), 0)).

    Args:
        logits_real: Discriminator logits of real images, shape ``(B, 1)``.
        logits_fake: Discriminator logits of detached reconstructions, shape ``(B, 1)``.

    Returns:
        Scalar tensor (>= 0); ``ln 2`` when every logit is 0.
    """
    real_term = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
    fake_term = F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    return 0.5 * (real_term + fake_term)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    roi: Tensor | None = None,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> Tensor:
    """Compute the sigmoid focal loss of Lin et al. 2017, restricted to a region of interest.

    Per pixel, with ``p = sigmoid(logit)`` and ``p_t = p`` for target 1, ``1 - p`` for 0:
    ``loss = -alpha_t (1 - p_t)^gamma log(p_t)``, where ``alpha_t = alpha`` for target 1
    and ``1 - alpha`` for target 0.

    The ROI is applied by masking the per-pixel loss, not the logits: multiplying logits
    by 0 would turn outside pixels into confident 0.5 predictions that still carry loss.
    The result is the mean over ROI pixels (0 when the ROI is empty). The computation is
    done in float32 with autocast disabled, whatever the input dtype.

    Args:
        logits: Segmentation logits, shape ``(B, 1, H, W)``, any floating dtype.
        target: Binary target mask, same shape, values in {0, 1}.
        roi: Optional region-of-interest mask broadcastable to ``logits``, values in
            {0, 1}; ``None`` means every pixel counts.
        alpha: Weight of the positive class, in [0, 1].
        gamma: Focusing exponent, >= 0 (0 gives the alpha-weighted cross-entropy).

    Returns:
        Scalar float32 tensor (>= 0).

    Raises:
        ValueError: If the shapes differ or ``alpha``/``gamma`` are out of range.
    """
    _check_same_shape("logits", logits, "target", target)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"focal alpha must be in [0, 1]; got {alpha}.")
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0; got {gamma}.")

    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits = logits.float()
        target = target.float()

        probability = torch.sigmoid(logits)
        cross_entropy = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p_t = probability * target + (1.0 - probability) * (1.0 - target)
        alpha_t = alpha * target + (1.0 - alpha) * (1.0 - target)
        per_pixel = alpha_t * (1.0 - p_t) ** gamma * cross_entropy

        if roi is None:
            return per_pixel.mean()

        try:
            weights = torch.broadcast_to(roi.float(), per_pixel.shape)
        except RuntimeError as error:
            raise ValueError(
                f"roi of shape {tuple(roi.shape)} cannot be broadcast to the logits shape "
                f"{tuple(per_pixel.shape)}; pass an ROI of shape (B, 1, H, W) or (1, 1, H, W)."
            ) from error
        return (per_pixel * weights).sum() / weights.sum().clamp_min(1.0)
