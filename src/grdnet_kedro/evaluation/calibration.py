"""Decision threshold calibration on labelled scores.

The threshold is chosen on a validation split that is not the test split (held-out good
training images and their synthetic perturbations, or a labelled validation folder). A
sample is predicted anomalous when its score is strictly greater than the threshold.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from grdnet_kedro.evaluation.metrics import threshold_sweep

logger = logging.getLogger(__name__)

Criterion = Literal["balanced_accuracy", "f1"]
CRITERIA: tuple[str, ...] = ("balanced_accuracy", "f1")


class CalibrationError(ValueError):
    """Raised when no threshold can be calibrated from the given labels and scores."""


@dataclass(frozen=True)
class Calibration:
    """A calibrated decision threshold and how it was chosen.

    Attributes:
        threshold: Scores strictly greater than this are anomalous.
        criterion: Criterion that was maximised, ``"balanced_accuracy"`` or ``"f1"``.
        value: Value of the criterion at ``threshold`` on the calibration samples.
        n_normal: Number of normal calibration samples.
        n_anomalous: Number of anomalous calibration samples.
        source: Split the samples came from, e.g. ``"validation"`` or ``"test"``.
    """

    threshold: float
    criterion: str
    value: float
    n_normal: int
    n_anomalous: int
    source: str

    def to_dict(self) -> dict[str, Any]:
        """Convert to a JSON- and YAML-serialisable dict of plain Python values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Rebuild a calibration from the output of :meth:`to_dict`.

        Raises:
            CalibrationError: If a field is missing, naming the fields that are.
        """
        missing = [name for name in cls.__dataclass_fields__ if name not in data]
        if missing:
            raise CalibrationError(
                f"Saved calibration is missing field(s) {missing}; recalibrate to rewrite it."
            )
        return cls(
            threshold=float(data["threshold"]),
            criterion=str(data["criterion"]),
            value=float(data["value"]),
            n_normal=int(data["n_normal"]),
            n_anomalous=int(data["n_anomalous"]),
            source=str(data["source"]),
        )


def calibrate_threshold(
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    criterion: Criterion = "balanced_accuracy",
    source: str = "validation",
) -> Calibration:
    """Choose the threshold that maximises a criterion on labelled scores.

    The candidates are a value just below the minimum score, the midpoint between each
    pair of consecutive distinct scores, and a value just above the maximum score, so
    every distinct split of the sorted scores is tried once. When several candidates
    reach the best value, the smallest of them is kept: it flags more samples, and in
    inspection a missed defect usually costs more than a false alarm.

    Args:
        labels: Shape ``(N,)``, 0/1 or bool, 1 = anomalous.
        scores: Shape ``(N,)``, finite floats, higher = more anomalous.
        criterion: ``"balanced_accuracy"`` ((TPR + TNR) / 2, as in the reference GRD-Net
            code) or ``"f1"`` (F1 of the anomalous class).
        source: Split the samples came from. ``"test"`` logs a warning, because
            threshold metrics on the same split are then optimistic.

    Returns:
        The chosen threshold with the criterion value and the class counts.

    Raises:
        CalibrationError: If the criterion is unknown, the inputs are invalid (NaN,
            infinite, non-binary, different lengths), or only one class is present.
            The caller should then keep its previous or default threshold.
    """
    if criterion not in CRITERIA:
        raise CalibrationError(
            f"Unknown calibration criterion {criterion!r}; use one of {list(CRITERIA)}."
        )

    try:
        sweep = threshold_sweep(labels, scores)
    except ValueError as error:
        raise CalibrationError(f"Invalid {source} calibration input: {error}") from error

    n_anomalous = int(sweep.tp[0] + sweep.fn[0])
    n_normal = int(sweep.tn[0] + sweep.fp[0])
    if n_anomalous == 0 or n_normal == 0:
        raise CalibrationError(
            f"Cannot calibrate a threshold from {n_normal} normal and {n_anomalous} anomalous "
            f"{source} samples because both classes are needed. No threshold is returned, so "
            "keep the previous or default threshold, or add samples of the missing class."
        )

    values = sweep.balanced_accuracy() if criterion == "balanced_accuracy" else sweep.f1()
    # argmax returns the first maximum, and the thresholds are ascending.
    best = int(np.argmax(values))
    calibration = Calibration(
        threshold=float(sweep.thresholds[best]),
        criterion=criterion,
        value=float(values[best]),
        n_normal=n_normal,
        n_anomalous=n_anomalous,
        source=source,
    )

    logger.info(
        "Calibrated threshold %.6g on %d normal and %d anomalous %s samples (%s = %.4f).",
        calibration.threshold,
        n_normal,
        n_anomalous,
        source,
        criterion,
        calibration.value,
    )
    if source == "test":
        logger.warning(
            "The threshold was calibrated on the test split, so threshold metrics on that "
            "split (accuracy, F1, balanced accuracy, ...) are optimistic."
        )
    return calibration
