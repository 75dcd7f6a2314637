import logging

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve

from grdnet_kedro.evaluation.metrics import (
    PIXEL_KEYS,
    RANKING_KEYS,
    aupro,
    pixel_metrics,
    ranking_metrics,
    threshold_metrics,
    threshold_sweep,
)

LABELS = np.array([0, 0, 1, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8])


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]


def test_ranking_auroc_known_case() -> None:
    # Of the 4 (anomalous, normal) pairs only (0.35, 0.4) is ranked wrongly: 3 / 4.
    assert ranking_metrics(LABELS, SCORES)["auroc"] == pytest.approx(0.75)


def test_ranking_ap_known_case() -> None:
    # Descending: 0.8 (anomalous, P = 1, R = 0.5), 0.4 (normal), 0.35 (anomalous,
    # P = 2/3, R = 1). AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    assert ranking_metrics(LABELS, SCORES)["ap"] == pytest.approx(5.0 / 6.0)


def test_ranking_f1_max_known_case() -> None:
    # Flagging 0.35, 0.4 and 0.8 gives P = 2/3, R = 1, F1 = 0.8, the best split. The
    # threshold is the midpoint between 0.1 and 0.35.
    result = ranking_metrics(LABELS, SCORES)

    assert result["f1_max"] == pytest.approx(0.8)
    assert result["f1_max_threshold"] == pytest.approx(0.225)


def test_ranking_f1_max_matches_sklearn() -> None:
    generator = np.random.default_rng(0)
    labels = generator.integers(0, 2, size=50)
    scores = np.round(generator.random(50), 2)  # rounding creates ties
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = np.divide(
        2 * precision * recall,
        precision + recall,
        out=np.zeros_like(precision),
        where=(precision + recall) > 0,
    )

    assert ranking_metrics(labels, scores)["f1_max"] == pytest.approx(f1.max())


def test_ranking_one_class_is_missing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = ranking_metrics([0, 0, 0], [0.1, 0.2, 0.3], level="patch")

    assert result == dict.fromkeys(RANKING_KEYS)
    messages = _warnings(caplog)
    assert len(messages) == 1
    assert "patch-level" in messages[0]
    assert "all 3 samples are normal" in messages[0]


def test_ranking_only_anomalous_names_class(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = ranking_metrics([True, True], [0.1, 0.2])

    assert result["auroc"] is None
    assert "all 2 samples are anomalous" in _warnings(caplog)[0]


def test_ranking_empty_is_missing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = ranking_metrics([], [])

    assert result == dict.fromkeys(RANKING_KEYS)
    assert "no samples" in _warnings(caplog)[0]


def test_ranking_nan_raises_with_count() -> None:
    with pytest.raises(ValueError, match="2 NaN value"):
        ranking_metrics([0, 1, 1], [0.1, float("nan"), float("nan")])


def test_ranking_non_binary_labels_raise() -> None:
    with pytest.raises(ValueError, match=r"only 0 \(normal\) and 1"):
        ranking_metrics([0, 2], [0.1, 0.2])


def test_ranking_length_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="labels has 2 entries but scores has 3"):
        ranking_metrics([0, 1], [0.1, 0.2, 0.3])


def test_threshold_sweep_counts() -> None:
    sweep = threshold_sweep(LABELS, SCORES)

    # Candidates: below 0.1, midpoints 0.225, 0.375, 0.6, above 0.8.
    assert sweep.thresholds[1:4] == pytest.approx([0.225, 0.375, 0.6])
    assert sweep.thresholds[0] < 0.1
    assert sweep.thresholds[-1] > 0.8
    assert sweep.tp.tolist() == [2, 2, 1, 1, 0]
    assert sweep.fp.tolist() == [2, 1, 1, 0, 0]
    assert sweep.tn.tolist() == [0, 1, 1, 2, 2]
    assert sweep.fn.tolist() == [0, 0, 1, 1, 2]


def test_threshold_metrics_counts_and_rates() -> None:
    # tp = 2, fn = 1, fp = 1, tn = 4.
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    predictions = np.array([1, 1, 0, 1, 0, 0, 0, 0])

    result = threshold_metrics(labels, predictions)

    assert result["tp"] == 2.0
    assert result["fn"] == 1.0
    assert result["fp"] == 1.0
    assert result["tn"] == 4.0
    assert result["accuracy"] == pytest.approx(6 / 8)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["tpr"] == pytest.approx(2 / 3)
    assert result["tnr"] == pytest.approx(4 / 5)
    assert result["balanced_accuracy"] == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_threshold_metrics_values_are_python_floats() -> None:
    result = threshold_metrics([1, 0], [True, False])

    assert all(type(value) is float for value in result.values())


def test_threshold_metrics_nothing_predicted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = threshold_metrics([1, 0, 0], [0, 0, 0])

    assert result["precision"] is None
    assert result["f1"] == 0.0
    assert result["tpr"] == 0.0
    assert result["tnr"] == 1.0
    messages = _warnings(caplog)
    assert len(messages) == 1
    assert "precision" in messages[0]


def test_threshold_metrics_no_anomalous_samples() -> None:
    result = threshold_metrics([0, 0, 0], [1, 0, 0])

    assert result["tpr"] is None
    assert result["recall"] is None
    assert result["balanced_accuracy"] is None
    assert result["tnr"] == pytest.approx(2 / 3)
    assert result["precision"] == 0.0


