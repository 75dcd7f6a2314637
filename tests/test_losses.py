"""Tests of SSIM and the loss terms against hand-worked values and a numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from grdnet_kedro.losses import (
    adversarial_loss,
    contextual_loss,
    discriminator_loss,
    encoder_loss,
    focal_loss,
    noise_loss,
    ssim,
    ssim_map,
)
from grdnet_kedro.losses.ssim import effective_window_size

C1 = 0.01**2
C2 = 0.03**2


def reference_ssim_map(
    x: np.ndarray, y: np.ndarray, window_size: int = 11, sigma: float = 1.5
) -> np.ndarray:
    """Slow SSIM map after Wang et al. 2004, one window at a time (data range 1).

    Local statistics are weighted sums over an explicit 2-D Gaussian window on
    reflect-padded images, with variances computed as E[(x - mu)^2] rather than through
    E[x^2] - mu^2 as in the library. Returns the (B, H, W) channel mean.
    """
    batch, channels, height, width = x.shape
    offsets = np.arange(window_size) - (window_size - 1) / 2
    gauss = np.exp(-(offsets**2) / (2 * sigma**2))
    window = np.outer(gauss, gauss)
    window /= window.sum()
    pad = window_size // 2

    result = np.zeros((batch, channels, height, width))
    for b in range(batch):
        for c in range(channels):
            xp = np.pad(x[b, c], pad, mode="reflect")
            yp = np.pad(y[b, c], pad, mode="reflect")
            for i in range(height):
                for j in range(width):
                    px = xp[i : i + window_size, j : j + window_size]
                    py = yp[i : i + window_size, j : j + window_size]
                    mu_x = np.sum(window * px)
                    mu_y = np.sum(window * py)
                    var_x = np.sum(window * (px - mu_x) ** 2)
                    var_y = np.sum(window * (py - mu_y) ** 2)
                    cov = np.sum(window * (px - mu_x) * (py - mu_y))
                    result[b, c, i, j] = ((2 * mu_x * mu_y + C1) * (2 * cov + C2)) / (
                        (mu_x**2 + mu_y**2 + C1) * (var_x + var_y + C2)
                    )
    return result.mean(axis=1)


@pytest.fixture
def image_pair() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    x = torch.rand(2, 3, 24, 24, generator=generator, dtype=torch.float64)
    noise = 0.2 * torch.rand(2, 3, 24, 24, generator=generator, dtype=torch.float64)
    y = (0.7 * x + noise).clamp(0, 1)
    return x, y


# --- SSIM -------------------------------------------------------------------------------


def test_ssim_map_matches_numpy_reference(image_pair):
    x, y = image_pair
    expected = reference_ssim_map(x.numpy(), y.numpy())

    result = ssim_map(x, y)

    assert result.shape == (2, 1, 24, 24)
    np.testing.assert_allclose(result[:, 0].numpy(), expected, atol=1e-5)


def test_ssim_mean_matches_numpy_reference(image_pair):
    x, y = image_pair
    expected = reference_ssim_map(x.numpy(), y.numpy()).mean()

    assert ssim(x, y).item() == pytest.approx(expected, abs=1e-5)


def test_ssim_float32_close_to_reference(image_pair):
    x, y = image_pair
    expected = reference_ssim_map(x.numpy(), y.numpy()).mean(axis=(1, 2))

    result = ssim(x.float(), y.float(), reduction="none")

    assert result.dtype == torch.float32
    np.testing.assert_allclose(result.numpy(), expected, atol=1e-5)


def test_ssim_small_patch_uses_clamped_window():
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(1, 1, 8, 8, generator=generator, dtype=torch.float64)
    y = torch.rand(1, 1, 8, 8, generator=generator, dtype=torch.float64)
    # An 8x8 patch cannot hold an 11x11 window; the largest odd window that fits is 7x7.
    expected = reference_ssim_map(x.numpy(), y.numpy(), window_size=7)

    result = ssim_map(x, y, window_size=11)

    assert effective_window_size(11, 8, 8) == 7
    np.testing.assert_allclose(result[:, 0].numpy(), expected, atol=1e-5)


def test_effective_window_size_cases():
    assert effective_window_size(11, 256, 256) == 11
    assert effective_window_size(11, 10, 64) == 9
    assert effective_window_size(11, 9, 64) == 9
    assert effective_window_size(11, 1, 1) == 1


def test_ssim_identical_images_is_one(image_pair):
    x, _ = image_pair

    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-12)


def test_ssim_constant_images_hand_value():
    # Constant images have zero variance and covariance, so the structure factor is
    # C2 / C2 = 1 and SSIM = (2 * 0.2 * 0.6 + C1) / (0.2^2 + 0.6^2 + C1)
    # = 0.2401 / 0.4001 = 0.600099975...
    x = torch.full((1, 1, 16, 16), 0.2, dtype=torch.float64)
    y = torch.full((1, 1, 16, 16), 0.6, dtype=torch.float64)

    result = ssim_map(x, y)

    assert torch.allclose(result, torch.full_like(result, 0.2401 / 0.4001), atol=1e-12)


def test_ssim_is_symmetric(image_pair):
    x, y = image_pair

    assert ssim(x, y).item() == pytest.approx(ssim(y, x).item(), abs=1e-12)


def test_ssim_reduction_none_is_per_sample(image_pair):
    x, y = image_pair

    per_sample = ssim(x, y, reduction="none")

    assert per_sample.shape == (2,)
    assert per_sample[0].item() == pytest.approx(ssim(x[:1], y[:1]).item(), abs=1e-12)
    assert per_sample.mean().item() == pytest.approx(ssim(x, y).item(), abs=1e-12)


def test_ssim_bfloat16_input_computed_in_float32(image_pair):
    x, y = image_pair

    result = ssim(x.to(torch.bfloat16), y.to(torch.bfloat16))

    assert result.dtype == torch.float32
    assert result.item() == pytest.approx(ssim(x, y).item(), abs=2e-2)


def test_ssim_under_autocast_stays_float32(image_pair):
    x, y = image_pair
    expected = reference_ssim_map(x.numpy(), y.numpy()).mean()

    with torch.autocast("cpu", dtype=torch.bfloat16):
        result = ssim(x.float(), y.float())

    assert result.dtype == torch.float32
    assert result.item() == pytest.approx(expected, abs=1e-5)


def test_ssim_gradient_is_finite(image_pair):
    x, y = image_pair
    y = y.clone().requires_grad_(True)

    (1 - ssim(x, y)).backward()

    assert y.grad is not None
    assert torch.isfinite(y.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window_size": 10}, "window_size"),
        ({"window_size": 0}, "window_size"),
        ({"sigma": 0.0}, "sigma"),
        ({"data_range": -1.0}, "data_range"),
    ],
)
def test_ssim_rejects_bad_parameters(kwargs, message):
    x = torch.rand(1, 1, 16, 16)

    with pytest.raises(ValueError, match=message):
        ssim(x, x, **kwargs)


def test_ssim_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 8))


def test_ssim_rejects_three_dimensional_input():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ssim(torch.rand(1, 16, 16), torch.rand(1, 16, 16))


def test_ssim_rejects_unknown_reduction():
    x = torch.rand(1, 1, 16, 16)

    with pytest.raises(ValueError, match="reduction"):
        ssim(x, x, reduction="sum")  # type: ignore[arg-type]


# --- loss terms -------------------------------------------------------------------------


def test_adversarial_loss_zero_vs_one():
    # MSE between all-zero and all-one features is (0 - 1)^2 = 1.
    real = torch.zeros(2, 8, 2, 2)
    fake = torch.ones(2, 8, 2, 2)

    assert adversarial_loss(real, fake).item() == pytest.approx(1.0)


def test_adversarial_loss_detaches_real_features():
    real = torch.zeros(2, 4, 2, 2, requires_grad=True)
    fake = torch.ones(2, 4, 2, 2, requires_grad=True)

    adversarial_loss(real, fake).backward()

    assert real.grad is None
    assert fake.grad is not None


def test_contextual_loss_l1_only():
    # L1 of 0 vs 0.5 is 0.5.
    x = torch.zeros(1, 1, 16, 16)
    x_hat = torch.full((1, 1, 16, 16), 0.5)

    loss = contextual_loss(x, x_hat, base="l1", ssim_weight=0.0)

    assert loss.item() == pytest.approx(0.5)


def test_contextual_loss_l1_plus_ssim():
    # SSIM of constants 0 and 0.5: (0 + C1) / (0 + 0.25 + C1) = 1e-4 / 0.2501, so the
    # loss is 0.5 + (1 - 1e-4 / 0.2501) = 1.49960016...
    x = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    x_hat = torch.full((1, 1, 16, 16), 0.5, dtype=torch.float64)

    loss = contextual_loss(x, x_hat, base="l1")

    assert loss.item() == pytest.approx(0.5 + 1 - 1e-4 / 0.2501, abs=1e-9)


def test_contextual_loss_weights_scale_terms():
    x = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    x_hat = torch.full((1, 1, 16, 16), 0.5, dtype=torch.float64)

    loss = contextual_loss(x, x_hat, base="l1", base_weight=2.0, ssim_weight=3.0)

    assert loss.item() == pytest.approx(2 * 0.5 + 3 * (1 - 1e-4 / 0.2501), abs=1e-9)


def test_contextual_loss_huber_is_half_mse():
    # Huber with delta 1 on a difference of 0.5: 0.5 * 0.5^2 = 0.125 = 0.5 * MSE.
    x = torch.zeros(1, 1, 16, 16)
    x_hat = torch.full((1, 1, 16, 16), 0.5)

    loss = contextual_loss(x, x_hat, base="huber", huber_delta=1.0, ssim_weight=0.0)

    assert loss.item() == pytest.approx(0.125)


def test_contextual_loss_huber_linear_part():
    # With delta 0.25 the difference 0.5 lies in the linear part:
    # delta * (|d| - 0.5 * delta) = 0.25 * (0.5 - 0.125) = 0.09375.
    x = torch.zeros(1, 1, 16, 16)
    x_hat = torch.full((1, 1, 16, 16), 0.5)

    loss = contextual_loss(x, x_hat, base="huber", huber_delta=0.25, ssim_weight=0.0)

    assert loss.item() == pytest.approx(0.09375)


def test_contextual_loss_rejects_unknown_base():
    x = torch.zeros(1, 1, 16, 16)

    with pytest.raises(ValueError, match="'l1' or 'huber'"):
        contextual_loss(x, x, base="l2")  # type: ignore[arg-type]


def test_contextual_loss_rejects_bad_huber_delta():
    x = torch.zeros(1, 1, 16, 16)

    with pytest.raises(ValueError, match="huber_delta"):
        contextual_loss(x, x, base="huber", huber_delta=0.0)


def test_encoder_loss_zero_vs_half():
    # L1 of 0 vs 0.5 is 0.5.
    z = torch.zeros(2, 8, 1, 1)
    z_hat = torch.full((2, 8, 1, 1), 0.5)

    assert encoder_loss(z, z_hat).item() == pytest.approx(0.5)


def _blend(
    x: torch.Tensor, mask: torch.Tensor, beta: torch.Tensor, source: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x_perturbed, noise) with X_n = (1 - M) X + (1 - beta) M X + beta N."""
    noise = mask * source
    beta_view = beta.view(-1, 1, 1, 1)
    x_perturbed = (1 - mask) * x + (1 - beta_view) * mask * x + beta_view * noise
    return x_perturbed, noise


