"""Nodes of ``report``: curves, histograms, loss curves, heatmaps and the benchmark table."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from grdnet_kedro.config import ReportParams, parse_group
from grdnet_kedro.reporting.plots import (
    heatmap_overlays,
    loss_curves,
    pr_figure,
    roc_figure,
    score_histogram,
)
from grdnet_kedro.reporting.tables import benchmark_markdown, benchmark_table


def plot_score_reports(
    predictions: pd.DataFrame, *, category: str
) -> tuple[Figure, Figure, Figure]:
    """Draw the ROC curve, the PR curve and the score histogram per class."""
    labels = predictions["label"].to_numpy()
    scores = predictions["image_score"].to_numpy()
    threshold = float(predictions["threshold"].iloc[0]) if len(predictions) else None
    return (
        roc_figure(labels, scores, title=f"{category}: image ROC"),
        pr_figure(labels, scores, title=f"{category}: image precision-recall"),
        score_histogram(labels, scores, threshold=threshold, title=f"{category}: image scores"),
    )


def plot_loss_curves(training_history: pd.DataFrame) -> Figure:
    """Draw the per-epoch losses and the validation AUROC."""
    return loss_curves(training_history)


def plot_heatmaps(
    predictions: pd.DataFrame,
    test_maps: dict[str, np.ndarray],
    image_cache: dict[str, np.ndarray],
    report: dict[str, Any],
) -> Figure:
    """Overlay the anomaly maps of the highest- and lowest-scored test images."""
    report_params = parse_group(ReportParams, report, "report")
    order = np.argsort(-predictions["image_score"].to_numpy(), kind="stable")
    count = min(report_params.heatmaps, len(order))
    chosen = list(dict.fromkeys([*order[:count], *order[::-1][:count]]))
    cache_rows = test_maps["cache_rows"]
    images, maps, masks, titles = [], [], [], []
    for position in chosen:
        row = predictions.iloc[position]
        cache_row = int(cache_rows[position])
        images.append(image_cache["images"][cache_row])
        maps.append(test_maps["maps"][position])
        masks.append(image_cache["masks"][cache_row] if bool(row["has_mask"]) else None)
        rank = "highest" if position in order[:count] else "lowest"
        titles.append(
            f"{rank}: {row['defect_type']} score {row['image_score']:.4f} "
            f"({'anomalous' if row['decision'] else 'good'})"
        )
    return heatmap_overlays(images, maps, titles, masks=masks)


def build_benchmark(*metrics: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """Collect every category's metrics into one table with a mean row, as CSV and Markdown."""
    by_category = {item["category"]: item for item in metrics}
    table = benchmark_table(by_category)
    notes = [f"Profile: {metrics[0]['profile']}."] if metrics else []
    optimistic = [item["category"] for item in metrics if item.get("threshold_optimistic")]
    if optimistic:
        notes.append(
            "Thresholds of "
            + ", ".join(optimistic)
            + " were calibrated on the test split: their threshold metrics are optimistic."
        )
    return table, benchmark_markdown(table, title="Benchmark", notes=notes)
