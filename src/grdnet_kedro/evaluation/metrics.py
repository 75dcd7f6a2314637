"""Image-, patch- and pixel-level anomaly detection metrics.

Every metric is a Python ``float``, or ``None`` when it is undefined for the input (for
example AUROC with one class only). An undefined metric is never reported as 0 or 1, and
each call that returns ``None`` logs one warning with the reason.

Label convention: 1 (or ``True``) is anomalous, 0 is normal. Scores and maps are
"higher is more anomalous", and a sample is predicted anomalous when its score is
strictly greater than the threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

logger = logging.getLogger(__name__)

RANKING_KEYS = ("auroc", "ap", "f1_max", "f1_max_threshold")
THRESHOLD_KEYS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "balanced_accuracy",
    "tpr",
    "tnr",
    "tp",
    "tn",
    "fp",
    "fn",
)
PIXEL_KEYS = ("pixel_auroc", "pixel_ap", "aupro")

# 8-connectivity, so pixels that touch only at a corner belong to the same defect region.
_REGION_STRUCTURE = np.ones((3, 3), dtype=int)


def _as_labels(labels: ArrayLike, name: str = "labels") -> NDArray[np.bool_]:
    """Validate 0/1 or bool labels and return them as a 1-D bool array."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}.")
    if array.dtype == np.bool_:
        return array

    invalid = ~np.isin(array, (0, 1))
    if invalid.any():
        examples = np.unique(array[invalid])[:5].tolist()
        raise ValueError(
            f"{name} must contain only 0 (normal) and 1 (anomalous), found {examples}."
        )
    return array.astype(bool)


def _as_scores(scores: ArrayLike, name: str = "scores") -> NDArray[np.float64]:
    """Validate finite scores and return them as a 1-D float64 array."""
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}.")

    nan_count = int(np.isnan(array).sum())
    if nan_count:
        raise ValueError(
            f"{name} contains {nan_count} NaN value(s) out of {array.size}; a diverged model "
            "or a division by zero upstream usually causes this. Fix the scores before "
            "computing metrics."
        )
    inf_count = int(np.isinf(array).sum())
    if inf_count:
        raise ValueError(f"{name} contains {inf_count} infinite value(s) out of {array.size}.")
    return array


def _check_same_length(labels: NDArray[np.bool_], values: NDArray[np.generic], name: str) -> None:
    if labels.shape[0] != values.shape[0]:
        raise ValueError(
            f"labels has {labels.shape[0]} entries but {name} has {values.shape[0]}; "
            "pass one value per sample."
        )


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else float(numerator / denominator)


@dataclass(frozen=True)
class ThresholdSweep:
    """Confusion counts for every candidate threshold of a set of scores.

    A sample is predicted anomalous when ``score > threshold``. The candidates are, in
    ascending order, a value just below the minimum score (everything anomalous), the
    midpoint between each pair of consecutive distinct scores, and a value just above
    the maximum score (everything normal).

    Attributes:
        thresholds: Candidate thresholds, shape ``(T,)``, float64, ascending.
        tp: True positives at each threshold, shape ``(T,)``, int64.
        fp: False positives at each threshold, shape ``(T,)``, int64.
        tn: True negatives at each threshold, shape ``(T,)``, int64.
        fn: False negatives at each threshold, shape ``(T,)``, int64.
    """

    thresholds: NDArray[np.float64]
    tp: NDArray[np.int64]
    fp: NDArray[np.int64]
    tn: NDArray[np.int64]
    fn: NDArray[np.int64]

    def f1(self) -> NDArray[np.float64]:
        """Compute F1 at each threshold, 0 where no sample is positive or predicted positive."""
        denominator = 2 * self.tp + self.fp + self.fn
        return np.divide(
            2.0 * self.tp,
            denominator,
            out=np.zeros(self.tp.shape, dtype=np.float64),
            where=denominator > 0,
        )

    def balanced_accuracy(self) -> NDArray[np.float64]:
        """Compute (TPR + TNR) / 2 at each threshold, NaN unless both classes are present."""
        tpr = self.tp / (self.tp + self.fn)
        tnr = self.tn / (self.tn + self.fp)
        return (tpr + tnr) / 2.0


def _candidate_thresholds(scores: NDArray[np.float64]) -> NDArray[np.float64]:
    distinct = np.unique(scores)
    # The margin is relative so that it survives a round trip through float32.
    margin_low = 1e-6 * max(1.0, abs(float(distinct[0])))
    margin_high = 1e-6 * max(1.0, abs(float(distinct[-1])))
    midpoints = (distinct[:-1] + distinct[1:]) / 2.0
    return np.concatenate(([distinct[0] - margin_low], midpoints, [distinct[-1] + margin_high]))