def test_noise_loss_zero_for_perfect_reconstruction():
    generator = torch.Generator().manual_seed(11)
    x = torch.rand(3, 2, 16, 16, generator=generator, dtype=torch.float64)
    mask = (torch.rand(3, 1, 16, 16, generator=generator) > 0.5).to(torch.float64)
    mask[2] = 0.0  # an unperturbed sample
    beta = torch.tensor([0.5, 0.9, 0.7], dtype=torch.float64)
    source = torch.rand(3, 2, 16, 16, generator=generator, dtype=torch.float64)
    x_perturbed, noise = _blend(x, mask, beta, source)

    loss = noise_loss(x, x_perturbed, mask, beta, noise)

    assert loss.item() == pytest.approx(0.0, abs=1e-15)


def test_noise_loss_hand_value():
    # X = 0.4 everywhere, M = 1, beta = 0.5, N = 0.8. For X_hat = 0 the left side is
    # |0 - M X_n| = 0.5 * 0.4 + 0.5 * 0.8 = 0.6 and the target beta N = 0.4, so the
    # loss is (0.6 - 0.4)^2 = 0.04.
    x = torch.full((1, 1, 4, 4), 0.4, dtype=torch.float64)
    mask = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    beta = torch.tensor([0.5], dtype=torch.float64)
    source = torch.full((1, 1, 4, 4), 0.8, dtype=torch.float64)
    x_perturbed, noise = _blend(x, mask, beta, source)

    loss = noise_loss(torch.zeros_like(x), x_perturbed, mask, beta, noise)

    assert loss.item() == pytest.approx(0.04, abs=1e-12)


