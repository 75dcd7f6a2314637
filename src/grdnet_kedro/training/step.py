"""One adversarial training step of GRD-Net / DeepIndustrial-SN on a perturbed batch.

Per batch the three networks are updated in this order:

1. discriminator C: the generator G runs in eval mode without gradient on the perturbed
   input X_n, and C learns to tell the real X from the reconstruction X_hat;
2. generator G: C is frozen (eval mode, no parameter gradients) and G minimises
   ``w1 L_adv + w2 L_con + w3 L_enc (+ w4 L_nse)``, with the global gradient norm clipped;
3. segmentation U-Net (full profile only): it learns the perturbation mask M from
   ``cat[X_n, X_hat.detach()]`` with a focal loss on the region of interest, in float32.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from grdnet_kedro.losses.terms import (
    adversarial_loss,
    contextual_loss,
    discriminator_loss,
    encoder_loss,
    focal_loss,
    noise_loss,
)

if TYPE_CHECKING:
    from grdnet_kedro.perturbation import PerturbedBatch

logger = logging.getLogger(__name__)

LOSS_KEYS: tuple[str, ...] = (
    "loss_discriminator",
    "loss_adversarial",
    "loss_contextual",
    "loss_encoder",
    "loss_noise",
    "loss_generator",
    "loss_segmentation",
    "loss_total",
)
"""Keys of the dictionary returned by :func:`train_step`, in a fixed order."""

_AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or infinite, so its optimizer step was not taken.

    Attributes:
        term: Name of the loss term, for example ``"contextual"``.
        value: The non-finite value (``nan``, ``inf`` or ``-inf``).
    """

    def __init__(self, term: str, value: float, *, context: str = "") -> None:
        self.term = term
        self.value = value
        where = f" at {context}" if context else ""
        super().__init__(
            f"The {term} loss is not finite ({value}){where}, so training stopped before "
            "its optimizer step. Check the input images for NaN or inf, lower the learning "
            "rate, or turn fp16 mixed precision off (bf16 or float32)."
        )


@dataclass
class LossWeights:
    """Weights and settings of the loss terms (reference values of the full profile).

    Attributes:
        adversarial: w1, weight of the feature-matching adversarial loss.
        contextual: w2, weight of the contextual loss.
        encoder: w3, weight of the latent L1 loss.
        noise: w4, weight of the noise loss; 0 turns it off (full profile).
        contextual_base_weight: wa, weight of the L1/Huber part of the contextual loss.
        contextual_ssim_weight: wb, weight of the ``1 - SSIM`` part of the contextual loss.
        contextual_base: ``"l1"`` (full profile) or ``"huber"`` (SN profile).
        huber_delta: Huber threshold, used when ``contextual_base`` is ``"huber"``.
        focal_alpha: Positive-class weight of the segmentation focal loss.
        focal_gamma: Focusing exponent of the segmentation focal loss.
        ssim_window: Odd SSIM window side in pixels.
    """

    adversarial: float = 1.0
    contextual: float = 50.0
    encoder: float = 1.0
    noise: float = 0.0
    contextual_base_weight: float = 1.0
    contextual_ssim_weight: float = 1.0
    contextual_base: Literal["l1", "huber"] = "l1"
    huber_delta: float = 1.0
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    ssim_window: int = 11

    def __post_init__(self) -> None:
        for name in (
            "adversarial",
            "contextual",
            "encoder",
            "noise",
            "contextual_base_weight",
            "contextual_ssim_weight",
        ):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"Loss weight {name} must be >= 0; got {value}.")
        if self.contextual_base not in ("l1", "huber"):
            raise ValueError(
                f"contextual_base must be 'l1' or 'huber'; got {self.contextual_base!r}."
            )


@dataclass
class Networks:
    """The networks trained together; ``segmentator`` is ``None`` without a U-Net (SN)."""

    generator: nn.Module
    discriminator: nn.Module
    segmentator: nn.Module | None = None


@dataclass
class Optimizers:
    """One optimizer per network; ``segmentator`` is ``None`` without a U-Net."""

    generator: torch.optim.Optimizer
    discriminator: torch.optim.Optimizer
    segmentator: torch.optim.Optimizer | None = None


