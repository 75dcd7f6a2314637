"""Write a tiny MVTec-AD-style dataset of smooth textures with drawn defects and masks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

DEFECT_TYPE = "scratch"


def _texture(rng: np.random.Generator, size: tuple[int, int], channels: int) -> np.ndarray:
    """Low-frequency sinusoid plus small noise, float in [0, 1], shape (H, W, channels)."""
    height, width = size
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    phase = rng.uniform(0.0, 2.0 * np.pi)
    wave = 0.5 + 0.2 * np.sin(2.0 * np.pi * (rows / height + columns / width) + phase)
    planes = [wave + rng.normal(0.0, 0.02, size) + 0.05 * channel for channel in range(channels)]
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0)


def _defect_mask(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of an ellipse blob or a thick line, at least a few pixels large."""
    height, width = size
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    center_row = rng.uniform(0.3, 0.7) * height
    center_column = rng.uniform(0.3, 0.7) * width

    if rng.random() < 0.5:
        radius_row = rng.uniform(0.1, 0.2) * height
        radius_column = rng.uniform(0.1, 0.2) * width
        distance = ((rows - center_row) / radius_row) ** 2
        distance += ((columns - center_column) / radius_column) ** 2
        return distance <= 1.0

    angle = rng.uniform(0.0, np.pi)
    across = (rows - center_row) * np.cos(angle) - (columns - center_column) * np.sin(angle)
    along = (rows - center_row) * np.sin(angle) + (columns - center_column) * np.cos(angle)
    return (np.abs(across) <= max(1.0, 0.04 * min(size))) & (np.abs(along) <= 0.3 * min(size))


def _save(values: np.ndarray, path: Path) -> None:
    pixels = np.rint(values * 255.0).astype(np.uint8)
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)


def make_tiny_mvtec(
    root: Path,
    *,
    categories: Sequence[str] = ("widget",),
    size: tuple[int, int] = (32, 32),
    n_train: int = 8,
    n_test_good: int = 3,
    n_test_defect: int = 3,
    channels: int = 1,
    seed: int = 0,
) -> Path:
    """Write ``<root>/<category>/{train/good,test/good,test/scratch,ground_truth/scratch}``.

    Normal images are smooth sinusoid textures with small noise. Each ``test/scratch``
    image has a bright or dark blob or line. Its mask ``ground_truth/scratch/<stem>_mask.png``
    is 255 on the defect and 0 elsewhere. The same arguments write the same bytes.

    Args:
        root: Dataset root (created if missing).
        categories: Category folder names.
        size: Image ``(height, width)`` in pixels.
        n_train: Images in ``train/good``.
        n_test_good: Images in ``test/good``.
        n_test_defect: Images in ``test/scratch``, each with a mask.
        channels: 1 (``L`` PNG) or 3 (``RGB`` PNG).
        seed: Seed of the numpy generator.

    Returns:
        ``root``.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)

    for category in categories:
        category_dir = root / category
        folders = {
            "train": category_dir / "train" / "good",
            "test_good": category_dir / "test" / "good",
            "test_defect": category_dir / "test" / DEFECT_TYPE,
            "masks": category_dir / "ground_truth" / DEFECT_TYPE,
        }
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)

        for index in range(n_train):
            _save(_texture(rng, size, channels), folders["train"] / f"{index:03d}.png")
        for index in range(n_test_good):
            _save(_texture(rng, size, channels), folders["test_good"] / f"{index:03d}.png")

        for index in range(n_test_defect):
            image = _texture(rng, size, channels)
            mask = _defect_mask(rng, size)
            image[mask] = 1.0 if rng.random() < 0.5 else 0.0
            _save(image, folders["test_defect"] / f"{index:03d}.png")
            mask_pixels = mask.astype(np.uint8) * 255
            Image.fromarray(mask_pixels).save(folders["masks"] / f"{index:03d}_mask.png")

    return root
