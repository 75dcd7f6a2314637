"""Local Kedro datasets that write atomically (temporary file, then rename).

kedro-datasets writes straight to the target path, so a killed run can leave a
half-written CSV or checkpoint behind. These small datasets cover the file kinds this
project produces and go through :func:`grdnet_kedro.atomic.atomic_path`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from kedro.io import AbstractDataset, DatasetError

from grdnet_kedro.atomic import atomic_open, atomic_path


class _LocalFileDataset(AbstractDataset[Any, Any]):
    """Base of the datasets below: one local file, written atomically."""

    def __init__(
        self,
        filepath: str,
        load_args: dict[str, Any] | None = None,
        missing_hint: str | None = None,
        metadata: Any = None,
    ) -> None:
        self.filepath = Path(filepath)
        self.load_args = dict(load_args or {})
        self.missing_hint = missing_hint
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self.filepath)}

    def _exists(self) -> bool:
        return self.filepath.is_file()

    def _require_file(self) -> None:
        if not self.filepath.is_file():
            hint = self.missing_hint or "run the pipeline that produces it first"
            raise DatasetError(f"{self.filepath} does not exist: {hint}")


class CSVDataset(_LocalFileDataset):
    """A pandas table stored as CSV (no index column)."""

    def load(self) -> pd.DataFrame:
        """Read the table; empty cells become NaN, as pandas reads them."""
        self._require_file()
        return pd.read_csv(self.filepath, **self.load_args)

    def save(self, data: pd.DataFrame) -> None:
        """Write the table atomically."""
        with atomic_open(self.filepath, "w") as handle:
            data.to_csv(handle, index=False)


class JSONDataset(_LocalFileDataset):
    """A JSON document (dicts, lists, numbers, strings, null)."""

    def load(self) -> Any:
        """Read the document."""
        self._require_file()
        with open(self.filepath, encoding="utf-8") as handle:
            return json.load(handle)

    def save(self, data: Any) -> None:
        """Write the document atomically, indented for reading."""
        with atomic_open(self.filepath, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=False, allow_nan=False)
            handle.write("\n")


class TextDataset(_LocalFileDataset):
    """A UTF-8 text file (e.g. a Markdown report)."""

    def load(self) -> str:
        """Read the text."""
        self._require_file()
        return self.filepath.read_text(encoding="utf-8")

    def save(self, data: str) -> None:
        """Write the text atomically."""
        with atomic_open(self.filepath, "w") as handle:
            handle.write(data)


class NpzDataset(_LocalFileDataset):
    """A dict of numpy arrays in an uncompressed ``.npz`` archive (no pickled objects)."""

    def load(self) -> dict[str, np.ndarray]:
        """Read every array into memory."""
        self._require_file()
        with np.load(self.filepath, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}

    def save(self, data: dict[str, np.ndarray]) -> None:
        """Write the arrays atomically."""
        with atomic_open(self.filepath, "wb") as handle:
            np.savez(handle, allow_pickle=False, **data)


class FigureDataset(_LocalFileDataset):
    """A matplotlib figure saved as PNG; the figure is closed after saving."""

    def __init__(
        self,
        filepath: str,
        save_args: dict[str, Any] | None = None,
        load_args: dict[str, Any] | None = None,
        missing_hint: str | None = None,
        metadata: Any = None,
    ) -> None:
        super().__init__(
            filepath, load_args=load_args, missing_hint=missing_hint, metadata=metadata
        )
        self.save_args = {"dpi": 110, "bbox_inches": "tight", **(save_args or {})}

    def load(self) -> bytes:
        """Return the PNG bytes (figures are write-only reports)."""
        self._require_file()
        return self.filepath.read_bytes()

    def save(self, data: Any) -> None:
        """Render the figure atomically and release its memory."""
        import matplotlib.pyplot as plt

        with atomic_open(self.filepath, "wb") as handle:
            data.savefig(handle, format="png", **self.save_args)
        plt.close(data)


class BytesDataset(_LocalFileDataset):
    """A binary file such as an ONNX model, saved from and loaded as ``bytes``.

    With ``lazy: true`` :meth:`load` returns a function that reads the file when called,
    as ``PartitionedDataset`` does for its partitions. A node that needs the file in some
    runs only (``infer`` with ``infer.runtime: onnx``) then runs without it otherwise.
    """

    def __init__(
        self,
        filepath: str,
        lazy: bool = False,
        missing_hint: str | None = None,
        metadata: Any = None,
    ) -> None:
        super().__init__(filepath, missing_hint=missing_hint, metadata=metadata)
        self.lazy = lazy

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self.filepath), "lazy": self.lazy}

    def load(self) -> bytes | Callable[[], bytes]:
        """Read the bytes, or return a function that reads them when ``lazy``."""
        if self.lazy:
            return self._read
        return self._read()

    def _read(self) -> bytes:
        self._require_file()
        return self.filepath.read_bytes()

    def save(self, data: bytes) -> None:
        """Write the bytes atomically."""
        with atomic_open(self.filepath, "wb") as handle:
            handle.write(data)


class TorchCheckpointDataset(_LocalFileDataset):
    """A checkpoint dict of state dicts and plain values, loaded with ``weights_only=True``."""

    def load(self) -> dict[str, Any]:
        """Load on CPU; the caller moves networks to its device."""
        from grdnet_kedro.training.checkpoint import load_checkpoint

        self._require_file()
        return load_checkpoint(self.filepath, map_location="cpu")

    def save(self, data: dict[str, Any]) -> None:
        """Write the checkpoint atomically."""
        with atomic_path(self.filepath) as temporary:
            torch.save(data, temporary)
