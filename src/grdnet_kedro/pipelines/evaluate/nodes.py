"""Nodes of ``evaluate``: score the test split, then decide and measure."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from grdnet_kedro.config import validate_parameters
from grdnet_kedro.data.images import load_mask
from grdnet_kedro.data.splits import subset_rows
from grdnet_kedro.evaluation.metrics import pixel_metrics, ranking_metrics, threshold_metrics
from grdnet_kedro.evaluation.patches import patch_labels, resize_map
from grdnet_kedro.evaluation.scoring import image_decisions
from grdnet_kedro.factory import load_trained_networks, scoring_settings_from
from grdnet_kedro.inference import masks_to_tensor, score_images
from grdnet_kedro.training.device import resolve_device

logger = logging.getLogger(__name__)


def score_test(
    model: dict[str, Any],
    manifest: pd.DataFrame,
    image_cache: dict[str, np.ndarray],
    parameters: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Score every test image: image scores, patch scores and stitched anomaly maps."""
    params = validate_parameters(parameters)
    device = resolve_device(params.runtime.device)
    networks = load_trained_networks(model, params, device)
    rows = subset_rows(manifest, "test")
    settings = scoring_settings_from(params)
    result = score_images(
        networks,
        image_cache["images"][rows],
        image_cache["rois"][rows],
        settings,
        device=device,
        progress=params.runtime.progress,
        description="test",
    )
    test = manifest.iloc[rows]
    has_mask = image_cache["has_mask"][rows].astype(bool)
    image_table = pd.DataFrame(
        {
            "image_path": test["image_path"].to_numpy(),
            "defect_type": test["defect_type"].to_numpy(),
            "label": test["label"].to_numpy().astype(int),
            "has_mask": has_mask,
            "mask_path": test["mask_path"].fillna("").astype(str).to_numpy(),
            "width": test["width"].to_numpy().astype(int),
            "height": test["height"].to_numpy().astype(int),
            "cache_row": rows,
            "image_score": result.image_scores,
        }
    )

    patches_per_image = len(result.patch_origins)
    masks = masks_to_tensor(image_cache["masks"][rows])
    labels_from_masks = patch_labels(masks, settings.patch_size, settings.stride).numpy()
    image_labels = np.repeat(image_table["label"].to_numpy(), patches_per_image)
    patch_has_mask = np.repeat(has_mask, patches_per_image)
    # A patch of an anomalous image without a mask has an unknown label (-1), unless the
    # patch is the whole image.
    unknown = -1 if patches_per_image > 1 else 1
    patch_label = np.where(
        patch_has_mask, labels_from_masks.astype(int), np.where(image_labels == 0, 0, unknown)
    )
    origins = np.array(result.patch_origins * len(rows))
    patch_table = pd.DataFrame(
        {
            "image_path": np.repeat(image_table["image_path"].to_numpy(), patches_per_image),
            "patch_index": np.tile(np.arange(patches_per_image), len(rows)),
            "row": origins[:, 0],
            "col": origins[:, 1],
            "label": patch_label,
            "patch_score": result.patch_scores.reshape(-1),
        }
    )
    maps = {"maps": result.anomaly_maps.astype(np.float32), "cache_rows": rows}
    return image_table, patch_table, maps


