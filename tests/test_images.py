from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from grdnet_kedro.data.images import (
    ConversionCounter,
    DataError,
    list_images,
    load_image,
    load_mask,
    read_image_header,
)

# A 2x3 gray ramp that covers 0 and 255.
GRAY = np.array([[0, 1, 2], [127, 128, 255]], dtype=np.uint8)


def _write_truncated_png(path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_list_images_extensions_case_insensitive(tmp_path: Path) -> None:
    for name in ("b.PNG", "a.JPG", "c.Jpeg", "d.bmp", "e.TIF", "f.tiff"):
        (tmp_path / name).write_bytes(b"")

    names = [path.name for path in list_images(tmp_path)]

    assert names == ["a.JPG", "b.PNG", "c.Jpeg", "d.bmp", "e.TIF", "f.tiff"]


def test_list_images_skips_hidden_and_others(tmp_path: Path) -> None:
    for name in ("x.png", ".DS_Store", "._x.png", ".hidden.png", "notes.txt", "mask.gif"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()

    names = [path.name for path in list_images(tmp_path)]

    assert names == ["x.png"]


def test_list_images_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"

    with pytest.raises(DataError, match="nowhere"):
        list_images(missing)


def test_load_gray_as_is(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.fromarray(GRAY).save(path)

    pixels = load_image(path, channels=1)

    assert pixels.dtype == np.uint8
    assert pixels.shape == (2, 3, 1)
    np.testing.assert_array_equal(pixels[..., 0], GRAY)


def test_load_gray_to_rgb_replicates(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.fromarray(GRAY).save(path)

    pixels = load_image(path, channels=3)

    assert pixels.shape == (2, 3, 3)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[..., channel], GRAY)


def test_load_rgb_as_is_and_to_luma(tmp_path: Path) -> None:
    colour = np.zeros((2, 2, 3), dtype=np.uint8)
    colour[...] = (10, 200, 30)
    path = tmp_path / "rgb.png"
    Image.fromarray(colour).save(path)

    rgb = load_image(path, channels=3)
    gray = load_image(path, channels=1)

    np.testing.assert_array_equal(rgb, colour)
    # ITU-R 601-2 luma: 0.299 * 10 + 0.587 * 200 + 0.114 * 30 = 123.81, Pillow gives 124.
    assert gray.shape == (2, 2, 1)
    assert np.all(gray == 124)


def test_load_rgba_drops_alpha(tmp_path: Path) -> None:
    pixels = np.zeros((2, 2, 4), dtype=np.uint8)
    pixels[...] = (10, 200, 30, 0)
    path = tmp_path / "rgba.png"
    Image.fromarray(pixels).save(path)

    loaded = load_image(path, channels=3)

    # Colour kept as stored, not composited on a background by the zero alpha.
    assert loaded.shape == (2, 2, 3)
    assert loaded[0, 0].tolist() == [10, 200, 30]


def test_load_palette_through_palette(tmp_path: Path) -> None:
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([0, 0, 0, 250, 100, 5] + [0] * (256 * 3 - 6))
    palette_image.putpixel((1, 0), 1)
    path = tmp_path / "palette.png"
    palette_image.save(path)

    loaded = load_image(path, channels=3)

    assert loaded[0, 0].tolist() == [0, 0, 0]
    assert loaded[0, 1].tolist() == [250, 100, 5]


def test_load_bilevel_to_gray(tmp_path: Path) -> None:
    path = tmp_path / "bilevel.png"
    Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1").save(path)

    loaded = load_image(path, channels=1)

    assert loaded[..., 0].tolist() == [[0, 255]]


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_equals_eight_bit(tmp_path: Path, suffix: str) -> None:
    eight_path = tmp_path / f"eight{suffix}"
    sixteen_path = tmp_path / f"sixteen{suffix}"
    Image.fromarray(GRAY).save(eight_path)
    Image.fromarray(GRAY.astype(np.uint16) * 257).save(sixteen_path)
    assert Image.open(sixteen_path).mode == "I;16"

    eight = load_image(eight_path, channels=1)
    sixteen = load_image(sixteen_path, channels=1)

    np.testing.assert_array_equal(sixteen, eight)


def test_thirty_two_bit_integer_equals_eight_bit(tmp_path: Path) -> None:
    path = tmp_path / "int32.tif"
    Image.fromarray(GRAY.astype(np.int32) * 257).save(path)
    assert Image.open(path).mode == "I"

    loaded = load_image(path, channels=1)

    np.testing.assert_array_equal(loaded[..., 0], GRAY)


def test_float_image_equals_eight_bit(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(GRAY.astype(np.float32) * 257.0).save(path)
    assert Image.open(path).mode == "F"

    loaded = load_image(path, channels=1)

    np.testing.assert_array_equal(loaded[..., 0], GRAY)


def test_float_unit_range_with_maximum_one(tmp_path: Path) -> None:
    path = tmp_path / "unit.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(path)

    loaded = load_image(path, channels=1, sixteen_bit_max=1.0)

    # 0.5 * 255 = 127.5 rounds half to even.
    assert loaded[..., 0].tolist() == [[0, 128, 255]]


def test_float_unit_range_warns_without_maximum(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "unit.tif"
    Image.fromarray(np.array([[0.0, 1.0]], dtype=np.float32)).save(path)

    with caplog.at_level(logging.WARNING, logger="grdnet_kedro.data.images"):
        load_image(path, channels=1)

    assert "sixteen_bit_max to 1.0" in caplog.text


def test_twelve_bit_maximum_scales_without_clipping(tmp_path: Path) -> None:
    path = tmp_path / "twelve.png"
    Image.fromarray(np.array([[0, 2048, 4095]], dtype=np.uint16)).save(path)

    loaded = load_image(path, channels=1, sixteen_bit_max=4095)

    # 2048 * 255 / 4095 = 127.53 -> 128.
    assert loaded[..., 0].tolist() == [[0, 128, 255]]


def test_values_above_maximum_clipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "over.png"
    Image.fromarray(np.array([[4095, 8190]], dtype=np.uint16)).save(path)

    with caplog.at_level(logging.WARNING, logger="grdnet_kedro.data.images"):
        loaded = load_image(path, channels=1, sixteen_bit_max=4095)

    assert loaded[..., 0].tolist() == [[255, 255]]
    assert "clipped" in caplog.text


def test_conversion_counter_warns_once_with_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    paths = []
    for index in range(3):
        path = tmp_path / f"rgba{index}.png"
        Image.fromarray(np.full((2, 2, 4), 9, dtype=np.uint8)).save(path)
        paths.append(path)
    counter = ConversionCounter()

    with caplog.at_level(logging.INFO, logger="grdnet_kedro.data.images"):
        for path in paths:
            load_image(path, channels=1, conversions=counter)
        assert caplog.records == []
        counter.log_summary("category widget")

    alpha_records = [record for record in caplog.records if "alpha" in record.getMessage()]
    assert len(alpha_records) == 1
    assert alpha_records[0].levelno == logging.WARNING
    assert "category widget: 3 image(s)" in alpha_records[0].getMessage()
    assert counter.counts["rgb_to_gray"] == 3


def test_conversion_counter_unknown_kind() -> None:
    with pytest.raises(KeyError, match="unknown conversion kind"):
        ConversionCounter().record("sepia", Path("x.png"))


@pytest.mark.parametrize(
    ("name", "content"),
    [("empty.png", b""), ("text.png", b"not an image at all")],
)
def test_load_undecodable_names_file(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)

    with pytest.raises(DataError, match=re.escape(name)):
        load_image(path, channels=1)


def test_load_truncated_png_names_file(tmp_path: Path) -> None:
    path = tmp_path / "truncated.png"
    _write_truncated_png(path)

    with pytest.raises(DataError, match=r"cannot decode image .*truncated\.png"):
        load_image(path, channels=1)


def test_load_invalid_channels(tmp_path: Path) -> None:
    path = tmp_path / "gray.png"
    Image.fromarray(GRAY).save(path)

    with pytest.raises(DataError, match="channels must be 1 or 3"):
        load_image(path, channels=2)  # type: ignore[arg-type]


def test_read_header_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "truncated.png"
    _write_truncated_png(path)

    assert read_image_header(path) == (32, 32, "L")


def test_mask_anti_aliased_binarised(tmp_path: Path) -> None:
    path = tmp_path / "mask.png"
    Image.fromarray(np.array([[0, 1, 128, 255]], dtype=np.uint8)).save(path)

    mask = load_mask(path, None)

    assert mask.dtype == np.uint8
    assert mask.tolist() == [[0, 1, 1, 1]]


def test_mask_resized_nearest_width_height_order(tmp_path: Path) -> None:
    path = tmp_path / "mask.png"
    small = np.array([[0, 255, 0, 0], [0, 0, 0, 40]], dtype=np.uint8)  # height 2, width 4
    Image.fromarray(small).save(path)

    mask = load_mask(path, (8, 4))

    expected = np.kron((small > 0).astype(np.uint8), np.ones((2, 2), dtype=np.uint8))
    assert mask.shape == (4, 8)
    np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "1", "I;16", "LA"])
def test_mask_any_mode_binarised(tmp_path: Path, mode: str) -> None:
    gray = Image.fromarray(np.array([[0, 200], [0, 0]], dtype=np.uint8))
    converted = gray.convert("I").convert("I;16") if mode == "I;16" else gray.convert(mode)
    path = tmp_path / "mask.png"
    converted.save(path)

    mask = load_mask(path, None)

    assert mask.tolist() == [[0, 1], [0, 0]]


def test_mask_undecodable_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken_mask.png"
    path.write_bytes(b"")

    with pytest.raises(DataError, match=r"broken_mask\.png"):
        load_mask(path, None)


def test_load_palette_with_transparency_drops_alpha(tmp_path: Path) -> None:
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([0, 0, 0, 250, 100, 5] + [0] * (256 * 3 - 6))
    palette_image.putpixel((1, 0), 1)
    path = tmp_path / "transparent.png"
    palette_image.save(path, transparency=0)
    counter = ConversionCounter()

    loaded = load_image(path, channels=3, conversions=counter)

    assert loaded[0].tolist() == [[0, 0, 0], [250, 100, 5]]
    assert counter.counts["alpha_dropped"] == 1


def test_load_cmyk_converted_to_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.tif"
    Image.new("RGB", (2, 2), (255, 0, 0)).convert("CMYK").save(path)
    counter = ConversionCounter()

    loaded = load_image(path, channels=3, conversions=counter)

    assert loaded[0, 0].tolist() == [255, 0, 0]
    assert counter.counts["colour_space_to_rgb"] == 1


@pytest.mark.parametrize("maximum", [0.0, -1.0])
def test_load_invalid_sixteen_bit_max(tmp_path: Path, maximum: float) -> None:
    path = tmp_path / "gray.png"
    Image.fromarray(GRAY).save(path)

    with pytest.raises(DataError, match="sixteen_bit_max must be > 0"):
        load_image(path, channels=1, sixteen_bit_max=maximum)


def test_mask_invalid_size(tmp_path: Path) -> None:
    path = tmp_path / "mask.png"
    Image.fromarray(GRAY).save(path)

    with pytest.raises(DataError, match=r"mask size must be \(width, height\)"):
        load_mask(path, (0, 4))
