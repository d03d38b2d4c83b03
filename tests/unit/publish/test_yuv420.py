"""The frames' RGB -> YUV 4:2:0 conversion that mux feeds the encoder, and the colours a player gets back."""

from __future__ import annotations

import av
import numpy as np
import pytest

from talkinghead.pipeline.core.audio import AudioClip
from talkinghead.pipeline.publish import yuv420
from talkinghead.pipeline.publish.mux import mux
from talkinghead.pipeline.publish.yuv420 import i420_planes, i420_shape, rgb_to_i420

#: Colours a portrait is made of, and the primaries (saturated: the matrix matters most there).
SWATCHES = [(255, 255, 255), (0, 0, 0), (128, 128, 128), (224, 172, 150), (120, 72, 52),
            (255, 0, 0), (0, 255, 0), (0, 0, 255), (40, 90, 200)]


def _exact_planes(frame: np.ndarray):
    """Y, U, V from the BT.709 TV-range formula in float64, chroma averaged over 2x2 blocks."""
    rgb = frame.astype(np.float64) / 255.0
    kr, kb = 0.2126, 0.0722
    y = kr * rgb[..., 0] + (1 - kr - kb) * rgb[..., 1] + kb * rgb[..., 2]
    u = (rgb[..., 2] - y) / (2 * (1 - kb))
    v = (rgb[..., 0] - y) / (2 * (1 - kr))
    h, w = y.shape
    half = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))  # noqa: E731
    return 16 + 219 * y, 128 + 224 * half(u), 128 + 224 * half(v)


@pytest.mark.parametrize("use_opencv", [True, False])
@pytest.mark.parametrize("height, width", [(64, 96), (226, 220)])    # 226: an odd number of chroma rows
def test_planes_follow_the_bt709_tv_formula(monkeypatch, use_opencv, height, width):
    if not use_opencv:
        monkeypatch.setattr(yuv420, "_cv2", None)
    elif yuv420._cv2 is None:
        pytest.skip("OpenCV is not installed")
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    frame[:32, :48] = (224, 172, 150)                     # a flat skin patch: chroma of one colour
    planes = rgb_to_i420(frame)
    assert planes.shape == i420_shape(height, width) == (height * width * 3 // 2,)
    assert planes.dtype == np.uint8
    for got, want in zip(i420_planes(planes, height, width), _exact_planes(frame)):
        # within one level of the exact value (two where 2x2 averaging meets fixed-point rounding)
        assert np.max(np.abs(got.astype(np.float64) - want)) <= 2.0
        assert np.mean(np.abs(got.astype(np.float64) - want)) <= 0.6


def test_writes_into_the_given_buffer_and_refuses_odd_sizes():
    frame = np.full((10, 14, 3), 200, np.uint8)
    out = np.zeros(i420_shape(10, 14), np.uint8)
    assert rgb_to_i420(frame, out) is out
    assert np.all(out[:140] == round(16 + 219 * 200 / 255))   # every plane was written
    assert np.all(out[140:] == 128)
    with pytest.raises(ValueError, match="even"):
        rgb_to_i420(np.zeros((7, 10, 3), np.uint8))


def test_a_player_decodes_the_colours_that_went_in(tmp_path):
    """What a viewer sees: the MP4 is tagged BT.709 TV range and decodes to the input colours."""
    tiles = np.zeros((50, 16 * len(SWATCHES), 3), np.uint8)   # 25 chroma rows: an odd number
    for i, colour in enumerate(SWATCHES):
        tiles[:, 16 * i:16 * (i + 1)] = colour
    frames = np.repeat(tiles[None], 10, axis=0)
    audio = AudioClip(np.zeros((1, 16000), np.float32), 16000)
    result = mux(frames, audio, 25.0, str(tmp_path / "colours.mp4"), duration_policy="match_video")
    with av.open(result.path) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.colorspace, stream.codec_context.color_range) == (1, 1)  # BT709, MPEG
        decoded = next(container.decode(video=0)).to_ndarray(format="rgb24", dst_colorspace="ITU709")
    for i, colour in enumerate(SWATCHES):
        centre = decoded[16:32, 16 * i + 4:16 * i + 12].reshape(-1, 3).mean(axis=0)
        assert np.max(np.abs(centre - np.array(colour))) <= 4.0, (colour, centre.round(1))
