"""Synthetic perturbation P_q: Perlin masks filled with a noise source, plus Gaussian noise.

For each sample of a batch, with probability ``q``:

1. A binary mask ``M`` is drawn where Perlin noise at lattice resolution ``(2^a, 2^b)``
   exceeds 0.5, optionally rotated. Masks smaller than ``perlin_min_area`` pixels are
   redrawn a bounded number of times, then replaced by a random filled ellipse.
2. A noise source (Perlin field, uniform pixels, another sample of the batch or a texture
   image) is restricted to the mask: ``N = M * source``.
3. ``X* = (1 - M) X + (1 - beta) M X + beta N`` with ``beta ~ U(0.5, 1)``, then Gaussian
   noise with ``sigma ~ U(0, sigma_max)`` is added and the result is clamped to [0, 1].

The reference GRD-Net code adds ``beta N`` over the whole patch (N unmasked), which
brightens the background of every perturbed patch. Here N is masked, as the GRD-Net and
DeepIndustrial-SN papers describe.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from grdnet_kedro.perturbation.augment import rotate
from grdnet_kedro.perturbation.perlin import perlin_noise

logger = logging.getLogger(__name__)

NOISE_SOURCES: tuple[str, ...] = ("perlin", "uniform", "batch", "texture")
TEXTURE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
PERLIN_THRESHOLD = 0.5
MASK_ROTATION_DEGREES = 90.0


def _default_source_weights() -> Mapping[str, float]:
    return {"perlin": 1.0}


@dataclass(frozen=True)
class PerturbationConfig:
    """Settings of the synthetic perturbation P_q.

    Attributes:
        probability: Probability ``q`` in ``[0, 1]`` that a sample is perturbed.
        perlin_min_area: Smallest accepted mask area in pixels. Smaller Perlin masks are
            redrawn.
        max_tries: Number of redraws of too-small Perlin masks before the ellipse
            fallback.
        max_scale_exponent: Perlin lattice resolutions are ``(2^a, 2^b)`` with ``a`` and
            ``b`` drawn uniformly from ``{0, ..., max_scale_exponent}``.
        rotate_mask: Whether each Perlin mask is rotated by a random angle in
            ``[-90, 90]`` degrees.
        source_weights: Relative weights of the noise sources, keyed by ``"perlin"``,
            ``"uniform"``, ``"batch"`` and ``"texture"``. Missing keys weigh 0. Stored
            read-only.
        texture_dir: Folder of texture images, searched recursively. Required when
            ``"texture"`` has a positive weight.
        gaussian_sigma_max: Upper bound of the per-sample Gaussian noise standard
            deviation, in [0, 1] intensity units. 0 disables the Gaussian noise.
        beta_range: ``(low, high)`` range of the blending factor ``beta``, within
            ``[0, 1]``.
    """

    probability: float = 0.75
    perlin_min_area: int = 10
    max_tries: int = 8
    max_scale_exponent: int = 5
    rotate_mask: bool = True
    source_weights: Mapping[str, float] = field(default_factory=_default_source_weights)
    texture_dir: str | None = None
    gaussian_sigma_max: float = 0.05
    beta_range: tuple[float, float] = (0.5, 1.0)

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {self.probability}.")
        if self.perlin_min_area < 0:
            raise ValueError(f"perlin_min_area must be >= 0 pixels, got {self.perlin_min_area}.")
        if self.max_tries < 0:
            raise ValueError(f"max_tries must be >= 0, got {self.max_tries}.")
        if not 0 <= self.max_scale_exponent <= 10:
            raise ValueError(
                f"max_scale_exponent must be in [0, 10], got {self.max_scale_exponent}. "
                "The Perlin lattice has up to 2^max_scale_exponent cells per side."
            )
        if not self.gaussian_sigma_max >= 0.0:
            raise ValueError(f"gaussian_sigma_max must be >= 0, got {self.gaussian_sigma_max}.")

        beta_low, beta_high = self.beta_range
        if not 0.0 <= beta_low <= beta_high <= 1.0:
            raise ValueError(
                f"beta_range must satisfy 0 <= low <= high <= 1, got {self.beta_range}."
            )

        unknown = sorted(set(self.source_weights) - set(NOISE_SOURCES))
        if unknown:
            raise ValueError(
                f"source_weights has unknown keys {unknown}; allowed keys are "
                f"{list(NOISE_SOURCES)}."
            )
        for name, weight in self.source_weights.items():
            if not (math.isfinite(weight) and weight >= 0.0):
                raise ValueError(
                    f"source_weights['{name}'] must be a finite number >= 0, got {weight}."
                )
        if sum(self.source_weights.values()) <= 0.0:
            raise ValueError(
                f"source_weights must have a positive sum, got {dict(self.source_weights)}. "
                "Give at least one source a weight above 0."
            )
        if self.source_weights.get("texture", 0.0) > 0.0 and not self.texture_dir:
            raise ValueError(
                "source_weights gives 'texture' a positive weight but texture_dir is not set. "
                "Set texture_dir to a folder of images or set the 'texture' weight to 0."
            )

        object.__setattr__(self, "source_weights", MappingProxyType(dict(self.source_weights)))


@dataclass
class PerturbedBatch:
    """A batch before and after the synthetic perturbation.

    Attributes:
        x: ``(B, C, H, W)`` float clean input in ``[0, 1]``.
        x_perturbed: ``(B, C, H, W)`` float perturbed input ``X*`` in ``[0, 1]``,
            including the Gaussian noise, which is added to unperturbed samples too.
        mask: ``(B, 1, H, W)`` float mask ``M`` with values in ``{0, 1}``; all zero for
            unperturbed samples.
        beta: ``(B,)`` float blending factor, drawn for every sample but used only where
            the mask is non-zero.
        noise: ``(B, C, H, W)`` float masked noise ``N = M * source`` in ``[0, 1]``; zero
            for unperturbed samples.
    """

    x: Tensor
    x_perturbed: Tensor
    mask: Tensor
    beta: Tensor
    noise: Tensor


def _list_texture_files(texture_dir: Path) -> list[Path]:
    """List image files under ``texture_dir`` recursively, sorted, skipping hidden entries."""
    files = []
    for path in sorted(texture_dir.rglob("*")):
        relative_parts = path.relative_to(texture_dir).parts
        if any(part.startswith(".") for part in relative_parts):
            continue
        if path.is_file() and path.suffix.lower() in TEXTURE_SUFFIXES:
            files.append(path)
    return files


def _texture_files_or_raise(texture_dir: str | Path) -> list[Path]:
    """Return the texture image files of ``texture_dir`` or raise if there are none."""
    folder = Path(texture_dir)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"Texture folder {folder} not found or not a folder. Set texture_dir to an "
            "existing folder of images or set the 'texture' source weight to 0."
        )
    files = _list_texture_files(folder)
    if not files:
        raise ValueError(
            f"Texture folder {folder} contains no image files with extensions "
            f"{sorted(TEXTURE_SUFFIXES)}. Add texture images or set the 'texture' source "
            "weight to 0."
        )
    return files


def _load_texture_stack(texture_dir: str | Path, channels: int, size: tuple[int, int]) -> Tensor:
    """Read, convert and resize every texture image of a folder.

    Returns:
        ``(T, C, H, W)`` uint8 textures. Unreadable files are skipped with a warning.

    Raises:
        FileNotFoundError: If the folder does not exist.
        ValueError: If ``channels`` is not 1 or 3, or no file could be read.
    """
    if channels not in (1, 3):
        raise ValueError(f"Textures can be loaded with 1 or 3 channels, got channels={channels}.")
    height, width = size
    files = _texture_files_or_raise(texture_dir)

    pil_mode = "L" if channels == 1 else "RGB"
    textures = []
    for path in files:
        try:
            with Image.open(path) as image:
                converted = image.convert(pil_mode).resize(
                    (width, height), resample=Image.Resampling.BILINEAR
                )
        except (OSError, UnidentifiedImageError) as error:
            logger.warning("Skipping unreadable texture image %s: %s", path, error)
            continue
        array = np.asarray(converted, dtype=np.uint8).reshape(height, width, channels)
        textures.append(torch.from_numpy(array.copy()).permute(2, 0, 1))

    if not textures:
        raise ValueError(
            f"Texture folder {texture_dir} contains no readable image among {len(files)} "
            "files. Check that the files are valid images."
        )
    logger.info(
        "Loaded %d texture images from %s at %dx%d with %d channels",
        len(textures),
        texture_dir,
        height,
        width,
        channels,
    )
    return torch.stack(textures)


def load_textures(texture_dir: str | Path, channels: int, size: tuple[int, int]) -> Tensor:
    """Load every texture image of a folder, converted to ``channels`` and resized.

    Files with the extensions png, jpg, jpeg, bmp, tif and tiff (any case) are read from
    the folder and its subfolders in sorted path order. Hidden files and folders (names
    starting with ".") are ignored, and unreadable files are skipped with a warning.

    Args:
        texture_dir: Folder of texture images.
        channels: 1 (grayscale) or 3 (RGB).
        size: Output ``(height, width)`` in pixels.

    Returns:
        ``(T, C, H, W)`` float32 textures in ``[0, 1]``.

    Raises:
        FileNotFoundError: If ``texture_dir`` does not exist.
        ValueError: If ``channels`` is not 1 or 3, or the folder has no readable image.
    """
    return _load_texture_stack(texture_dir, channels, size).to(torch.float32) / 255.0


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    """Draw U(0, 1) float32 values on ``generator.device`` and move them to ``device``."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _random_resolutions(count: int, max_exponent: int, generator: torch.Generator) -> Tensor:
    """Draw ``(count, 2)`` int64 lattice resolutions ``(2^a, 2^b)`` with a, b in 0..max."""
    exponents = torch.randint(
        0, max_exponent + 1, (count, 2), generator=generator, device=generator.device
    )
    return 2**exponents


