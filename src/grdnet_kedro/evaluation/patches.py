"""Split images into overlapping patches and stitch per-patch maps back together.

Patches follow one grid per image: top-left corners in row-major order, spaced by the
stride, with the last patch of each axis shifted to end at the image border when the
stride does not land there. Every pixel is therefore covered at least once, and
stitching averages the overlapping values (sum divided by the number of patches that
cover the pixel).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

SizeLike = int | tuple[int, int] | list[int]


def _as_pair(value: SizeLike, name: str) -> tuple[int, int]:
    """Convert an int or a ``[height, width]`` pair into a tuple of two positive ints."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or a (height, width) pair, got {value!r}.")

    if isinstance(value, int):
        pair = (value, value)
    elif isinstance(value, tuple | list) and len(value) == 2:
        pair = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a (height, width) pair, got {value!r}.")

    if pair[0] <= 0 or pair[1] <= 0:
        raise ValueError(f"{name} must be positive, got {pair}.")
    return pair


def _axis_starts(length: int, patch: int, stride: int) -> list[int]:
    """Return the patch start offsets along one axis, the last one ending at the border."""
    starts = list(range(0, length - patch + 1, stride))
    if starts[-1] + patch < length:
        starts.append(length - patch)
    return starts


def patch_grid(
    image_size: SizeLike, patch_size: SizeLike, stride: SizeLike
) -> list[tuple[int, int]]:
    """Compute the top-left ``(row, col)`` corner of every patch of an image.

    Args:
        image_size: Image ``(height, width)``, or one int for a square image.
        patch_size: Patch ``(height, width)``, or one int for square patches.
        stride: Step between patch corners ``(rows, cols)``, or one int.

    Returns:
        Corners in row-major order. Along each axis the starts are ``0, stride,
        2 * stride, ...``. When the last of them does not end at the border, one more
        patch that ends exactly at the border is added, so the grid covers every pixel.
        For example 256 / 128 / 64 gives 3 x 3 = 9 patches, and 300 / 128 / 64 gives
        starts ``0, 64, 128, 172`` on each axis (16 patches).

    Raises:
        ValueError: If a patch is larger than the image, or the stride is larger than
            the patch, which would leave pixels between patches uncovered.
    """
    image_h, image_w = _as_pair(image_size, "image_size")
    patch_h, patch_w = _as_pair(patch_size, "patch_size")
    stride_h, stride_w = _as_pair(stride, "stride")

    if patch_h > image_h or patch_w > image_w:
        raise ValueError(
            f"patch_size {(patch_h, patch_w)} is larger than image_size {(image_h, image_w)}; "
            "use a patch size no larger than the image in each axis."
        )
    if stride_h > patch_h or stride_w > patch_w:
        raise ValueError(
            f"stride {(stride_h, stride_w)} is larger than patch_size {(patch_h, patch_w)}, "
            "so some pixels would belong to no patch; use a stride no larger than the patch."
        )

    rows = _axis_starts(image_h, patch_h, stride_h)
    cols = _axis_starts(image_w, patch_w, stride_w)
    return [(row, col) for row in rows for col in cols]


def extract_patches(images: Tensor, patch_size: SizeLike, stride: SizeLike) -> Tensor:
    """Cut every image of a batch into the patches of :func:`patch_grid`.

    Args:
        images: Tensor of shape ``(B, C, H, W)``, any dtype.
        patch_size: Patch ``(height, width)``, or one int.
        stride: Step between patch corners, or one int.

    Returns:
        Tensor of shape ``(B * P, C, ph, pw)`` with the dtype of ``images``, where ``P``
        is the number of patches per image. The order is image-major: the ``P`` patches
        of image 0 in grid order, then those of image 1, and so on.

    Raises:
        ValueError: If ``images`` is not 4-D, or the sizes are invalid for
            :func:`patch_grid`.
    """
    if images.dim() != 4:
        raise ValueError(
            f"images must have shape (B, C, H, W), got {tuple(images.shape)}; "
            "add a channel axis with unsqueeze(1) for single-channel images."
        )

    patch_h, patch_w = _as_pair(patch_size, "patch_size")
    grid = patch_grid((images.shape[-2], images.shape[-1]), (patch_h, patch_w), stride)

    patches = torch.stack(
        [images[:, :, row : row + patch_h, col : col + patch_w] for row, col in grid], dim=1
    )
    return patches.reshape(-1, images.shape[1], patch_h, patch_w)


