"""Every Pillow image mode a user may hand microst loads as RGB in [0, 255] with the right scale: 16-bit
grayscale (I;16, I;16B) and 32-bit integers (I, read as 16-bit) are divided by 257, floats (F) are
[0, 1] times 255, and the 8-bit modes convert as Pillow does, transparency composited onto white.
Each against an 8-bit reference of the same picture."""
import numpy as np
import pytest
from PIL import Image

from microst.io import load_image

R = np.random.default_rng(0)
GRAY = (R.random((12, 17)) * 255).astype(np.uint8)
RGB = (R.random((12, 17, 3)) * 255).astype(np.uint8)


def rgb_of_gray(g):
    return np.repeat(g.astype(np.float32)[None], 3, axis=0)


def save(tmp_path, name, im):
    path = tmp_path / name
    im.save(path)
    return path


@pytest.mark.parametrize("mode, array, suffix", [
    ("I;16", GRAY.astype(np.uint16) * 257, "png"),
    ("I;16B", (GRAY.astype(np.uint16) * 257).astype(">u2"), "tif"),
    ("I", GRAY.astype(np.int32) * 257, "tif"),
    ("F", GRAY.astype(np.float32) / 255, "tif"),
    ("L", GRAY, "png"),
])
def test_grayscale_of_every_depth_scales_to_8_bits(tmp_path, mode, array, suffix):
    path = save(tmp_path, f"g.{suffix}", Image.fromarray(array))
    assert Image.open(path).mode == mode
    np.testing.assert_array_equal(load_image(path), rgb_of_gray(GRAY))


def test_sixteen_bit_grayscale_is_not_white(tmp_path):
    """The bug: I;16 went through Pillow's convert("RGB") and clipped to almost white (mean 254.9)."""
    path = save(tmp_path, "g16.png", Image.fromarray(GRAY.astype(np.uint16) * 257))
    assert abs(load_image(path).mean() - GRAY.mean()) < 0.01


def test_one_bit(tmp_path):
    bits = GRAY > 128
    path = save(tmp_path, "b.png", Image.fromarray(bits))
    assert Image.open(path).mode == "1"
    np.testing.assert_array_equal(load_image(path), rgb_of_gray(bits.astype(np.uint8) * 255))


def test_rgb_and_rgba_onto_white(tmp_path):
    np.testing.assert_array_equal(load_image(save(tmp_path, "c.png", Image.fromarray(RGB))),
                                  RGB.transpose(2, 0, 1).astype(np.float32))
    alpha = np.where(GRAY > 128, 255, 0).astype(np.uint8)
    path = save(tmp_path, "a.png", Image.fromarray(np.dstack([RGB, alpha])))
    expected = np.where(alpha[..., None] == 255, RGB, 255).transpose(2, 0, 1)
    np.testing.assert_array_equal(load_image(path), expected.astype(np.float32))


def test_grayscale_with_alpha(tmp_path):
    alpha = np.where(GRAY > 100, 255, 0).astype(np.uint8)
    path = save(tmp_path, "la.png", Image.fromarray(np.dstack([GRAY, alpha])).convert("LA"))
    assert Image.open(path).mode == "LA"
    expected = np.where(alpha == 255, GRAY, 255).astype(np.uint8)
    np.testing.assert_array_equal(load_image(path), rgb_of_gray(expected))


def test_palette_with_transparency(tmp_path):
    im = Image.fromarray(RGB).quantize(16)
    index = np.asarray(im)
    im.info["transparency"] = int(index[0, 0])
    path = save(tmp_path, "p.png", im)
    assert Image.open(path).mode == "P"
    palette = np.array(im.getpalette()[:48]).reshape(16, 3)
    expected = np.where((index == index[0, 0])[..., None], 255, palette[index]).transpose(2, 0, 1)
    np.testing.assert_array_equal(load_image(path), expected.astype(np.float32))


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr"])
def test_colour_models_convert_as_pillow_does(tmp_path, mode):
    path = save(tmp_path, "m.tif", Image.fromarray(RGB).convert(mode))
    with Image.open(path) as im:
        assert im.mode == mode
        expected = np.asarray(im.convert("RGB"), np.float32).transpose(2, 0, 1)
    np.testing.assert_array_equal(load_image(path), expected)
