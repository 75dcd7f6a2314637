"""Discriminative U-Net that predicts an anomaly map from an image and its reconstruction."""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

UNET_DOWNSAMPLE_FACTOR = 8
"""Three 2x max-pools, so input sides must be multiples of 8."""


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Build two (bias-free conv3x3, BatchNorm, ReLU) layers that keep the spatial size."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class SegmentationUNet(nn.Module):
    """U-Net with three pooling levels of widths ``f, 2f, 4f`` and a bottom of ``8f``.

    Each decoder level upsamples with a ConvTranspose 2x2 (stride 2) that halves the
    width, concatenates the encoder skip of the same level, and applies a double conv.

    Args:
        in_channels: Input channels, ``2 * C`` for the concatenation ``[x, x_hat]``.
        base_features: Width ``f`` of the first level.

    Raises:
        ValueError: If ``in_channels`` or ``base_features`` is < 1.
    """

    def __init__(self, in_channels: int, base_features: int = 64) -> None:
        super().__init__()
        if in_channels < 1 or base_features < 1:
            raise ValueError(
                f"in_channels and base_features must be >= 1, got {in_channels} and "
                f"{base_features}."
            )
        f = base_features
        self.encoder_blocks = nn.ModuleList(
            [double_conv(in_channels, f), double_conv(f, 2 * f), double_conv(2 * f, 4 * f)]
        )
        self.pool = nn.MaxPool2d(2)
        self.bottom = double_conv(4 * f, 8 * f)

        # Level widths from the bottom up: 8f -> 4f -> 2f -> f. After the up-step the
        # skip of the same width is concatenated, so each decoder block takes twice its width.
        self.up_steps = nn.ModuleList(
            [nn.ConvTranspose2d(2 * w, w, kernel_size=2, stride=2) for w in (4 * f, 2 * f, f)]
        )
        self.decoder_blocks = nn.ModuleList([double_conv(2 * w, w) for w in (4 * f, 2 * f, f)])
        self.head = nn.Conv2d(f, 1, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """Predict anomaly logits.

        Args:
            x: Float tensor ``(B, in_channels, H, W)``, usually ``[x, x_hat]`` concatenated
                on channels with values in ``[0, 1]``. ``H`` and ``W`` must be multiples of 8.

        Returns:
            Logits ``(B, 1, H, W)``. Apply a sigmoid for the anomaly probability.

        Raises:
            ValueError: If ``H`` or ``W`` is not a multiple of 8.
        """
        height, width = x.shape[-2:]
        if height % UNET_DOWNSAMPLE_FACTOR or width % UNET_DOWNSAMPLE_FACTOR:
            raise ValueError(
                f"SegmentationUNet input size {(height, width)} is invalid: each side must be "
                f"a multiple of {UNET_DOWNSAMPLE_FACTOR}. Choose a patch size such as 64 or 128."
            )

        skips: list[Tensor] = []
        features = x
        for block in self.encoder_blocks:
            features = block(features)
            skips.append(features)
            features = self.pool(features)
        features = self.bottom(features)

        for up_step, block, skip in zip(
            self.up_steps, self.decoder_blocks, reversed(skips), strict=True
        ):
            features = block(torch.cat([up_step(features), skip], dim=1))
        return self.head(features)
