"""Tests of the report figures and the benchmark table on tiny hand-made inputs."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from grdnet_kedro.reporting import (
    BENCHMARK_COLUMNS,
    benchmark_markdown,
    benchmark_table,
    heatmap_overlays,
    loss_curves,
    perturbation_grid,
    pr_figure,
    roc_figure,
    score_histogram,
    training_previews,
)

# Pairs (anomalous, good) ranked correctly: (0.35, 0.1), (0.8, 0.1), (0.8, 0.4) -> 3 of 4.
# Ranked by score: 0.8 (1), 0.4 (0), 0.35 (1), 0.1 (0) -> AP = 0.5 * 1 + 0.5 * 2/3.
LABELS = np.array([0, 0, 1, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8])


def _batch(count: int, channels: int, size: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    shape = (count, size, size, channels)
    mask = np.zeros((count, size, size, 1), dtype=np.float32)
    mask[:, 4:8, 4:8] = 1.0
    return {
        "x": rng.random(shape, dtype=np.float32),
        "x_perturbed": rng.random(shape, dtype=np.float32),
        "mask": mask,
        "reconstruction": rng.random(shape, dtype=np.float32),
    }


def _legend_texts(figure: Figure) -> list[str]:
    legend = figure.axes[0].get_legend()
    assert legend is not None
    return [text.get_text() for text in legend.get_texts()]


def _unavailable_text(figure: Figure) -> str:
    texts = [text.get_text() for axes in figure.axes for text in axes.texts]
    return " ".join(texts)


def _render(figure: Figure) -> None:
    """Draw the figure to a PNG in memory, which fails on invalid artists."""
    from io import BytesIO

    figure.savefig(BytesIO(), format="png")


# perturbation_grid ------------------------------------------------------------------------


def test_perturbation_grid_three_columns_gray() -> None:
    batch = _batch(2, channels=1)

    figure = perturbation_grid(batch["x"], batch["x_perturbed"], batch["mask"], title="mono")

    assert len(figure.axes) == 6
    assert [axes.get_title() for axes in figure.axes[:3]] == ["X", "X*", "M"]
    first = figure.axes[0].images[0]
    assert first.get_cmap().name == "gray"
    assert first.get_clim() == (0.0, 1.0)
    assert figure.get_suptitle() == "mono"
    _render(figure)


def test_perturbation_grid_reconstruction_rgb() -> None:
    batch = _batch(3, channels=3)

    figure = perturbation_grid(
        batch["x"], batch["x_perturbed"], batch["mask"], batch["reconstruction"]
    )

    assert len(figure.axes) == 12
    assert figure.axes[3].get_title() == "X_hat"
    assert figure.axes[0].images[0].get_array().shape == (16, 16, 3)
    assert figure.axes[2].images[0].get_array().shape == (16, 16)
    _render(figure)


def test_perturbation_grid_empty_batch() -> None:
    batch = _batch(0, channels=1)

    figure = perturbation_grid(batch["x"], batch["x_perturbed"], batch["mask"])

    assert len(figure.axes) == 1
    assert "not available: there are no samples" in _unavailable_text(figure)


def test_perturbation_grid_shape_mismatch() -> None:
    batch = _batch(2, channels=1)

    with pytest.raises(ValueError, match="'x_perturbed' has shape"):
        perturbation_grid(batch["x"], batch["x_perturbed"][:1], batch["mask"])


# training_previews ------------------------------------------------------------------------


def test_training_previews_last_epochs() -> None:
    previews = [(epoch, _batch(3, channels=1)) for epoch in (5, 1, 3, 2, 4)]

    figure = training_previews(previews, max_epochs=3, max_samples=2)

    assert len(figure.axes) == 3 * 2 * 4
    row_labels = [axes.get_ylabel() for axes in figure.axes[::4]]
    assert row_labels == ["epoch 3", "epoch 3", "epoch 4", "epoch 4", "epoch 5", "epoch 5"]
    assert [axes.get_title() for axes in figure.axes[:4]] == ["X", "X*", "M", "X_hat"]
    _render(figure)


def test_training_previews_without_reconstruction() -> None:
    batch = _batch(2, channels=3)
    del batch["reconstruction"]

    figure = training_previews([(1, batch)])

    assert len(figure.axes) == 2 * 3


def test_training_previews_empty() -> None:
    figure = training_previews([])

    assert len(figure.axes) == 1
    assert "not available" in _unavailable_text(figure)


def test_training_previews_missing_mask() -> None:
    batch = _batch(2, channels=1)
    del batch["mask"]

    with pytest.raises(ValueError, match="epoch 7: the array 'mask' is missing"):
        training_previews([(7, batch)])


# roc_figure and pr_figure -----------------------------------------------------------------


def test_roc_figure_auroc_legend() -> None:
    figure = roc_figure(LABELS, SCORES, title="mono ROC")

    assert len(figure.axes) == 1
    assert _legend_texts(figure) == ["AUROC = 0.750", "chance"]
    assert figure.axes[0].get_title() == "mono ROC"
    _render(figure)


def test_pr_figure_ap_and_prevalence() -> None:
    figure = pr_figure(LABELS, SCORES, title="mono PR")

    assert len(figure.axes) == 1
    assert _legend_texts(figure) == ["AP = 0.833", "prevalence = 0.500"]
    _render(figure)


@pytest.mark.parametrize("plot", [roc_figure, pr_figure])
@pytest.mark.parametrize(
    ("labels", "scores", "reason"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "all 3 samples are good"),
        ([1, 1], [0.1, 0.2], "all 2 samples are anomalous"),
        ([], [], "there are no samples"),
        ([0, 1, 1], [0.1, math.nan, 0.3], "1 of 3 scores are NaN or infinite"),
    ],
)
def test_ranking_figures_degenerate(
    plot: Any, labels: list[int], scores: list[float], reason: str
) -> None:
    figure = plot(np.array(labels), np.array(scores), title="t")

    assert isinstance(figure, Figure)
    assert len(figure.axes) == 1
    assert f"not available: {reason}" in _unavailable_text(figure)
    _render(figure)


def test_roc_figure_rejects_label_two() -> None:
    with pytest.raises(ValueError, match=r"found \[2\]"):
        roc_figure(np.array([0, 2]), np.array([0.1, 0.2]), title="t")


def test_pr_figure_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length, got 2 and 3"):
        pr_figure(np.array([0, 1]), np.array([0.1, 0.2, 0.3]), title="t")


# score_histogram --------------------------------------------------------------------------


def test_score_histogram_classes_and_threshold() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.25, 0.6, 0.9])

    figure = score_histogram(labels, scores, threshold=0.4, title="mono scores")

    assert len(figure.axes) == 1
    assert _legend_texts(figure) == ["good (n=3)", "anomalous (n=2)", "threshold = 0.400"]
    _render(figure)


def test_score_histogram_shared_bins() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.25, 0.6, 0.9])

    figure = score_histogram(labels, scores, threshold=None, title="t")

    bars = figure.axes[0].patches
    half = len(bars) // 2
    good_edges = [bar.get_x() for bar in bars[:half]]
    anomalous_edges = [bar.get_x() for bar in bars[half:]]
    assert len(bars) % 2 == 0
    assert good_edges == anomalous_edges
    assert sum(bar.get_height() for bar in bars[:half]) == 3
    assert sum(bar.get_height() for bar in bars[half:]) == 2


def test_score_histogram_one_class_no_threshold() -> None:
    figure = score_histogram(np.array([0, 0]), np.array([0.3, 0.3]), threshold=None, title="t")

    assert _legend_texts(figure) == ["good (n=2)"]
    _render(figure)


def test_score_histogram_non_finite_left_out() -> None:
    labels = np.array([0, 1, 1])
    scores = np.array([0.1, math.nan, 0.7])

    figure = score_histogram(labels, scores, threshold=math.nan, title="t")

    assert _legend_texts(figure) == ["good (n=1)", "anomalous (n=1)"]
    assert figure.axes[0].get_title() == "t (1 non-finite left out)"


def test_score_histogram_empty() -> None:
    figure = score_histogram(np.array([]), np.array([]), threshold=0.5, title="t")

    assert len(figure.axes) == 1
    assert "not available: there are no samples" in _unavailable_text(figure)


# loss_curves ------------------------------------------------------------------------------


def test_loss_curves_skips_zero_columns() -> None:
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "loss_total": [3.0, 2.0, 1.0],
            "loss_noise": [0.0, 0.0, 0.0],
            "loss_adversarial": [1.0, 1.0, 1.0],
            "validation_auroc": [math.nan, 0.6, 0.8],
            "seconds": [1.0, 1.0, 1.0],
        }
    )

    figure = loss_curves(history)

    loss_axes, validation_axes = figure.axes
    assert [line.get_label() for line in loss_axes.get_lines()] == [
        "loss_total",
        "loss_adversarial",
    ]
    validation_line = validation_axes.get_lines()[0]
    assert validation_line.get_label() == "validation_auroc"
    assert list(validation_line.get_xdata()) == [2.0, 3.0]
    assert list(validation_line.get_ydata()) == [0.6, 0.8]
    _render(figure)


def test_loss_curves_without_validation() -> None:
    history = pd.DataFrame({"epoch": [1, 2], "loss_total": [2.0, 1.0]})

    figure = loss_curves(history)

    assert len(figure.axes) == 2
    assert "not available: no validation AUROC was recorded" in _unavailable_text(figure)


def test_loss_curves_empty_frame() -> None:
    figure = loss_curves(pd.DataFrame(columns=["epoch", "loss_total", "validation_auroc"]))

    assert len(figure.axes) == 1
    assert "not available: the training history is empty" in _unavailable_text(figure)


# heatmap_overlays -------------------------------------------------------------------------


def _overlay_inputs() -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray | None]]:
    gray = np.full((16, 16, 1), 128, dtype=np.uint8)
    rgb = np.full((16, 16, 3), 0.5, dtype=np.float32)
    first_map = np.zeros((16, 16))
    first_map[2:6, 2:6] = 0.5
    second_map = np.zeros((16, 16))
    second_map[8:12, 8:12] = 2.0
    mask = np.zeros((16, 16, 1), dtype=np.uint8)
    mask[8:12, 8:12] = 1
    return [gray, rgb], [first_map, second_map], [None, mask]


def test_heatmap_overlays_layout_and_scale() -> None:
    images, maps, masks = _overlay_inputs()

    figure = heatmap_overlays(images, maps, ["a.png 0.50", "b.png 2.00"], masks=masks)

    assert len(figure.axes) == 2 * 2 + 1
    assert figure.axes[0].get_title() == "a.png 0.50"
    overlay = figure.axes[1].images[1]
    assert overlay.get_cmap().name == "jet"
    assert overlay.get_alpha() == 0.5
    assert overlay.get_clim() == (0.0, 2.0)
    assert figure.axes[3].images[1].get_clim() == (0.0, 2.0)
    _render(figure)


def test_heatmap_overlays_mask_contour() -> None:
    images, maps, masks = _overlay_inputs()

    figure = heatmap_overlays(images, maps, ["a", "b"], masks=masks)

    assert len(figure.axes[1].collections) == 0
    assert len(figure.axes[3].collections) == 1


def test_heatmap_overlays_given_vmax() -> None:
    images, maps, _ = _overlay_inputs()

    figure = heatmap_overlays(images, maps, ["a", "b"], vmax=1.0)

    assert figure.axes[1].images[1].get_clim() == (0.0, 1.0)


def test_heatmap_overlays_flat_maps() -> None:
    images, _, _ = _overlay_inputs()
    flat = [np.zeros((16, 16)), np.zeros((16, 16))]

    figure = heatmap_overlays(images, flat, ["a", "b"], masks=[np.zeros((16, 16)), None])

    assert figure.axes[1].images[1].get_clim() == (0.0, 1.0)
    _render(figure)


def test_heatmap_overlays_no_images() -> None:
    figure = heatmap_overlays([], [], [])

    assert len(figure.axes) == 1
    assert "not available: no images" in _unavailable_text(figure)


def test_heatmap_overlays_map_size_mismatch() -> None:
    images, maps, _ = _overlay_inputs()
    maps[1] = np.zeros((8, 8))

    with pytest.raises(ValueError, match=r"maps\[1\] has shape \(8, 8\)"):
        heatmap_overlays(images, maps, ["a", "b"])


# benchmark_table and benchmark_markdown ---------------------------------------------------


def _two_categories() -> dict[str, dict[str, Any]]:
    return {
        "mono": {
            "category": "mono",
            "profile": "cpu_quick",
            "threshold": 0.4,
            "threshold_source": "validation",
            "image": {
                "auroc": 0.9,
                "ap": 0.8,
                "f1_max": 0.7,
                "accuracy": 0.8,
                "balanced_accuracy": 0.75,
                "f1": 0.6,
            },
            "pixel": {"pixel_auroc": None, "pixel_ap": None, "aupro": None},
            "counts": {"test_good": 10, "test_anomalous": 5},
        },
        "poly": {
            "category": "poly",
            "profile": "cpu_quick",
            "threshold": 0.2,
            "threshold_source": "validation",
            "image": {
                "auroc": 0.7,
                "ap": 0.6,
                "f1_max": 0.5,
                "accuracy": 0.6,
                "balanced_accuracy": 0.65,
                "f1": None,
            },
            "pixel": {"pixel_auroc": 0.95, "pixel_ap": math.nan, "aupro": None},
            "counts": {"test_good": 20, "test_anomalous": 8},
        },
    }


def test_benchmark_table_columns_and_rows() -> None:
    table = benchmark_table(_two_categories())

    assert list(table.columns) == list(BENCHMARK_COLUMNS)
    assert list(table["category"]) == ["mono", "poly", "mean"]
    assert table.loc[0, "image_auroc"] == 0.9
    assert table.loc[1, "image_balanced_accuracy"] == 0.65
    assert table.loc[0, "test_good"] == 10.0
    assert table.loc[1, "threshold"] == 0.2
    assert math.isnan(table.loc[0, "pixel_auroc"])
    assert math.isnan(table.loc[1, "image_f1"])


def test_benchmark_table_mean_row() -> None:
    mean = benchmark_table(_two_categories()).iloc[-1]

    assert mean["image_auroc"] == pytest.approx(0.8)
    assert mean["image_ap"] == pytest.approx(0.7)
    assert mean["image_f1_max"] == pytest.approx(0.6)
    assert mean["image_balanced_accuracy"] == pytest.approx(0.7)
    assert mean["test_good"] == pytest.approx(15.0)
    assert mean["test_anomalous"] == pytest.approx(6.5)
    assert mean["threshold_source"] == "validation"


def test_benchmark_table_mean_skips_missing() -> None:
    mean = benchmark_table(_two_categories()).iloc[-1]

    assert mean["image_f1"] == pytest.approx(0.6)
    assert mean["pixel_auroc"] == pytest.approx(0.95)
    assert math.isnan(mean["pixel_ap"])
    assert math.isnan(mean["aupro"])
    assert math.isnan(mean["threshold"])


def test_benchmark_table_mixed_sources() -> None:
    metrics = {
        "mono": {"threshold_source": "validation", "image": {"auroc": 0.9}},
        "poly": {"threshold_source": "test", "image": None},
    }

    table = benchmark_table(metrics)

    assert table.iloc[-1]["threshold_source"] == "mixed"
    assert table.iloc[-1]["image_auroc"] == pytest.approx(0.9)
    assert math.isnan(table.iloc[1]["test_good"])


def test_benchmark_table_empty() -> None:
    table = benchmark_table({})

    assert list(table.columns) == list(BENCHMARK_COLUMNS)
    assert len(table) == 0


def test_benchmark_table_rejects_text_metric() -> None:
    metrics = {"mono": {"image": {"auroc": "0.9"}}}

    with pytest.raises(ValueError, match=r"category 'mono': 'image\.auroc' must be a number"):
        benchmark_table(metrics)


def test_benchmark_markdown_table() -> None:
    table = benchmark_table(_two_categories())

    markdown = benchmark_markdown(
        table, title="cpu_quick", notes=["Thresholds calibrated on the test split: optimistic"]
    )
    lines = markdown.splitlines()

    assert lines[0] == "# cpu_quick"
    assert lines[2] == "| " + " | ".join(BENCHMARK_COLUMNS) + " |"
    assert lines[3].startswith("| --- | ---: |")
    assert lines[4] == (
        "| mono | 0.9000 | 0.8000 | 0.7000 | 0.7500 | 0.6000 | n/a | n/a | n/a | 0.4000 "
        "| validation | 10 | 5 |"
    )
    assert lines[6] == (
        "| mean | 0.8000 | 0.7000 | 0.6000 | 0.7000 | 0.6000 | 0.9500 | n/a | n/a | n/a "
        "| validation | 15 | 6.5000 |"
    )
    assert lines[-1] == "- Thresholds calibrated on the test split: optimistic"
    assert markdown.endswith("\n")


def test_benchmark_markdown_empty_table() -> None:
    markdown = benchmark_markdown(benchmark_table({}))

    assert markdown.startswith("# Benchmark\n")
    assert "| category | image_auroc |" in markdown
    assert "No category was evaluated." in markdown


def test_benchmark_markdown_escapes_pipe() -> None:
    table = pd.DataFrame({"category": ["a|b"], "value": [None]})

    markdown = benchmark_markdown(table)

    assert "| a\\|b | n/a |" in markdown