def build_optimizers(
    networks: Networks,
    *,
    learning_rate: float,
    betas: tuple[float, float] = (0.5, 0.999),
    weight_decay: float = 0.0,
) -> Optimizers:
    """Create one AdamW optimizer per network with the same hyper-parameters.

    Args:
        networks: The networks to optimise.
        learning_rate: Learning rate, > 0 (reference: 1e-4 full, 1.5e-4 SN).
        betas: AdamW coefficients of the running averages of the gradient and its square.
        weight_decay: Decoupled weight decay, >= 0.

    Returns:
        The optimizers; ``segmentator`` is ``None`` when ``networks.segmentator`` is.

    Raises:
        ValueError: If ``learning_rate`` <= 0 or ``weight_decay`` < 0.
    """
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0; got {learning_rate}.")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay}.")

    def adamw(module: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            module.parameters(), lr=learning_rate, betas=betas, weight_decay=weight_decay
        )

    segmentator = None if networks.segmentator is None else adamw(networks.segmentator)
    logger.info(
        "AdamW optimizers: lr=%g, betas=%s, weight_decay=%g, segmentator=%s",
        learning_rate,
        betas,
        weight_decay,
        segmentator is not None,
    )
    return Optimizers(
        generator=adamw(networks.generator),
        discriminator=adamw(networks.discriminator),
        segmentator=segmentator,
    )


