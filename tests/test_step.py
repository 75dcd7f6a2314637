"""Tests of the training step, optimizers, mixed precision, device choice and seeding."""

from __future__ import annotations

import copy
import logging
import math
import random

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from grdnet_kedro.models import Discriminator, Generator, SegmentationUNet
from grdnet_kedro.perturbation import PerturbationConfig, PerturbedBatch, Perturber
from grdnet_kedro.training import (
    LOSS_KEYS,
    LossWeights,
    MixedPrecision,
    Networks,
    NonFiniteLossError,
    Optimizers,
    build_optimizers,
    resolve_device,
    seed_everything,
    train_step,
)
from grdnet_kedro.training import device as device_module

PATCH = 16


@pytest.fixture(autouse=True)
def restore_deterministic_mode():
    """Undo the process-wide deterministic setting that seed_everything changes."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def make_networks(*, segmentator: bool = True) -> Networks:
    return Networks(
        generator=Generator(
            in_channels=1,
            patch_size=(PATCH, PATCH),
            base_features=4,
            stages=[1, 1],
            downsample_position="last",
            upsample_position="last",
            bottleneck="conv",
            latent_dim=8,
        ),
        discriminator=Discriminator(
            in_channels=1,
            patch_size=(PATCH, PATCH),
            base_features=4,
            stages=[1, 1],
            downsample_position="last",
        ),
        segmentator=SegmentationUNet(in_channels=2, base_features=4) if segmentator else None,
    )


def make_batch(seed: int = 0, batch_size: int = 4) -> PerturbedBatch:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch_size, 1, PATCH, PATCH, generator=generator)
    perturber = Perturber(PerturbationConfig(probability=1.0, perlin_min_area=4))
    return perturber(x, generator=generator)


def snapshot(module: nn.Module) -> list[Tensor]:
    return [parameter.detach().clone() for parameter in module.parameters()]


def changed(before: list[Tensor], module: nn.Module) -> bool:
    return any(
        not torch.equal(old, new.detach())
        for old, new in zip(before, module.parameters(), strict=True)
    )


class RecordingHook:
    """Forward hook that records (training mode, grad enabled, any parameter trainable)."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, bool, bool]] = []

    def __call__(self, module: nn.Module, inputs: object, output: object) -> None:
        trainable = any(parameter.requires_grad for parameter in module.parameters())
        self.calls.append((module.training, torch.is_grad_enabled(), trainable))


class NanOutput(nn.Module):
    """Generator wrapper that turns output ``index`` (0 z, 1 x_hat, 2 z_hat) into NaN.

    With ``only_in_training`` the output is NaN only in train mode, which leaves the
    discriminator step (generator in eval mode) intact.
    """

    def __init__(self, inner: nn.Module, index: int, *, only_in_training: bool) -> None:
        super().__init__()
        self.inner = inner
        self.index = index
        self.only_in_training = only_in_training

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        outputs = list(self.inner(x))
        if self.training or not self.only_in_training:
            outputs[self.index] = outputs[self.index] * math.nan
        return outputs[0], outputs[1], outputs[2]


# --- train_step -------------------------------------------------------------------------


def test_train_step_returns_finite_losses():
    torch.manual_seed(0)
    networks = make_networks()
    optimizers = build_optimizers(networks, learning_rate=1e-3)

    losses = train_step(networks, optimizers, make_batch(), LossWeights())

    assert list(losses) == list(LOSS_KEYS)
    assert all(isinstance(value, float) for value in losses.values())
    assert all(math.isfinite(value) for value in losses.values())
    assert losses["loss_segmentation"] > 0.0
    assert losses["loss_noise"] == 0.0
    assert losses["loss_total"] == pytest.approx(
        losses["loss_generator"] + losses["loss_segmentation"], rel=1e-6
    )


def test_train_step_generator_loss_is_weighted_sum():
    torch.manual_seed(0)
    networks = make_networks()
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    weights = LossWeights(adversarial=2.0, contextual=3.0, encoder=5.0)

    losses = train_step(networks, optimizers, make_batch(), weights)

    expected = (
        2.0 * losses["loss_adversarial"]
        + 3.0 * losses["loss_contextual"]
        + 5.0 * losses["loss_encoder"]
    )
    assert losses["loss_generator"] == pytest.approx(expected, rel=1e-5)


def test_train_step_updates_all_three_networks():
    torch.manual_seed(0)
    networks = make_networks()
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    assert networks.segmentator is not None
    generator_before = snapshot(networks.generator)
    discriminator_before = snapshot(networks.discriminator)
    segmentator_before = snapshot(networks.segmentator)

    train_step(networks, optimizers, make_batch(), LossWeights())

    assert changed(generator_before, networks.generator)
    assert changed(discriminator_before, networks.discriminator)
    assert changed(segmentator_before, networks.segmentator)


def test_train_step_restores_discriminator_state():
    torch.manual_seed(0)
    networks = make_networks()
    optimizers = build_optimizers(networks, learning_rate=1e-3)

    train_step(networks, optimizers, make_batch(), LossWeights())

    assert all(parameter.requires_grad for parameter in networks.discriminator.parameters())
    assert networks.discriminator.training


