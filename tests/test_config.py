"""Parameter schema: defaults, cross-field rules and messages that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from grdnet_kedro.config import (
    DataParams,
    ModelParams,
    ParameterError,
    parse_group,
    validate_parameters,
)

REPOSITORY = Path(__file__).resolve().parents[1]


def load_env(env: str) -> dict:
    """Merge conf/base and an env the way the project's soft merge does."""
    merged = OmegaConf.create({})
    for folder in ("base", env):
        for path in sorted((REPOSITORY / "conf" / folder).glob("parameters*.yml")):
            merged = OmegaConf.merge(merged, OmegaConf.create(yaml.safe_load(path.read_text())))
    return OmegaConf.to_container(merged)  # type: ignore[return-value]


def test_defaults_are_the_full_reference_profile() -> None:
    parameters = validate_parameters({})
    assert parameters.model.patch_hw == (128, 128)
    assert parameters.model.stride_hw == (64, 64)
    assert parameters.model.stages == [2, 2, 2, 2]
    assert parameters.loss.contextual_weight == 50.0
    assert parameters.score_method == "segmentation"


@pytest.mark.parametrize("env", ["base", "grdnet_2023", "deepindustrial_sn_2026"])
def test_shipped_envs_are_valid(env: str) -> None:
    parameters = validate_parameters(load_env(env))
    assert parameters.profile in {"cpu_quick", "grdnet_2023", "deepindustrial_sn_2026"}


def test_grdnet_2023_reference_values() -> None:
    parameters = validate_parameters(load_env("grdnet_2023"))
    assert parameters.data.image_hw == (256, 256)
    assert parameters.model.patch_hw == (128, 128)
    assert parameters.model.base_features == 64
    assert parameters.model.bottleneck == "conv"
    assert parameters.model.latent_dim == 256
    assert parameters.optimizer.learning_rate == pytest.approx(1e-4)
    assert parameters.perturbation.source_weights == {
        "perlin": 1.0,
        "uniform": 0.0,
        "batch": 0.0,
        "texture": 0.0,
    }
    assert parameters.score_method == "segmentation"


def test_sn_2026_reference_values() -> None:
    parameters = validate_parameters(load_env("deepindustrial_sn_2026"))
    assert parameters.model.stages == [3, 3, 3, 3]
    assert parameters.model.base_features == 128
    assert parameters.model.bottleneck == "dense"
    assert parameters.model.latent_dim == 128
    assert parameters.model.use_segmentator is False
    assert parameters.loss.contextual_base == "huber"
    assert parameters.loss.noise_weight == 3.0
    assert parameters.loss.contextual_base_weight == 2.0
    assert parameters.optimizer.learning_rate == pytest.approx(1.5e-4)
    assert parameters.score_method == "ssim"


def test_unknown_key_is_named() -> None:
    with pytest.raises(ParameterError, match=r"model\.pach_size: unknown key"):
        validate_parameters({"model": {"pach_size": 64}})


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ParameterError, match=r"training\.epochs.*'many'"):
        validate_parameters({"training": {"epochs": "many"}})


def test_out_of_range_probability() -> None:
    with pytest.raises(ParameterError, match=r"perturbation\.probability"):
        validate_parameters({"perturbation": {"probability": 1.5}})


def test_patch_not_divisible_by_stages() -> None:
    with pytest.raises(ParameterError, match="multiple of 16"):
        validate_parameters({"model": {"patch_size": 100, "patch_stride": 50}})


def test_patch_not_divisible_by_eight_for_unet() -> None:
    with pytest.raises(ParameterError, match=r"multiple of 8 .*U-Net"):
        validate_parameters(
            {
                "model": {"patch_size": 20, "patch_stride": 20, "stages": [1, 1]},
                "data": {"image_size": 40},
            }
        )


def test_patch_larger_than_image() -> None:
    with pytest.raises(ParameterError, match=r"larger than data\.image_size"):
        validate_parameters({"data": {"image_size": 64}})


def test_stride_larger_than_patch() -> None:
    with pytest.raises(ParameterError, match="patch_stride"):
        validate_parameters({"model": {"patch_size": 64, "patch_stride": 96}})


def test_ssim_score_with_segmentator_rejected() -> None:
    with pytest.raises(ParameterError, match="use_segmentator"):
        validate_parameters({"inference": {"score": "ssim"}})


def test_segmentation_score_without_segmentator_rejected() -> None:
    with pytest.raises(ParameterError, match="use_segmentator: true"):
        validate_parameters(
            {"model": {"use_segmentator": False}, "inference": {"score": "segmentation"}}
        )


def test_mvtec_source_needs_root() -> None:
    with pytest.raises(ParameterError, match=r"data\.root is required"):
        parse_group(DataParams, {"source": "mvtec"}, "data")


def test_texture_weight_needs_folder() -> None:
    with pytest.raises(ParameterError, match="texture_dir"):
        validate_parameters({"perturbation": {"source_weights": {"texture": 1.0}}})


def test_rectangular_sizes_accepted() -> None:
    model = parse_group(ModelParams, {"patch_size": [64, 128], "patch_stride": [32, 64]}, "model")
    assert model.patch_hw == (64, 128)
    assert model.stride_hw == (32, 64)


def test_even_ssim_window_rejected() -> None:
    with pytest.raises(ParameterError, match="ssim_window must be odd"):
        validate_parameters({"loss": {"ssim_window": 10}})


def test_signature_lists_architecture() -> None:
    signature = validate_parameters({}).model.signature(channels=3)
    assert signature["patch_size"] == [128, 128]
    assert signature["use_segmentator"] is True
    assert signature["channels"] == 3
