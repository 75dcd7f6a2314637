"""Batched 2D Perlin (gradient) noise with a per-sample lattice resolution."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _fade(t: Tensor) -> Tensor:
    """Return the quintic fade 6t^5 - 15t^4 + 10t^3, flat to second order at 0 and 1."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _lattice_coordinates(size: int, periods: Tensor) -> tuple[Tensor, Tensor]:
    """Map pixel indices onto each sample's lattice along one axis.

    Args:
        size: Number of pixels along the axis.
        periods: ``(B,)`` float32 lattice cells along the axis, one value per sample.

    Returns:
        ``(cell, offset)``: ``(B, size)`` int64 index of the lattice cell that contains
        each pixel, and ``(B, size)`` float32 position inside that cell in ``[0, 1)``.
    """
    pixels = torch.arange(size, device=periods.device, dtype=torch.float32)
    position = pixels.unsqueeze(0) * periods.unsqueeze(1) / size
    cell = position.floor()
    return cell.long(), position - cell


def perlin_noise(
    batch: int,
    height: int,
    width: int,
    resolutions: Tensor,
    *,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> Tensor:
    """Draw a batch of 2D Perlin noise fields, each at its own lattice resolution.

    Sample ``b`` spans ``resolutions[b, 0]`` lattice cells vertically and
    ``resolutions[b, 1]`` horizontally. A random unit gradient sits on every lattice
    point, and the four corner contributions of a pixel's cell are blended with the
    quintic fade. Pixel ``(y, x)`` sits at lattice position
    ``(y * res_y / height, x * res_x / width)``, so any ``height`` and ``width`` work,
    including sizes that the resolution does not divide. This continuous mapping replaces
    generating on a padded lattice and cropping, and gives the same field for sizes that
    the resolution divides. The noise is 0 on lattice points.

    All samples are computed at once. The random gradient angles are drawn on
    ``generator.device`` and then moved to ``device``.

    Args:
        batch: Number of fields ``B``.
        height: Field height ``H`` in pixels.
        width: Field width ``W`` in pixels.
        resolutions: ``(B, 2)`` integer lattice cells per field as ``(rows, columns)``,
            each at least 1.
        generator: Source of all randomness.
        device: Device of the returned tensor.

    Returns:
        ``(B, 1, H, W)`` float32 noise, scaled by sqrt(2) so that it lies in about
        ``[-1, 1]``.

    Raises:
        ValueError: If a size is not positive, or ``resolutions`` has the wrong shape or a
            value below 1.
    """
    if batch < 1 or height < 1 or width < 1:
        raise ValueError(
            f"perlin_noise requires positive sizes, got batch={batch}, height={height}, "
            f"width={width}."
        )
    if resolutions.shape != (batch, 2):
        raise ValueError(
            f"perlin_noise expects resolutions of shape ({batch}, 2), got "
            f"{tuple(resolutions.shape)}. Pass one (rows, columns) pair per sample."
        )
    if resolutions.is_floating_point() or resolutions.is_complex():
        raise ValueError(
            f"perlin_noise expects integer resolutions, got dtype {resolutions.dtype}."
        )
    smallest = int(resolutions.min())
    if smallest < 1:
        raise ValueError(f"perlin_noise requires resolutions of at least 1, got {smallest}.")

    # Read the lattice size before moving resolutions, so a CPU tensor costs no device sync.
    lattice_rows = int(resolutions[:, 0].max()) + 1
    lattice_columns = int(resolutions[:, 1].max()) + 1
    resolutions = resolutions.to(device)

    # Unit gradients at every lattice point. Samples with a coarser lattice use only the
    # top-left part of this shared grid.
    angles = torch.rand(
        (batch, lattice_rows, lattice_columns), generator=generator, device=generator.device
    ).to(device)
    angles = angles * (2.0 * math.pi)
    gradients = torch.stack((torch.cos(angles), torch.sin(angles)), dim=-1)

    periods = resolutions.to(torch.float32)
    row_cell, row_offset = _lattice_coordinates(height, periods[:, 0])
    column_cell, column_offset = _lattice_coordinates(width, periods[:, 1])

    sample_index = torch.arange(batch, device=device).view(batch, 1, 1)
    row_cell = row_cell.unsqueeze(2)
    column_cell = column_cell.unsqueeze(1)
    row_offset = row_offset.unsqueeze(2)
    column_offset = column_offset.unsqueeze(1)

    def corner_dot(row_step: int, column_step: int) -> Tensor:
        """Dot product of a corner's gradient with the pixel's offset from that corner."""
        gradient = gradients[sample_index, row_cell + row_step, column_cell + column_step]
        return gradient[..., 0] * (row_offset - row_step) + gradient[..., 1] * (
            column_offset - column_step
        )

    top = torch.lerp(corner_dot(0, 0), corner_dot(0, 1), _fade(column_offset))
    bottom = torch.lerp(corner_dot(1, 0), corner_dot(1, 1), _fade(column_offset))
    noise = torch.lerp(top, bottom, _fade(row_offset))

    # 2D gradient noise with unit gradients stays within +-sqrt(2)/2.
    return (math.sqrt(2.0) * noise).unsqueeze(1)