def test_noise_loss_rejects_bad_beta_shape():
    x = torch.zeros(2, 1, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)

    with pytest.raises(ValueError, match="beta"):
        noise_loss(x, x, mask, torch.zeros(2, 1), x)


def test_noise_loss_rejects_bad_mask_shape():
    x = torch.zeros(2, 3, 4, 4)

    with pytest.raises(ValueError, match="mask"):
        noise_loss(x, x, torch.zeros(2, 3, 4, 4), torch.zeros(2), x)


def test_discriminator_loss_zero_logits_is_ln2():
    # BCE of logit 0 (p = 0.5) is ln 2 for either label.
    logits = torch.zeros(4, 1)

    assert discriminator_loss(logits, logits).item() == pytest.approx(math.log(2))


def test_discriminator_loss_confident_and_right_is_small():
    real = torch.full((4, 1), 20.0)
    fake = torch.full((4, 1), -20.0)

    assert discriminator_loss(real, fake).item() == pytest.approx(0.0, abs=1e-8)


def test_discriminator_loss_hand_value():
    # Real logit ln 3 (p = 0.75): -ln 0.75. Fake logit ln 3 labelled 0: -ln 0.25.
    # Loss = 0.5 * (ln(4/3) + ln 4) = 0.8630462...
    logits = torch.full((2, 1), math.log(3))

    loss = discriminator_loss(logits, logits)

    assert loss.item() == pytest.approx(0.5 * (math.log(4 / 3) + math.log(4)), rel=1e-6)


