"""Report figures: perturbation previews, ROC and PR curves, histograms, losses, overlays.

Every function builds a ``matplotlib.figure.Figure`` directly, without pyplot, so no
backend is selected and pyplot keeps no reference to the figure. The caller saves it.

Some input leaves nothing to draw: no samples, one class only, non-finite scores or an
empty history. Then the function logs one warning and returns a figure with the text
"not available: <reason>" in place of the plot, so a report node does not fail after
training has finished. Inconsistent input (arrays of different lengths or shapes,
labels other than 0/1) is a bug upstream and raises ``ValueError``.

Label convention, as in ``grdnet_kedro.evaluation.metrics``: 1 (or ``True``) is anomalous,
0 is good, and a higher score is more anomalous.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from numpy.typing import ArrayLike, NDArray
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

logger = logging.getLogger(__name__)

# Side of one image cell in inches, kept small so that previews of many samples stay light.
_CELL_INCHES = 1.4
_MAX_HISTOGRAM_BINS = 50
_PREVIEW_KEYS = ("x", "x_perturbed", "mask", "reconstruction")
_PREVIEW_TITLES = {"x": "X", "x_perturbed": "X*", "mask": "M", "reconstruction": "X_hat"}
_GOOD_COLOR = "tab:blue"
_ANOMALOUS_COLOR = "tab:red"


def _unavailable_figure(reason: str, *, title: str = "") -> Figure:
    """Build a one-axes figure that shows "not available: <reason>" and log the reason."""
    logger.warning("Figure %r is not available: %s.", title or "untitled", reason)
    figure = Figure(figsize=(4.0, 3.0), layout="constrained")
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(
        0.5,
        0.5,
        f"not available: {reason}",
        ha="center",
        va="center",
        wrap=True,
        transform=axes.transAxes,
    )
    if title:
        axes.set_title(title)
    return figure


def _display_image(image: ArrayLike, name: str) -> NDArray[np.float64]:
    """Convert an image to what ``imshow`` draws: ``(H, W)`` or ``(H, W, 3)`` in [0, 1].

    Args:
        image: ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``, uint8 in [0, 255] or float in
            [0, 1]. Float values outside [0, 1] are clipped, NaN stays NaN.
        name: Name of the array in the error message.

    Raises:
        ValueError: If the shape is not one of the above.
    """
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] == 3)):
        raise ValueError(
            f"{name} must have shape (H, W), (H, W, 1) or (H, W, 3), got {array.shape}."
        )

    if np.issubdtype(array.dtype, np.integer):
        scaled = array.astype(np.float64) / 255.0
    else:
        scaled = array.astype(np.float64)
    return np.clip(scaled, 0.0, 1.0)


def _show_image(axes: Axes, image: NDArray[np.float64]) -> None:
    """Draw an image from ``_display_image``, gray colormap for one channel, no ticks."""
    if image.ndim == 2:
        axes.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
    else:
        axes.imshow(image)
    _hide_ticks(axes)


def _hide_ticks(axes: Axes) -> None:
    """Remove ticks and spines but keep the title and y label visible."""
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)


def _check_preview_arrays(
    arrays: Mapping[str, np.ndarray | None], context: str
) -> dict[str, np.ndarray]:
    """Check that preview arrays share N, H and W and return the ones that are given.

    Args:
        arrays: ``x`` and ``x_perturbed`` of shape ``(N, H, W, C)``, ``mask`` of shape
            ``(N, H, W, 1)`` or ``(N, H, W)``, and optionally ``reconstruction`` of the
            shape of ``x`` (``None`` or absent when not drawn).
        context: Where the arrays come from, for the error message.

    Raises:
        ValueError: If a required array is missing or the shapes disagree.
    """
    checked: dict[str, np.ndarray] = {}
    for key in _PREVIEW_KEYS:
        value = arrays.get(key)
        if value is None:
            if key != "reconstruction":
                raise ValueError(f"{context}: the array {key!r} is missing.")
            continue
        checked[key] = np.asarray(value)

    x = checked["x"]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(
            f"{context}: 'x' must have shape (N, H, W, C) with C 1 or 3, got {x.shape}."
        )
    for key in ("x_perturbed", "reconstruction"):
        if key in checked and checked[key].shape != x.shape:
            raise ValueError(
                f"{context}: {key!r} has shape {checked[key].shape}, expected the shape of "
                f"'x' {x.shape}."
            )
    mask_shape = checked["mask"].shape
    if mask_shape not in (x.shape[:3], (*x.shape[:3], 1)):
        raise ValueError(f"{context}: 'mask' has shape {mask_shape}, expected {(*x.shape[:3], 1)}.")
    return checked


def _draw_preview_row(
    axes_row: Sequence[Axes], arrays: Mapping[str, np.ndarray], index: int
) -> None:
    """Draw sample ``index`` of the preview arrays into one row, one column per array."""
    for axes, key in zip(axes_row, _PREVIEW_KEYS, strict=False):
        if key in arrays:
            _show_image(axes, _display_image(arrays[key][index], key))
        else:
            axes.set_axis_off()


def perturbation_grid(
    x: np.ndarray,
    x_perturbed: np.ndarray,
    mask: np.ndarray,
    reconstruction: np.ndarray | None = None,
    *,
    title: str = "",
) -> Figure:
    """Plot the original image X, the perturbed image X* and the mask M, one row per sample.

    Args:
        x: Original images ``(N, H, W, C)``, float in [0, 1], C = 1 or 3.
        x_perturbed: Perturbed images X*, same shape as ``x``.
        mask: Perturbation mask M ``(N, H, W, 1)`` or ``(N, H, W)``, values in {0, 1}.
        reconstruction: Optional generator output X_hat, same shape as ``x``; adds a
            fourth column.
        title: Figure title.

    Returns:
        A figure with ``N`` rows and 3 or 4 columns (X, X*, M, X_hat). One-channel images
        use the gray colormap with range [0, 1]. With ``N = 0`` a "not available" figure.

    Raises:
        ValueError: If the shapes disagree.
    """
    arrays = _check_preview_arrays(
        {"x": x, "x_perturbed": x_perturbed, "mask": mask, "reconstruction": reconstruction},
        "perturbation_grid",
    )
    count = arrays["x"].shape[0]
    if count == 0:
        return _unavailable_figure("there are no samples", title=title)

    columns = len(arrays)
    figure = Figure(figsize=(columns * _CELL_INCHES, count * _CELL_INCHES), layout="constrained")
    grid = figure.subplots(count, columns, squeeze=False)
    for row in range(count):
        _draw_preview_row(grid[row], arrays, row)

    for axes, key in zip(grid[0], arrays, strict=True):
        axes.set_title(_PREVIEW_TITLES[key])
    if title:
        figure.suptitle(title)
    return figure


def training_previews(
    previews: Sequence[tuple[int, Mapping[str, np.ndarray]]],
    *,
    max_epochs: int = 4,
    max_samples: int = 4,
) -> Figure:
    """Plot the training batch previews of the last epochs, one block of rows per epoch.

    Args:
        previews: ``(epoch, arrays)`` pairs as recorded during training. ``arrays`` has
            ``x``, ``x_perturbed``, ``mask`` and usually ``reconstruction``, with the shapes
            and ranges of ``perturbation_grid``.
        max_epochs: Number of epochs to show, the highest epoch numbers.
        max_samples: Number of samples to show per epoch, the first ones.

    Returns:
        A figure with one row per shown sample and the columns X, X*, M and X_hat. The
        first image of each row has the y label "epoch N". X_hat cells stay empty for an
        epoch without a reconstruction. With no samples a "not available" figure.

    Raises:
        ValueError: If ``max_epochs`` or ``max_samples`` is below 1, or the arrays of an
            epoch are missing or disagree in shape.
    """
    if max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}.")
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, got {max_samples}.")

    latest = sorted(previews, key=lambda pair: pair[0])[-max_epochs:]
    blocks = [
        (epoch, _check_preview_arrays(arrays, f"training_previews, epoch {epoch}"))
        for epoch, arrays in latest
    ]
    rows = sum(min(arrays["x"].shape[0], max_samples) for _, arrays in blocks)
    if rows == 0:
        return _unavailable_figure("no training previews were recorded", title="training previews")

    columns = 4 if any("reconstruction" in arrays for _, arrays in blocks) else 3
    figure = Figure(figsize=(columns * _CELL_INCHES, rows * _CELL_INCHES), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    row = 0
    for epoch, arrays in blocks:
        for index in range(min(arrays["x"].shape[0], max_samples)):
            _draw_preview_row(grid[row], arrays, index)
            grid[row][0].set_ylabel(f"epoch {epoch}")
            row += 1

    for axes, key in zip(grid[0], _PREVIEW_KEYS, strict=False):
        axes.set_title(_PREVIEW_TITLES[key])
    return figure


def _labels_and_scores(
    labels: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Return labels as bool and scores as float64, both 1-D and of equal length.

    Raises:
        ValueError: If either is not 1-D, the lengths differ or a label is not 0/1.
    """
    label_array = np.asarray(labels)
    score_array = np.asarray(scores, dtype=np.float64)
    if label_array.ndim != 1 or score_array.ndim != 1:
        raise ValueError(
            f"labels and scores must be 1-D, got shapes {label_array.shape} and "
            f"{score_array.shape}."
        )
    if label_array.size != score_array.size:
        raise ValueError(
            f"labels and scores must have the same length, got {label_array.size} and "
            f"{score_array.size}."
        )
    if label_array.dtype != np.bool_:
        invalid = ~np.isin(label_array, (0, 1))
        if invalid.any():
            examples = np.unique(label_array[invalid])[:5].tolist()
            raise ValueError(
                f"labels must contain only 0 (good) and 1 (anomalous), found {examples}."
            )
    return label_array.astype(bool), score_array


