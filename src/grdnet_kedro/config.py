"""Typed parameter schema for every pipeline, validated before any heavy work starts.

The YAML files under ``conf/<env>/parameters_*.yml`` hold one top-level group per concern
(``data``, ``model``, ``loss``, ...). :class:`Parameters` validates all of them together so
that a typo or an out-of-range value fails in a second with the key's dotted path, its
value and what is allowed. Nodes re-validate the group they use (cheap) to get typed access.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

PositiveInt = Annotated[int, Field(gt=0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NoiseSource = Literal["perlin", "uniform", "batch", "texture"]


def as_pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Return ``(height, width)`` from an int (square) or a two-item sequence."""
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


class _Group(BaseModel):
    """Base of every parameter group: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(_Group):
    """Image source (ELPV or an MVTec-style folder), size, channels and decoding options."""

    source: Literal["elpv", "mvtec"] = "elpv"
    root: str | None = None
    categories: list[str] | Literal["auto"] = "auto"
    elpv_one_third_policy: Literal["exclude", "good", "defect"] = "exclude"
    image_size: PositiveInt | tuple[PositiveInt, PositiveInt] = 256
    channels: Literal[1, 3] = 3
    sixteen_bit_max: Annotated[float, Field(gt=0)] | None = None
    skip_unreadable: bool = False
    validation_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    split_seed: int = 0

    @model_validator(mode="after")
    def _root_for_mvtec(self) -> DataParams:
        if self.source == "mvtec" and not self.root:
            raise ValueError(
                "data.root is required when data.source is 'mvtec': set it to the folder "
                "that contains one sub-folder per category"
            )
        return self

    @property
    def image_hw(self) -> tuple[int, int]:
        """Resized image size as ``(height, width)``."""
        return as_pair(self.image_size)


class ModelParams(_Group):
    """Network sizes (generator, discriminator, optional U-Net) and patching."""

    patch_size: PositiveInt | tuple[PositiveInt, PositiveInt] = 128
    patch_stride: PositiveInt | tuple[PositiveInt, PositiveInt] = 64
    base_features: PositiveInt = 64
    stages: list[PositiveInt] = Field(default_factory=lambda: [2, 2, 2, 2], min_length=1)
    encoder_downsample_position: Literal["first", "last"] = "last"
    decoder_upsample_position: Literal["first", "last"] = "last"
    bottleneck: Literal["conv", "dense"] = "conv"
    latent_dim: PositiveInt = 256
    use_segmentator: bool = True
    segmentator_base_features: PositiveInt = 64

    @property
    def patch_hw(self) -> tuple[int, int]:
        """Patch size as ``(height, width)``."""
        return as_pair(self.patch_size)

    @property
    def stride_hw(self) -> tuple[int, int]:
        """Patch stride as ``(height, width)``."""
        return as_pair(self.patch_stride)

    @model_validator(mode="after")
    def _sizes_fit_networks(self) -> ModelParams:
        factor = 2 ** len(self.stages)
        if self.use_segmentator:
            factor = max(factor, 8)
        for name, size in zip(("height", "width"), self.patch_hw, strict=True):
            if size % factor:
                reason = f"2^len(stages) = {2 ** len(self.stages)}"
                if self.use_segmentator and factor == 8:
                    reason += " and 8 for the U-Net"
                raise ValueError(
                    f"model.patch_size {name} {size} must be a multiple of {factor} ({reason}); "
                    f"use e.g. {max(factor, size // factor * factor)} or "
                    f"{(size // factor + 1) * factor}"
                )
        for name, stride, size in zip(
            ("height", "width"), self.stride_hw, self.patch_hw, strict=True
        ):
            if stride > size:
                raise ValueError(
                    f"model.patch_stride {name} {stride} is larger than the patch {size}: "
                    "pixels between patches would never be scored; use a stride <= patch_size"
                )
        return self

    def signature(self, channels: int) -> dict[str, Any]:
        """Return the architecture fields a checkpoint must match to be loaded."""
        return {
            "channels": channels,
            "patch_size": list(self.patch_hw),
            "base_features": self.base_features,
            "stages": list(self.stages),
            "encoder_downsample_position": self.encoder_downsample_position,
            "decoder_upsample_position": self.decoder_upsample_position,
            "bottleneck": self.bottleneck,
            "latent_dim": self.latent_dim,
            "use_segmentator": self.use_segmentator,
            "segmentator_base_features": (
                self.segmentator_base_features if self.use_segmentator else None
            ),
        }


class LossParams(_Group):
    """Loss terms and weights: L_gen = w1 L_adv + w2 L_con + w3 L_enc (+ w4 L_nse)."""

    adversarial_weight: Annotated[float, Field(ge=0)] = 1.0
    contextual_weight: Annotated[float, Field(ge=0)] = 50.0
    encoder_weight: Annotated[float, Field(ge=0)] = 1.0
    noise_weight: Annotated[float, Field(ge=0)] = 0.0
    contextual_base: Literal["l1", "huber"] = "l1"
    contextual_base_weight: Annotated[float, Field(ge=0)] = 1.0
    contextual_ssim_weight: Annotated[float, Field(ge=0)] = 1.0
    huber_delta: Annotated[float, Field(gt=0)] = 1.0
    ssim_window: Annotated[int, Field(ge=3)] = 11
    focal_alpha: Probability = 0.25
    focal_gamma: Annotated[float, Field(ge=0)] = 2.0

    @field_validator("ssim_window")
    @classmethod
    def _odd_window(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"loss.ssim_window must be odd, got {value}; use e.g. {value + 1}")
        return value


class OptimizerParams(_Group):
    """AdamW settings and the optional cosine schedule with warm restarts."""

    learning_rate: Annotated[float, Field(gt=0)] = 1e-4
    betas: tuple[Probability, Probability] = (0.5, 0.999)
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    scheduler: Literal["none", "cosine_warm_restarts"] = "none"
    scheduler_restart_epochs: PositiveInt = 10
    grad_clip_norm: Annotated[float, Field(gt=0)] = 1.0


class TrainingParams(_Group):
    """Epochs, batches, checkpoints and previews of the GAN loop."""

    epochs: PositiveInt = 200
    batch_size: PositiveInt = 8
    steps_per_epoch: PositiveInt | None = None
    checkpoint_every: PositiveInt = 1
    preview_every: PositiveInt = 10
    validate_every: PositiveInt = 1
    resume: bool = True
    checkpoint_dir: str = "data/06_models/checkpoints"
    nonfinite_policy: Literal["stop", "skip"] = "stop"
    max_skipped_steps: Annotated[int, Field(ge=0)] = 10


class AugmentationParams(_Group):
    """Train-only geometric augmentation applied before the perturbation."""

    rotation_degrees: Annotated[float, Field(ge=0, le=180)] = 0.0
    hflip_probability: Probability = 0.0
    vflip_probability: Probability = 0.0


def _perlin_only() -> dict[NoiseSource, float]:
    return {"perlin": 1.0}


class PerturbationParams(_Group):
    """Synthetic Perlin-noise defects."""

    probability: Probability = 0.75
    perlin_min_area: Annotated[int, Field(ge=0)] = 10
    max_tries: PositiveInt = 8
    max_scale_exponent: Annotated[int, Field(ge=0, le=8)] = 5
    rotate_mask: bool = True
    source_weights: dict[NoiseSource, float] = Field(default_factory=_perlin_only)
    texture_dir: str | None = None
    gaussian_sigma_max: Annotated[float, Field(ge=0, le=1)] = 0.05

    @model_validator(mode="after")
    def _weights_valid(self) -> PerturbationParams:
        if any(weight < 0 for weight in self.source_weights.values()):
            raise ValueError(f"perturbation.source_weights must be >= 0, got {self.source_weights}")
        if sum(self.source_weights.values()) <= 0:
            raise ValueError(
                "perturbation.source_weights must have a positive sum, got "
                f"{self.source_weights}; e.g. {{perlin: 1.0}}"
            )
        if self.source_weights.get("texture", 0) > 0 and not self.texture_dir:
            raise ValueError(
                "perturbation.source_weights.texture > 0 needs perturbation.texture_dir: "
                "set it to a folder of texture images or set the texture weight to 0"
            )
        return self


class ValidationParams(_Group):
    """Synthetic validation set built from held-out good training images."""

    perturbed_copies: PositiveInt = 1
    seed: int = 4242
    val_dir: str | None = None


class InferenceParams(_Group):
    """Scoring of patch maps, image scores and the decision rule."""

    score: Literal["auto", "ssim", "segmentation"] = "auto"
    smoothing_kernel: Annotated[int, Field(ge=1)] = 21
    image_score: Literal["patch_max", "map_max"] = "map_max"
    run_acceptance_ratio: Probability = 0.0
    batch_size: PositiveInt = 16


class CalibrationParams(_Group):
    """Threshold calibration."""

    criterion: Literal["balanced_accuracy", "f1"] = "balanced_accuracy"
    on_test: bool = False


class ReportParams(_Group):
    """Plots and overlays."""

    heatmaps: Annotated[int, Field(ge=0)] = 4
    preview_samples: PositiveInt = 6
    aupro_fpr_limit: Annotated[float, Field(gt=0, le=1)] = 0.3


class RuntimeParams(_Group):
    """Device, precision, threads and seeds."""

    device: str = "auto"
    mixed_precision: bool = False
    mixed_precision_dtype: Literal["bf16", "fp16"] = "bf16"
    num_threads: Annotated[int, Field(ge=0)] = 0
    channels_last: bool = True
    seed: int = 1337
    deterministic: bool = True
    progress: bool = True

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value in {"auto", "cpu", "cuda"} or value.startswith("cuda:"):
            return value
        raise ValueError(f"runtime.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")


class InferParams(_Group):
    """Scoring a folder of new images with a trained category."""

    input_dir: str | None = None
    runtime: Literal["torch", "onnx"] = "torch"


class Parameters(_Group):
    """All parameter groups of the project."""

    profile: str = "custom"
    data: DataParams = Field(default_factory=DataParams)
    model: ModelParams = Field(default_factory=ModelParams)
    loss: LossParams = Field(default_factory=LossParams)
    optimizer: OptimizerParams = Field(default_factory=OptimizerParams)
    training: TrainingParams = Field(default_factory=TrainingParams)
    augmentation: AugmentationParams = Field(default_factory=AugmentationParams)
    perturbation: PerturbationParams = Field(default_factory=PerturbationParams)
    validation: ValidationParams = Field(default_factory=ValidationParams)
    inference: InferenceParams = Field(default_factory=InferenceParams)
    calibration: CalibrationParams = Field(default_factory=CalibrationParams)
    report: ReportParams = Field(default_factory=ReportParams)
    runtime: RuntimeParams = Field(default_factory=RuntimeParams)
    infer: InferParams = Field(default_factory=InferParams)

    @model_validator(mode="after")
    def _cross_group_rules(self) -> Parameters:
        image_hw = self.data.image_hw
        for name, patch, image in zip(
            ("height", "width"), self.model.patch_hw, image_hw, strict=True
        ):
            if patch > image:
                raise ValueError(
                    f"model.patch_size {name} {patch} is larger than data.image_size {name} "
                    f"{image}; use a patch <= the image or a larger image_size"
                )
        if self.inference.score == "segmentation" and not self.model.use_segmentator:
            raise ValueError(
                "inference.score 'segmentation' needs model.use_segmentator: true; "
                "use 'ssim' (or 'auto') for the generator-only profile"
            )
        if self.inference.score == "ssim" and self.model.use_segmentator:
            raise ValueError(
                "inference.score 'ssim' is the generator-only score and model.use_segmentator "
                "is true: set use_segmentator to false (the U-Net would be trained for nothing) "
                "or use 'segmentation' / 'auto'"
            )
        return self

    @property
    def score_method(self) -> Literal["ssim", "segmentation"]:
        """Scoring used by this profile: the U-Net map when present, else 1 - SSIM."""
        if self.inference.score != "auto":
            return self.inference.score
        return "segmentation" if self.model.use_segmentator else "ssim"


class ParameterError(ValueError):
    """Invalid parameters, with one line per problem naming the dotted key."""


def format_validation_error(error: ValidationError, prefix: str = "") -> str:
    """Render a pydantic error as lines of ``key: message (got value)``."""
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        key = f"{prefix}{location}" if location else prefix.rstrip(".")
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (a typo?); remove it or check the spelling"
        got = "" if item["type"] == "extra_forbidden" else f" (got {item.get('input')!r})"
        if item["type"] == "value_error":
            got = ""
        lines.append(f"  - {key}: {message}{got}" if key else f"  - {message}{got}")
    return "\n".join(lines)


PROJECT_GROUPS = frozenset(Parameters.model_fields)
GroupT = TypeVar("GroupT", bound=_Group)


def validate_parameters(raw: Mapping[str, Any]) -> Parameters:
    """Validate the project's parameter groups; raise :class:`ParameterError` listing problems.

    Top-level keys that are not project groups (for example keys a plugin adds) are ignored.
    """
    groups = {key: value for key, value in raw.items() if key in PROJECT_GROUPS}
    try:
        return Parameters.model_validate(groups)
    except ValidationError as error:
        raise ParameterError(
            "Invalid parameters:\n" + format_validation_error(error) + "\n"
            "Fix them in conf/<env>/parameters_*.yml or in the --params override."
        ) from None


def parse_group(model: type[GroupT], raw: Mapping[str, Any], name: str) -> GroupT:
    """Validate one parameter group as a node receives it (``params:<name>``)."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as error:
        raise ParameterError(
            f"Invalid parameters in group '{name}':\n"
            + format_validation_error(error, prefix=f"{name}.")
        ) from None