def threshold_sweep(labels: ArrayLike, scores: ArrayLike) -> ThresholdSweep:
    """Count TP, FP, TN and FN for every threshold that changes a decision.

    Args:
        labels: Shape ``(N,)``, 0/1 or bool, 1 = anomalous. ``N`` must be at least 1.
        scores: Shape ``(N,)``, finite floats, higher = more anomalous.

    Returns:
        The sweep over all candidate thresholds; see :class:`ThresholdSweep`.

    Raises:
        ValueError: If the inputs are empty, differ in length, or contain NaN,
            infinite or non-binary values.
    """
    label_array = _as_labels(labels)
    score_array = _as_scores(scores)
    _check_same_length(label_array, score_array, "scores")
    if label_array.size == 0:
        raise ValueError("labels and scores are empty; a threshold sweep needs samples.")

    thresholds = _candidate_thresholds(score_array)
    positive_scores = np.sort(score_array[label_array])
    negative_scores = np.sort(score_array[~label_array])

    # searchsorted(side="right") counts the scores <= threshold, i.e. those predicted normal.
    fn = np.searchsorted(positive_scores, thresholds, side="right").astype(np.int64)
    tn = np.searchsorted(negative_scores, thresholds, side="right").astype(np.int64)
    tp = positive_scores.size - fn
    fp = negative_scores.size - tn
    return ThresholdSweep(thresholds=thresholds, tp=tp, fp=fp, tn=tn, fn=fn)


def ranking_metrics(
    labels: ArrayLike, scores: ArrayLike, *, level: str = "image"
) -> dict[str, float | None]:
    """Compute threshold-free metrics: AUROC, average precision and F1-max.

    Args:
        labels: Shape ``(N,)``, 0/1 or bool, 1 = anomalous.
        scores: Shape ``(N,)``, finite floats, higher = more anomalous.
        level: Name used in the warning, e.g. ``"image"`` or ``"patch"``.

    Returns:
        ``auroc`` and ``ap`` from scikit-learn (``roc_auc_score``,
        ``average_precision_score``). ``f1_max`` is the best F1 over all thresholds and
        ``f1_max_threshold`` the smallest threshold that reaches it, for the decision
        ``score > threshold``. All four are ``None``, with one warning, when the labels
        are empty or contain one class only.

    Raises:
        ValueError: If the inputs differ in length or contain NaN, infinite or
            non-binary values.
    """
    label_array = _as_labels(labels)
    score_array = _as_scores(scores)
    _check_same_length(label_array, score_array, "scores")

    n_anomalous = int(label_array.sum())
    n_normal = int(label_array.size - n_anomalous)
    if n_anomalous == 0 or n_normal == 0:
        if label_array.size == 0:
            reason = "there are no samples"
        else:
            present = "normal" if n_anomalous == 0 else "anomalous"
            reason = f"all {label_array.size} samples are {present}"
        logger.warning(
            "%s-level AUROC, AP and F1-max are undefined because %s; they are reported as missing.",
            level,
            reason,
        )
        return dict.fromkeys(RANKING_KEYS)

    sweep = threshold_sweep(label_array, score_array)
    f1_values = sweep.f1()
    best = int(np.argmax(f1_values))
    return {
        "auroc": float(roc_auc_score(label_array, score_array)),
        "ap": float(average_precision_score(label_array, score_array)),
        "f1_max": float(f1_values[best]),
        "f1_max_threshold": float(sweep.thresholds[best]),
    }