def _ranking_unavailable_reason(
    labels: NDArray[np.bool_], scores: NDArray[np.float64]
) -> str | None:
    """Say why a ranking curve cannot be drawn, or return ``None`` when it can."""
    if labels.size == 0:
        return "there are no samples"
    non_finite = int((~np.isfinite(scores)).sum())
    if non_finite:
        return f"{non_finite} of {scores.size} scores are NaN or infinite"
    anomalous = int(labels.sum())
    if anomalous == 0:
        return f"all {labels.size} samples are good"
    if anomalous == labels.size:
        return f"all {labels.size} samples are anomalous"
    return None


def roc_figure(labels: ArrayLike, scores: ArrayLike, *, title: str) -> Figure:
    """Plot the ROC curve with the AUROC in the legend.

    Args:
        labels: ``(N,)`` 0/1 or bool, 1 = anomalous.
        scores: ``(N,)`` float, higher = more anomalous.
        title: Axes title.

    Returns:
        A one-axes figure with the curve (legend "AUROC = 0.750") and the chance diagonal.
        With no samples, one class only or a non-finite score, a "not available" figure.

    Raises:
        ValueError: If the lengths differ or a label is not 0/1.
    """
    label_array, score_array = _labels_and_scores(labels, scores)
    reason = _ranking_unavailable_reason(label_array, score_array)
    if reason is not None:
        return _unavailable_figure(reason, title=title)

    false_positive_rate, true_positive_rate, _ = roc_curve(label_array, score_array)
    auroc = float(roc_auc_score(label_array, score_array))

    figure = Figure(figsize=(4.0, 4.0), layout="constrained")
    axes = figure.add_subplot()
    axes.plot(false_positive_rate, true_positive_rate, label=f"AUROC = {auroc:.3f}")
    axes.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="gray", label="chance")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_title(title)
    axes.legend(loc="lower right")
    return figure


