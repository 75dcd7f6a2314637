"""Benchmark table across categories, as a DataFrame and as GitHub Markdown."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

# (column, section of the metrics dict or None for the top level, key in that section)
_METRIC_SOURCES: tuple[tuple[str, str | None, str], ...] = (
    ("image_auroc", "image", "auroc"),
    ("image_ap", "image", "ap"),
    ("image_f1_max", "image", "f1_max"),
    ("image_balanced_accuracy", "image", "balanced_accuracy"),
    ("image_f1", "image", "f1"),
    ("pixel_auroc", "pixel", "pixel_auroc"),
    ("pixel_ap", "pixel", "pixel_ap"),
    ("aupro", "pixel", "aupro"),
    ("threshold", None, "threshold"),
    ("test_good", "counts", "test_good"),
    ("test_anomalous", "counts", "test_anomalous"),
)
NUMERIC_COLUMNS = tuple(column for column, _, _ in _METRIC_SOURCES)
BENCHMARK_COLUMNS = (
    "category",
    *NUMERIC_COLUMNS[:-2],
    "threshold_source",
    *NUMERIC_COLUMNS[-2:],
)
MEAN_ROW = "mean"
# Thresholds of different models live on different score scales, so their mean means
# nothing and the mean row leaves the threshold empty.
_NOT_AVERAGED = frozenset({"threshold"})
_COUNT_COLUMNS = frozenset({"test_good", "test_anomalous"})
_MISSING = "n/a"


def _metric_value(
    metrics: Mapping[str, Any], section: str | None, key: str, category: str
) -> float:
    """Return one metric as a float, NaN when the section or key is missing or ``None``.

    Raises:
        ValueError: If the value is neither ``None`` nor a number.
    """
    container: Any = metrics if section is None else metrics.get(section)
    if not isinstance(container, Mapping):
        return math.nan
    value = container.get(key)
    if value is None:
        return math.nan

    path = key if section is None else f"{section}.{key}"
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(
            f"Metrics of category {category!r}: {path!r} must be a number or None, got "
            f"{value!r}. Check the metrics file written by the evaluate pipeline."
        )
    return float(value)


def _mean_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Build the ``mean`` row: the mean of each averaged column over defined values."""
    row: dict[str, Any] = {"category": MEAN_ROW}
    for column in NUMERIC_COLUMNS:
        values = [entry[column] for entry in rows if not math.isnan(entry[column])]
        if column in _NOT_AVERAGED or not values:
            row[column] = math.nan
        else:
            row[column] = float(np.mean(values))

    sources = {entry["threshold_source"] for entry in rows if entry["threshold_source"]}
    if len(sources) == 1:
        row["threshold_source"] = sources.pop()
    else:
        row["threshold_source"] = "mixed" if sources else ""
    return row


def benchmark_table(metrics_by_category: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Collect the metrics of every category into one table with a final mean row.

    Args:
        metrics_by_category: ``{category: metrics}``, where ``metrics`` has ``threshold``,
            ``threshold_source`` and the sections ``image`` (``auroc``, ``ap``,
            ``f1_max``, ``balanced_accuracy``, ``f1``), ``pixel`` (``pixel_auroc``,
            ``pixel_ap``, ``aupro``) and ``counts`` (``test_good``, ``test_anomalous``).
            A missing section or key, or a ``None`` value, is a missing metric.

    Returns:
        One row per category in input order, then the row ``category == "mean"`` with the
        mean of each numeric column over the categories where it is defined (NaN when it
        is defined nowhere). The mean row leaves ``threshold`` NaN because thresholds of
        different models are not comparable, and its ``threshold_source`` is the common
        source or ``"mixed"``. Columns are ``BENCHMARK_COLUMNS`` in that order; the
        numeric ones are float64 with NaN for missing values. An empty input gives a
        table with these columns and no rows.

    Raises:
        ValueError: If a metric is neither ``None`` nor a number.
    """
    rows: list[dict[str, Any]] = []
    for category, metrics in metrics_by_category.items():
        row: dict[str, Any] = {"category": str(category)}
        for column, section, key in _METRIC_SOURCES:
            row[column] = _metric_value(metrics, section, key, str(category))
        source = metrics.get("threshold_source")
        row["threshold_source"] = "" if source is None else str(source)
        rows.append(row)

    if not rows:
        logger.warning("The benchmark table is empty because no category has metrics.")
        table = pd.DataFrame({column: pd.Series(dtype=object) for column in BENCHMARK_COLUMNS})
        return table.astype(dict.fromkeys(NUMERIC_COLUMNS, np.float64))

    rows.append(_mean_row(rows))
    table = pd.DataFrame(rows, columns=list(BENCHMARK_COLUMNS))
    return table.astype(dict.fromkeys(NUMERIC_COLUMNS, np.float64))


def _format_cell(value: Any, column: str) -> str:
    """Format one Markdown cell: 4 decimals, whole counts without decimals, n/a if missing."""
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return _MISSING
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if column in _COUNT_COLUMNS and float(value).is_integer():
            return str(int(value))
        return f"{float(value):.4f}"
    # A literal "|" would end the cell early and a newline would end the row.
    return str(value).replace("|", "\\|").replace("\n", " ")


def benchmark_markdown(
    table: pd.DataFrame, *, title: str = "Benchmark", notes: Sequence[str] = ()
) -> str:
    """Render a benchmark table as GitHub Markdown with a heading and notes.

    Args:
        table: Usually the output of ``benchmark_table``; any columns are rendered in
            their order.
        title: Text of the level-1 heading.
        notes: Lines written as bullets under the table, e.g. "Thresholds calibrated on
            the test split: optimistic".

    Returns:
        The heading, the table (numbers with 4 decimals, whole counts without decimals,
        missing values as "n/a", numeric columns right-aligned) and the notes, ending with
        a newline. A table without rows keeps its header and says that no category was
        evaluated.
    """
    lines = [f"# {title}", ""]
    columns = [str(column) for column in table.columns]
    if columns:
        alignments = [
            "---:" if pd.api.types.is_numeric_dtype(table[column]) else "---"
            for column in table.columns
        ]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("| " + " | ".join(alignments) + " |")
        for values in table.itertuples(index=False, name=None):
            cells = [
                _format_cell(value, column) for value, column in zip(values, columns, strict=True)
            ]
            lines.append("| " + " | ".join(cells) + " |")
    if table.empty:
        lines.extend(["", "No category was evaluated."])

    if notes:
        lines.append("")
        lines.extend(f"- {note}" for note in notes)
    return "\n".join(lines) + "\n"
