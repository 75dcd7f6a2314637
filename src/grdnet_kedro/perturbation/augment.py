"""Train-time geometric augmentation: per-sample rotation and flips."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (the usual PyTorch alias)
from torch import Tensor


@dataclass(frozen=True)
class AugmentConfig:
    """Settings of the train-time geometric augmentation.

    Attributes:
        rotation_degrees: Maximum absolute rotation angle in degrees, in ``[0, 180]``.
            Each sample is rotated by an angle drawn uniformly from
            ``[-rotation_degrees, rotation_degrees]``. 0 disables rotation.
        hflip_probability: Probability in ``[0, 1]`` of flipping a sample left to right.
        vflip_probability: Probability in ``[0, 1]`` of flipping a sample top to bottom.
    """

    rotation_degrees: float = 0.0
    hflip_probability: float = 0.0
    vflip_probability: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rotation_degrees <= 180.0:
            raise ValueError(
                f"rotation_degrees must be in [0, 180], got {self.rotation_degrees}. "
                "Set 0 to disable rotation."
            )
        for name in ("hflip_probability", "vflip_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}.")


def rotate(
    images: Tensor,
    angles_degrees: Tensor,
    *,
    mode: str = "bilinear",
    padding_mode: str = "reflection",
) -> Tensor:
    """Rotate each image about its centre by its own angle.

    The sampling grid is built in pixel units, so non-square images rotate without
    shearing. Pixels that the rotation brings in from outside the image are filled
    according to ``padding_mode``. ``"reflection"`` mirrors the image content, so a
    rotated patch has no black corners.

    Args:
        images: ``(B, C, H, W)`` floating-point images.
        angles_degrees: ``(B,)`` angles in degrees, counter-clockwise on screen.
        mode: Interpolation of ``torch.nn.functional.grid_sample`` (``"bilinear"`` for
            images, ``"nearest"`` for masks).
        padding_mode: Padding of ``grid_sample`` (``"reflection"``, ``"zeros"`` or
            ``"border"``).

    Returns:
        ``(B, C, H, W)`` rotated images with the dtype and device of ``images``.
    """
    batch, _, height, width = images.shape
    radians = angles_degrees.to(device=images.device, dtype=images.dtype) * (math.pi / 180.0)
    cosine = torch.cos(radians)
    sine = torch.sin(radians)

    # affine_grid works in normalised coordinates, where x spans W pixels and y spans H
    # pixels. Conjugating the pixel-space rotation by diag(W, H) keeps right angles on
    # non-square images.
    theta = torch.zeros((batch, 2, 3), device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = cosine
    theta[:, 0, 1] = -sine * (height / width)
    theta[:, 1, 0] = sine * (width / height)
    theta[:, 1, 1] = cosine

    grid = F.affine_grid(theta, [batch, images.shape[1], height, width], align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def _flip_where(images: Tensor, flip: Tensor, dim: int) -> Tensor:
    """Flip along ``dim`` the samples where the ``(B,)`` bool ``flip`` is true."""
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(dim), images)


def augment(
    x: Tensor,
    config: AugmentConfig,
    *,
    generator: torch.Generator,
    extra: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Rotate and flip each sample, applying the same geometry to ``x`` and ``extra``.

    Each sample is first rotated by its own angle from
    ``[-rotation_degrees, rotation_degrees]`` and then flipped horizontally and
    vertically with the configured probabilities. Images are resampled bilinearly with
    reflection padding. ``extra`` (for example ROI masks) is resampled with nearest
    neighbour, so binary masks stay binary. With ``rotation_degrees == 0`` no resampling
    happens, so the output equals the input up to the flips.

    The random draws are the same for every config (angles, then horizontal flips, then
    vertical flips, all on ``generator.device``), so a seed gives the same stream of
    draws whatever the settings.

    Args:
        x: ``(B, C, H, W)`` floating-point images, typically in ``[0, 1]``.
        config: Rotation range and flip probabilities.
        generator: Source of all randomness.
        extra: Optional ``(B, K, H, W)`` maps of any dtype that follow ``x``.

    Returns:
        ``(x_augmented, extra_augmented)``: shapes, dtypes and devices as the inputs;
        ``extra_augmented`` is None when ``extra`` is None.

    Raises:
        ValueError: If ``x`` is not 4-D floating point, or ``extra`` does not match its
            batch and spatial size.
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(
            f"augment expects x as a (B, C, H, W) floating-point tensor, got shape "
            f"{tuple(x.shape)} and dtype {x.dtype}."
        )
    if extra is not None and (
        extra.ndim != 4 or extra.shape[0] != x.shape[0] or extra.shape[2:] != x.shape[2:]
    ):
        raise ValueError(
            f"augment expects extra of shape ({x.shape[0]}, K, {x.shape[2]}, {x.shape[3]}) "
            f"to match x, got {tuple(extra.shape)}."
        )

    batch = x.shape[0]
    draws = torch.rand((3, batch), generator=generator, device=generator.device).to(x.device)
    angles = (2.0 * draws[0] - 1.0) * config.rotation_degrees
    hflip = draws[1] < config.hflip_probability
    vflip = draws[2] < config.vflip_probability

    extra_float = None if extra is None else extra.to(x.dtype)
    if config.rotation_degrees > 0.0:
        x = rotate(x, angles, mode="bilinear", padding_mode="reflection")
        if extra_float is not None:
            extra_float = rotate(extra_float, angles, mode="nearest", padding_mode="reflection")

    x = _flip_where(_flip_where(x, hflip, dim=-1), vflip, dim=-2)
    if extra is None or extra_float is None:
        return x, None

    extra_float = _flip_where(_flip_where(extra_float, hflip, dim=-1), vflip, dim=-2)
    return x, extra_float.to(extra.dtype)