def threshold_metrics(
    labels: ArrayLike, predictions: ArrayLike, *, level: str = "image"
) -> dict[str, float | None]:
    """Compute metrics of binary decisions, e.g. at the calibrated threshold.

    Args:
        labels: Shape ``(N,)``, 0/1 or bool, 1 = anomalous.
        predictions: Shape ``(N,)``, 0/1 or bool, 1 = predicted anomalous.
        level: Name used in the warning, e.g. ``"image"`` or ``"patch"``.

    Returns:
        ``accuracy``, ``precision``, ``recall`` (= ``tpr``), ``f1``,
        ``balanced_accuracy``, ``tpr``, ``tnr`` and the counts ``tp``, ``tn``, ``fp``,
        ``fn`` (as floats). These are ``None``, and one warning lists them, when
        undefined:

        * ``precision``: nothing is predicted anomalous.
        * ``tpr`` and ``recall``: there are no anomalous samples.
        * ``tnr``: there are no normal samples.
        * ``balanced_accuracy``: ``tpr`` or ``tnr`` is ``None``.
        * ``f1``: there are neither anomalous samples nor anomalous predictions.
        * ``accuracy``: there are no samples.

    Raises:
        ValueError: If the inputs differ in length or contain non-binary values.
    """
    label_array = _as_labels(labels)
    predicted = _as_labels(predictions, name="predictions")
    _check_same_length(label_array, predicted, "predictions")

    tp = int(np.sum(label_array & predicted))
    tn = int(np.sum(~label_array & ~predicted))
    fp = int(np.sum(~label_array & predicted))
    fn = int(np.sum(label_array & ~predicted))

    tpr = _ratio(tp, tp + fn)
    tnr = _ratio(tn, tn + fp)
    balanced_accuracy = None if tpr is None or tnr is None else (tpr + tnr) / 2.0
    result: dict[str, float | None] = {
        "accuracy": _ratio(tp + tn, label_array.size),
        "precision": _ratio(tp, tp + fp),
        "recall": tpr,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "balanced_accuracy": balanced_accuracy,
        "tpr": tpr,
        "tnr": tnr,
        "tp": float(tp),
        "tn": float(tn),
        "fp": float(fp),
        "fn": float(fn),
    }

    missing = [key for key, value in result.items() if value is None]
    if missing:
        logger.warning(
            "%s-level %s undefined for %d anomalous and %d normal samples with %d predicted "
            "anomalous; reported as missing.",
            level,
            ", ".join(missing),
            tp + fn,
            tn + fp,
            tp + fp,
        )
    return result


def _validate_pixel_inputs(
    masks: Sequence[ArrayLike], maps: Sequence[ArrayLike]
) -> tuple[list[NDArray[np.bool_]], list[NDArray[np.float32]]]:
    if len(masks) != len(maps):
        raise ValueError(
            f"Got {len(masks)} masks but {len(maps)} anomaly maps; pass one map per mask."
        )

    mask_arrays: list[NDArray[np.bool_]] = []
    map_arrays: list[NDArray[np.float32]] = []
    for index, (mask, anomaly_map) in enumerate(zip(masks, maps, strict=True)):
        mask_array = np.asarray(mask) != 0
        map_array = np.asarray(anomaly_map, dtype=np.float32)
        if mask_array.ndim != 2 or mask_array.shape != map_array.shape:
            raise ValueError(
                f"Mask {index} has shape {mask_array.shape} and its anomaly map "
                f"{map_array.shape}; both must be the same (H, W). Squeeze channel axes "
                "and resize the map to the mask size first."
            )
        non_finite = int((~np.isfinite(map_array)).sum())
        if non_finite:
            raise ValueError(f"Anomaly map {index} contains {non_finite} NaN or infinite value(s).")
        mask_arrays.append(mask_array)
        map_arrays.append(map_array)
    return mask_arrays, map_arrays


def _pixel_classes_present(mask_arrays: list[NDArray[np.bool_]], metric: str) -> bool:
    """Return True when both classes occur; otherwise log one warning naming the problem."""
    if not mask_arrays:
        logger.warning("%s undefined because no masks were given; reported as missing.", metric)
        return False

    n_pixels = sum(mask.size for mask in mask_arrays)
    n_anomalous = sum(int(mask.sum()) for mask in mask_arrays)
    if n_anomalous == 0 or n_anomalous == n_pixels:
        present = "normal" if n_anomalous == 0 else "anomalous"
        logger.warning(
            "%s undefined because all %d mask pixels of %d images are %s; reported as missing.",
            metric,
            n_pixels,
            len(mask_arrays),
            present,
        )
        return False
    return True