def test_train_step_mode_and_gradients_per_phase():
    torch.manual_seed(0)
    networks = make_networks(segmentator=False)
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    generator_hook = RecordingHook()
    discriminator_hook = RecordingHook()
    networks.generator.register_forward_hook(generator_hook)
    networks.discriminator.register_forward_hook(discriminator_hook)

    train_step(networks, optimizers, make_batch(), LossWeights())

    # Discriminator step: G in eval without grad. Generator step: G in train with grad.
    assert generator_hook.calls == [(False, False, True), (True, True, True)]
    # Discriminator step: C trained on real and fake. Generator step: C frozen, the real
    # features without grad and the fake features with grad towards G only.
    assert discriminator_hook.calls == [
        (True, True, True),
        (True, True, True),
        (False, False, False),
        (False, True, False),
    ]


def test_train_step_sn_profile_without_segmentator():
    torch.manual_seed(0)
    networks = make_networks(segmentator=False)
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    weights = LossWeights(noise=3.0, contextual_base="huber", contextual_base_weight=2.0)

    losses = train_step(networks, optimizers, make_batch(), weights)

    assert optimizers.segmentator is None
    assert losses["loss_segmentation"] == 0.0
    assert losses["loss_noise"] > 0.0
    assert losses["loss_total"] == pytest.approx(losses["loss_generator"], rel=1e-6)
    expected = (
        losses["loss_adversarial"]
        + 50.0 * losses["loss_contextual"]
        + losses["loss_encoder"]
        + 3.0 * losses["loss_noise"]
    )
    assert losses["loss_generator"] == pytest.approx(expected, rel=1e-5)


def test_train_step_empty_roi_gives_zero_segmentation_loss():
    torch.manual_seed(0)
    networks = make_networks()
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    roi = torch.zeros(1, 1, PATCH, PATCH)

    losses = train_step(networks, optimizers, make_batch(), LossWeights(), roi=roi)

    assert losses["loss_segmentation"] == 0.0


def test_train_step_clips_generator_gradients(monkeypatch):
    torch.manual_seed(0)
    networks = make_networks(segmentator=False)
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    max_norms: list[float] = []
    original = torch.nn.utils.clip_grad_norm_

    def recording_clip(parameters, max_norm, *args, **kwargs):
        max_norms.append(max_norm)
        return original(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)

    train_step(networks, optimizers, make_batch(), LossWeights(), grad_clip_norm=0.5)

    assert max_norms == [0.5]


def _run_three_steps(seed: int) -> list[dict[str, float]]:
    seed_everything(seed, deterministic=True)
    networks = make_networks()
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    return [
        train_step(networks, optimizers, make_batch(seed=step), LossWeights()) for step in range(3)
    ]


def test_train_step_deterministic_with_same_seed():
    first = _run_three_steps(123)
    second = _run_three_steps(123)

    assert first == second


def test_train_step_depends_on_seed():
    assert _run_three_steps(1) != _run_three_steps(2)


def test_nan_reconstruction_stops_before_discriminator_step():
    torch.manual_seed(0)
    networks = make_networks(segmentator=False)
    networks.generator = NanOutput(networks.generator, index=1, only_in_training=False)
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    discriminator_before = snapshot(networks.discriminator)

    with pytest.raises(NonFiniteLossError, match="discriminator loss") as raised:
        train_step(networks, optimizers, make_batch(), LossWeights())

    assert raised.value.term == "discriminator"
    assert math.isnan(raised.value.value)
    assert not changed(discriminator_before, networks.discriminator)


def test_nan_latent_stops_before_generator_step():
    torch.manual_seed(0)
    networks = make_networks(segmentator=False)
    networks.generator = NanOutput(networks.generator, index=2, only_in_training=True)
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    generator_before = snapshot(networks.generator)

    with pytest.raises(NonFiniteLossError, match="encoder loss") as raised:
        train_step(networks, optimizers, make_batch(), LossWeights())

    assert raised.value.term == "encoder"
    assert not changed(generator_before, networks.generator)
    assert all(parameter.requires_grad for parameter in networks.discriminator.parameters())
    assert networks.discriminator.training


def test_non_finite_error_message_with_context():
    error = NonFiniteLossError("contextual", math.inf, context="epoch 3, step 17")

    assert str(error).startswith("The contextual loss is not finite (inf) at epoch 3, step 17")


def test_train_step_requires_segmentator_optimizer():
    networks = make_networks()
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    optimizers.segmentator = None

    with pytest.raises(ValueError, match=r"optimizers\.segmentator"):
        train_step(networks, optimizers, make_batch(), LossWeights())


def test_train_step_rejects_non_positive_clip_norm():
    networks = make_networks(segmentator=False)
    optimizers = build_optimizers(networks, learning_rate=1e-3)

    with pytest.raises(ValueError, match="grad_clip_norm"):
        train_step(networks, optimizers, make_batch(), LossWeights(), grad_clip_norm=0.0)