def pr_figure(labels: ArrayLike, scores: ArrayLike, *, title: str) -> Figure:
    """Plot the precision-recall curve with the AP and the prevalence in the legend.

    Args:
        labels: ``(N,)`` 0/1 or bool, 1 = anomalous (the positive class).
        scores: ``(N,)`` float, higher = more anomalous.
        title: Axes title.

    Returns:
        A one-axes figure with the curve (legend "AP = 0.833") and a horizontal line at the
        share of anomalous samples, the precision of a random ranking. With no samples,
        one class only or a non-finite score, a "not available" figure.

    Raises:
        ValueError: If the lengths differ or a label is not 0/1.
    """
    label_array, score_array = _labels_and_scores(labels, scores)
    reason = _ranking_unavailable_reason(label_array, score_array)
    if reason is not None:
        return _unavailable_figure(reason, title=title)

    precision, recall, _ = precision_recall_curve(label_array, score_array)
    average_precision = float(average_precision_score(label_array, score_array))
    prevalence = float(label_array.mean())

    figure = Figure(figsize=(4.0, 4.0), layout="constrained")
    axes = figure.add_subplot()
    axes.step(recall, precision, where="post", label=f"AP = {average_precision:.3f}")
    axes.axhline(prevalence, linestyle="--", color="gray", label=f"prevalence = {prevalence:.3f}")
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_title(title)
    axes.legend(loc="lower left")
    return figure