def evaluate_predictions(
    test_scores: pd.DataFrame,
    test_patch_scores: pd.DataFrame,
    test_maps: dict[str, np.ndarray],
    image_cache: dict[str, np.ndarray],
    threshold: dict[str, Any],
    parameters: dict[str, Any],
    *,
    category: str,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Apply the threshold and compute image, patch and pixel metrics."""
    params = validate_parameters(parameters)
    value = float(threshold["threshold"])
    patches_per_image = (
        int(test_patch_scores["patch_index"].max()) + 1 if len(test_patch_scores) else 1
    )
    decision, share = image_decisions(
        torch.from_numpy(test_patch_scores["patch_score"].to_numpy(dtype=np.float32)),
        torch.from_numpy(test_scores["image_score"].to_numpy(dtype=np.float32)),
        patches_per_image,
        value,
        params.inference.run_acceptance_ratio,
    )
    predictions = test_scores.drop(columns=["cache_row", "mask_path"]).assign(
        decision=decision.numpy().astype(int),
        anomalous_patch_share=share.numpy(),
        threshold=value,
    )
    patch_predictions = test_patch_scores.assign(
        decision=(test_patch_scores["patch_score"].to_numpy() > value).astype(int)
    )

    labels = predictions["label"].to_numpy()
    image = {
        **ranking_metrics(labels, predictions["image_score"].to_numpy(), level="image"),
        **threshold_metrics(labels, predictions["decision"].to_numpy()),
    }
    known = patch_predictions[patch_predictions["label"] >= 0]
    patch = {
        **ranking_metrics(
            known["label"].to_numpy(), known["patch_score"].to_numpy(), level="patch"
        ),
        **threshold_metrics(known["label"].to_numpy(), known["decision"].to_numpy(), level="patch"),
    }

    with_mask = predictions["has_mask"].to_numpy().astype(bool)
    anomalous_with_mask = int((with_mask & (labels == 1)).sum())
    anomalous_without_mask = int((~with_mask & (labels == 1)).sum())
    if anomalous_without_mask:
        logger.warning(
            "Category '%s': %d anomalous test images have no ground-truth mask and are left "
            "out of pixel metrics",
            category,
            anomalous_without_mask,
        )
    if anomalous_with_mask:
        masks, maps = original_size_masks_and_maps(
            test_scores[with_mask], test_maps["maps"][with_mask]
        )
        pixel = pixel_metrics(masks, maps, fpr_limit=params.report.aupro_fpr_limit)
    else:
        pixel = {"pixel_auroc": None, "pixel_ap": None, "aupro": None}
        logger.info(
            "Category '%s': no ground-truth masks, pixel metrics are not reported", category
        )

    metrics = {
        "category": category,
        "profile": params.profile,
        "score_method": params.score_method,
        "image_score_method": params.inference.image_score,
        "run_acceptance_ratio": params.inference.run_acceptance_ratio,
        "threshold": value,
        "threshold_source": threshold.get("source", "validation"),
        "threshold_criterion": threshold.get("criterion"),
        "threshold_optimistic": bool(threshold.get("optimistic", False)),
        "image": image,
        "patch": patch,
        "pixel": pixel,
        "counts": {
            "test_good": int((labels == 0).sum()),
            "test_anomalous": int((labels == 1).sum()),
            "anomalous_without_mask": anomalous_without_mask,
            "patches_per_image": patches_per_image,
        },
    }
    logger.info(
        "Category '%s': image AUROC %s, AP %s, balanced accuracy %s at threshold %.6g",
        category,
        _format(image.get("auroc")),
        _format(image.get("ap")),
        _format(image.get("balanced_accuracy")),
        value,
    )
    return predictions, patch_predictions, metrics


def original_size_masks_and_maps(
    images: pd.DataFrame, maps: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Return ground-truth masks and anomaly maps at each image's original size.

    Masks are decoded again from their files (nearest, binarised) and resized to the image
    when their size differs. Good images without a mask file get an all-zero mask. Maps are
    resized bilinearly from the cache size, so pixel metrics are measured where the ground
    truth was drawn.
    """
    masks, resized = [], []
    for (_, row), anomaly_map in zip(images.iterrows(), maps, strict=True):
        height, width = int(row["height"]), int(row["width"])
        mask_path = row["mask_path"]
        if isinstance(mask_path, str) and mask_path:
            mask = load_mask(Path(mask_path), (width, height))
        else:
            mask = np.zeros((height, width), dtype=np.uint8)
        masks.append(mask)
        tensor = torch.from_numpy(np.ascontiguousarray(anomaly_map))[None, None]
        resized.append(resize_map(tensor, (height, width))[0, 0].numpy())
    return masks, resized


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
