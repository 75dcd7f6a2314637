"""Unit tests of the GRD-Net networks: shapes, wiring, validation and parameter counts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from grdnet_kedro.models import (
    Discriminator,
    Generator,
    ResidualEncoder,
    SegmentationUNet,
    count_parameters,
)
from grdnet_kedro.models.blocks import ResidualBlock, UpsampleBlock
from grdnet_kedro.models.generator import ResidualDecoder

POSITIONS = ("first", "last")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def tiny_generator(
    channels: int = 1,
    patch: tuple[int, int] = (16, 32),
    bottleneck: str = "conv",
    down: str = "last",
    up: str = "last",
    stages: tuple[int, ...] = (1, 1),
) -> Generator:
    return Generator(channels, patch, 4, list(stages), down, up, bottleneck, 8)  # type: ignore[arg-type]


# --- blocks -------------------------------------------------------------------------------


def test_residual_block_identity_shortcut_count() -> None:
    # conv 4*4*9 + BN 2*4, twice; identity shortcut has no parameters.
    block = ResidualBlock(4, 4, stride=1)
    assert isinstance(block.shortcut, nn.Identity)
    assert count_parameters(block) == 2 * (144 + 8)


def test_residual_block_projection_shortcut_count() -> None:
    # conv 2*4*9 + BN 8 + conv 4*4*9 + BN 8 + shortcut conv1x1 2*4 + BN 8.
    block = ResidualBlock(2, 4, stride=2)
    assert count_parameters(block) == 72 + 8 + 144 + 8 + 8 + 8
    assert block(torch.rand(2, 2, 8, 12)).shape == (2, 4, 4, 6)


def test_residual_block_stride_only_uses_projection() -> None:
    block = ResidualBlock(4, 4, stride=2)
    assert not isinstance(block.shortcut, nn.Identity)


def test_upsample_block_doubles_size() -> None:
    block = UpsampleBlock(8, 4)
    assert block(torch.rand(2, 8, 3, 5)).shape == (2, 4, 6, 10)
    # ConvTranspose 8*4*4*4 without bias + BN 2*4.
    assert count_parameters(block) == 512 + 8


def test_count_parameters_includes_frozen() -> None:
    layer = nn.Linear(3, 2)
    layer.requires_grad_(False)
    assert count_parameters(layer) == 8


# --- encoder and decoder ------------------------------------------------------------------


@pytest.mark.parametrize("position", POSITIONS)
def test_encoder_output_shape_rectangular(position: str) -> None:
    encoder = ResidualEncoder(3, 4, [2, 2], position)  # type: ignore[arg-type]
    assert encoder.out_channels == 8
    assert encoder(torch.rand(2, 3, 32, 64)).shape == (2, 8, 8, 16)


@pytest.mark.parametrize(("position", "first_block_size"), [("first", 8), ("last", 16)])
def test_encoder_downsample_position(position: str, first_block_size: int) -> None:
    encoder = ResidualEncoder(1, 4, [2], position)  # type: ignore[arg-type]
    first_block_output = encoder.stages[0](encoder.stem(torch.rand(2, 1, 16, 16)))
    assert first_block_output.shape == (2, 4, first_block_size, first_block_size)


def first_conv_widths(block: nn.Module) -> tuple[int, int]:
    """Return (in_channels, out_channels) of the first (transposed) convolution in ``block``."""
    for module in block.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
            return module.in_channels, module.out_channels
    raise AssertionError(f"no convolution in {block}")


def test_encoder_width_changes_in_first_block() -> None:
    encoder = ResidualEncoder(1, 4, [2, 2], "last")
    widths = [first_conv_widths(block) for block in encoder.stages]
    assert widths == [(4, 4), (4, 4), (4, 8), (8, 8)]


@pytest.mark.parametrize(
    ("position", "kinds"),
    [
        ("first", [UpsampleBlock, ResidualBlock, UpsampleBlock, ResidualBlock]),
        ("last", [ResidualBlock, UpsampleBlock, ResidualBlock, UpsampleBlock]),
    ],
)
def test_decoder_upsample_position(position: str, kinds: list[type]) -> None:
    decoder = ResidualDecoder(1, 4, [2, 2], position)  # type: ignore[arg-type]
    assert [type(block) for block in decoder.stages] == kinds


def test_decoder_widths_mirror_encoder() -> None:
    decoder = ResidualDecoder(3, 4, [2, 2], "last")
    assert decoder.in_channels == 8
    widths = [first_conv_widths(block) for block in decoder.stages]
    assert widths == [(8, 8), (8, 8), (8, 4), (4, 4)]


def test_encoder_rejects_indivisible_input() -> None:
    encoder = ResidualEncoder(1, 4, [1, 1], "last")
    with pytest.raises(ValueError, match="multiple of 4"):
        encoder(torch.rand(1, 1, 16, 18))


# --- generator ----------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("patch", [(32, 32), (32, 64)])
@pytest.mark.parametrize("down", POSITIONS)
@pytest.mark.parametrize("up", POSITIONS)
def test_generator_conv_shapes(channels: int, patch: tuple[int, int], down: str, up: str) -> None:
    generator = tiny_generator(channels, patch, "conv", down, up, stages=(2, 2))
    z, x_hat, z_hat = generator(torch.rand(2, channels, *patch))
    assert x_hat.shape == (2, channels, *patch)
    assert z.shape == (2, 8, patch[0] // 4, patch[1] // 4)
    assert z_hat.shape == z.shape


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("patch", [(16, 16), (16, 32)])
@pytest.mark.parametrize("down", POSITIONS)
def test_generator_dense_shapes(channels: int, patch: tuple[int, int], down: str) -> None:
    generator = tiny_generator(channels, patch, "dense", down, "first")
    z, x_hat, z_hat = generator(torch.rand(3, channels, *patch))
    assert x_hat.shape == (3, channels, *patch)
    assert z.shape == (3, 8)
    assert z_hat.shape == (3, 8)


@pytest.mark.parametrize("bottleneck", ["conv", "dense"])
def test_generator_reconstruction_in_unit_range(bottleneck: str) -> None:
    generator = tiny_generator(3, (16, 32), bottleneck)
    _, x_hat, _ = generator(torch.rand(2, 3, 16, 32) * 10.0)
    assert x_hat.min().item() >= 0.0
    assert x_hat.max().item() <= 1.0


def test_generator_latent_head_shared() -> None:
    generator = tiny_generator()
    calls: list[int] = []
    generator.latent_head.register_forward_hook(lambda *_: calls.append(1))
    generator(torch.rand(2, 1, 16, 32))
    assert len(calls) == 2
    head_ids = {id(module) for module in generator.modules() if module is generator.latent_head}
    assert len(head_ids) == 1


def test_generator_encoders_have_own_weights() -> None:
    generator = tiny_generator()
    assert generator.input_encoder is not generator.reconstruction_encoder
    first = {p.data_ptr() for p in generator.input_encoder.parameters()}
    second = {p.data_ptr() for p in generator.reconstruction_encoder.parameters()}
    assert first.isdisjoint(second)


def test_generator_forward_wiring() -> None:
    generator = tiny_generator().eval()
    x = torch.rand(2, 1, 16, 32)
    with torch.no_grad():
        z, x_hat, z_hat = generator(x)
        expected_z = generator.latent_head(generator.input_encoder(x))
        expected_x_hat = generator.decoder(generator.latent_inverse(expected_z))
        expected_z_hat = generator.latent_head(generator.reconstruction_encoder(x_hat))
    torch.testing.assert_close(z, expected_z)
    torch.testing.assert_close(x_hat, expected_x_hat)
    torch.testing.assert_close(z_hat, expected_z_hat)


def test_generator_z_hat_gradient_reaches_second_encoder() -> None:
    generator = tiny_generator()
    _, _, z_hat = generator(torch.rand(2, 1, 16, 32))
    z_hat.sum().backward()
    second_grads = [p.grad for p in generator.reconstruction_encoder.parameters()]
    assert all(grad is not None for grad in second_grads)


@pytest.mark.parametrize("patch", [(30, 32), (32, 30), (2, 32), (0, 32)])
def test_generator_rejects_invalid_patch(patch: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match=r"multiple of 4"):
        tiny_generator(patch=patch)


def test_generator_dense_rejects_other_input_size() -> None:
    generator = tiny_generator(patch=(16, 16), bottleneck="dense")
    with pytest.raises(ValueError, match=r"\(16, 16\)"):
        generator(torch.rand(2, 1, 32, 32))


def test_generator_rejects_unknown_bottleneck() -> None:
    with pytest.raises(ValueError, match="bottleneck"):
        tiny_generator(bottleneck="flat")


def test_generator_rejects_unknown_position() -> None:
    with pytest.raises(ValueError, match="upsample_position"):
        tiny_generator(up="middle")


def test_generator_rejects_empty_stages() -> None:
    with pytest.raises(ValueError, match="stages"):
        tiny_generator(stages=())


# --- discriminator ------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("patch", [(32, 32), (32, 64)])
@pytest.mark.parametrize("position", POSITIONS)
def test_discriminator_shapes(channels: int, patch: tuple[int, int], position: str) -> None:
    discriminator = Discriminator(channels, patch, 4, [1, 1, 1], position)  # type: ignore[arg-type]
    logits, features = discriminator(torch.rand(2, channels, *patch))
    assert logits.shape == (2, 1)
    assert features.shape == (2, 16, patch[0] // 8, patch[1] // 8)


def test_discriminator_classifier_size() -> None:
    discriminator = Discriminator(1, (32, 64), 4, [1, 1, 1], "last")
    # Flattened map 16 * 4 * 8 = 512 inputs, plus a bias.
    assert count_parameters(discriminator.classifier) == 512 + 1


def test_discriminator_rejects_invalid_patch() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        Discriminator(1, (32, 36), 4, [1, 1, 1], "last")


def test_discriminator_rejects_other_input_size() -> None:
    discriminator = Discriminator(1, (32, 32), 4, [1, 1, 1], "last")
    with pytest.raises(ValueError, match=r"\(32, 32\)"):
        discriminator(torch.rand(2, 1, 32, 64))


# --- segmentation U-Net -------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("patch", [(16, 16), (16, 40)])
def test_unet_logits_shape(channels: int, patch: tuple[int, int]) -> None:
    unet = SegmentationUNet(2 * channels, base_features=4)
    assert unet(torch.rand(2, 2 * channels, *patch)).shape == (2, 1, *patch)


def test_unet_head_has_no_sigmoid() -> None:
    unet = SegmentationUNet(2, base_features=4)
    assert isinstance(unet.head, nn.Conv2d)
    assert not any(isinstance(module, nn.Sigmoid) for module in unet.modules())


def test_unet_rejects_indivisible_input() -> None:
    unet = SegmentationUNet(2, base_features=4)
    with pytest.raises(ValueError, match="multiple of 8"):
        unet(torch.rand(1, 2, 16, 20))


def test_unet_rejects_zero_width() -> None:
    with pytest.raises(ValueError, match="base_features"):
        SegmentationUNet(2, base_features=0)


# --- parameter counts of the GRD-Net 2023 and DeepIndustrial-SN 2026 profiles ----------
# Built on the meta device: the shapes are real, no memory is allocated and no init runs.
# The exact counts follow from the block definitions. The approximate sizes are those of the
# GRD-Net reference implementation for the same settings, and the counts must match within 1 %.


@pytest.mark.parametrize(
    ("build", "exact", "approximate"),
    [
        (
            lambda: Generator(3, (128, 128), 64, [2, 2, 2, 2], "last", "last", "conv", 256),
            36_092_739,
            36.1e6,
        ),
        (lambda: Discriminator(3, (128, 128), 64, [2, 2, 2, 2], "last"), 11_551_681, 11.55e6),
        (lambda: SegmentationUNet(6, 64), 7_701_889, 7.70e6),
        (
            lambda: Generator(3, (256, 256), 128, [3, 3, 3, 3], "last", "last", "dense", 128),
            285_846_275,
            285.8e6,
        ),
    ],
    ids=["full-generator", "full-discriminator", "full-unet", "sn-generator"],
)
def test_profile_parameter_counts(
    build: Callable[[], nn.Module], exact: int, approximate: float
) -> None:
    with torch.device("meta"):
        model = build()
    count = count_parameters(model)
    assert abs(count - approximate) / approximate < 0.01
    assert count == exact
