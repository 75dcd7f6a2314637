"""Turn validated parameters into the library objects: networks, perturber, settings."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

from grdnet_kedro.config import (
    AugmentationParams,
    LossParams,
    ModelParams,
    Parameters,
    PerturbationParams,
)
from grdnet_kedro.inference import ScoringSettings
from grdnet_kedro.models import Discriminator, Generator, SegmentationUNet, count_parameters
from grdnet_kedro.perturbation import AugmentConfig, PerturbationConfig
from grdnet_kedro.training.checkpoint import CheckpointError, metadata_differences, restore
from grdnet_kedro.training.device import place_networks
from grdnet_kedro.training.step import LossWeights, Networks

logger = logging.getLogger(__name__)


def build_networks(model: ModelParams, channels: int) -> Networks:
    """Create the generator, the discriminator and (full profile) the U-Net, on CPU."""
    generator = Generator(
        in_channels=channels,
        patch_size=model.patch_hw,
        base_features=model.base_features,
        stages=model.stages,
        downsample_position=model.encoder_downsample_position,
        upsample_position=model.decoder_upsample_position,
        bottleneck=model.bottleneck,
        latent_dim=model.latent_dim,
    )
    discriminator = Discriminator(
        in_channels=channels,
        patch_size=model.patch_hw,
        base_features=model.base_features,
        stages=model.stages,
        downsample_position=model.encoder_downsample_position,
    )
    segmentator = (
        SegmentationUNet(in_channels=2 * channels, base_features=model.segmentator_base_features)
        if model.use_segmentator
        else None
    )
    logger.info(
        "Built networks: generator %.2f M, discriminator %.2f M, U-Net %s parameters",
        count_parameters(generator) / 1e6,
        count_parameters(discriminator) / 1e6,
        f"{count_parameters(segmentator) / 1e6:.2f} M" if segmentator is not None else "none",
    )
    return Networks(generator=generator, discriminator=discriminator, segmentator=segmentator)


def perturbation_config_from(perturbation: PerturbationParams) -> PerturbationConfig:
    """Map the ``perturbation`` parameters onto the perturbation settings."""
    return PerturbationConfig(
        probability=perturbation.probability,
        perlin_min_area=perturbation.perlin_min_area,
        max_tries=perturbation.max_tries,
        max_scale_exponent=perturbation.max_scale_exponent,
        rotate_mask=perturbation.rotate_mask,
        source_weights={str(key): value for key, value in perturbation.source_weights.items()},
        texture_dir=perturbation.texture_dir,
        gaussian_sigma_max=perturbation.gaussian_sigma_max,
    )


def augmentation_from(augmentation: AugmentationParams) -> AugmentConfig:
    """Create the train-only geometric augmentation settings."""
    return AugmentConfig(
        rotation_degrees=augmentation.rotation_degrees,
        hflip_probability=augmentation.hflip_probability,
        vflip_probability=augmentation.vflip_probability,
    )


def loss_weights_from(loss: LossParams) -> LossWeights:
    """Map the ``loss`` parameters onto the training step's weights."""
    return LossWeights(
        adversarial=loss.adversarial_weight,
        contextual=loss.contextual_weight,
        encoder=loss.encoder_weight,
        noise=loss.noise_weight,
        contextual_base_weight=loss.contextual_base_weight,
        contextual_ssim_weight=loss.contextual_ssim_weight,
        contextual_base=loss.contextual_base,
        huber_delta=loss.huber_delta,
        focal_alpha=loss.focal_alpha,
        focal_gamma=loss.focal_gamma,
        ssim_window=loss.ssim_window,
    )


def scoring_settings_from(parameters: Parameters) -> ScoringSettings:
    """Collect how patches are cut and scored at inference."""
    return ScoringSettings(
        patch_size=parameters.model.patch_hw,
        stride=parameters.model.stride_hw,
        method=parameters.score_method,
        smoothing_kernel=parameters.inference.smoothing_kernel,
        ssim_window=parameters.loss.ssim_window,
        image_score=parameters.inference.image_score,
        batch_size=parameters.inference.batch_size,
        channels_last=parameters.runtime.channels_last,
    )


def checkpoint_metadata(parameters: Parameters) -> dict[str, Any]:
    """Architecture signature stored with checkpoints and checked when loading them."""
    return parameters.model.signature(parameters.data.channels)


def load_trained_networks(
    checkpoint: Mapping[str, Any], parameters: Parameters, device: torch.device
) -> Networks:
    """Build the networks of ``parameters`` and load a trained checkpoint into them."""
    differences = metadata_differences(
        checkpoint.get("metadata", {}), checkpoint_metadata(parameters), expected_label="parameters"
    )
    if differences:
        raise CheckpointError(
            "The trained model does not match the current parameters ("
            + "; ".join(differences)
            + "). Rerun the train pipeline with these parameters, or use the env it was "
            "trained with."
        )
    networks = build_networks(parameters.model, parameters.data.channels)
    restore(networks, None, checkpoint)
    modules = (networks.generator, networks.discriminator, networks.segmentator)
    place_networks(modules, device, channels_last=parameters.runtime.channels_last)
    for module in modules:
        if module is not None:
            module.eval()
    return networks
