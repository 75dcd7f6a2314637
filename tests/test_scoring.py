import pytest
import torch

from grdnet_kedro.evaluation.scoring import (
    PatchScores,
    image_decisions,
    image_scores,
    mean_filter,
    score_reconstruction,
    score_segmentation,
)

HOT = 100.0  # sigmoid(100) is 1.0 and sigmoid(-100) is 0.0 in float32.


def _hot_pixel_logits(size: int, row: int, col: int) -> torch.Tensor:
    logits = torch.full((1, 1, size, size), -HOT)
    logits[0, 0, row, col] = HOT
    return logits


def test_reconstruction_identical_scores_zero() -> None:
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    result = score_reconstruction(x, x.clone())

    assert result.scores.shape == (3,)
    assert result.maps.shape == (3, 1, 16, 16)
    assert torch.allclose(result.scores, torch.zeros(3), atol=1e-6)
    assert torch.all(result.maps == 0.0)


def test_reconstruction_constant_images_known_value() -> None:
    # Constant patches have zero variance and covariance, so SSIM reduces to the
    # luminance term (2 * 0.5 * 0.25 + C1) / (0.5^2 + 0.25^2 + C1) with C1 = 1e-4:
    # 0.2501 / 0.3126 = 0.800064, and the score is 1 - 0.800064 = 0.199936.
    x = torch.full((1, 1, 16, 16), 0.5)
    x_hat = torch.full((1, 1, 16, 16), 0.25)
    result = score_reconstruction(x, x_hat)

    assert result.scores.item() == pytest.approx(1.0 - 0.2501 / 0.3126, abs=1e-5)
    assert torch.allclose(result.maps, torch.full((1, 1, 16, 16), 0.25))


def test_reconstruction_map_averages_channels() -> None:
    x = torch.zeros(1, 3, 8, 8)
    x_hat = torch.zeros(1, 3, 8, 8)
    x_hat[:, 0] = 0.3
    x_hat[:, 1] = 0.6

    result = score_reconstruction(x, x_hat, window_size=7)

    assert torch.allclose(result.maps, torch.full((1, 1, 8, 8), 0.3))


def test_reconstruction_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="same shape"):
        score_reconstruction(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))


def test_reconstruction_is_detached() -> None:
    x_hat = torch.rand(1, 1, 8, 8, requires_grad=True)

    result = score_reconstruction(torch.rand(1, 1, 8, 8), x_hat)

    assert not result.scores.requires_grad
    assert not result.maps.requires_grad


@pytest.mark.parametrize("kernel", [3, 5])
def test_segmentation_hot_pixel_spreads(kernel: int) -> None:
    # One pixel of probability 1 in the interior spreads into k * k pixels of 1 / k^2.
    result = score_segmentation(_hot_pixel_logits(9, 4, 4), None, smoothing_kernel=kernel)

    assert result.scores.item() == pytest.approx(1.0 / kernel**2, abs=1e-6)
    assert result.maps.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert result.maps[0, 0, 4, 4].item() == pytest.approx(1.0 / kernel**2, abs=1e-6)


def test_segmentation_kernel_one_is_no_smoothing() -> None:
    result = score_segmentation(_hot_pixel_logits(9, 4, 4), None, smoothing_kernel=1)

    assert result.scores.item() == 1.0


def test_segmentation_kernel_clamped_to_patch() -> None:
    # On a 4 x 4 patch a 21 x 21 filter becomes 3 x 3 (largest odd size that fits).
    result = score_segmentation(_hot_pixel_logits(4, 1, 1), None, smoothing_kernel=21)

    assert result.scores.item() == pytest.approx(1.0 / 9.0, abs=1e-6)


def test_segmentation_even_kernel_raises() -> None:
    with pytest.raises(ValueError, match="smoothing_kernel must be odd"):
        score_segmentation(_hot_pixel_logits(9, 4, 4), None, smoothing_kernel=4)


def test_segmentation_roi_zeroes_outside() -> None:
    logits = torch.full((1, 1, 8, 8), HOT)
    roi = torch.zeros(1, 1, 8, 8)
    roi[..., :4] = 1.0

    result = score_segmentation(logits, roi, smoothing_kernel=3)

    assert torch.all(result.maps[..., 4:] == 0.0)
    assert result.maps[0, 0, 4, 2].item() == pytest.approx(1.0)
    # Column 3 borders the zeroed half, so its 3 x 3 window contains 6 ones out of 9.
    assert result.maps[0, 0, 4, 3].item() == pytest.approx(6.0 / 9.0)
    assert result.scores.item() == pytest.approx(1.0)