def score_histogram(
    labels: ArrayLike, scores: ArrayLike, *, threshold: float | None, title: str
) -> Figure:
    """Plot overlapping score histograms of good and anomalous samples and the threshold.

    Both classes share the bin edges, so their bars line up. Non-finite scores are left
    out and their number is shown in the title.

    Args:
        labels: ``(N,)`` 0/1 or bool, 1 = anomalous.
        scores: ``(N,)`` float, higher = more anomalous.
        threshold: Decision threshold drawn as a vertical line; ``None`` or NaN draws none.
        title: Axes title.

    Returns:
        A one-axes figure with one histogram per class present (legend "good (n=3)",
        "anomalous (n=2)") and "threshold = 0.400". A single class is drawn alone. With no
        finite score, a "not available" figure.

    Raises:
        ValueError: If the lengths differ or a label is not 0/1.
    """
    label_array, score_array = _labels_and_scores(labels, scores)
    finite = np.isfinite(score_array)
    if not finite.any():
        reason = "there are no samples" if score_array.size == 0 else "no score is finite"
        return _unavailable_figure(reason, title=title)

    left_out = int((~finite).sum())
    if left_out:
        logger.warning("Score histogram %r leaves out %d non-finite score(s).", title, left_out)
        title = f"{title} ({left_out} non-finite left out)"
    label_array = label_array[finite]
    score_array = score_array[finite]
    edges = np.histogram_bin_edges(score_array, bins="auto")
    if edges.size - 1 > _MAX_HISTOGRAM_BINS:
        edges = np.histogram_bin_edges(score_array, bins=_MAX_HISTOGRAM_BINS)

    figure = Figure(figsize=(5.0, 3.5), layout="constrained")
    axes = figure.add_subplot()
    for name, selection, color in (
        ("good", ~label_array, _GOOD_COLOR),
        ("anomalous", label_array, _ANOMALOUS_COLOR),
    ):
        count = int(selection.sum())
        if count:
            axes.hist(
                score_array[selection],
                bins=edges.tolist(),
                alpha=0.5,
                color=color,
                label=f"{name} (n={count})",
            )
    if threshold is not None and np.isfinite(threshold):
        axes.axvline(threshold, color="black", linestyle="--", label=f"threshold = {threshold:.3f}")

    axes.set_xlabel("anomaly score")
    axes.set_ylabel("count")
    axes.set_title(title)
    axes.legend()
    return figure


def _plottable_column(history: pd.DataFrame, column: str) -> pd.Series | None:
    """Return a history column as floats, or ``None`` when it is all zero or all NaN."""
    values = pd.to_numeric(history[column], errors="coerce").astype(np.float64)
    if values.isna().all() or (values.fillna(0.0) == 0.0).all():
        return None
    return values


def loss_curves(history: pd.DataFrame) -> Figure:
    """Plot the training losses and the validation AUROC per epoch.

    Args:
        history: One row per epoch with the columns ``epoch``, ``loss_*`` and
            ``validation_auroc`` (in [0, 1], NaN for epochs without validation). Without
            ``epoch``, rows are numbered from 1. ``validation_ap`` is drawn too when present.

    Returns:
        A figure with two panels sharing the epoch axis: the top has one line per
        ``loss_*`` column that is not all zero or NaN, the bottom the validation metrics.
        A panel with nothing to draw says why. An empty history gives a one-axes
        "not available" figure.
    """
    if history.empty:
        return _unavailable_figure("the training history is empty", title="loss curves")

    if "epoch" in history.columns:
        epochs = pd.to_numeric(history["epoch"], errors="coerce").to_numpy(np.float64)
    else:
        logger.warning("The training history has no 'epoch' column, so rows are numbered from 1.")
        epochs = np.arange(1, len(history) + 1, dtype=np.float64)

    figure = Figure(figsize=(6.0, 5.0), layout="constrained")
    loss_axes, validation_axes = figure.subplots(2, 1, sharex=True)

    loss_columns = [column for column in history.columns if str(column).startswith("loss_")]
    drawn = 0
    for column in loss_columns:
        values = _plottable_column(history, column)
        if values is not None:
            loss_axes.plot(epochs, values.to_numpy(), marker=".", label=column)
            drawn += 1
    if drawn:
        loss_axes.legend(fontsize="small")
    else:
        _panel_note(loss_axes, "no loss column with a non-zero value")
    loss_axes.set_ylabel("loss")
    loss_axes.set_title("training losses")

    drawn = 0
    for column in ("validation_auroc", "validation_ap"):
        if column not in history.columns:
            continue
        values = _plottable_column(history, column)
        if values is None:
            continue
        measured = values.notna().to_numpy()
        validation_axes.plot(
            epochs[measured], values.to_numpy()[measured], marker="o", label=column
        )
        drawn += 1
    if drawn:
        validation_axes.set_ylim(0.0, 1.02)
        validation_axes.legend(fontsize="small")
    else:
        _panel_note(validation_axes, "no validation AUROC was recorded")
    validation_axes.set_xlabel("epoch")
    validation_axes.set_ylabel("validation")
    return figure


def _panel_note(axes: Axes, reason: str) -> None:
    """Write "not available: <reason>" in the middle of an empty panel."""
    axes.text(
        0.5, 0.5, f"not available: {reason}", ha="center", va="center", transform=axes.transAxes
    )