class MixedPrecision:
    """Autocast and gradient scaling settings, active only on CUDA.

    On any other device the object is a no-op: ``autocast()`` returns a null context and
    no gradient scaler exists. fp16 gets a ``torch.amp.GradScaler``, which skips an
    optimizer step whose gradients overflowed; bf16 needs no scaler.

    NOTE: the CUDA paths (bf16 autocast, fp16 with the scaler) are not covered by the test
    suite, which runs on CPU.

    Attributes:
        enabled: Whether autocast is active.
        dtype: The autocast dtype, or ``None`` when disabled.
        scaler: The gradient scaler for fp16, else ``None``.
    """

    def __init__(
        self,
        device: torch.device | str,
        *,
        enabled: bool,
        dtype: Literal["bf16", "fp16"] = "bf16",
    ) -> None:
        """Resolve the mixed-precision settings for ``device``.

        Args:
            device: The training device.
            enabled: Whether mixed precision is requested.
            dtype: ``"bf16"`` (bfloat16, no scaler) or ``"fp16"`` (float16 with a scaler).

        Raises:
            ValueError: If ``dtype`` is neither ``"bf16"`` nor ``"fp16"``.
            RuntimeError: If bf16 is requested on a CUDA device without bfloat16 support.
        """
        if dtype not in _AUTOCAST_DTYPES:
            raise ValueError(f"Mixed precision dtype must be 'bf16' or 'fp16'; got {dtype!r}.")
        device = torch.device(device)
        self.device_type = device.type
        self.enabled = enabled and device.type == "cuda"
        self.dtype: torch.dtype | None = _AUTOCAST_DTYPES[dtype] if self.enabled else None
        self.scaler: torch.amp.GradScaler | None = None

        if enabled and not self.enabled:
            logger.info("Mixed precision %s requested but off: device is %s", dtype, device)
            return
        if not self.enabled:
            return

        if dtype == "bf16" and not torch.cuda.is_bf16_supported():
            raise RuntimeError(
                f"Mixed precision bf16 was requested but {device} does not support bfloat16. "
                "Use dtype 'fp16' or turn mixed precision off."
            )
        if dtype == "fp16":
            self.scaler = torch.amp.GradScaler("cuda")
        logger.info("Mixed precision %s on %s", dtype, device)

    @classmethod
    def disabled(cls) -> MixedPrecision:
        """Return settings that train in full precision, without logging."""
        return cls("cpu", enabled=False)

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Return the autocast context for forward passes (a null context when disabled)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def backward(self, loss: Tensor) -> None:
        """Back-propagate ``loss``, scaled first when a gradient scaler is active."""
        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()

    def step(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        clip_parameters: Iterable[nn.Parameter] | None = None,
        clip_norm: float | None = None,
    ) -> None:
        """Unscale, optionally clip the global gradient norm, and step ``optimizer``."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        if clip_parameters is not None and clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(clip_parameters, max_norm=clip_norm)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)

    def update(self) -> None:
        """Update the loss scale once per training step, after every optimizer step."""
        if self.scaler is not None:
            self.scaler.update()


def _raise_if_not_finite(terms: dict[str, Tensor]) -> None:
    """Raise NonFiniteLossError for the first non-finite term (one device sync)."""
    values = torch.stack([term.detach().float() for term in terms.values()])
    if bool(torch.isfinite(values).all()):
        return
    for name, value in zip(terms, values.tolist(), strict=True):
        if not math.isfinite(value):
            raise NonFiniteLossError(name, value)


def _discriminator_step(
    networks: Networks,
    optimizers: Optimizers,
    batch: PerturbedBatch,
    precision: MixedPrecision,
) -> Tensor:
    """Train C on real X against X_hat from G in eval mode and return the detached loss."""
    generator = networks.generator
    discriminator = networks.discriminator

    generator.eval()
    with torch.no_grad(), precision.autocast():
        _, x_hat, _ = generator(batch.x_perturbed)

    discriminator.train()
    optimizers.discriminator.zero_grad(set_to_none=True)
    with precision.autocast():
        logits_real, _ = discriminator(batch.x)
        logits_fake, _ = discriminator(x_hat.detach())
        loss = discriminator_loss(logits_real, logits_fake)

    _raise_if_not_finite({"discriminator": loss})
    precision.backward(loss)
    precision.step(optimizers.discriminator)
    return loss.detach()


def _generator_step(
    networks: Networks,
    optimizers: Optimizers,
    batch: PerturbedBatch,
    weights: LossWeights,
    precision: MixedPrecision,
    grad_clip_norm: float | None,
) -> tuple[dict[str, Tensor], Tensor]:
    """Train G with C frozen and return the detached loss terms and X_hat."""
    generator = networks.generator
    discriminator = networks.discriminator

    was_training = discriminator.training
    requires_grad = [parameter.requires_grad for parameter in discriminator.parameters()]
    discriminator.eval()
    discriminator.requires_grad_(False)
    try:
        generator.train()
        optimizers.generator.zero_grad(set_to_none=True)
        with precision.autocast():
            z, x_hat, z_hat = generator(batch.x_perturbed)
            with torch.no_grad():
                _, features_real = discriminator(batch.x)
            _, features_fake = discriminator(x_hat)

            terms = {
                "adversarial": adversarial_loss(features_real, features_fake),
                "contextual": contextual_loss(
                    batch.x,
                    x_hat,
                    base=weights.contextual_base,
                    huber_delta=weights.huber_delta,
                    base_weight=weights.contextual_base_weight,
                    ssim_weight=weights.contextual_ssim_weight,
                    window_size=weights.ssim_window,
                ),
                "encoder": encoder_loss(z, z_hat),
            }
            total = (
                weights.adversarial * terms["adversarial"]
                + weights.contextual * terms["contextual"]
                + weights.encoder * terms["encoder"]
            )
            if weights.noise > 0:
                terms["noise"] = noise_loss(
                    x_hat, batch.x_perturbed, batch.mask, batch.beta, batch.noise
                )
                total = total + weights.noise * terms["noise"]
            terms["generator"] = total

        _raise_if_not_finite(terms)
        precision.backward(total)
        precision.step(
            optimizers.generator,
            clip_parameters=generator.parameters(),
            clip_norm=grad_clip_norm,
        )
    finally:
        for parameter, flag in zip(discriminator.parameters(), requires_grad, strict=True):
            parameter.requires_grad_(flag)
        discriminator.train(was_training)

    return {name: term.detach() for name, term in terms.items()}, x_hat.detach()


def _segmentation_step(
    segmentator: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: PerturbedBatch,
    x_hat: Tensor,
    roi: Tensor | None,
    weights: LossWeights,
    precision: MixedPrecision,
) -> Tensor:
    """Train the U-Net to find M from ``cat[X_n, X_hat]`` and return the detached loss."""
    segmentator.train()
    optimizer.zero_grad(set_to_none=True)
    with precision.autocast():
        logits = segmentator(torch.cat([batch.x_perturbed, x_hat], dim=1))

    # The focal loss casts to float32 itself, also under autocast.
    loss = focal_loss(logits, batch.mask, roi, alpha=weights.focal_alpha, gamma=weights.focal_gamma)
    _raise_if_not_finite({"segmentation": loss})
    precision.backward(loss)
    precision.step(optimizer)
    return loss.detach()


def train_step(
    networks: Networks,
    optimizers: Optimizers,
    batch: PerturbedBatch,
    weights: LossWeights,
    *,
    roi: Tensor | None = None,
    grad_clip_norm: float | None = 1.0,
    precision: MixedPrecision | None = None,
) -> dict[str, float]:
    """Run one discriminator, generator and (when present) U-Net update on ``batch``.

    The batch tensors, ``roi`` and the networks must be on the same device. Only the
    generator's gradients are clipped. Losses are copied to the host once, at the end.
    The finiteness checks before each optimizer step add one device sync per network.

    Args:
        networks: Generator, discriminator and optional segmentation U-Net.
        optimizers: One optimizer per network; ``segmentator`` is required when
            ``networks.segmentator`` is set.
        batch: Clean inputs ``x`` and perturbed inputs ``x_perturbed`` ``(B, C, H, W)`` in
            [0, 1], masks ``(B, 1, H, W)``, blend factors ``beta`` ``(B,)`` and masked noise.
        weights: Loss weights and settings.
        roi: Optional region-of-interest mask ``(B, 1, H, W)`` or ``(1, 1, H, W)`` in
            {0, 1} for the segmentation loss; ``None`` uses every pixel.
        grad_clip_norm: Maximum global L2 norm of the generator gradients; ``None`` turns
            clipping off.
        precision: Mixed-precision settings; ``None`` trains in full precision.

    Returns:
        Python floats under the keys of :data:`LOSS_KEYS`. Terms that are off (noise with
        weight 0, segmentation without a U-Net) are 0.0, and ``loss_total`` is
        ``loss_generator + loss_segmentation``. ``loss_contextual`` is the combined
        contextual term before its weight w2.

    Raises:
        NonFiniteLossError: If a loss term is NaN or infinite, before the optimizer step of
            the network it belongs to.
        ValueError: If the U-Net has no optimizer or ``grad_clip_norm`` is not positive.
    """
    if networks.segmentator is not None and optimizers.segmentator is None:
        raise ValueError(
            "networks.segmentator is set but optimizers.segmentator is None. Build the "
            "optimizers with build_optimizers(networks, ...) after creating the U-Net."
        )
    if grad_clip_norm is not None and grad_clip_norm <= 0:
        raise ValueError(f"grad_clip_norm must be > 0 or None; got {grad_clip_norm}.")
    if precision is None:
        precision = MixedPrecision.disabled()

    loss_discriminator = _discriminator_step(networks, optimizers, batch, precision)
    generator_terms, x_hat = _generator_step(
        networks, optimizers, batch, weights, precision, grad_clip_norm
    )

    zero = loss_discriminator.new_zeros(())
    loss_segmentation = zero
    if networks.segmentator is not None and optimizers.segmentator is not None:
        loss_segmentation = _segmentation_step(
            networks.segmentator, optimizers.segmentator, batch, x_hat, roi, weights, precision
        )
    precision.update()

    loss_generator = generator_terms["generator"].float()
    losses = torch.stack(
        [
            loss_discriminator.float(),
            generator_terms["adversarial"].float(),
            generator_terms["contextual"].float(),
            generator_terms["encoder"].float(),
            generator_terms.get("noise", zero).float(),
            loss_generator,
            loss_segmentation.float(),
            loss_generator + loss_segmentation.float(),
        ]
    )
    return dict(zip(LOSS_KEYS, losses.tolist(), strict=True))