def test_threshold_metrics_no_normal_samples() -> None:
    result = threshold_metrics([1, 1], [1, 0])

    assert result["tnr"] is None
    assert result["balanced_accuracy"] is None
    assert result["tpr"] == 0.5


# Pixel metrics: two images of different sizes. Anomalous pixels score 0.9 and 0.4,
# normal pixels 0.5 and 0.3, so 3 of 4 (anomalous, normal) pairs are ranked right and
# AP = 0.5 * 1 + 0.5 * 2/3, as in the image-level case.
PIXEL_MASKS = [np.array([[1, 0]]), np.array([[0], [1]])]
PIXEL_MAPS = [np.array([[0.9, 0.5]]), np.array([[0.3], [0.4]])]


def test_pixel_metrics_known_values() -> None:
    result = pixel_metrics(PIXEL_MASKS, PIXEL_MAPS)

    assert result["pixel_auroc"] == pytest.approx(0.75)
    assert result["pixel_ap"] == pytest.approx(5.0 / 6.0)
    assert result["aupro"] == pytest.approx(aupro(PIXEL_MASKS, PIXEL_MAPS))


def test_pixel_metrics_one_class_is_missing(caplog: pytest.LogCaptureFixture) -> None:
    masks = [np.zeros((4, 4)), np.zeros((2, 3))]
    maps = [np.random.default_rng(0).random((4, 4)), np.zeros((2, 3))]

    with caplog.at_level(logging.WARNING):
        result = pixel_metrics(masks, maps)

    assert result == dict.fromkeys(PIXEL_KEYS)
    messages = _warnings(caplog)
    assert len(messages) == 1
    assert "all 22 mask pixels of 2 images are normal" in messages[0]


def test_pixel_metrics_empty_is_missing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = pixel_metrics([], [])

    assert result == dict.fromkeys(PIXEL_KEYS)
    assert "no masks" in _warnings(caplog)[0]


def test_pixel_metrics_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match=r"Mask 1 has shape \(2, 2\)"):
        pixel_metrics([np.ones((2, 2)), np.ones((2, 2))], [np.ones((2, 2)), np.ones((2, 3))])


def test_pixel_metrics_nan_map_raises() -> None:
    with pytest.raises(ValueError, match="Anomaly map 0 contains 1 NaN"):
        pixel_metrics([np.array([[1, 0]])], [np.array([[0.5, np.nan]])])


def _square_mask(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_aupro_perfect_map_is_one() -> None:
    masks = [_square_mask(8, 1, 1, 3), _square_mask(6, 3, 3, 2)]
    maps = [mask.astype(float) for mask in masks]

    assert aupro(masks, maps) == pytest.approx(1.0)
    assert aupro(masks, maps, fpr_limit=1.0) == pytest.approx(1.0)


def test_aupro_map_only_outside_region_is_zero() -> None:
    # 4 x 4 image, 2 x 2 defect. The map flags 4 of the 12 normal pixels and no defect
    # pixel, so the first curve point after (0, 0) is (FPR 1/3, PRO 0), beyond the 0.3
    # limit: PRO is 0 over the whole integral.
    mask = _square_mask(4, 0, 0, 2)
    anomaly_map = np.zeros((4, 4))
    anomaly_map[3, :] = 1.0

    assert aupro([mask], [anomaly_map]) == pytest.approx(0.0)


def test_aupro_half_detected_region() -> None:
    # Two of the four defect pixels are flagged and no normal pixel: the curve is
    # (0, 0) -> (0, 0.5) -> (1, 1). PRO rises linearly from 0.5 to 0.65 at FPR 0.3,
    # so the area is 0.3 * (0.5 + 0.65) / 2 and the normalised AUPRO is 0.575.
    mask = _square_mask(4, 0, 0, 2)
    anomaly_map = np.zeros((4, 4))
    anomaly_map[0, :2] = 1.0

    assert aupro([mask], [anomaly_map]) == pytest.approx(0.575)


def test_aupro_weights_regions_equally() -> None:
    # A 1-pixel region fully found and a 3-pixel region missed: PRO = (1 + 0) / 2 = 0.5
    # as in the half-detected case (0.575), whereas pixel recall would be 1 / 4.
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, 0] = True
    mask[5, 3:6] = True
    anomaly_map = np.zeros((6, 6))
    anomaly_map[0, 0] = 1.0

    assert aupro([mask], [anomaly_map]) == pytest.approx(0.575)


def test_aupro_diagonal_pixels_are_one_region() -> None:
    # With 8-connectivity (0, 0) and (1, 1) form one region, half found, and (5, 5) is a
    # second region, fully found: PRO p = 0.75 at FPR 0. The normalised area up to 0.3
    # on the line to (1, 1) is p + 0.15 * (1 - p) = 0.7875.
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, 0] = mask[1, 1] = mask[5, 5] = True
    anomaly_map = np.zeros((6, 6))
    anomaly_map[0, 0] = anomaly_map[5, 5] = 1.0

    assert aupro([mask], [anomaly_map]) == pytest.approx(0.7875)


def test_aupro_one_class_is_none(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = aupro([np.ones((3, 3))], [np.ones((3, 3))])

    assert result is None
    assert "are anomalous" in _warnings(caplog)[0]


def test_aupro_invalid_limit_raises() -> None:
    with pytest.raises(ValueError, match="fpr_limit must be in"):
        aupro(PIXEL_MASKS, PIXEL_MAPS, fpr_limit=0.0)