def _mask_2d(mask: ArrayLike, shape: tuple[int, ...], index: int) -> NDArray[np.bool_]:
    """Return a ground-truth mask as ``(H, W)`` bool after checking it matches the map."""
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.shape != shape:
        raise ValueError(
            f"masks[{index}] has shape {np.asarray(mask).shape}, expected {shape} "
            f"(the size of maps[{index}])."
        )
    return array > 0.5


def _colour_range(maps: Sequence[NDArray[np.float64]], vmax: float | None) -> tuple[float, float]:
    """Return the common (vmin, vmax) of the anomaly maps: 0 (or below) to the maximum."""
    finite = [values[np.isfinite(values)] for values in maps]
    finite = [values for values in finite if values.size]
    lowest = min((float(values.min()) for values in finite), default=0.0)
    vmin = min(0.0, lowest)
    if vmax is None:
        vmax = max((float(values.max()) for values in finite), default=1.0)
    if not np.isfinite(vmax) or vmax <= vmin:
        logger.warning("Heatmap vmax %s is not above vmin %s, so vmin + 1 is used.", vmax, vmin)
        vmax = vmin + 1.0
    return vmin, float(vmax)


def heatmap_overlays(
    images: Sequence[np.ndarray],
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    *,
    masks: Sequence[np.ndarray | None] | None = None,
    vmax: float | None = None,
) -> Figure:
    """Plot images beside their anomaly maps overlaid, one row per image.

    Args:
        images: Images ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``, uint8 in [0, 255] or
            float in [0, 1].
        maps: Anomaly maps ``(H, W)`` float, higher = more anomalous, each the size of its
            image. NaN pixels are drawn transparent.
        titles: One title per image, e.g. the file name and the image score.
        masks: Optional ground-truth masks ``(H, W)`` or ``(H, W, 1)`` with values in
            {0, 1}; ``None`` entries are skipped. Drawn as a white contour on the overlay.
        vmax: Upper end of the common colour scale; the maximum over all maps if ``None``.
            The lower end is 0, or the minimum over all maps when that is negative.

    Returns:
        A figure with two columns per row (the image, then the map in the jet colormap
        with alpha 0.5 over the image) and one colour bar for all rows, so ``2 N + 1``
        axes. With no images, a "not available" figure.

    Raises:
        ValueError: If the list lengths differ or a map or mask does not match its image.
    """
    if len(maps) != len(images) or len(titles) != len(images):
        raise ValueError(
            f"images, maps and titles must have the same length, got {len(images)}, "
            f"{len(maps)} and {len(titles)}."
        )
    if masks is not None and len(masks) != len(images):
        raise ValueError(
            f"masks must have one entry per image, got {len(masks)} for {len(images)}."
        )
    if not images:
        return _unavailable_figure("no images", title="anomaly maps")

    displayed = [_display_image(image, f"images[{index}]") for index, image in enumerate(images)]
    map_arrays = [np.asarray(values, dtype=np.float64) for values in maps]
    for index, (image, values) in enumerate(zip(displayed, map_arrays, strict=True)):
        if values.shape != image.shape[:2]:
            raise ValueError(
                f"maps[{index}] has shape {values.shape}, expected the image size "
                f"{image.shape[:2]}; resize the map to the image first."
            )
    vmin, vmax = _colour_range(map_arrays, vmax)

    count = len(displayed)
    figure = Figure(figsize=(2 * 2.0 + 0.6, count * 2.0), layout="constrained")
    grid = figure.subplots(count, 2, squeeze=False)
    for index in range(count):
        image_axes, overlay_axes = grid[index]
        _show_image(image_axes, displayed[index])
        image_axes.set_title(titles[index], fontsize="small")

        _show_image(overlay_axes, displayed[index])
        overlay_axes.imshow(map_arrays[index], cmap="jet", alpha=0.5, vmin=vmin, vmax=vmax)
        overlay_axes.set_title("anomaly map", fontsize="small")
        mask = None if masks is None else masks[index]
        if mask is not None:
            region = _mask_2d(mask, map_arrays[index].shape, index)
            # contour() warns when the mask is constant, because no level is crossed.
            if region.any() and not region.all():
                overlay_axes.contour(
                    region.astype(np.float64), levels=[0.5], colors="white", linewidths=1.0
                )

    colour_scale = ScalarMappable(norm=Normalize(vmin=vmin, vmax=vmax), cmap="jet")
    figure.colorbar(colour_scale, ax=grid.ravel().tolist(), label="anomaly map", shrink=0.8)
    return figure