def patch_labels(masks: Tensor, patch_size: SizeLike, stride: SizeLike) -> Tensor:
    """Label each patch anomalous when any mask pixel inside it is non-zero.

    Args:
        masks: Ground-truth masks of shape ``(B, 1, H, W)``; non-zero means anomalous.
        patch_size: Patch ``(height, width)``, or one int.
        stride: Step between patch corners, or one int.

    Returns:
        Bool tensor of shape ``(B * P,)`` in the order of :func:`extract_patches`.
    """
    patches = extract_patches(masks, patch_size, stride)
    return (patches != 0).flatten(start_dim=1).any(dim=1)


def stitch_patches(
    patch_maps: Tensor, image_size: SizeLike, patch_size: SizeLike, stride: SizeLike
) -> Tensor:
    """Assemble per-patch maps into image-size maps, averaging where patches overlap.

    Args:
        patch_maps: Tensor of shape ``(B * P, K, ph, pw)`` in the order of
            :func:`extract_patches`. Integer or bool maps are converted to float32.
        image_size: Image ``(height, width)``, or one int.
        patch_size: Patch ``(height, width)``, or one int; must match ``patch_maps``.
        stride: Step between patch corners, or one int.

    Returns:
        Float tensor of shape ``(B, K, H, W)``. Each pixel is the sum of the patch values
        that cover it divided by the number of those patches.

    Raises:
        ValueError: If the patch map shape does not match ``patch_size``, or the number
            of patch maps is not a multiple of the patches per image.
    """
    image_h, image_w = _as_pair(image_size, "image_size")
    patch_h, patch_w = _as_pair(patch_size, "patch_size")
    grid = patch_grid((image_h, image_w), (patch_h, patch_w), stride)
    patches_per_image = len(grid)

    if patch_maps.dim() != 4 or tuple(patch_maps.shape[-2:]) != (patch_h, patch_w):
        raise ValueError(
            f"patch_maps must have shape (B * P, K, {patch_h}, {patch_w}) for "
            f"patch_size {(patch_h, patch_w)}, got {tuple(patch_maps.shape)}."
        )
    if patch_maps.shape[0] % patches_per_image != 0:
        raise ValueError(
            f"patch_maps has {patch_maps.shape[0]} patches, which is not a multiple of the "
            f"{patches_per_image} patches per image of image_size {(image_h, image_w)}, "
            f"patch_size {(patch_h, patch_w)}; pass the same sizes used to extract them."
        )

    if not patch_maps.is_floating_point():
        patch_maps = patch_maps.float()
    batch = patch_maps.shape[0] // patches_per_image
    channels = patch_maps.shape[1]
    per_image = patch_maps.reshape(batch, patches_per_image, channels, patch_h, patch_w)

    total = patch_maps.new_zeros((batch, channels, image_h, image_w))
    count = patch_maps.new_zeros((1, 1, image_h, image_w))
    for index, (row, col) in enumerate(grid):
        total[:, :, row : row + patch_h, col : col + patch_w] += per_image[:, index]
        count[:, :, row : row + patch_h, col : col + patch_w] += 1

    return total / count


def resize_map(maps: Tensor, size: SizeLike) -> Tensor:
    """Resize anomaly maps with bilinear interpolation, e.g. back to the original image size.

    Args:
        maps: Float tensor of shape ``(B, K, h, w)``.
        size: Target ``(height, width)``, or one int.

    Returns:
        Tensor of shape ``(B, K, height, width)``. ``maps`` itself when the size already
        matches. Shrinking uses antialiasing so that small hot spots are averaged rather
        than skipped.
    """
    if maps.dim() != 4:
        raise ValueError(f"maps must have shape (B, K, h, w), got {tuple(maps.shape)}.")

    target = _as_pair(size, "size")
    if tuple(maps.shape[-2:]) == target:
        return maps

    if not maps.is_floating_point():
        maps = maps.float()
    shrinking = target[0] < maps.shape[-2] or target[1] < maps.shape[-1]
    return F.interpolate(
        maps, size=target, mode="bilinear", align_corners=False, antialias=shrinking
    )