def test_focal_loss_hand_values():
    # Pixel 1: logit 0, target 1: p_t = 0.5, alpha_t = 0.25 -> 0.25 * 0.5^2 * ln 2.
    # Pixel 2: logit 0, target 0: p_t = 0.5, alpha_t = 0.75 -> 0.75 * 0.5^2 * ln 2.
    # Pixel 3: logit ln 3, target 1: p_t = 0.75 -> 0.25 * 0.25^2 * ln(4/3).
    # Pixel 4: logit ln 3, target 0: p_t = 0.25 -> 0.75 * 0.75^2 * ln 4.
    logits = torch.tensor([0.0, 0.0, math.log(3), math.log(3)]).view(1, 1, 2, 2)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
    per_pixel = [
        0.25 * 0.25 * math.log(2),
        0.75 * 0.25 * math.log(2),
        0.25 * 0.0625 * math.log(4 / 3),
        0.75 * 0.5625 * math.log(4),
    ]

    loss = focal_loss(logits, target, alpha=0.25, gamma=2.0)

    assert loss.item() == pytest.approx(sum(per_pixel) / 4, rel=1e-6)


def test_focal_loss_gamma_zero_is_weighted_bce():
    # gamma 0 and alpha 0.5 give half the binary cross-entropy.
    logits = torch.tensor([0.3, -1.2, 2.0, 0.0]).view(1, 1, 2, 2)
    target = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 1, 2, 2)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)

    loss = focal_loss(logits, target, alpha=0.5, gamma=0.0)

    assert loss.item() == pytest.approx(0.5 * bce.item(), rel=1e-6)


def test_focal_loss_ignores_pixels_outside_roi():
    # Only pixel 1 (logit 0, target 1) is in the ROI: 0.25 * 0.25 * ln 2.
    logits = torch.tensor([0.0, 5.0, -3.0, 9.0]).view(1, 1, 2, 2)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 2, 2)
    roi = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 1, 2, 2)
    other_logits = logits.clone()
    other_logits.view(-1)[1:] = torch.tensor([-7.0, 1.0, 4.0])

    loss = focal_loss(logits, target, roi)
    loss_other_outside = focal_loss(other_logits, target, roi)

    assert loss.item() == pytest.approx(0.0625 * math.log(2), rel=1e-6)
    assert loss_other_outside.item() == pytest.approx(loss.item(), rel=1e-6)


def test_focal_loss_roi_broadcasts_over_batch():
    logits = torch.zeros(2, 1, 2, 2)
    target = torch.ones(2, 1, 2, 2)
    roi = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 2, 2)

    loss = focal_loss(logits, target, roi)

    assert loss.item() == pytest.approx(0.0625 * math.log(2), rel=1e-6)


def test_focal_loss_empty_roi_is_zero():
    logits = torch.zeros(1, 1, 2, 2)

    loss = focal_loss(logits, torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))

    assert loss.item() == 0.0


def test_focal_loss_computed_in_float32():
    logits = torch.zeros(1, 1, 2, 2, dtype=torch.bfloat16)
    target = torch.ones(1, 1, 2, 2, dtype=torch.bfloat16)

    loss = focal_loss(logits, target)

    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(0.0625 * math.log(2), rel=1e-6)


def test_focal_loss_under_autocast_stays_float32():
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.ones(1, 1, 2, 2)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = focal_loss(logits, target)

    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(0.0625 * math.log(2), rel=1e-6)


def test_focal_loss_rejects_bad_roi_shape():
    logits = torch.zeros(1, 1, 4, 4)

    with pytest.raises(ValueError, match="roi"):
        focal_loss(logits, logits, torch.ones(1, 1, 3, 3))


@pytest.mark.parametrize(("alpha", "gamma"), [(-0.1, 2.0), (1.5, 2.0), (0.25, -1.0)])
def test_focal_loss_rejects_bad_alpha_gamma(alpha, gamma):
    logits = torch.zeros(1, 1, 2, 2)

    with pytest.raises(ValueError, match="focal"):
        focal_loss(logits, logits, alpha=alpha, gamma=gamma)
