"""Structural similarity (SSIM) with a Gaussian window, after Wang et al. 2004.

SSIM compares local means, variances and the covariance of two images:

    SSIM(x, y) = ((2 mu_x mu_y + C1) (2 sigma_xy + C2))
                 / ((mu_x^2 + mu_y^2 + C1) (sigma_x^2 + sigma_y^2 + C2))

with C1 = (0.01 L)^2 and C2 = (0.03 L)^2 for the data range L, and local statistics
weighted by a normalised Gaussian window (11 x 11, sigma 1.5 by default).

Two choices differ from the original MATLAB code of Wang et al., which evaluates only the
windows that fit inside the image:

* The map has the size of the input. The image is reflect-padded by half a window before
  filtering, so border pixels get a value and the mean covers every pixel. Means over the
  map therefore differ slightly from a "valid windows only" SSIM near the borders.
* A patch smaller than the window (for example 8 x 8 with an 11 x 11 window) uses the
  largest odd window that fits, ``min(window_size, H, W)`` rounded down to odd, with the
  same sigma. Without the clamp the padding would be larger than the patch.

The statistics are always computed in float32 (or float64 for float64 inputs) with
autocast disabled, because ``E[x^2] - E[x]^2`` loses all precision in bfloat16/float16.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
import torch.nn.functional as F  # noqa: N812 (the PyTorch convention)
from torch import Tensor

logger = logging.getLogger(__name__)


def gaussian_window_1d(
    window_size: int, sigma: float, *, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Build a normalised 1-D Gaussian window centred on its middle tap.

    Args:
        window_size: Number of taps, odd and >= 1.
        sigma: Standard deviation in pixels, > 0.
        dtype: Floating dtype of the result.
        device: Device of the result.

    Returns:
        Tensor of shape ``(window_size,)`` with non-negative weights that sum to 1.
    """
    offsets = torch.arange(window_size, dtype=dtype, device=device) - (window_size - 1) / 2
    weights = torch.exp(-(offsets**2) / (2.0 * sigma**2))
    return weights / weights.sum()


def effective_window_size(window_size: int, height: int, width: int) -> int:
    """Return the odd window size actually used for an image of ``height`` x ``width``.

    Args:
        window_size: Requested odd window size.
        height: Image height in pixels.
        width: Image width in pixels.

    Returns:
        ``min(window_size, height, width)``, reduced by one when that is even.
    """
    size = min(window_size, height, width)
    if size % 2 == 0:
        size -= 1
    return size


def _check_arguments(
    x: Tensor, y: Tensor, window_size: int, sigma: float, data_range: float
) -> None:
    if x.ndim != 4:
        raise ValueError(
            f"ssim expects images of shape (B, C, H, W); got x with shape {tuple(x.shape)}. "
            "Add the missing batch or channel dimension with unsqueeze."
        )
    if x.shape != y.shape:
        raise ValueError(
            f"ssim expects x and y of the same shape; got x {tuple(x.shape)} and "
            f"y {tuple(y.shape)}."
        )
    if window_size < 1 or window_size % 2 == 0:
        raise ValueError(
            f"window_size must be a positive odd number of pixels; got {window_size}. "
            "Use 11 for the standard SSIM."
        )
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0 pixels; got {sigma}. Use 1.5 for the standard SSIM.")
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0; got {data_range}. Use 1.0 for images in [0, 1].")


def _filter(images: Tensor, window: Tensor, pad: int) -> Tensor:
    """Blur ``(N, C, H, W)`` images channel-wise with a separable window, keeping H x W."""
    channels = images.shape[1]
    horizontal = window.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = window.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    if pad > 0:
        images = F.pad(images, (pad, pad, pad, pad), mode="reflect")
    blurred = F.conv2d(images, horizontal, groups=channels)
    return F.conv2d(blurred, vertical, groups=channels)


def ssim_map(
    x: Tensor,
    y: Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> Tensor:
    """Compute the per-pixel SSIM map, averaged over channels.

    Args:
        x: Images of shape ``(B, C, H, W)``, floating point, values in ``[0, data_range]``.
        y: Images of the same shape as ``x``.
        window_size: Odd side of the Gaussian window in pixels. Patches smaller than the
            window use the largest odd window that fits (see the module docstring).
        sigma: Standard deviation of the Gaussian window in pixels.
        data_range: Dynamic range L of the pixel values (1.0 for images in [0, 1]).

    Returns:
        Tensor of shape ``(B, 1, H, W)``, dtype float32 (float64 for float64 inputs),
        values in ``[-1, 1]`` with 1 where the local windows are identical.

    Raises:
        ValueError: If the shapes differ or are not 4-D, or a parameter is out of range.
    """
    _check_arguments(x, y, window_size, sigma, data_range)

    compute_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    height, width = x.shape[-2:]
    size = effective_window_size(window_size, height, width)
    if size != window_size:
        logger.debug(
            "SSIM window reduced from %d to %d for %dx%d images", window_size, size, height, width
        )

    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.to(compute_dtype)
        y = y.to(compute_dtype)
        window = gaussian_window_1d(size, sigma, dtype=compute_dtype, device=x.device)
        pad = size // 2

        # One grouped convolution over the five stacked statistics: x, y, x^2, y^2, xy.
        batch = x.shape[0]
        stacked = torch.cat([x, y, x * x, y * y, x * y], dim=0)
        mu_x, mu_y, mean_xx, mean_yy, mean_xy = _filter(stacked, window, pad).split(batch)

        mu_xx = mu_x * mu_x
        mu_yy = mu_y * mu_y
        mu_xy = mu_x * mu_y
        var_x = mean_xx - mu_xx
        var_y = mean_yy - mu_yy
        cov_xy = mean_xy - mu_xy

        c1 = (0.01 * data_range) ** 2
        c2 = (0.03 * data_range) ** 2
        numerator = (2.0 * mu_xy + c1) * (2.0 * cov_xy + c2)
        denominator = (mu_xx + mu_yy + c1) * (var_x + var_y + c2)
        similarity = numerator / denominator

    return similarity.mean(dim=1, keepdim=True)


def ssim(
    x: Tensor,
    y: Tensor,
    *,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    reduction: Literal["none", "mean"] = "mean",
) -> Tensor:
    """Compute the mean SSIM of two image batches.

    Args:
        x: Images of shape ``(B, C, H, W)``, floating point, values in ``[0, data_range]``.
        y: Images of the same shape as ``x``.
        window_size: Odd side of the Gaussian window in pixels (clamped for small patches).
        sigma: Standard deviation of the Gaussian window in pixels.
        data_range: Dynamic range L of the pixel values (1.0 for images in [0, 1]).
        reduction: ``"mean"`` for one scalar over the batch, ``"none"`` for one value per
            sample.

    Returns:
        A scalar tensor (``"mean"``) or a tensor of shape ``(B,)`` (``"none"``), dtype
        float32 (float64 for float64 inputs), values in ``[-1, 1]``.

    Raises:
        ValueError: If the shapes differ or are not 4-D, or a parameter is out of range.
    """
    if reduction not in ("none", "mean"):
        raise ValueError(f"reduction must be 'none' or 'mean'; got {reduction!r}.")

    per_sample = ssim_map(x, y, window_size=window_size, sigma=sigma, data_range=data_range).mean(
        dim=(1, 2, 3)
    )
    if reduction == "none":
        return per_sample
    return per_sample.mean()
