"""Atomic file writes: write to a temporary file beside the target, then rename.

A reader (or a restarted run) therefore reads either the old file or the complete new
one, never a half-written file, even when the process is killed mid-write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target`` that is renamed onto it on success.

    The caller writes the whole file to the yielded path. On an exception the temporary
    file is removed and ``target`` is left untouched.
    """
    target_path = Path(target)
    target_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary_name = tempfile.mkstemp(
        prefix=f".{target_path.name}.", suffix=".tmp", dir=target_path.parent
    )
    os.close(handle)
    temporary_path = Path(temporary_name)
    try:
        yield temporary_path
        with open(temporary_path, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary_path, target_path)
    except BaseException:
        temporary_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(
    target: str | os.PathLike[str], mode: str = "w", encoding: str | None = "utf-8"
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``target`` when closed cleanly."""
    if "b" in mode:
        encoding = None
    with atomic_path(target) as temporary_path, open(temporary_path, mode, encoding=encoding) as f:
        yield f
