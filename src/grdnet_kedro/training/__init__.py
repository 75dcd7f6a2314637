"""Training of the GRD-Net networks: one step, checkpoints, device and seeding."""

from grdnet_kedro.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore,
    save_checkpoint,
)
from grdnet_kedro.training.device import resolve_device, seed_everything
from grdnet_kedro.training.step import (
    LOSS_KEYS,
    LossWeights,
    MixedPrecision,
    Networks,
    NonFiniteLossError,
    Optimizers,
    build_optimizers,
    train_step,
)

__all__ = [
    "LOSS_KEYS",
    "CheckpointError",
    "LossWeights",
    "MixedPrecision",
    "Networks",
    "NonFiniteLossError",
    "Optimizers",
    "build_optimizers",
    "load_checkpoint",
    "resolve_device",
    "restore",
    "save_checkpoint",
    "seed_everything",
    "train_step",
]
