"""Loss functions of GRD-Net and DeepIndustrial-SN, and the SSIM they rely on."""

from grdnet_kedro.losses.ssim import ssim, ssim_map
from grdnet_kedro.losses.terms import (
    adversarial_loss,
    contextual_loss,
    discriminator_loss,
    encoder_loss,
    focal_loss,
    noise_loss,
)

__all__ = [
    "adversarial_loss",
    "contextual_loss",
    "discriminator_loss",
    "encoder_loss",
    "focal_loss",
    "noise_loss",
    "ssim",
    "ssim_map",
]
