"""Building blocks shared by the GRD-Net generator and discriminator.

All activations are LeakyReLU with negative slope 0.2. Convolutions that feed a BatchNorm
have no bias, because the BatchNorm shift makes it redundant.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

logger = logging.getLogger(__name__)

Position = Literal["first", "last"]
"""Block of a stage that resamples: the first or the last one."""

NEGATIVE_SLOPE = 0.2


def count_parameters(module: nn.Module) -> int:
    """Count the scalar parameters of ``module``, trainable or frozen. Buffers are not counted."""
    return sum(parameter.numel() for parameter in module.parameters())


def validate_stages(stages: Sequence[int], base_features: int) -> None:
    """Raise ValueError unless ``stages`` and ``base_features`` describe a valid network.

    Args:
        stages: Number of blocks per stage. At least one stage, each count >= 1.
        base_features: Width of the first stage, >= 1.
    """
    if len(stages) == 0 or any(int(count) < 1 for count in stages):
        raise ValueError(
            f"stages must list at least one stage with >= 1 block each, got {list(stages)}. "
            "Use for example [2, 2, 2, 2]."
        )
    if base_features < 1:
        raise ValueError(f"base_features must be >= 1, got {base_features}.")


def validate_position(position: str, name: str) -> None:
    """Raise ValueError naming parameter ``name`` unless ``position`` is "first" or "last"."""
    if position not in ("first", "last"):
        raise ValueError(f"{name} must be 'first' or 'last', got {position!r}.")


def validate_patch_size(patch_size: Sequence[int], multiple: int) -> tuple[int, int]:
    """Check that both sides of ``patch_size`` are positive multiples of ``multiple``.

    Args:
        patch_size: Patch ``(height, width)`` in pixels.
        multiple: Required divisor, ``2**len(stages)`` for the residual networks.

    Returns:
        ``(height, width)`` as a tuple of ints.

    Raises:
        ValueError: If ``patch_size`` does not have two sides, or a side is not a positive
            multiple of ``multiple``. The message names the value and the allowed multiple.
    """
    if len(patch_size) != 2:
        raise ValueError(f"patch_size must be (height, width), got {patch_size!r}.")
    height, width = int(patch_size[0]), int(patch_size[1])
    if height < multiple or width < multiple or height % multiple or width % multiple:
        raise ValueError(
            f"patch_size {(height, width)} is invalid: each side must be a positive multiple "
            f"of {multiple} (2 ** number of stages), for example {(4 * multiple, 4 * multiple)}."
        )
    return height, width


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Sequential:
    """Build a bias-free convolution ('same' padding for odd kernels) followed by BatchNorm."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
    )


class ResidualBlock(nn.Module):
    """Residual block: conv3x3-BN-LeakyReLU-conv3x3-BN plus a shortcut, then LeakyReLU.

    The shortcut is the identity when the block keeps the shape, otherwise a bias-free
    conv1x1 with the block's stride followed by BatchNorm.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: 1 keeps the size, 2 halves height and width.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            conv_bn(in_channels, out_channels, 3, stride),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            conv_bn(out_channels, out_channels, 3, 1),
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else conv_bn(in_channels, out_channels, 1, stride)
        )
        self.activation = nn.LeakyReLU(NEGATIVE_SLOPE)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, in_channels, H, W)`` to ``(B, out_channels, H / stride, W / stride)``."""
        return self.activation(self.residual(x) + self.shortcut(x))


class UpsampleBlock(nn.Module):
    """Upsampling block: bias-free ConvTranspose 4x4 (stride 2, padding 1), BN, LeakyReLU.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(
                in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(NEGATIVE_SLOPE),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, in_channels, H, W)`` to ``(B, out_channels, 2H, 2W)``."""
        return self.layers(x)


class ResidualEncoder(nn.Module):
    """Residual encoder: a stem, then one stage of residual blocks per entry of ``stages``.

    Stage ``i`` has ``stages[i]`` blocks of width ``base_features * 2**i``. Its first block
    changes the width, and exactly one block (the first or the last, after
    ``downsample_position``) has stride 2. With ``S = len(stages)`` stages the output is
    ``2**S`` times smaller than the input on each side.

    Args:
        in_channels: Image channels ``C`` (1 or 3).
        base_features: Width ``b`` of the stem and of the first stage.
        stages: Number of residual blocks per stage.
        downsample_position: Which block of each stage has stride 2.

    Attributes:
        out_channels: Width of the output, ``base_features * 2**(len(stages) - 1)``.
        downsample_factor: ``2**len(stages)``.
    """

    def __init__(
        self,
        in_channels: int,
        base_features: int,
        stages: Sequence[int],
        downsample_position: Position,
    ) -> None:
        super().__init__()
        validate_stages(stages, base_features)
        validate_position(downsample_position, "downsample_position")

        self.stem = nn.Sequential(
            conv_bn(in_channels, base_features, 3, 1), nn.LeakyReLU(NEGATIVE_SLOPE)
        )

        blocks: list[nn.Module] = []
        width = base_features
        for stage_index, block_count in enumerate(stages):
            stage_width = base_features * 2**stage_index
            downsample_index = 0 if downsample_position == "first" else block_count - 1
            for block_index in range(block_count):
                stride = 2 if block_index == downsample_index else 1
                blocks.append(ResidualBlock(width, stage_width, stride))
                width = stage_width
        self.stages = nn.Sequential(*blocks)

        self.out_channels: int = width
        self.downsample_factor: int = 2 ** len(stages)

    def forward(self, x: Tensor) -> Tensor:
        """Encode a batch of images.

        Args:
            x: Float tensor ``(B, C, H, W)``, with ``H`` and ``W`` multiples of ``2**len(stages)``.

        Returns:
            Feature map ``(B, out_channels, H / 2**S, W / 2**S)``.

        Raises:
            ValueError: If ``H`` or ``W`` is not a multiple of ``2**len(stages)``.
        """
        validate_patch_size(x.shape[-2:], self.downsample_factor)
        return self.stages(self.stem(x))
