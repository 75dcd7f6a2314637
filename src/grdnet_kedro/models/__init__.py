"""GRD-Net networks: generator, discriminator and discriminative U-Net (no Kedro imports)."""

from grdnet_kedro.models.blocks import Position, ResidualEncoder, count_parameters
from grdnet_kedro.models.discriminator import Discriminator
from grdnet_kedro.models.generator import Generator
from grdnet_kedro.models.segmentator import SegmentationUNet

__all__ = [
    "Discriminator",
    "Generator",
    "Position",
    "ResidualEncoder",
    "SegmentationUNet",
    "count_parameters",
]
