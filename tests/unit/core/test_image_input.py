"""Any reference image -> uint8 RGB (pipeline/core/image_input.py)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from talkinghead.pipeline.core.errors import InputError
from talkinghead.pipeline.core.image_input import (
                                                   MAX_SIDE_PX, describe_image_input, load_image_input, to_rgb_uint8,
                                                   )


def ramp(h=6, w=5):
    return (np.arange(h * w * 3, dtype=np.int64).reshape(h, w, 3) * 3 % 256).astype(np.uint8)


def test_uint8_rgb_passes_through():
    rgb = ramp()
    out = to_rgb_uint8(rgb)
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("shape", [(4, 7), (4, 7, 1)])
def test_grey_is_repeated(shape):
    grey = (np.arange(28).reshape(shape) * 9).astype(np.uint8)
    out = to_rgb_uint8(grey)
    assert out.shape == (4, 7, 3)
    np.testing.assert_array_equal(out[..., 0], grey.reshape(4, 7))
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_uint16_maps_exactly():
    values = np.array([[0, 257, 257 * 128], [65535, 128, 129]], dtype=np.uint16)
    out = to_rgb_uint8(values)
    assert out[..., 0].tolist() == [[0, 1, 128], [255, 0, 1]]
    assert describe_image_input(values) == "16-bit greyscale 3x2"


def test_float_comfy_frame_and_batch_of_one():
    frame = np.linspace(0, 1, 4 * 4 * 3, dtype=np.float32).reshape(1, 4, 4, 3)
    out = to_rgb_uint8(frame)
    assert out.shape == (4, 4, 3)
    assert out.reshape(-1)[0] == 0 and out.reshape(-1)[-1] == 255
    np.testing.assert_array_equal(out, np.rint(frame[0] * 255).astype(np.uint8))
    assert describe_image_input(frame) == "float RGB 4x4"


def test_float_small_overshoot_clipped():
    out = to_rgb_uint8(np.array([[-0.01, 1.02]], dtype=np.float32))
    assert out[0, :, 0].tolist() == [0, 255]


def test_rgba_composited_over_grey_or_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)      # opaque red
    rgba[0, 1] = (255, 0, 0, 0)        # fully transparent
    out = to_rgb_uint8(rgba)
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 1].tolist() == [128, 128, 128]
    assert to_rgb_uint8(rgba, background=255)[0, 1].tolist() == [255, 255, 255]
    rgb, info = load_image_input(rgba)
    assert info.has_alpha and "alpha" in info.describe()


def test_pil_modes():
    base = Image.fromarray(ramp(8, 8))
    for mode in ("L", "LA", "RGB", "RGBA", "P", "1", "CMYK"):
        out = to_rgb_uint8(base.convert(mode))
        assert out.shape == (8, 8, 3) and out.dtype == np.uint8, mode
    np.testing.assert_array_equal(to_rgb_uint8(base), ramp(8, 8))
    grey16 = Image.fromarray(np.full((3, 4), 65535, dtype=np.uint16))
    assert grey16.mode.startswith("I;16")
    assert to_rgb_uint8(grey16).min() == 255
    assert describe_image_input(grey16) == "16-bit greyscale 4x3"
    mode_i = Image.fromarray(np.full((3, 4), 257 * 10, dtype=np.int32))
    assert mode_i.mode == "I"
    assert to_rgb_uint8(mode_i).max() == 10
    palette_transparent = base.convert("P")
    palette_transparent.info["transparency"] = 0
    assert "palette" in describe_image_input(palette_transparent)


@pytest.mark.parametrize(
    "bad, words",
    [
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
        (np.zeros((4,), np.uint8), "shape"),
        (np.zeros((3, 8, 8), np.uint8), "channels-first"),
        (np.zeros((2, 4, 4, 3), np.float32), "batch of 2"),
        (np.full((4, 4, 3), 200.0, np.float32), "0..1"),
        (np.array([["a"]]), "not numbers"),
        (None, "no image"),
    ],
)
def test_bad_inputs_name_the_input(bad, words):
    with pytest.raises(InputError) as info:
        to_rgb_uint8(bad, input_name="reference_image")
    assert info.value.input_name == "reference_image"
    assert words in str(info.value)


def test_too_large_refused_with_size_and_advice():
    # A broadcast view: no 8001 x 2 x 3 allocation is needed to test the check.
    huge = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (2, MAX_SIDE_PX + 1, 3))
    with pytest.raises(InputError) as info:
        to_rgb_uint8(huge)
    assert f"{MAX_SIDE_PX + 1}x2" in str(info.value) and "Downscale" in str(info.value)
    with pytest.raises(InputError, match="Downscale"):
        to_rgb_uint8(Image.new("L", (MAX_SIDE_PX + 1, 1)))
