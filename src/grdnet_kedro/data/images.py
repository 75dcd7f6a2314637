"""Image and mask decoding with explicit mode and channel conversion.

Every image reaches the model as ``uint8`` of shape ``(H, W, C)`` with ``C`` equal to the
requested ``channels`` (1 or 3). The rules:

- ``L`` and ``RGB`` load as they are. ``1`` (bilevel) becomes ``L`` with values 0/255.
- ``RGBA``, ``LA`` and ``PA`` lose their alpha channel. The colour values are kept as
  stored, not composited on a background.
- ``P`` goes through its palette to ``RGB``, and ``CMYK``, ``YCbCr``, ``LAB`` and ``HSV``
  are converted to ``RGB`` by Pillow. These and the alpha drop are logged as warnings.
- Integer modes wider than 8 bits (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``, ``I``) and
  the float mode ``F`` are scaled by ``255 / sixteen_bit_max`` (default 65535) and rounded.
  Values are clipped to [0, 255] only after scaling, so a picture stored as 8-bit and as
  16-bit with values x257 decodes to the same array.
- Gray to RGB replicates the channel; RGB to gray uses Pillow's ``convert("L")``, the
  ITU-R 601-2 luma ``L = 0.299 R + 0.587 G + 0.114 B``.

Conversions are counted in a :class:`ConversionCounter` so that a loop over many images
logs one line per kind of conversion with its count, not one line per image.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})

DEFAULT_SIXTEEN_BIT_MAX = 65535.0

# Exceptions Pillow raises for missing, empty, truncated or corrupt files.
# UnidentifiedImageError and FileNotFoundError are subclasses of OSError. Some broken PNG
# chunks raise SyntaxError, and an image over Pillow's pixel limit raises
# DecompressionBombError.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
)

_ALPHA_MODES = {"RGBA": "RGB", "LA": "L", "PA": "RGB", "RGBa": "RGB", "La": "L"}
_WIDE_INTEGER_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})
_COLOUR_MODES_TO_RGB = frozenset({"CMYK", "YCbCr", "LAB", "HSV"})


class DataError(ValueError):
    """Invalid or unreadable input data; the message names the file or folder and the fix."""


def describe_decode_error(error: BaseException) -> str:
    """Describe a Pillow decode error in a few words, without repeating the file path."""
    if isinstance(error, UnidentifiedImageError):
        return "not an image format Pillow recognises (empty or corrupt file)"
    if isinstance(error, FileNotFoundError):
        return "file not found"
    return f"{type(error).__name__}: {error}"


# Number of paths a warning lists before it only gives the count of the rest.
WARNING_LIST_LIMIT = 20


def format_failures(lines: Sequence[str], limit: int | None = None) -> str:
    """Format failure lines as an indented bullet list, keeping the first ``limit`` lines."""
    bullet_lines = [f"  - {line}" for line in (lines if limit is None else lines[:limit])]
    if limit is not None and len(lines) > limit:
        bullet_lines.append(f"  ... and {len(lines) - limit} more")
    return "\n".join(bullet_lines)


@dataclass(frozen=True)
class _ConversionKind:
    description: str
    level: int


# Each conversion kind, with the sentence that follows "<count> image(s)" in the log.
CONVERSION_KINDS: dict[str, _ConversionKind] = {
    "alpha_dropped": _ConversionKind("had an alpha channel that was dropped", logging.WARNING),
    "palette_to_rgb": _ConversionKind(
        "were palette (P) images converted to RGB through their palette", logging.WARNING
    ),
    "colour_space_to_rgb": _ConversionKind(
        "were CMYK, YCbCr, LAB or HSV images converted to RGB", logging.WARNING
    ),
    "bilevel_to_gray": _ConversionKind("were 1-bit images converted to L (0/255)", logging.INFO),
    "wide_integer_scaled": _ConversionKind(
        "were 16- or 32-bit integer images scaled to 8 bits by 255 / sixteen_bit_max",
        logging.INFO,
    ),
    "float_scaled": _ConversionKind(
        "were float (F) images scaled to 8 bits by 255 / sixteen_bit_max", logging.INFO
    ),
    "float_below_one": _ConversionKind(
        "were float (F) images with every value <= 1 scaled by 255 / 65535, so they are "
        "almost black; set sixteen_bit_max to 1.0 if the data is in [0, 1]",
        logging.WARNING,
    ),
    "clipped": _ConversionKind(
        "had values outside [0, sixteen_bit_max] that were clipped; set sixteen_bit_max "
        "to the dataset maximum",
        logging.WARNING,
    ),
    "gray_to_rgb": _ConversionKind(
        "were gray images converted to 3 channels by replicating the channel", logging.INFO
    ),
    "rgb_to_gray": _ConversionKind(
        "were colour images converted to 1 channel with ITU-R 601-2 luma", logging.INFO
    ),
}


@dataclass
class ConversionCounter:
    """Counts of the mode and channel conversions applied while decoding images.

    Attributes:
        counts: Number of images per conversion kind (keys of ``CONVERSION_KINDS``).
        examples: The first image path seen for each conversion kind.
    """

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, Path] = field(default_factory=dict)

    def record(self, kind: str, path: Path) -> None:
        """Count one image for the conversion ``kind``."""
        if kind not in CONVERSION_KINDS:
            raise KeyError(
                f"unknown conversion kind {kind!r}, expected one of {sorted(CONVERSION_KINDS)}"
            )
        self.counts[kind] += 1
        self.examples.setdefault(kind, path)

    def log_summary(self, context: str) -> None:
        """Log one line per conversion kind seen, with its count and a first example path.

        Args:
            context: What was decoded, for example ``"category mono"`` or a file path.
        """
        for kind, count in sorted(self.counts.items()):
            conversion = CONVERSION_KINDS[kind]
            logger.log(
                conversion.level,
                "%s: %d image(s) %s (first: %s)",
                context,
                count,
                conversion.description,
                self.examples[kind],
            )


def list_images(folder: Path) -> list[Path]:
    """List the image files directly inside ``folder``, sorted by file name.

    Extensions in ``IMAGE_EXTENSIONS`` match case-insensitively (``.PNG``, ``.Jpeg``).
    Hidden files (names starting with ``.``, such as ``.DS_Store`` and the macOS
    resource forks ``._x.png``) and sub-folders are skipped.

    Raises:
        DataError: ``folder`` does not exist or is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} not found: create it or fix the dataset path")

    images = [
        path
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and path.suffix.lower() in IMAGE_EXTENSIONS
    ]
    return sorted(images, key=lambda path: path.name)


