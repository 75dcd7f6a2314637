"""GRD-Net discriminator: a residual encoder and a Linear layer that gives one logit."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from torch import Tensor, nn

from grdnet_kedro.models.blocks import Position, ResidualEncoder, validate_patch_size

logger = logging.getLogger(__name__)


class Discriminator(nn.Module):
    """Discriminator with its own :class:`ResidualEncoder`.

    The last feature map of the encoder is the feature that the adversarial (feature
    matching) loss compares. A Linear layer on the flattened map gives one logit.

    Args:
        in_channels: Image channels ``C`` (1 or 3).
        patch_size: Patch ``(H, W)``, both multiples of ``2**len(stages)``.
        base_features: Width ``b`` of the first encoder stage.
        stages: Residual blocks per stage. Stage ``i`` has width ``b * 2**i``.
        downsample_position: Which block of each stage has stride 2.

    Raises:
        ValueError: If ``patch_size``, ``stages`` or ``downsample_position`` is invalid.
    """

    def __init__(
        self,
        in_channels: int,
        patch_size: tuple[int, int],
        base_features: int,
        stages: Sequence[int],
        downsample_position: Position,
    ) -> None:
        super().__init__()
        self.encoder = ResidualEncoder(in_channels, base_features, stages, downsample_position)
        factor = self.encoder.downsample_factor
        height, width = validate_patch_size(patch_size, factor)
        self.patch_size = (height, width)

        flat_size = self.encoder.out_channels * (height // factor) * (width // factor)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat_size, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Score a batch of patches.

        Args:
            x: Patches ``(B, C, H, W)``, float, values in ``[0, 1]``, ``(H, W) == patch_size``.

        Returns:
            ``(logits, features)``: real-vs-fake logits ``(B, 1)`` (no sigmoid) and the last
            feature map ``(B, b * 2**(S - 1), H / 2**S, W / 2**S)``.

        Raises:
            ValueError: If the patch size differs from ``patch_size``.
        """
        if tuple(x.shape[-2:]) != self.patch_size:
            raise ValueError(
                f"Discriminator expects patches of size {self.patch_size}, "
                f"got {tuple(x.shape[-2:])}. Cut the input into patches of that size."
            )
        features = self.encoder(x)
        return self.classifier(features), features