def test_segmentation_roi_broadcasts_over_patches() -> None:
    logits = torch.full((2, 1, 8, 8), HOT)
    roi = torch.zeros(1, 1, 8, 8)
    roi[..., 2:6, 2:6] = 1.0

    result = score_segmentation(logits, roi, smoothing_kernel=1)

    assert torch.equal(result.maps, roi.expand(2, 1, 8, 8))


def test_segmentation_roi_bad_shape_raises() -> None:
    with pytest.raises(ValueError, match="does not broadcast"):
        score_segmentation(torch.zeros(2, 1, 8, 8), torch.ones(3, 1, 8, 8), smoothing_kernel=1)


def test_segmentation_no_roi_equals_full_roi() -> None:
    logits = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))

    without_roi = score_segmentation(logits, None, smoothing_kernel=3)
    full_roi = score_segmentation(logits, torch.ones(2, 1, 8, 8), smoothing_kernel=3)

    assert torch.allclose(without_roi.maps, full_roi.maps)
    assert torch.allclose(without_roi.scores, full_roi.scores)


def test_mean_filter_keeps_constant_map() -> None:
    maps = torch.full((1, 1, 6, 6), 0.4)

    assert torch.allclose(mean_filter(maps, 5), maps)


def test_patch_scores_rejects_mismatch() -> None:
    with pytest.raises(ValueError, match="2 scores but 3 maps"):
        PatchScores(scores=torch.zeros(2), maps=torch.zeros(3, 1, 4, 4))


def test_image_scores_patch_max() -> None:
    patch_scores = torch.tensor([0.1, 0.5, 0.2, 0.3, 0.3, 0.9])

    result = image_scores(None, patch_scores, 3)

    assert torch.allclose(result, torch.tensor([0.5, 0.9]))


def test_image_scores_map_max() -> None:
    maps = torch.zeros(2, 1, 4, 4)
    maps[0, 0, 1, 2] = 0.7
    maps[1, 0, 3, 3] = 0.2

    result = image_scores(maps, torch.zeros(6), 3, method="map_max")

    assert torch.allclose(result, torch.tensor([0.7, 0.2]))


def test_image_scores_map_max_needs_maps() -> None:
    with pytest.raises(ValueError, match="map_max"):
        image_scores(None, torch.zeros(6), 3, method="map_max")


def test_image_scores_bad_patch_count_raises() -> None:
    with pytest.raises(ValueError, match="cannot be split into images of 4 patches"):
        image_scores(None, torch.zeros(6), 4)


# Three images of four patches each. At threshold 0.5 image 0 has 2 patches over the
# threshold (share 0.5), image 1 has 1 (0.25) and image 2 none (0.0).
PATCH_SCORES = torch.tensor(
    [0.1, 0.2, 0.6, 0.7, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.5],
)


def test_image_decisions_vote_half() -> None:
    decision, share = image_decisions(PATCH_SCORES, torch.zeros(3), 4, 0.5, 0.5)

    assert decision.tolist() == [True, False, False]
    assert torch.allclose(share, torch.tensor([0.5, 0.25, 0.0]))


def test_image_decisions_vote_quarter() -> None:
    decision, _ = image_decisions(PATCH_SCORES, torch.zeros(3), 4, 0.5, 0.25)

    assert decision.tolist() == [True, True, False]


def test_image_decisions_ratio_zero_uses_image_score() -> None:
    # Image 2 has no patch over the threshold but its image score is; image 0 votes
    # anomalous but its image score is under the threshold. Equal to it is normal.
    image_score = torch.tensor([0.4, 0.9, 0.6])

    decision, share = image_decisions(PATCH_SCORES, image_score, 4, 0.5, 0.0)

    assert decision.tolist() == [False, True, True]
    assert torch.allclose(share, torch.tensor([0.5, 0.25, 0.0]))


def test_image_decisions_ratio_zero_score_equal_to_threshold() -> None:
    decision, _ = image_decisions(torch.tensor([0.5]), torch.tensor([0.5]), 1, 0.5, 0.0)

    assert decision.tolist() == [False]


def test_image_decisions_one_third_ratio() -> None:
    # 3 of 9 patches over the threshold meet a ratio of exactly 1/3.
    patch_scores = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])

    decision, _ = image_decisions(patch_scores, torch.zeros(1), 9, 0.5, 1.0 / 3.0)

    assert decision.tolist() == [True]


def test_image_decisions_invalid_ratio_raises() -> None:
    with pytest.raises(ValueError, match="acceptance_ratio must be in"):
        image_decisions(PATCH_SCORES, torch.zeros(3), 4, 0.5, 1.5)


def test_image_decisions_image_score_shape_raises() -> None:
    with pytest.raises(ValueError, match=r"image_score must have shape \(3,\)"):
        image_decisions(PATCH_SCORES, torch.zeros(2), 4, 0.5, 0.5)