def read_image_header(path: Path) -> tuple[int, int, str]:
    """Read ``(width, height, mode)`` from the file header without decoding the pixels.

    A truncated file whose header is intact passes; :func:`load_image` detects it.

    Raises:
        DataError: The file is missing, empty or not an image Pillow can identify.
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            return int(width), int(height), str(image.mode)
    except DECODE_ERRORS as error:
        raise DataError(
            f"cannot read image header of {path}: {describe_decode_error(error)}"
        ) from error


def load_image(
    path: Path,
    *,
    channels: Literal[1, 3],
    sixteen_bit_max: float | None = None,
    conversions: ConversionCounter | None = None,
) -> np.ndarray:
    """Decode one image to ``uint8`` with the requested number of channels.

    Args:
        path: Image file in any format Pillow reads.
        channels: 1 (gray) or 3 (RGB) output channels.
        sixteen_bit_max: Value that maps to 255 for integer modes wider than 8 bits and
            for float images; ``None`` means 65535. Use 4095 for 12-bit data stored in
            16-bit files.
        conversions: Counter that collects the conversions applied. When ``None``, the
            conversions of this image are logged at once.

    Returns:
        ``uint8`` array of shape ``(H, W, channels)``, values in [0, 255].

    Raises:
        DataError: The file is missing, empty, truncated or not an image; or ``channels``
            or ``sixteen_bit_max`` is invalid.
    """
    path = Path(path)
    _check_channels(channels)
    maximum = DEFAULT_SIXTEEN_BIT_MAX if sixteen_bit_max is None else float(sixteen_bit_max)
    if not maximum > 0:
        raise DataError(f"sixteen_bit_max must be > 0, got {sixteen_bit_max}")
    counter = conversions if conversions is not None else ConversionCounter()

    try:
        with Image.open(path) as image:
            image.load()
            pixels = _to_gray_or_rgb(image, path, maximum, sixteen_bit_max, counter)
    except DataError:
        raise
    except DECODE_ERRORS as error:
        raise DataError(f"cannot decode image {path}: {describe_decode_error(error)}") from error

    pixels = _match_channels(pixels, channels, path, counter)
    if conversions is None:
        counter.log_summary(str(path))
    return pixels


def load_mask(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """Decode a mask of any mode, resize it with nearest neighbour and binarise it.

    A pixel is 1 where any channel is > 0 (alpha is ignored), so anti-aliased gray edges
    count as foreground.

    Args:
        path: Mask image file.
        size: Target ``(width, height)``, in Pillow's order; ``None`` keeps the file size.

    Returns:
        ``uint8`` array of shape ``(height, width)`` with values in {0, 1}.

    Raises:
        DataError: The file cannot be decoded or ``size`` is not two positive integers.
    """
    path = Path(path)
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise DataError(f"mask size must be (width, height) with positive values, got {size}")

    try:
        with Image.open(path) as opened:
            opened.load()
            mask: Image.Image = opened.convert("RGBA") if opened.mode in ("P", "PA") else opened
            if size is not None and mask.size != tuple(size):
                mask = mask.resize((int(size[0]), int(size[1])), Image.Resampling.NEAREST)
            values = np.asarray(mask)
    except DECODE_ERRORS as error:
        raise DataError(f"cannot decode mask {path}: {describe_decode_error(error)}") from error

    if values.ndim == 3:
        colour_channels = 1 if values.shape[2] == 2 else min(values.shape[2], 3)
        values = values[..., :colour_channels].max(axis=2)
    return (values > 0).astype(np.uint8)


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 or 3, got {channels!r}")


def _to_gray_or_rgb(
    image: Image.Image,
    path: Path,
    maximum: float,
    sixteen_bit_max: float | None,
    counter: ConversionCounter,
) -> np.ndarray:
    """Convert a decoded image of any mode to ``uint8`` ``(H, W)`` gray or ``(H, W, 3)`` RGB."""
    mode = image.mode

    if mode in ("L", "RGB"):
        return np.asarray(image, dtype=np.uint8)

    if mode == "1":
        counter.record("bilevel_to_gray", path)
        return np.asarray(image.convert("L"), dtype=np.uint8)

    if mode in _ALPHA_MODES:
        counter.record("alpha_dropped", path)
        if mode == "PA":
            image = image.convert("RGBA")
        values = np.asarray(image, dtype=np.uint8)
        return values[..., :3] if _ALPHA_MODES[mode] == "RGB" else values[..., 0]

    if mode == "P":
        # A palette with a transparent entry converts through RGBA, then alpha is dropped.
        if "transparency" in image.info:
            counter.record("alpha_dropped", path)
            return np.asarray(image.convert("RGBA"), dtype=np.uint8)[..., :3]
        counter.record("palette_to_rgb", path)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)

    if mode in _WIDE_INTEGER_MODES or mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if mode == "F":
            counter.record("float_scaled", path)
            if sixteen_bit_max is None and values.size and float(values.max()) <= 1.0:
                counter.record("float_below_one", path)
        else:
            counter.record("wide_integer_scaled", path)
        return _scale_to_uint8(values, maximum, path, counter)

    if mode in _COLOUR_MODES_TO_RGB:
        counter.record("colour_space_to_rgb", path)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)

    raise DataError(
        f"image {path} has the unsupported mode {mode!r}: save it as 8-bit L or RGB, "
        "or as 16-bit gray"
    )


def _scale_to_uint8(
    values: np.ndarray, maximum: float, path: Path, counter: ConversionCounter
) -> np.ndarray:
    """Map ``[0, maximum]`` to ``[0, 255]``, round half to even, then clip."""
    scaled = np.rint(values * (255.0 / maximum))
    if values.size and (float(values.min()) < 0.0 or float(values.max()) > maximum):
        counter.record("clipped", path)
    return np.clip(scaled, 0.0, 255.0).astype(np.uint8)


def _match_channels(
    pixels: np.ndarray, channels: int, path: Path, counter: ConversionCounter
) -> np.ndarray:
    """Turn ``(H, W)`` or ``(H, W, 3)`` ``uint8`` into ``(H, W, channels)``."""
    is_gray = pixels.ndim == 2

    if channels == 1 and is_gray:
        return pixels[..., np.newaxis]
    if channels == 3 and not is_gray:
        return pixels

    if channels == 3:
        counter.record("gray_to_rgb", path)
        return np.repeat(pixels[..., np.newaxis], 3, axis=2)

    counter.record("rgb_to_gray", path)
    luma = Image.fromarray(np.ascontiguousarray(pixels)).convert("L")
    return np.asarray(luma, dtype=np.uint8)[..., np.newaxis]