def _pro_curve(
    mask_arrays: list[NDArray[np.bool_]],
    map_arrays: list[NDArray[np.float32]],
    num_thresholds: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Return (FPR, PRO) at thresholds from the maximum map value down to the minimum."""
    low = min(float(anomaly_map.min()) for anomaly_map in map_arrays)
    high = max(float(anomaly_map.max()) for anomaly_map in map_arrays)
    thresholds = np.linspace(high, low, num_thresholds)

    # A pixel is predicted anomalous when its value is >= the threshold, so the lowest
    # threshold flags every pixel and the curve ends at (1, 1).
    normal_values = np.sort(
        np.concatenate(
            [anomaly_map[~mask] for mask, anomaly_map in zip(mask_arrays, map_arrays, strict=True)]
        )
    )
    fpr = 1.0 - np.searchsorted(normal_values, thresholds, side="left") / normal_values.size

    overlaps = []
    for mask, anomaly_map in zip(mask_arrays, map_arrays, strict=True):
        regions, n_regions = ndimage.label(mask, structure=_REGION_STRUCTURE)
        for region_id in range(1, n_regions + 1):
            region_values = np.sort(anomaly_map[regions == region_id])
            below = np.searchsorted(region_values, thresholds, side="left")
            overlaps.append(1.0 - below / region_values.size)
    pro = np.mean(overlaps, axis=0)

    return np.concatenate(([0.0], fpr)), np.concatenate(([0.0], pro))


def _area_up_to(fpr: NDArray[np.float64], pro: NDArray[np.float64], limit: float) -> float:
    """Integrate PRO over FPR from 0 to ``limit`` with the trapezoidal rule."""
    inside = fpr <= limit
    x = fpr[inside]
    y = pro[inside]

    if not inside.all():
        # Interpolate linearly between the last point inside the limit and the first after.
        after = int(np.argmax(~inside))
        x0, x1 = fpr[after - 1], fpr[after]
        y0, y1 = pro[after - 1], pro[after]
        y_limit = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        x = np.append(x, limit)
        y = np.append(y, y_limit)
    return float(np.trapezoid(y, x))


def aupro(
    masks: Sequence[ArrayLike],
    maps: Sequence[ArrayLike],
    *,
    fpr_limit: float = 0.3,
    num_thresholds: int = 200,
) -> float | None:
    """Compute the normalised area under the per-region overlap (PRO) curve.

    Each connected defect region (8-connectivity, per image) counts equally, whatever
    its size. At a threshold, a region's overlap is the share of its pixels whose map
    value is >= the threshold, PRO is the mean overlap over all regions, and the FPR is
    the share of normal pixels (over all images) at or above the threshold. The PRO
    curve is integrated from FPR 0 to ``fpr_limit`` and divided by ``fpr_limit``, so a
    perfect map scores 1.0.

    Args:
        masks: One ``(H, W)`` mask per image, non-zero = anomalous. Sizes may differ
            between images.
        maps: One ``(H, W)`` float anomaly map per image, the size of its mask.
        fpr_limit: Upper FPR bound of the integral, in ``(0, 1]``.
        num_thresholds: Number of thresholds evenly spaced between the minimum and
            maximum map value. The curve between them is interpolated linearly, so a
            small count underestimates steep curves.

    Returns:
        AUPRO in ``[0, 1]``, or ``None`` with a warning when there are no images or the
        masks contain one class only.

    Raises:
        ValueError: If a mask and its map differ in shape, a map contains NaN, or the
            arguments are out of range.
    """
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}.")
    if num_thresholds < 2:
        raise ValueError(f"num_thresholds must be at least 2, got {num_thresholds}.")

    mask_arrays, map_arrays = _validate_pixel_inputs(masks, maps)
    if not _pixel_classes_present(mask_arrays, "AUPRO"):
        return None

    fpr, pro = _pro_curve(mask_arrays, map_arrays, num_thresholds)
    return _area_up_to(fpr, pro, fpr_limit) / fpr_limit


def pixel_metrics(
    masks: Sequence[ArrayLike],
    maps: Sequence[ArrayLike],
    *,
    fpr_limit: float = 0.3,
    num_thresholds: int = 200,
) -> dict[str, float | None]:
    """Compute pixel AUROC, pixel AP and AUPRO over a set of images.

    Args:
        masks: One ``(H, W)`` ground-truth mask per image, non-zero = anomalous.
        maps: One ``(H, W)`` float anomaly map per image, resized to its mask's size.
        fpr_limit: Upper FPR bound of AUPRO, in ``(0, 1]``.
        num_thresholds: Number of thresholds of the AUPRO curve.

    Returns:
        ``pixel_auroc`` and ``pixel_ap`` from scikit-learn over all pixels of all images,
        and ``aupro`` (see :func:`aupro`). All are ``None``, with one warning, when there
        are no images or all pixels belong to one class.

    Raises:
        ValueError: If a mask and its map differ in shape or a map contains NaN.
    """
    mask_arrays, map_arrays = _validate_pixel_inputs(masks, maps)
    if not _pixel_classes_present(mask_arrays, "Pixel AUROC, pixel AP and AUPRO"):
        return dict.fromkeys(PIXEL_KEYS)

    # NOTE: all pixels are held in memory at once (5 bytes each here, more inside
    # scikit-learn), about 0.5 GB for 100 images of 1024 x 1024.
    pixel_labels = np.concatenate([mask.ravel() for mask in mask_arrays])
    pixel_scores = np.concatenate([anomaly_map.ravel() for anomaly_map in map_arrays])
    return {
        "pixel_auroc": float(roc_auc_score(pixel_labels, pixel_scores)),
        "pixel_ap": float(average_precision_score(pixel_labels, pixel_scores)),
        "aupro": aupro(mask_arrays, map_arrays, fpr_limit=fpr_limit, num_thresholds=num_thresholds),
    }
