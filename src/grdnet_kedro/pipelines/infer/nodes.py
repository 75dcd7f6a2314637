"""Node of ``infer``: score a folder of new images with a trained category."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from grdnet_kedro.config import ParameterError, Parameters, validate_parameters
from grdnet_kedro.data.cache import build_cache
from grdnet_kedro.data.folder import index_folder
from grdnet_kedro.data.images import load_image
from grdnet_kedro.evaluation.patches import resize_map
from grdnet_kedro.evaluation.scoring import image_decisions
from grdnet_kedro.export import OnnxScorer, check_onnx_model
from grdnet_kedro.factory import load_trained_networks, scoring_settings_from
from grdnet_kedro.inference import ImageScoring, score_images
from grdnet_kedro.reporting.plots import heatmap_overlays
from grdnet_kedro.training.device import resolve_device

logger = logging.getLogger(__name__)


def infer_folder(
    model: dict[str, Any],
    threshold: dict[str, Any],
    parameters: dict[str, Any],
    onnx_model: bytes | Callable[[], bytes],
    *,
    category: str,
) -> tuple[pd.DataFrame, pd.DataFrame, Figure]:
    """Score every image below ``infer.input_dir``; return predictions and overlays.

    ``infer.runtime: torch`` scores with the checkpoint ``model``. ``infer.runtime: onnx``
    scores with ``onnx_model``, the exported model's bytes or a function that reads them,
    which only this runtime calls. It first checks that the model was exported from
    ``model`` with the current scoring parameters.
    """
    params = validate_parameters(parameters)
    if not params.infer.input_dir:
        raise ParameterError(
            "infer.input_dir is not set: run "
            f"`kedro run --pipelines=infer --namespaces={category} "
            "--params=infer.input_dir=<folder>`"
        )
    manifest = index_folder(
        Path(params.infer.input_dir), skip_unreadable=params.data.skip_unreadable
    )
    cache = build_cache(
        manifest,
        image_size=params.data.image_hw,
        channels=params.data.channels,
        sixteen_bit_max=params.data.sixteen_bit_max,
        skip_unreadable=params.data.skip_unreadable,
        progress=params.runtime.progress,
    )
    manifest = manifest.iloc[cache["row_index"]].reset_index(drop=True)
    device = resolve_device(params.runtime.device)
    logger.info(
        "Scoring %d image(s) of %s with the '%s' model (%s runtime)",
        len(manifest),
        params.infer.input_dir,
        category,
        params.infer.runtime,
    )
    if params.infer.runtime == "onnx":
        result = _score_with_onnx(cache["images"], model, onnx_model, params, device, category)
    else:
        networks = load_trained_networks(model, params, device)
        result = score_images(
            networks,
            cache["images"],
            None,
            scoring_settings_from(params),
            device=device,
            progress=params.runtime.progress,
            description=f"infer {category}",
        )

    value = float(threshold["threshold"])
    patches_per_image = len(result.patch_origins)
    decision, share = image_decisions(
        torch.from_numpy(result.patch_scores.reshape(-1)),
        torch.from_numpy(result.image_scores),
        patches_per_image,
        value,
        params.inference.run_acceptance_ratio,
    )
    predictions = pd.DataFrame(
        {
            "image_path": manifest["image_path"],
            "folder": manifest["defect_type"],
            "width": manifest["width"],
            "height": manifest["height"],
            "image_score": result.image_scores,
            "decision": decision.numpy().astype(int),
            "anomalous_patch_share": share.numpy(),
            "threshold": value,
            "runtime": params.infer.runtime,
        }
    )
    origins = np.array(result.patch_origins * len(manifest))
    patch_predictions = pd.DataFrame(
        {
            "image_path": np.repeat(manifest["image_path"].to_numpy(), patches_per_image),
            "patch_index": np.tile(np.arange(patches_per_image), len(manifest)),
            "row": origins[:, 0],
            "col": origins[:, 1],
            "patch_score": result.patch_scores.reshape(-1),
            "decision": (result.patch_scores.reshape(-1) > value).astype(int),
        }
    )
    logger.info(
        "Category '%s': %d of %d image(s) anomalous at threshold %.6g",
        category,
        int(predictions["decision"].sum()),
        len(predictions),
        value,
    )
    overlay_count = min(max(params.report.heatmaps, 1), len(predictions))
    logger.info(
        "The overlay figure shows the %d highest-scored of %d image(s) (report.heatmaps); "
        "every score is in the predictions table",
        overlay_count,
        len(predictions),
    )
    overlays = _overlays_at_original_size(
        predictions, result.anomaly_maps, params.data.channels, overlay_count
    )
    return predictions, patch_predictions, overlays


def _score_with_onnx(
    images: np.ndarray,
    model: dict[str, Any],
    onnx_model: bytes | Callable[[], bytes],
    params: Parameters,
    device: torch.device,
    category: str,
) -> ImageScoring:
    """Score uint8 images ``(N, H, W, C)`` with the exported ONNX model in ONNX Runtime."""
    settings = scoring_settings_from(params)
    model_bytes = onnx_model() if callable(onnx_model) else onnx_model
    scorer = OnnxScorer(model_bytes, device=device, threads=params.runtime.num_threads)
    check_onnx_model(scorer.metadata, settings, params.data.channels, model, category=category)
    # ONNX Runtime copies inputs to its own device, so patches are cut on the CPU.
    return score_images(
        None,
        images,
        None,
        settings,
        device=torch.device("cpu"),
        progress=params.runtime.progress,
        description=f"infer {category} (onnx)",
        patch_scorer=scorer,
    )


def _overlays_at_original_size(
    predictions: pd.DataFrame, maps: np.ndarray, channels: int, count: int
) -> Figure:
    """Overlay the maps of the highest-scored images, resized to each original image size."""
    order = np.argsort(-predictions["image_score"].to_numpy(), kind="stable")[:count]
    images, resized, titles = [], [], []
    for position in order:
        row = predictions.iloc[position]
        original = load_image(Path(row["image_path"]), channels=1 if channels == 1 else 3)
        height, width = original.shape[:2]
        tensor = torch.from_numpy(maps[position])[None, None]
        resized.append(resize_map(tensor, (height, width))[0, 0].numpy())
        images.append(original)
        verdict = "anomalous" if row["decision"] else "good"
        titles.append(f"{Path(row['image_path']).name}: {row['image_score']:.4f} ({verdict})")
    return heatmap_overlays(images, resized, titles)