# --- weights, optimizers, mixed precision ------------------------------------------------


def test_loss_weights_reject_negative_weight():
    with pytest.raises(ValueError, match="contextual"):
        LossWeights(contextual=-1.0)


def test_loss_weights_reject_unknown_base():
    with pytest.raises(ValueError, match="contextual_base"):
        LossWeights(contextual_base="l2")  # type: ignore[arg-type]


def test_build_optimizers_adamw_settings():
    networks = make_networks()

    optimizers = build_optimizers(
        networks, learning_rate=1.5e-4, betas=(0.5, 0.999), weight_decay=0.0
    )

    assert isinstance(optimizers, Optimizers)
    for optimizer in (optimizers.generator, optimizers.discriminator, optimizers.segmentator):
        assert isinstance(optimizer, torch.optim.AdamW)
        assert optimizer.param_groups[0]["lr"] == 1.5e-4
        assert optimizer.param_groups[0]["betas"] == (0.5, 0.999)
        assert optimizer.param_groups[0]["weight_decay"] == 0.0


def test_build_optimizers_rejects_bad_learning_rate():
    with pytest.raises(ValueError, match="learning_rate"):
        build_optimizers(make_networks(), learning_rate=0.0)


def test_mixed_precision_is_noop_on_cpu(caplog):
    caplog.set_level(logging.INFO, logger="grdnet_kedro.training.step")

    precision = MixedPrecision("cpu", enabled=True, dtype="fp16")

    assert not precision.enabled
    assert precision.dtype is None
    assert precision.scaler is None
    with precision.autocast():
        assert not torch.is_autocast_enabled("cpu")
    assert sum("requested but off" in record.message for record in caplog.records) == 1


def test_mixed_precision_rejects_unknown_dtype():
    with pytest.raises(ValueError, match="'bf16' or 'fp16'"):
        MixedPrecision("cpu", enabled=True, dtype="fp8")  # type: ignore[arg-type]


def test_train_step_with_cpu_precision_matches_default():
    seed_everything(5, deterministic=True)
    networks = make_networks(segmentator=False)
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    reference = copy.deepcopy((networks, optimizers))

    with_precision = train_step(
        networks,
        optimizers,
        make_batch(),
        LossWeights(),
        precision=MixedPrecision("cpu", enabled=True),
    )
    without = train_step(reference[0], reference[1], make_batch(), LossWeights())

    assert with_precision == without


def test_train_step_autocast_and_scaler_on_cpu():
    # MixedPrecision enables autocast only on CUDA. Setting its fields by hand runs the same
    # autocast + GradScaler code path with CPU bfloat16 autocast.
    torch.manual_seed(0)
    networks = make_networks()
    optimizers = build_optimizers(networks, learning_rate=1e-3)
    precision = MixedPrecision.disabled()
    precision.enabled = True
    precision.device_type = "cpu"
    precision.dtype = torch.bfloat16
    precision.scaler = torch.amp.GradScaler("cpu")
    generator_before = snapshot(networks.generator)

    losses = train_step(networks, optimizers, make_batch(), LossWeights(), precision=precision)

    assert all(math.isfinite(value) for value in losses.values())
    assert changed(generator_before, networks.generator)
    assert precision.scaler.get_scale() == 2.0**16


# --- device and seeding ----------------------------------------------------------------


def test_resolve_device_cpu():
    assert resolve_device("cpu") == torch.device("cpu")


def test_resolve_device_auto_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    assert resolve_device(" AUTO ") == torch.device("cpu")


def test_resolve_device_auto_with_broken_cuda(monkeypatch, caplog):
    def failing_smoke_test(device: torch.device) -> None:
        raise RuntimeError("CUDA error: no kernel image is available")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(device_module, "_cuda_smoke_test", failing_smoke_test)
    caplog.set_level(logging.WARNING, logger="grdnet_kedro.training.device")

    assert resolve_device("auto") == torch.device("cpu")
    assert "no kernel image" in caplog.text


@pytest.mark.parametrize("requested", ["cuda", "cuda:1"])
def test_resolve_device_cuda_unavailable(monkeypatch, requested):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    with pytest.raises(RuntimeError, match="'auto' or 'cpu'"):
        resolve_device(requested)


def test_resolve_device_cuda_index_out_of_range(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)

    with pytest.raises(RuntimeError, match="only 1 CUDA device"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("requested", ["gpu", "cuda:x", "mps", ""])
def test_resolve_device_rejects_unknown(requested):
    with pytest.raises(ValueError, match="Invalid device"):
        resolve_device(requested)


def test_seed_everything_reproduces_all_generators():
    generator = seed_everything(42, deterministic=False)
    first = (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=generator).item(),
    )

    generator = seed_everything(42, deterministic=False)
    second = (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=generator).item(),
    )

    assert first == second


def test_seed_everything_sets_deterministic_mode():
    seed_everything(0, deterministic=True)

    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic


def test_seed_everything_rejects_out_of_range_seed():
    with pytest.raises(ValueError, match="seed"):
        seed_everything(2**32, deterministic=False)