def _perlin_masks(
    count: int,
    height: int,
    width: int,
    config: PerturbationConfig,
    generator: torch.Generator,
    device: torch.device,
) -> Tensor:
    """Draw ``(count, 1, H, W)`` float32 binary masks where Perlin noise exceeds 0.5."""
    resolutions = _random_resolutions(count, config.max_scale_exponent, generator)
    noise = perlin_noise(count, height, width, resolutions, generator=generator, device=device)
    masks = (noise > PERLIN_THRESHOLD).to(torch.float32)

    if config.rotate_mask:
        angles = (2.0 * _uniform((count,), generator, device) - 1.0) * MASK_ROTATION_DEGREES
        masks = rotate(masks, angles, mode="nearest", padding_mode="zeros")
    return masks


def _ellipse_masks(
    count: int,
    height: int,
    width: int,
    min_area: int,
    generator: torch.Generator,
    device: torch.device,
) -> Tensor:
    """Draw ``(count, 1, H, W)`` float32 filled ellipses of at least ``min_area`` pixels.

    Each ellipse has a random centre, orientation and axis ratio in [0.5, 2], and aims at
    an area between 1 and 2 times ``min_area`` (at most half the patch). Ellipses whose
    rasterised area is still too small grow until they are large enough. Both semi-axes
    grow by at least 1 pixel per step, so after ``hypot(H, W)`` steps an ellipse covers
    the whole patch. This bounds the loop whenever ``min_area <= H * W``.
    """
    draws = _uniform((count, 5), generator, device)
    patch_area = float(height * width)
    target_area = torch.clamp(min_area * (1.0 + draws[:, 0]), max=0.5 * patch_area)
    target_area = torch.clamp(target_area, min=max(float(min_area), 1.0))
    aspect = torch.exp((2.0 * draws[:, 1] - 1.0) * math.log(2.0))

    semi_rows = torch.clamp(torch.sqrt(target_area * aspect / math.pi), max=height / 2.0)
    semi_columns = torch.clamp(torch.sqrt(target_area / (aspect * math.pi)), max=width / 2.0)
    # Pixel centres sit at integer coordinates, so the patch spans [-0.5, size - 0.5].
    centre_row = semi_rows - 0.5 + draws[:, 2] * (height - 2.0 * semi_rows)
    centre_column = semi_columns - 0.5 + draws[:, 3] * (width - 2.0 * semi_columns)
    orientation = draws[:, 4] * math.pi

    rows = torch.arange(height, device=device, dtype=torch.float32).view(1, height, 1)
    columns = torch.arange(width, device=device, dtype=torch.float32).view(1, 1, width)
    row_offset = rows - centre_row.view(-1, 1, 1)
    column_offset = columns - centre_column.view(-1, 1, 1)
    cosine = torch.cos(orientation).view(-1, 1, 1)
    sine = torch.sin(orientation).view(-1, 1, 1)
    along = row_offset * cosine + column_offset * sine
    across = column_offset * cosine - row_offset * sine

    inside = torch.zeros((count, height, width), dtype=torch.bool, device=device)
    for _ in range(math.ceil(math.hypot(height, width)) + 1):
        radius = (along / semi_rows.view(-1, 1, 1)) ** 2 + (
            across / semi_columns.view(-1, 1, 1)
        ) ** 2
        inside = radius <= 1.0
        too_small = inside.sum(dim=(1, 2)) < min_area
        if not bool(too_small.any()):
            break
        semi_rows = torch.where(too_small, semi_rows * 1.2 + 1.0, semi_rows)
        semi_columns = torch.where(too_small, semi_columns * 1.2 + 1.0, semi_columns)
    return inside.unsqueeze(1).to(torch.float32)


