"""Evaluate and calibrate nodes on hand-made scores: decisions, missing metrics, sizes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from grdnet_kedro.pipelines.calibrate.nodes import fit_threshold
from grdnet_kedro.pipelines.evaluate.nodes import (
    evaluate_predictions,
    original_size_masks_and_maps,
)

PARAMETERS = {
    "data": {"image_size": 16, "channels": 1},
    "model": {
        "patch_size": 16,
        "patch_stride": 16,
        "base_features": 4,
        "stages": [1, 1],
        "latent_dim": 4,
        "use_segmentator": False,
    },
}


def scores_table(labels: list[int], scores: list[float]) -> pd.DataFrame:
    count = len(labels)
    return pd.DataFrame(
        {
            "image_path": [f"/data/{index}.png" for index in range(count)],
            "defect_type": ["good" if label == 0 else "crack" for label in labels],
            "label": labels,
            "has_mask": [label == 0 for label in labels],
            "mask_path": [np.nan] * count,
            "width": [16] * count,
            "height": [16] * count,
            "cache_row": list(range(count)),
            "image_score": scores,
        }
    )


def patch_table(scores: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_path": [f"/data/{index}.png" for index in range(len(scores))],
            "patch_index": [0] * len(scores),
            "row": [0] * len(scores),
            "col": [0] * len(scores),
            "label": [0] * len(scores),
            "patch_score": scores,
        }
    )


def test_decisions_and_image_metrics() -> None:
    labels = [0, 0, 1, 1]
    scores = [0.1, 0.4, 0.35, 0.8]
    test_scores = scores_table(labels, scores)
    test_patches = patch_table(scores).assign(label=labels)
    maps = {"maps": np.zeros((4, 16, 16), dtype=np.float32), "cache_rows": np.arange(4)}

    predictions, _, metrics = evaluate_predictions(
        test_scores,
        test_patches,
        maps,
        {"masks": np.zeros((4, 16, 16), dtype=np.uint8)},
        {"threshold": 0.3, "source": "validation", "criterion": "balanced_accuracy"},
        PARAMETERS,
        category="cells",
    )

    assert predictions["decision"].tolist() == [0, 1, 1, 1]
    assert metrics["image"]["auroc"] == pytest.approx(0.75)
    assert metrics["image"]["tp"] == 2
    assert metrics["image"]["fp"] == 1
    assert metrics["pixel"] == {"pixel_auroc": None, "pixel_ap": None, "aupro": None}
    assert metrics["counts"]["anomalous_without_mask"] == 2


def test_one_class_test_split_reports_missing(caplog: pytest.LogCaptureFixture) -> None:
    scores = [0.1, 0.2, 0.3]
    maps = {"maps": np.zeros((3, 16, 16), dtype=np.float32), "cache_rows": np.arange(3)}
    with caplog.at_level(logging.WARNING):
        _, _, metrics = evaluate_predictions(
            scores_table([0, 0, 0], scores),
            patch_table(scores),
            maps,
            {"masks": np.zeros((3, 16, 16), dtype=np.uint8)},
            {"threshold": 0.15},
            PARAMETERS,
            category="cells",
        )
    assert metrics["image"]["auroc"] is None
    assert metrics["image"]["ap"] is None
    assert metrics["image"]["tnr"] == pytest.approx(1 / 3)
    messages = [record.getMessage() for record in caplog.records]
    assert any("image-level AUROC, AP and F1-max are undefined" in text for text in messages)


def test_calibration_on_one_class_test_keeps_validation_threshold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    validation = pd.DataFrame({"label": [0, 0, 1, 1], "image_score": [0.1, 0.2, 0.6, 0.9]})
    test = pd.DataFrame({"label": [1, 1], "image_score": [0.5, 0.7]})
    with caplog.at_level(logging.WARNING):
        threshold = fit_threshold(
            validation, test, {"criterion": "balanced_accuracy", "on_test": True}, category="cells"
        )
    assert threshold["source"] == "validation"
    assert threshold["optimistic"] is False
    assert threshold["threshold"] == pytest.approx(0.4)
    assert any(
        "keeping the validation threshold" in record.getMessage() for record in caplog.records
    )


def test_calibration_on_test_is_flagged_optimistic() -> None:
    validation = pd.DataFrame({"label": [0, 1], "image_score": [0.1, 0.9]})
    test = pd.DataFrame({"label": [0, 1], "image_score": [0.3, 0.5]})
    threshold = fit_threshold(
        validation, test, {"criterion": "f1", "on_test": True}, category="cells"
    )
    assert threshold["source"] == "test"
    assert threshold["optimistic"] is True
    assert threshold["threshold"] == pytest.approx(0.4)


def test_maps_resized_to_non_square_original(tmp_path: Path) -> None:
    mask = np.zeros((20, 40), dtype=np.uint8)
    mask[:, 30:] = 255
    mask_path = tmp_path / "mask.png"
    Image.fromarray(mask).save(mask_path)
    anomaly_map = np.zeros((16, 16), dtype=np.float32)
    anomaly_map[:, 12:] = 1.0
    images = pd.DataFrame(
        {"mask_path": [str(mask_path), np.nan], "width": [40, 40], "height": [20, 20]}
    )

    masks, maps = original_size_masks_and_maps(images, np.stack([anomaly_map, anomaly_map]))

    assert masks[0].shape == (20, 40)
    assert maps[0].shape == (20, 40)
    assert masks[0][:, 35].all()
    assert not masks[0][:, 5].any()
    assert maps[0][10, 38] == pytest.approx(1.0)
    assert maps[0][10, 2] == pytest.approx(0.0)
    assert not masks[1].any()


def test_mask_of_other_size_resized_to_image(tmp_path: Path) -> None:
    small = np.zeros((10, 20), dtype=np.uint8)
    small[:5, :] = 128
    mask_path = tmp_path / "small_mask.png"
    Image.fromarray(small).save(mask_path)
    images = pd.DataFrame({"mask_path": [str(mask_path)], "width": [40], "height": [20]})

    masks, _ = original_size_masks_and_maps(images, np.zeros((1, 16, 16), dtype=np.float32))

    assert masks[0].shape == (20, 40)
    assert masks[0][:10].all()
    assert not masks[0][10:].any()
