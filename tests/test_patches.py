import pytest
import torch

from grdnet_kedro.evaluation.patches import (
    extract_patches,
    patch_grid,
    patch_labels,
    resize_map,
    stitch_patches,
)


def test_patch_grid_full_profile_has_nine_patches() -> None:
    grid = patch_grid((256, 256), (128, 128), (64, 64))

    assert len(grid) == 9
    assert grid[:3] == [(0, 0), (0, 64), (0, 128)]
    assert grid[-1] == (128, 128)


def test_patch_grid_accepts_ints() -> None:
    assert patch_grid(256, 128, 64) == patch_grid((256, 256), (128, 128), (64, 64))


def test_patch_grid_single_patch() -> None:
    assert patch_grid(256, 256, 256) == [(0, 0)]


def test_patch_grid_shifts_last_patch_to_border() -> None:
    # Starts 0, 64, 128 end at 256 < 300, so a fourth patch starts at 300 - 128 = 172.
    grid = patch_grid(300, 128, 64)
    rows = sorted({row for row, _ in grid})

    assert rows == [0, 64, 128, 172]
    assert len(grid) == 16
    assert max(row for row, _ in grid) + 128 == 300


def test_patch_grid_rectangular_is_row_major() -> None:
    # Height 4 with patch 2, stride 2 gives rows 0, 2; width 6 gives columns 0, 2, 4.
    grid = patch_grid((4, 6), (2, 2), (2, 2))

    assert grid == [(0, 0), (0, 2), (0, 4), (2, 0), (2, 2), (2, 4)]


def test_patch_grid_patch_larger_than_image_raises() -> None:
    with pytest.raises(ValueError, match=r"patch_size \(128, 128\) is larger than image_size"):
        patch_grid((64, 200), 128, 64)


def test_patch_grid_stride_larger_than_patch_raises() -> None:
    with pytest.raises(ValueError, match="stride"):
        patch_grid(64, 16, 32)


def test_patch_grid_non_positive_size_raises() -> None:
    with pytest.raises(ValueError, match="stride must be positive"):
        patch_grid(64, 16, 0)


def test_extract_patches_image_major_order() -> None:
    # Image b is filled with the value b, so each patch shows which image it came from.
    images = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 1, 8, 8).contiguous()
    patches = extract_patches(images, 4, 2)

    assert patches.shape == (2 * 9, 1, 4, 4)
    assert torch.all(patches[:9] == 0.0)
    assert torch.all(patches[9:] == 1.0)


def test_extract_patches_keeps_orientation() -> None:
    # Pixel value = 10 * row + col on a 6 x 8 image (H != W).
    rows = torch.arange(6.0).view(6, 1)
    cols = torch.arange(8.0).view(1, 8)
    image = (10 * rows + cols).view(1, 1, 6, 8)
    patches = extract_patches(image, (2, 4), (2, 4))

    # Grid: rows 0, 2, 4 x columns 0, 4, so patch 1 starts at (0, 4), patch 2 at (2, 0)
    # and patch 5 at (4, 4), whose last pixel is (5, 7).
    assert patches.shape == (6, 1, 2, 4)
    assert patches[1, 0, 0, 0].item() == 4.0
    assert patches[2, 0, 0, 0].item() == 20.0
    assert patches[5, 0, 1, 3].item() == 57.0


def test_stitch_of_extract_is_identity() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 20, 28, generator=generator)
    patches = extract_patches(images, (8, 12), (4, 5))
    stitched = stitch_patches(patches, (20, 28), (8, 12), (4, 5))

    assert stitched.shape == images.shape
    assert torch.allclose(stitched, images)


def test_stitch_constant_patch_maps_gives_overlap_mean() -> None:
    # 6 x 6 image, patch 4, stride 2: patches start at 0 and 2 on each axis (4 patches).
    # Patch p has the constant value p, so the stitched value at a pixel is the mean of
    # the indices of the patches covering it.
    patch_maps = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 4, 4)
    stitched = stitch_patches(patch_maps, 6, 4, 2)[0, 0]

    assert stitched[0, 0].item() == 0.0  # patch 0 only
    assert stitched[0, 5].item() == 1.0  # patch 1 only
    assert stitched[5, 0].item() == 2.0  # patch 2 only
    assert stitched[5, 5].item() == 3.0  # patch 3 only
    assert stitched[0, 2].item() == 0.5  # patches 0 and 1
    assert stitched[2, 0].item() == 1.0  # patches 0 and 2
    assert stitched[2, 2].item() == 1.5  # all four
    assert stitched[3, 5].item() == 2.0  # patches 1 and 3


def test_stitch_wrong_patch_count_raises() -> None:
    with pytest.raises(ValueError, match="not a multiple of the 4 patches per image"):
        stitch_patches(torch.zeros(3, 1, 4, 4), 6, 4, 2)


def test_stitch_wrong_patch_size_raises() -> None:
    with pytest.raises(ValueError, match=r"patch_size \(4, 4\)"):
        stitch_patches(torch.zeros(4, 1, 5, 5), 6, 4, 2)


def test_stitch_bool_maps_become_float() -> None:
    stitched = stitch_patches(torch.ones(4, 1, 4, 4, dtype=torch.bool), 6, 4, 2)

    assert stitched.dtype == torch.float32
    assert torch.all(stitched == 1.0)


def test_patch_labels_any_mask_pixel() -> None:
    # One mask pixel at (5, 5) lies only in the bottom-right patch of a 6 x 6 grid.
    masks = torch.zeros(1, 1, 6, 6)
    masks[0, 0, 5, 5] = 1.0

    assert patch_labels(masks, 4, 2).tolist() == [False, False, False, True]


def test_resize_map_bilinear_values() -> None:
    # Upsampling a 1 x 2 map [0, 1] to 1 x 4 with align_corners=False samples the source
    # at x = -0.25, 0.25, 0.75, 1.25, clamped to [0, 1]: 0, 0.25, 0.75, 1.
    maps = torch.tensor([[[[0.0, 1.0]]]])
    resized = resize_map(maps, (1, 4))

    assert torch.allclose(resized, torch.tensor([[[[0.0, 0.25, 0.75, 1.0]]]]))


def test_resize_map_same_size_is_unchanged() -> None:
    maps = torch.rand(2, 1, 5, 7)

    assert resize_map(maps, (5, 7)) is maps


def test_resize_map_downsampling_keeps_constant() -> None:
    resized = resize_map(torch.full((1, 1, 16, 12), 0.5), (4, 3))

    assert resized.shape == (1, 1, 4, 3)
    assert torch.allclose(resized, torch.full((1, 1, 4, 3), 0.5))