class Perturber:
    """Apply the synthetic perturbation P_q to batches of patches.

    The constructor validates the texture folder when the texture source is enabled.
    Textures are read from disk on the first call for each channel count and patch size,
    then kept on the patch device as uint8.
    """

    def __init__(self, config: PerturbationConfig) -> None:
        self.config = config
        self._source_weights = torch.tensor(
            [config.source_weights.get(name, 0.0) for name in NOISE_SOURCES],
            dtype=torch.float64,
        )
        self._texture_cache: dict[tuple[int, int, int, str], Tensor] = {}
        if config.texture_dir is not None and config.source_weights.get("texture", 0.0) > 0.0:
            texture_files = _texture_files_or_raise(config.texture_dir)
            logger.info(
                "Texture noise source enabled with %d image files in %s",
                len(texture_files),
                config.texture_dir,
            )

    def __call__(self, x: Tensor, *, generator: torch.Generator) -> PerturbedBatch:
        """Perturb a batch of patches.

        Every sample gets Gaussian noise, perturbed or not. Set
        ``gaussian_sigma_max`` to 0 to leave unperturbed samples unchanged. All random
        draws come from ``generator`` on its own device, in a fixed order, so the same
        seed reproduces the batch exactly. Results are on the device of ``x``.

        Args:
            x: ``(B, C, H, W)`` floating-point patches in ``[0, 1]``. The texture source
                needs C = 1 or 3, and the other sources work for any C.
            generator: Source of all randomness.

        Returns:
            The clean batch, the perturbed batch, masks, ``beta`` and the masked noise.

        Raises:
            ValueError: If ``x`` is not a 4-D floating-point tensor, or
                ``perlin_min_area`` exceeds the number of pixels of a patch.
        """
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(
                f"Perturber expects x as a (B, C, H, W) floating-point tensor, got shape "
                f"{tuple(x.shape)} and dtype {x.dtype}."
            )
        batch, channels, height, width = x.shape
        config = self.config
        if config.perlin_min_area > height * width:
            raise ValueError(
                f"perlin_min_area={config.perlin_min_area} exceeds the {height}x{width} "
                f"patch area of {height * width} pixels. Lower perlin_min_area."
            )

        perturbed = _uniform((batch,), generator, x.device) < config.probability
        masks = self._draw_masks(perturbed, height, width, generator)
        source = self._draw_source(x, generator)

        beta_low, beta_high = config.beta_range
        beta = beta_low + (beta_high - beta_low) * _uniform((batch,), generator, x.device)
        sigma = config.gaussian_sigma_max * _uniform((batch,), generator, x.device)
        gaussian = torch.randn(
            (batch, channels, height, width), generator=generator, device=generator.device
        ).to(x.device)

        masks = masks.to(x.dtype)
        noise = masks * source.to(x.dtype)
        beta_view = beta.to(x.dtype).view(batch, 1, 1, 1)
        x_perturbed = (1.0 - masks) * x + (1.0 - beta_view) * masks * x + beta_view * noise
        x_perturbed = x_perturbed + sigma.to(x.dtype).view(batch, 1, 1, 1) * gaussian.to(x.dtype)
        x_perturbed = x_perturbed.clamp(0.0, 1.0)
        return PerturbedBatch(x=x, x_perturbed=x_perturbed, mask=masks, beta=beta, noise=noise)

    def _draw_masks(
        self, perturbed: Tensor, height: int, width: int, generator: torch.Generator
    ) -> Tensor:
        """Draw ``(B, 1, H, W)`` float32 masks, zero where ``perturbed`` is false.

        Only perturbed samples whose mask is below ``perlin_min_area`` are redrawn, all
        together, for up to ``max_tries`` rounds. The remaining ones get an ellipse.
        """
        config = self.config
        device = perturbed.device
        batch = perturbed.shape[0]
        masks = _perlin_masks(batch, height, width, config, generator, device)

        for _ in range(config.max_tries):
            too_small = perturbed & (masks.sum(dim=(1, 2, 3)) < config.perlin_min_area)
            if not bool(too_small.any()):
                break
            redraw = too_small.nonzero().squeeze(1)
            masks[redraw] = _perlin_masks(redraw.numel(), height, width, config, generator, device)

        too_small = perturbed & (masks.sum(dim=(1, 2, 3)) < config.perlin_min_area)
        if bool(too_small.any()):
            fallback = too_small.nonzero().squeeze(1)
            masks[fallback] = _ellipse_masks(
                fallback.numel(), height, width, config.perlin_min_area, generator, device
            )
            logger.debug(
                "%d of %d Perlin masks stayed under %d pixels after %d redraws and "
                "were replaced by ellipses",
                fallback.numel(),
                batch,
                config.perlin_min_area,
                config.max_tries,
            )
        return masks * perturbed.view(batch, 1, 1, 1).to(masks.dtype)

    def _draw_source(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Draw the unmasked ``(B, C, H, W)`` noise source in ``[0, 1]`` for every sample.

        Each sample picks one source with the normalised ``source_weights``. Every enabled
        source is computed for the whole batch, and the picks select among them.
        """
        batch = x.shape[0]
        picks = torch.multinomial(
            self._source_weights.to(generator.device),
            batch,
            replacement=True,
            generator=generator,
        ).to(x.device)

        source = torch.zeros_like(x)
        for index, name in enumerate(NOISE_SOURCES):
            if self._source_weights[index] <= 0.0:
                continue
            candidate = self._source_candidate(name, x, generator)
            source = torch.where((picks == index).view(batch, 1, 1, 1), candidate, source)
        return source

    def _source_candidate(self, name: str, x: Tensor, generator: torch.Generator) -> Tensor:
        """Compute source ``name`` for the whole batch as ``(B, C, H, W)`` in ``[0, 1]``."""
        batch, channels, height, width = x.shape

        if name == "perlin":
            resolutions = _random_resolutions(batch, self.config.max_scale_exponent, generator)
            field = perlin_noise(
                batch, height, width, resolutions, generator=generator, device=x.device
            )
            low = field.amin(dim=(1, 2, 3), keepdim=True)
            high = field.amax(dim=(1, 2, 3), keepdim=True)
            field = (field - low) / (high - low).clamp_min(1e-8)
            return field.expand(batch, channels, height, width).to(x.dtype)

        if name == "uniform":
            return _uniform((batch, channels, height, width), generator, x.device).to(x.dtype)

        if name == "batch":
            # A roll by 1..B-1 pairs every sample with a different one. A batch of one
            # sample has no other sample, so it uses itself.
            shift = 0
            if batch > 1:
                shift = int(
                    torch.randint(1, batch, (1,), generator=generator, device=generator.device)
                )
            return x.roll(shift, dims=0)

        textures = self._textures(channels, height, width, x.device)
        chosen = torch.randint(
            0, textures.shape[0], (batch,), generator=generator, device=generator.device
        ).to(x.device)
        return textures[chosen].to(x.dtype) / 255.0

    def _textures(self, channels: int, height: int, width: int, device: torch.device) -> Tensor:
        """Return the ``(T, C, H, W)`` uint8 textures for this patch shape, loading once."""
        key = (channels, height, width, str(device))
        if key not in self._texture_cache:
            stack = _load_texture_stack(self.config.texture_dir or "", channels, (height, width))
            self._texture_cache[key] = stack.to(device)
        return self._texture_cache[key]
