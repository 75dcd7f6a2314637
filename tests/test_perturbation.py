"""Tests of Perlin noise, the synthetic perturbation P_q and train augmentation."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from grdnet_kedro.perturbation import (
    AugmentConfig,
    PerturbationConfig,
    Perturber,
    augment,
    load_textures,
    perlin_noise,
    rotate,
)

BATCH, HEIGHT, WIDTH = 8, 32, 48


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _patches(channels: int = 3, seed: int = 123) -> torch.Tensor:
    return torch.rand((BATCH, channels, HEIGHT, WIDTH), generator=_generator(seed))


def _write_png(path: Path, rgb: tuple[int, int, int], size: tuple[int, int] = (20, 30)) -> None:
    height, width = size
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[:] = rgb
    Image.fromarray(array).save(path)


# Perlin noise


def test_perlin_noise_odd_size_shape_and_range() -> None:
    resolutions = torch.tensor([[1, 1], [2, 4], [3, 5], [7, 2], [32, 32], [4, 16]])
    noise = perlin_noise(6, 37, 53, resolutions, generator=_generator())

    assert noise.shape == (6, 1, 37, 53)
    assert noise.dtype == torch.float32
    assert torch.isfinite(noise).all()
    assert noise.abs().max() <= 1.0
    # A constant field would mean that the batched gather read the wrong lattice points.
    assert (noise.amax(dim=(1, 2, 3)) - noise.amin(dim=(1, 2, 3)) > 0.1).all()


def test_perlin_noise_zero_on_lattice_points() -> None:
    # Pixel (0, 0) is always a lattice point. With 4 cells over 48 columns, columns 12, 24
    # and 36 of row 0 are lattice points too.
    noise = perlin_noise(1, 37, 48, torch.tensor([[3, 4]]), generator=_generator())

    assert noise[0, 0, 0, 0] == 0.0
    for column in (12, 24, 36):
        assert noise[0, 0, 0, column].abs() < 1e-6


def test_perlin_noise_matches_hand_computation() -> None:
    # With one lattice cell over a 2x2 field, pixel (1, 1) sits at the cell centre, where
    # the quintic fade is 0.5. The value is then sqrt(2) times the mean of the four corner
    # dot products gradient . (0.5 - corner_row, 0.5 - corner_column).
    angles = torch.rand((1, 2, 2), generator=_generator(7)) * (2.0 * math.pi)
    expected = 0.0
    for corner_row in (0, 1):
        for corner_column in (0, 1):
            angle = angles[0, corner_row, corner_column]
            expected += float(
                torch.cos(angle) * (0.5 - corner_row) + torch.sin(angle) * (0.5 - corner_column)
            )
    expected *= math.sqrt(2.0) / 4.0

    noise = perlin_noise(1, 2, 2, torch.tensor([[1, 1]]), generator=_generator(7))

    assert noise[0, 0, 1, 1].item() == pytest.approx(expected, abs=1e-6)


def test_perlin_noise_is_smooth() -> None:
    noise = perlin_noise(2, 64, 64, torch.tensor([[2, 2], [4, 4]]), generator=_generator())

    assert (noise[..., 1:, :] - noise[..., :-1, :]).abs().max() < 0.2
    assert (noise[..., :, 1:] - noise[..., :, :-1]).abs().max() < 0.2


@pytest.mark.parametrize(
    "resolutions",
    [torch.tensor([[0, 2]]), torch.tensor([[2, 2], [2, 2]]), torch.tensor([[1.0, 2.0]])],
)
def test_perlin_noise_rejects_bad_resolutions(resolutions: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="resolutions"):
        perlin_noise(1, 8, 8, resolutions, generator=_generator())


# Perturbation: config validation


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"probability": 1.5}, "probability"),
        ({"probability": -0.1}, "probability"),
        ({"perlin_min_area": -1}, "perlin_min_area"),
        ({"max_tries": -1}, "max_tries"),
        ({"gaussian_sigma_max": -0.01}, "gaussian_sigma_max"),
        ({"beta_range": (0.8, 0.5)}, "beta_range"),
        ({"source_weights": {"perlin": -1.0}}, "source_weights"),
        ({"source_weights": {"perlin": 0.0, "uniform": 0.0}}, "positive sum"),
        ({"source_weights": {"texture": 1.0}}, "texture_dir"),
    ],
)
def test_config_rejects_invalid_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PerturbationConfig(**kwargs)  # type: ignore[arg-type]


def test_config_unknown_source_lists_allowed_keys() -> None:
    with pytest.raises(ValueError, match="noise") as raised:
        PerturbationConfig(source_weights={"noise": 1.0})

    for key in ("perlin", "uniform", "batch", "texture"):
        assert key in str(raised.value)


def test_config_source_weights_read_only() -> None:
    weights = {"perlin": 1.0}
    config = PerturbationConfig(source_weights=weights)
    weights["perlin"] = 0.0

    assert config.source_weights["perlin"] == 1.0
    with pytest.raises(TypeError):
        config.source_weights["uniform"] = 1.0  # type: ignore[index]


# Perturbation: the blending equation and masks


@pytest.mark.parametrize("sources", [{"perlin": 1.0}, {"uniform": 1.0}, {"batch": 1.0}])
def test_perturb_keeps_pixels_outside_mask(sources: dict[str, float]) -> None:
    x = _patches()
    config = PerturbationConfig(probability=1.0, source_weights=sources, gaussian_sigma_max=0.0)
    result = Perturber(config)(x, generator=_generator())

    outside = (result.mask == 0).expand_as(x)
    assert torch.equal(result.x_perturbed[outside], x[outside])
    assert torch.equal(result.noise[outside], torch.zeros_like(x[outside]))
    assert torch.equal(result.x, x)


def test_perturb_blends_inside_mask() -> None:
    x = _patches()
    config = PerturbationConfig(
        probability=1.0, source_weights={"uniform": 1.0}, gaussian_sigma_max=0.0
    )
    result = Perturber(config)(x, generator=_generator())

    beta = result.beta.view(-1, 1, 1, 1)
    expected = (1.0 - beta) * x + beta * result.noise
    inside = (result.mask == 1).expand_as(x)
    assert inside.any()
    torch.testing.assert_close(result.x_perturbed[inside], expected[inside])


def test_perturb_probability_zero_leaves_batch_unchanged() -> None:
    x = _patches()
    config = PerturbationConfig(probability=0.0, gaussian_sigma_max=0.0)
    result = Perturber(config)(x, generator=_generator())

    assert torch.equal(result.mask, torch.zeros((BATCH, 1, HEIGHT, WIDTH)))
    assert torch.equal(result.noise, torch.zeros_like(x))
    assert torch.equal(result.x_perturbed, x)


def test_perturb_gaussian_noise_reaches_unperturbed_samples() -> None:
    x = torch.full((BATCH, 1, HEIGHT, WIDTH), 0.5)
    config = PerturbationConfig(probability=0.0, gaussian_sigma_max=0.1)
    result = Perturber(config)(x, generator=_generator())

    assert torch.equal(result.mask, torch.zeros((BATCH, 1, HEIGHT, WIDTH)))
    assert not torch.equal(result.x_perturbed, x)
    # The noise has zero mean. With sigma <= 0.1 over 8 * 1536 pixels, the standard error of
    # the mean is below 0.001.
    assert (result.x_perturbed - x).mean().abs() < 0.005


def test_perturb_unperturbed_samples_have_no_mask_or_noise() -> None:
    x = _patches()
    config = PerturbationConfig(probability=0.5, gaussian_sigma_max=0.0)
    result = Perturber(config)(x, generator=_generator(3))

    areas = result.mask.sum(dim=(1, 2, 3))
    unperturbed = areas == 0
    assert 0 < int(unperturbed.sum()) < BATCH
    assert torch.equal(result.noise[unperturbed], torch.zeros_like(x[unperturbed]))
    assert torch.equal(result.x_perturbed[unperturbed], x[unperturbed])


def test_perturb_probability_one_masks_reach_min_area() -> None:
    config = PerturbationConfig(probability=1.0, perlin_min_area=60)
    result = Perturber(config)(_patches(), generator=_generator())

    assert (result.mask.sum(dim=(1, 2, 3)) >= 60).all()


def test_perturb_masks_binary_and_beta_in_range() -> None:
    config = PerturbationConfig(probability=1.0, beta_range=(0.5, 1.0))
    result = Perturber(config)(_patches(), generator=_generator())

    assert result.mask.shape == (BATCH, 1, HEIGHT, WIDTH)
    assert result.mask.dtype == torch.float32
    assert ((result.mask == 0) | (result.mask == 1)).all()
    assert result.beta.shape == (BATCH,)
    assert (result.beta >= 0.5).all()
    assert (result.beta <= 1.0).all()
    assert result.x_perturbed.min() >= 0.0
    assert result.x_perturbed.max() <= 1.0


def test_perturb_same_seed_reproduces_batch() -> None:
    x = _patches()
    config = PerturbationConfig(source_weights={"perlin": 1.0, "uniform": 1.0, "batch": 1.0})
    perturber = Perturber(config)
    first = perturber(x, generator=_generator(11))
    second = perturber(x, generator=_generator(11))
    other = perturber(x, generator=_generator(12))

    assert torch.equal(first.x_perturbed, second.x_perturbed)
    assert torch.equal(first.mask, second.mask)
    assert torch.equal(first.beta, second.beta)
    assert torch.equal(first.noise, second.noise)
    assert not torch.equal(first.x_perturbed, other.x_perturbed)
    assert not torch.equal(first.mask, other.mask)


def test_perturb_ellipse_fallback_when_perlin_too_small(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Perlin masks over 0.5 cover far less than 80% of a patch, so every sample falls
    # back to an ellipse, which grows until it covers the minimum area.
    min_area = int(0.8 * HEIGHT * WIDTH)
    config = PerturbationConfig(probability=1.0, perlin_min_area=min_area, max_tries=2)
    with caplog.at_level(logging.DEBUG, logger="grdnet_kedro.perturbation.perturb"):
        result = Perturber(config)(_patches(), generator=_generator())

    assert (result.mask.sum(dim=(1, 2, 3)) >= min_area).all()
    assert ((result.mask == 0) | (result.mask == 1)).all()
    assert any("8 of 8 Perlin masks" in record.getMessage() for record in caplog.records)


def test_perturb_ellipse_fallback_full_patch() -> None:
    config = PerturbationConfig(probability=1.0, perlin_min_area=HEIGHT * WIDTH, max_tries=0)
    result = Perturber(config)(_patches(), generator=_generator())

    assert torch.equal(result.mask, torch.ones((BATCH, 1, HEIGHT, WIDTH)))


def test_perturb_rejects_min_area_above_patch() -> None:
    config = PerturbationConfig(perlin_min_area=HEIGHT * WIDTH + 1)
    with pytest.raises(ValueError, match="perlin_min_area=1537"):
        Perturber(config)(_patches(), generator=_generator())


def test_perturb_rejects_non_image_input() -> None:
    perturber = Perturber(PerturbationConfig())
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        perturber(torch.rand(3, HEIGHT, WIDTH), generator=_generator())


# Perturbation: noise sources


@pytest.mark.parametrize("channels", [1, 3])
def test_perlin_source_normalised_and_shared_by_channels(channels: int) -> None:
    x = _patches(channels)
    config = PerturbationConfig(probability=1.0, gaussian_sigma_max=0.0)
    result = Perturber(config)(x, generator=_generator())

    inside = result.noise[(result.mask == 1).expand_as(x)]
    assert inside.min() >= 0.0
    assert inside.max() <= 1.0
    assert torch.equal(result.noise, result.noise[:, :1].expand_as(x))


def test_batch_source_takes_another_sample() -> None:
    # Sample i is the constant i / 10, so the noise inside a mask identifies the sample it
    # came from.
    x = (torch.arange(BATCH, dtype=torch.float32) / 10.0).view(BATCH, 1, 1, 1)
    x = x.expand(BATCH, 3, HEIGHT, WIDTH).contiguous()
    config = PerturbationConfig(
        probability=1.0, source_weights={"batch": 1.0}, gaussian_sigma_max=0.0
    )
    result = Perturber(config)(x, generator=_generator())

    for index in range(BATCH):
        inside = result.noise[index][(result.mask[index] == 1).expand(3, HEIGHT, WIDTH)]
        source_value = float(inside[0])
        assert torch.equal(inside, torch.full_like(inside, source_value))
        assert source_value != pytest.approx(index / 10.0)


def test_uniform_source_varies_inside_mask() -> None:
    x = _patches()
    config = PerturbationConfig(
        probability=1.0, source_weights={"uniform": 1.0}, gaussian_sigma_max=0.0
    )
    result = Perturber(config)(x, generator=_generator())

    inside = result.noise[(result.mask == 1).expand_as(x)]
    assert inside.min() >= 0.0
    assert inside.max() <= 1.0
    assert inside.std() > 0.2


def test_mixed_sources_use_each_source() -> None:
    # Uniform noise almost never repeats a value inside a mask. A batch sample of constant
    # value does, so both kinds of sample appear in a mixed batch.
    x = torch.full((16, 1, HEIGHT, WIDTH), 0.25)
    config = PerturbationConfig(
        probability=1.0,
        source_weights={"uniform": 1.0, "batch": 1.0},
        gaussian_sigma_max=0.0,
    )
    result = Perturber(config)(x, generator=_generator(5))

    constant = [
        bool((result.noise[index][result.mask[index] == 1] == 0.25).all()) for index in range(16)
    ]
    assert 0 < sum(constant) < 16


# Textures


@pytest.fixture
def texture_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "textures"
    folder.mkdir()
    _write_png(folder / "dark.png", (51, 51, 51))
    _write_png(folder / "light.PNG", (204, 204, 204))
    _write_png(folder / ".hidden.png", (255, 255, 255))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_load_textures_grayscale(texture_dir: Path) -> None:
    textures = load_textures(texture_dir, channels=1, size=(16, 24))

    assert textures.shape == (2, 1, 16, 24)
    assert textures.dtype == torch.float32
    torch.testing.assert_close(textures[0], torch.full((1, 16, 24), 0.2))
    torch.testing.assert_close(textures[1], torch.full((1, 16, 24), 0.8))


def test_load_textures_rgb(tmp_path: Path) -> None:
    _write_png(tmp_path / "red.png", (255, 0, 0))

    textures = load_textures(tmp_path, channels=3, size=(8, 8))

    assert textures.shape == (1, 3, 8, 8)
    assert torch.equal(textures[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))


def test_load_textures_skips_unreadable_file(tmp_path: Path) -> None:
    _write_png(tmp_path / "good.png", (0, 0, 0))
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")

    textures = load_textures(tmp_path, channels=1, size=(8, 8))

    assert textures.shape == (1, 1, 8, 8)


def test_load_textures_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        load_textures(missing, channels=3, size=(8, 8))


def test_load_textures_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=str(tmp_path)):
        load_textures(tmp_path, channels=3, size=(8, 8))


def test_load_textures_rejects_channel_count(texture_dir: Path) -> None:
    with pytest.raises(ValueError, match="channels=2"):
        load_textures(texture_dir, channels=2, size=(8, 8))


@pytest.mark.parametrize("folder_name", ["missing", "empty"])
def test_perturber_checks_texture_folder(tmp_path: Path, folder_name: str) -> None:
    folder = tmp_path / folder_name
    if folder_name == "empty":
        folder.mkdir()
    config = PerturbationConfig(source_weights={"texture": 1.0}, texture_dir=str(folder))

    with pytest.raises((FileNotFoundError, ValueError), match=folder_name):
        Perturber(config)


@pytest.mark.parametrize("channels", [1, 3])
def test_texture_source_fills_mask(texture_dir: Path, channels: int) -> None:
    x = _patches(channels)
    config = PerturbationConfig(
        probability=1.0,
        source_weights={"texture": 1.0},
        texture_dir=str(texture_dir),
        gaussian_sigma_max=0.0,
        beta_range=(1.0, 1.0),
    )
    result = Perturber(config)(x, generator=_generator())

    # beta = 1 replaces the masked pixels by the texture, which is 0.2 or 0.8 everywhere.
    for index in range(BATCH):
        inside = result.x_perturbed[index][(result.mask[index] == 1).expand_as(x[index])]
        value = float(inside[0])
        assert value in (pytest.approx(0.2), pytest.approx(0.8))
        torch.testing.assert_close(inside, torch.full_like(inside, value))


# Augmentation


def test_augment_config_rejects_invalid_values() -> None:
    with pytest.raises(ValueError, match="rotation_degrees"):
        AugmentConfig(rotation_degrees=-5.0)
    with pytest.raises(ValueError, match="hflip_probability"):
        AugmentConfig(hflip_probability=1.5)
    with pytest.raises(ValueError, match="vflip_probability"):
        AugmentConfig(vflip_probability=-0.5)


def test_augment_flips_with_probability_one() -> None:
    x = _patches()

    horizontal, _ = augment(x, AugmentConfig(hflip_probability=1.0), generator=_generator())
    vertical, _ = augment(x, AugmentConfig(vflip_probability=1.0), generator=_generator())
    both, _ = augment(
        x, AugmentConfig(hflip_probability=1.0, vflip_probability=1.0), generator=_generator()
    )

    assert torch.equal(horizontal, torch.flip(x, dims=[-1]))
    assert torch.equal(vertical, torch.flip(x, dims=[-2]))
    assert torch.equal(both, torch.flip(x, dims=[-2, -1]))


def test_augment_flips_each_sample_independently() -> None:
    x = _patches()
    flipped, _ = augment(x, AugmentConfig(hflip_probability=0.5), generator=_generator(4))

    was_flipped = [torch.equal(flipped[i], torch.flip(x[i], dims=[-1])) for i in range(BATCH)]
    unchanged = [torch.equal(flipped[i], x[i]) for i in range(BATCH)]
    assert all(a != b for a, b in zip(was_flipped, unchanged, strict=True))
    assert 0 < sum(was_flipped) < BATCH


def test_augment_rotation_zero_is_identity() -> None:
    x = _patches()
    extra = (x[:, :1] > 0.5).to(torch.uint8)
    augmented, augmented_extra = augment(x, AugmentConfig(), generator=_generator(), extra=extra)

    assert torch.equal(augmented, x)
    assert augmented_extra is not None
    assert torch.equal(augmented_extra, extra)


def test_augment_rotation_reflects_without_black_corners() -> None:
    ones = torch.ones((BATCH, 3, HEIGHT, WIDTH))
    rotated, _ = augment(ones, AugmentConfig(rotation_degrees=45.0), generator=_generator())

    torch.testing.assert_close(rotated, ones)


def test_augment_rotation_moves_content() -> None:
    x = _patches()
    rotated, _ = augment(x, AugmentConfig(rotation_degrees=30.0), generator=_generator())

    assert rotated.shape == x.shape
    assert (rotated - x).abs().mean() > 0.05


def test_augment_extra_follows_flip() -> None:
    x = _patches()
    extra = (torch.rand((BATCH, 2, HEIGHT, WIDTH), generator=_generator(9)) > 0.5).float()
    config = AugmentConfig(hflip_probability=0.5, vflip_probability=0.5)
    augmented, augmented_extra = augment(x, config, generator=_generator(2), extra=extra)

    assert augmented_extra is not None
    for index in range(BATCH):
        for dims in ([], [-1], [-2], [-2, -1]):
            if torch.equal(augmented[index], torch.flip(x[index], dims=dims)):
                assert torch.equal(augmented_extra[index], torch.flip(extra[index], dims=dims))
                break
        else:
            pytest.fail(f"sample {index} is neither flipped nor unchanged")


def test_augment_extra_follows_rotation() -> None:
    # The extra is a bool copy of a binary image. Nearest sampling keeps it binary, and it
    # agrees with the bilinear image wherever the image stays clearly on one side of 0.5.
    x = torch.zeros((BATCH, 1, HEIGHT, WIDTH))
    x[:, :, 4:20, 6:30] = 1.0
    extra = x.to(torch.bool)
    config = AugmentConfig(rotation_degrees=40.0)
    augmented, augmented_extra = augment(x, config, generator=_generator(), extra=extra)

    assert augmented_extra is not None
    assert augmented_extra.dtype == torch.bool
    clear = (augmented - 0.5).abs() > 0.45
    assert torch.equal(augmented_extra[clear], augmented[clear] > 0.5)
    assert not torch.equal(augmented_extra, extra)


def test_augment_rejects_mismatched_extra() -> None:
    x = _patches()
    with pytest.raises(ValueError, match="extra"):
        augment(x, AugmentConfig(), generator=_generator(), extra=torch.zeros(BATCH, 1, 8, 8))


def test_rotate_quarter_turn_matches_rot90() -> None:
    square = torch.rand((2, 3, 16, 16), generator=_generator())
    rotated = rotate(square, torch.tensor([90.0, 90.0]))

    torch.testing.assert_close(rotated, torch.rot90(square, k=1, dims=(-2, -1)))


def test_rotate_quarter_turn_non_square() -> None:
    # A centred 8x8 square in a 16x32 image maps onto itself under a quarter turn only when
    # the grid corrects for the aspect ratio.
    image = torch.zeros((1, 1, 16, 32))
    image[:, :, 4:12, 12:20] = 1.0
    rotated = rotate(image, torch.tensor([90.0]), mode="nearest", padding_mode="zeros")

    assert torch.equal(rotated, image)
