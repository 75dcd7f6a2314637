"""Synthetic perturbation P_q and train-time geometric augmentation of patches."""

from grdnet_kedro.perturbation.augment import AugmentConfig, augment, rotate
from grdnet_kedro.perturbation.perlin import perlin_noise
from grdnet_kedro.perturbation.perturb import (
    NOISE_SOURCES,
    PerturbationConfig,
    PerturbedBatch,
    Perturber,
    load_textures,
)

__all__ = [
    "NOISE_SOURCES",
    "AugmentConfig",
    "PerturbationConfig",
    "PerturbedBatch",
    "Perturber",
    "augment",
    "load_textures",
    "perlin_noise",
    "rotate",
]
