"""Node of ``export``: write a category's scoring graph as an ONNX model with its metadata."""

from __future__ import annotations

import logging
from typing import Any

import torch

from grdnet_kedro.config import validate_parameters
from grdnet_kedro.export import build_onnx_model, checkpoint_fingerprint, model_metadata
from grdnet_kedro.factory import load_trained_networks, scoring_settings_from

logger = logging.getLogger(__name__)


def export_onnx_model(
    model: dict[str, Any],
    threshold: dict[str, Any],
    parameters: dict[str, Any],
    *,
    category: str,
) -> tuple[bytes, dict[str, Any]]:
    """Export the trained category to ONNX; return the model bytes and its metadata.

    The metadata (stored in the model and returned for ``model.onnx.json``) contains what
    a deployment needs besides the graph: the threshold, the patch grid, the image size and
    the image-level decision settings.
    """
    params = validate_parameters(parameters)
    settings = scoring_settings_from(params)
    networks = load_trained_networks(model, params, torch.device("cpu"))
    fields = {
        "category": category,
        "profile": params.profile,
        "threshold": float(threshold["threshold"]),
        "criterion": threshold.get("criterion"),
        "threshold_source": threshold.get("source"),
        "image_size": list(params.data.image_hw),
        "stride": list(settings.stride),
        "image_score": settings.image_score,
        "smoothing_kernel": settings.smoothing_kernel,
        "ssim_window": settings.ssim_window,
        "run_acceptance_ratio": params.inference.run_acceptance_ratio,
        "checkpoint_sha256": checkpoint_fingerprint(model),
    }
    onnx_model = build_onnx_model(networks, settings, params.data.channels, metadata=fields)
    logger.info("Category '%s': exported the scoring graph to ONNX", category)
    return onnx_model.SerializeToString(), model_metadata(onnx_model)
