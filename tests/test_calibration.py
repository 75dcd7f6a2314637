import json
import logging

import numpy as np
import pytest

from grdnet_kedro.evaluation.calibration import (
    Calibration,
    CalibrationError,
    calibrate_threshold,
)


def test_separable_scores_balanced_accuracy_one() -> None:
    # Normal scores 0.1 to 0.3, anomalous 0.6 to 0.9: the split lies at (0.3 + 0.6) / 2.
    labels = [0, 0, 0, 1, 1, 1]
    scores = [0.1, 0.3, 0.2, 0.9, 0.6, 0.7]

    calibration = calibrate_threshold(labels, scores)

    assert calibration.threshold == pytest.approx(0.45)
    assert calibration.value == pytest.approx(1.0)
    assert calibration.criterion == "balanced_accuracy"
    assert calibration.n_normal == 3
    assert calibration.n_anomalous == 3
    assert calibration.source == "validation"


def test_threshold_separates_the_scores() -> None:
    scores = np.array([0.1, 0.3, 0.2, 0.9, 0.6, 0.7])

    calibration = calibrate_threshold([0, 0, 0, 1, 1, 1], scores)

    assert (scores > calibration.threshold).tolist() == [False, False, False, True, True, True]


def test_balanced_accuracy_with_imbalanced_classes() -> None:
    # 5 normal, 1 anomalous at 0.5, and the normal at 0.6 is above it. Threshold 0.45
    # gives TPR 1, TNR 4/5 (BA 0.9); 0.55 gives TPR 0, TNR 4/5 (BA 0.4); lower
    # thresholds flag more normals.
    labels = [0, 0, 0, 0, 1, 0]
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]

    calibration = calibrate_threshold(labels, scores)

    assert calibration.threshold == pytest.approx(0.45)
    assert calibration.value == pytest.approx(0.9)


def test_f1_criterion() -> None:
    # Normal 0.1, 0.4; anomalous 0.35, 0.8. Threshold 0.225 flags three samples:
    # P = 2/3, R = 1, F1 = 0.8; threshold 0.6 flags only 0.8: F1 = 2/3.
    # Balanced accuracy ties at 0.75 for 0.225 and 0.6, and the smaller one is kept.
    labels = [0, 0, 1, 1]
    scores = [0.1, 0.4, 0.35, 0.8]

    f1_calibration = calibrate_threshold(labels, scores, criterion="f1")
    balanced_calibration = calibrate_threshold(labels, scores)

    assert f1_calibration.threshold == pytest.approx(0.225)
    assert f1_calibration.value == pytest.approx(0.8)
    assert f1_calibration.criterion == "f1"
    assert balanced_calibration.threshold == pytest.approx(0.225)
    assert balanced_calibration.value == pytest.approx(0.75)


def test_f1_and_balanced_accuracy_disagree() -> None:
    # Normal 0.1, 0.5; anomalous 0.2, 0.7, 0.8, 0.9.
    # Threshold 0.15: TP 4, FP 1, TN 1 -> F1 8/9 = 0.889, BA (1 + 1/2) / 2 = 0.75.
    # Threshold 0.6:  TP 3, FN 1, TN 2 -> F1 6/7 = 0.857, BA (3/4 + 1) / 2 = 0.875.
    # No other threshold reaches either value, so F1 keeps 0.15 and BA keeps 0.6.
    labels = [0, 1, 0, 1, 1, 1]
    scores = [0.1, 0.2, 0.5, 0.7, 0.8, 0.9]

    f1_calibration = calibrate_threshold(labels, scores, criterion="f1")
    balanced_calibration = calibrate_threshold(labels, scores)

    assert f1_calibration.threshold == pytest.approx(0.15)
    assert f1_calibration.value == pytest.approx(8 / 9)
    assert balanced_calibration.threshold == pytest.approx(0.6)
    assert balanced_calibration.value == pytest.approx(0.875)


def test_all_equal_scores_keep_everything_anomalous() -> None:
    # Every candidate gives BA 0.5; the smallest (below the minimum) flags everything.
    calibration = calibrate_threshold([0, 1], [0.5, 0.5])

    assert calibration.threshold < 0.5
    assert calibration.value == pytest.approx(0.5)


def test_one_class_raises() -> None:
    with pytest.raises(CalibrationError, match="3 normal and 0 anomalous") as raised:
        calibrate_threshold([0, 0, 0], [0.1, 0.2, 0.3])

    assert "keep the previous or default threshold" in str(raised.value)


def test_empty_raises() -> None:
    with pytest.raises(CalibrationError, match="empty"):
        calibrate_threshold([], [])


def test_nan_raises() -> None:
    with pytest.raises(CalibrationError, match="1 NaN value"):
        calibrate_threshold([0, 1], [0.1, float("nan")])


def test_non_binary_labels_raise() -> None:
    with pytest.raises(CalibrationError, match="only 0"):
        calibrate_threshold([2, 2], [0.1, 0.2])


def test_calibration_error_is_value_error() -> None:
    assert issubclass(CalibrationError, ValueError)


def test_unknown_criterion_raises() -> None:
    with pytest.raises(CalibrationError, match="Unknown calibration criterion 'accuracy'"):
        calibrate_threshold([0, 1], [0.1, 0.9], criterion="accuracy")  # type: ignore[arg-type]


def test_test_source_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        calibration = calibrate_threshold([0, 1], [0.1, 0.9], source="test")

    assert calibration.source == "test"
    assert any("optimistic" in record.getMessage() for record in caplog.records)


def test_to_dict_round_trip_through_json() -> None:
    calibration = calibrate_threshold([0, 0, 1], [0.1, 0.2, 0.9])

    data = json.loads(json.dumps(calibration.to_dict()))

    assert data == {
        "threshold": pytest.approx(0.55),
        "criterion": "balanced_accuracy",
        "value": 1.0,
        "n_normal": 2,
        "n_anomalous": 1,
        "source": "validation",
    }
    assert Calibration.from_dict(data) == calibration


def test_from_dict_missing_field_raises() -> None:
    with pytest.raises(CalibrationError, match=r"missing field\(s\) \['source'\]"):
        Calibration.from_dict(
            {"threshold": 0.5, "criterion": "f1", "value": 1.0, "n_normal": 1, "n_anomalous": 1}
        )
