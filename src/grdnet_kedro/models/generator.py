"""GRD-Net generator: encoder, decoder and a second encoder of the reconstruction.

Forward on a patch ``x``::

    z     = latent_head(input_encoder(x))
    x_hat = decoder(latent_inverse(z))
    z_hat = latent_head(reconstruction_encoder(x_hat))

The two encoders have their own weights, but the latent head is one module used for both.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from grdnet_kedro.models.blocks import (
    NEGATIVE_SLOPE,
    Position,
    ResidualBlock,
    ResidualEncoder,
    UpsampleBlock,
    validate_patch_size,
    validate_position,
    validate_stages,
)

logger = logging.getLogger(__name__)

Bottleneck = Literal["conv", "dense"]


class ResidualDecoder(nn.Module):
    """Decoder that mirrors :class:`ResidualEncoder`, from the deepest stage to the first.

    Decoder stage ``j`` mirrors encoder stage ``i = S - 1 - j``: it has ``stages[i]`` blocks
    of width ``base_features * 2**i``, the first of which changes the width. Exactly one
    block per stage is an :class:`UpsampleBlock` (the first or the last, after
    ``upsample_position``), and the others are stride-1 residual blocks. A conv3x3 head with a
    sigmoid maps the last stage to ``out_channels`` values in ``[0, 1]``.

    Args:
        out_channels: Image channels ``C`` of the reconstruction.
        base_features: Width ``b`` of the first encoder stage.
        stages: Blocks per stage in encoder order (the decoder walks them backwards).
        upsample_position: Which block of each decoder stage doubles the size.

    Attributes:
        in_channels: Expected input width, ``base_features * 2**(len(stages) - 1)``.
    """

    def __init__(
        self,
        out_channels: int,
        base_features: int,
        stages: Sequence[int],
        upsample_position: Position,
    ) -> None:
        super().__init__()
        validate_stages(stages, base_features)
        validate_position(upsample_position, "upsample_position")

        self.in_channels: int = base_features * 2 ** (len(stages) - 1)
        blocks: list[nn.Module] = []
        width = self.in_channels
        for stage_index in reversed(range(len(stages))):
            block_count = stages[stage_index]
            stage_width = base_features * 2**stage_index
            upsample_index = 0 if upsample_position == "first" else block_count - 1
            for block_index in range(block_count):
                if block_index == upsample_index:
                    blocks.append(UpsampleBlock(width, stage_width))
                else:
                    blocks.append(ResidualBlock(width, stage_width))
                width = stage_width
        self.stages = nn.Sequential(*blocks)

        self.head = nn.Sequential(
            nn.Conv2d(base_features, out_channels, kernel_size=3, padding=1), nn.Sigmoid()
        )

    def forward(self, features: Tensor) -> Tensor:
        """Decode ``(B, in_channels, h, w)`` to images ``(B, C, h * 2**S, w * 2**S)`` in [0, 1]."""
        return self.head(self.stages(features))


def build_latent_layers(
    bottleneck: Bottleneck, width: int, feature_size: tuple[int, int], latent_dim: int
) -> tuple[nn.Module, nn.Module]:
    """Build the latent head and its inverse.

    Args:
        bottleneck: ``"conv"`` keeps a spatial latent, and ``"dense"`` flattens to a vector.
        width: Channels of the encoder output.
        feature_size: ``(h, w)`` of the encoder output.
        latent_dim: Channels (conv) or length (dense) of the latent code.

    Returns:
        ``(head, inverse)``. ``head`` maps ``(B, width, h, w)`` to ``(B, latent_dim, h, w)``
        (conv) or ``(B, latent_dim)`` (dense), and ``inverse`` maps the latent code back to
        ``(B, width, h, w)``. Both end with LeakyReLU.
    """
    if bottleneck == "conv":
        head: nn.Module = nn.Sequential(
            nn.Conv2d(width, latent_dim, kernel_size=1), nn.LeakyReLU(NEGATIVE_SLOPE)
        )
        inverse: nn.Module = nn.Sequential(
            nn.Conv2d(latent_dim, width, kernel_size=1), nn.LeakyReLU(NEGATIVE_SLOPE)
        )
        return head, inverse

    if bottleneck == "dense":
        flat_size = width * feature_size[0] * feature_size[1]
        head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat_size, latent_dim), nn.LeakyReLU(NEGATIVE_SLOPE)
        )
        inverse = nn.Sequential(
            nn.Linear(latent_dim, flat_size),
            nn.LeakyReLU(NEGATIVE_SLOPE),
            nn.Unflatten(1, (width, feature_size[0], feature_size[1])),
        )
        return head, inverse

    raise ValueError(f"bottleneck must be 'conv' or 'dense', got {bottleneck!r}.")


class Generator(nn.Module):
    """GRD-Net generator (encoder-decoder-encoder) with a shared latent head.

    Args:
        in_channels: Image channels ``C`` (1 or 3).
        patch_size: Patch ``(H, W)``, both multiples of ``2**len(stages)``.
        base_features: Width ``b`` of the first encoder stage.
        stages: Residual blocks per stage. Stage ``i`` has width ``b * 2**i``.
        downsample_position: Which block of each encoder stage has stride 2.
        upsample_position: Which block of each decoder stage upsamples.
        bottleneck: ``"conv"`` (conv1x1, spatial latent) or ``"dense"`` (Linear, vector).
        latent_dim: Channels (conv) or length (dense) of the latent code.

    Raises:
        ValueError: If ``patch_size``, ``stages``, a position, ``bottleneck`` or
            ``latent_dim`` is invalid.
    """

    def __init__(
        self,
        in_channels: int,
        patch_size: tuple[int, int],
        base_features: int,
        stages: Sequence[int],
        downsample_position: Position,
        upsample_position: Position,
        bottleneck: Literal["conv", "dense"],
        latent_dim: int,
    ) -> None:
        super().__init__()
        validate_stages(stages, base_features)
        factor = 2 ** len(stages)
        height, width = validate_patch_size(patch_size, factor)
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}.")
        self.patch_size = (height, width)
        self.bottleneck = bottleneck

        self.input_encoder = ResidualEncoder(
            in_channels, base_features, stages, downsample_position
        )
        self.reconstruction_encoder = ResidualEncoder(
            in_channels, base_features, stages, downsample_position
        )
        feature_size = (height // factor, width // factor)
        self.latent_head, self.latent_inverse = build_latent_layers(
            bottleneck, self.input_encoder.out_channels, feature_size, latent_dim
        )
        self.decoder = ResidualDecoder(in_channels, base_features, stages, upsample_position)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruct a batch of patches and encode the reconstruction again.

        Args:
            x: Patches ``(B, C, H, W)``, float, values in ``[0, 1]``. With the dense
                bottleneck ``(H, W)`` must equal ``patch_size``. With the conv bottleneck
                any multiple of ``2**len(stages)`` works.

        Returns:
            ``(z, x_hat, z_hat)``: the latent code of ``x``, the reconstruction
            ``(B, C, H, W)`` in ``[0, 1]`` (sigmoid), and the latent code of ``x_hat``.
            ``z`` and ``z_hat`` are ``(B, latent_dim, H / 2**S, W / 2**S)`` for the conv
            bottleneck and ``(B, latent_dim)`` for the dense one.

        Raises:
            ValueError: If the dense bottleneck gets a size other than ``patch_size``.
        """
        if self.bottleneck == "dense" and tuple(x.shape[-2:]) != self.patch_size:
            raise ValueError(
                f"Generator with a dense bottleneck expects patches of size {self.patch_size}, "
                f"got {tuple(x.shape[-2:])}. Cut the input into patches of that size."
            )
        z = self.latent_head(self.input_encoder(x))
        x_hat = self.decoder(self.latent_inverse(z))
        z_hat = self.latent_head(self.reconstruction_encoder(x_hat))
        return z, x_hat, z_hat

    def reconstruct(self, x: Tensor) -> Tensor:
        """Return only the reconstruction ``x_hat`` ``(B, C, H, W)`` in ``[0, 1]``.

        Scoring needs no latent code, so this skips the second encoder pass of
        :meth:`forward` (about a third of the generator's cost).
        """
        if self.bottleneck == "dense" and tuple(x.shape[-2:]) != self.patch_size:
            raise ValueError(
                f"Generator with a dense bottleneck expects patches of size {self.patch_size}, "
                f"got {tuple(x.shape[-2:])}. Cut the input into patches of that size."
            )
        return self.decoder(self.latent_inverse(self.latent_head(self.input_encoder(x))))


def reconstruct(generator: nn.Module, x: Tensor) -> Tensor:
    """Return ``x_hat`` of any generator: :meth:`Generator.reconstruct` when it has one.

    Other modules with the ``(z, x_hat, z_hat)`` forward contract (test stand-ins) run
    their full forward pass.
    """
    if isinstance(generator, Generator):
        return generator.reconstruct(x)
    _, x_hat, _ = generator(x)
    return x_hat
