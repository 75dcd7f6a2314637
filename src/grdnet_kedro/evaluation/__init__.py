"""Patches, anomaly scores, metrics and threshold calibration (no Kedro imports)."""

from grdnet_kedro.evaluation.calibration import Calibration, CalibrationError, calibrate_threshold
from grdnet_kedro.evaluation.metrics import (
    ThresholdSweep,
    aupro,
    pixel_metrics,
    ranking_metrics,
    threshold_metrics,
    threshold_sweep,
)
from grdnet_kedro.evaluation.patches import (
    extract_patches,
    patch_grid,
    patch_labels,
    resize_map,
    stitch_patches,
)
from grdnet_kedro.evaluation.scoring import (
    PatchScores,
    image_decisions,
    image_scores,
    mean_filter,
    score_reconstruction,
    score_segmentation,
)

__all__ = [
    "Calibration",
    "CalibrationError",
    "PatchScores",
    "ThresholdSweep",
    "aupro",
    "calibrate_threshold",
    "extract_patches",
    "image_decisions",
    "image_scores",
    "mean_filter",
    "patch_grid",
    "patch_labels",
    "pixel_metrics",
    "ranking_metrics",
    "resize_map",
    "score_reconstruction",
    "score_segmentation",
    "stitch_patches",
    "threshold_metrics",
    "threshold_sweep",
]
