"""The weight-free animator (render/weight_free.py) on a real portrait: what a viewer would notice."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("mediapipe")

from skimage import data  # noqa: E402

from talkinghead.pipeline.core.errors import InputError  # noqa: E402
from talkinghead.pipeline.render.weight_free import (  # noqa: E402
                                                     EYELID_PAIRS, INNER_LIP_LOWER, INNER_LIP_UPPER, NOSE_TIP, RenderedFrame, SamplerConfig, render_frames)
from talkinghead.pipeline.face.encoder import encode_reference  # noqa: E402
from talkinghead.pipeline.lipsync.track import MOUTH_PARAMS, VISEMES, VisemeTrack  # noqa: E402
from talkinghead.pipeline.lipsync.visemes import build_track  # noqa: E402
from talkinghead.pipeline.speech.timing import PhonemeTiming, WordTiming  # noqa: E402

REST = (0.03, 0.45, 0.10, 0.65, 0.0)          # the track's silence shape: shows the reference's mouth
AA = (1.0, 0.5, 0.0, 0.0, 0.0)
STILL = dict(motion_strength=0.0, blink_rate_per_min=0.0)


@pytest.fixture(scope="module")
def reference():
    return encode_reference(data.astronaut(), consent=True).reference


def make_track(rows, fps: float = 25.0) -> VisemeTrack:
    mouth = np.asarray(rows, np.float32).reshape(-1, len(MOUTH_PARAMS))
    weights = np.zeros((len(mouth), len(VISEMES)), np.float32)
    weights[:, 0] = 1.0
    return VisemeTrack(fps=fps, duration_s=len(mouth) / fps, viseme_weights=weights, mouth=mouth)


def inner_gap(frame: RenderedFrame, layout: str) -> float:
    up, lo = INNER_LIP_UPPER[layout], INNER_LIP_LOWER[layout]
    return float(frame.landmarks_xy[lo[len(lo) // 2], 1] - frame.landmarks_xy[up[len(up) // 2], 1])


def eye_aperture(landmarks: np.ndarray, layout: str) -> float:
    return float(np.mean([landmarks[b, 1] - landmarks[a, 1] for a, b in EYELID_PAIRS[layout]]))


def mouth_box(reference, frame: RenderedFrame):
    layout = reference.landmark_layout
    pts = frame.landmarks_xy[list(INNER_LIP_UPPER[layout]) + list(INNER_LIP_LOWER[layout])]
    x0, y0 = np.floor(pts.min(0)).astype(int)
    x1, y1 = np.ceil(pts.max(0)).astype(int)
    return x0, y0, x1, y1


def test_frame_count_size_and_stream_contract(reference):
    track = make_track([REST] * 7, fps=30)
    calls = []
    stream = render_frames(reference, track, progress=lambda d, t: calls.append((d, t)))
    assert len(stream) == stream.num_frames == track.num_frames == 7 and stream.fps == 30
    assert (stream.width, stream.height) == (reference.frame.shape[1], reference.frame.shape[0])
    frames = list(stream)
    assert [f.index for f in frames] == list(range(7)) and calls[-1] == (7, 7)
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.shape == reference.frame.shape
        assert f.landmarks_xy.dtype == np.float32 and f.landmarks_xy.shape == reference.landmarks_xy.shape
    images = list(stream.images())                       # re-iterable, renders again identically
    assert all(np.array_equal(a, f.image) for a, f in zip(images, frames))
    small = render_frames(reference, track, SamplerConfig(width=256, height=192))
    frame = next(iter(small))
    assert frame.image.shape == (192, 256, 3) and (small.width, small.height) == (256, 192)
    assert frame.landmarks_xy[:, 0].max() < 256 and frame.landmarks_xy[:, 1].max() < 192


def test_same_seed_same_frames_other_seed_other_blinks(reference):
    track = make_track([REST] * 250)
    config = SamplerConfig(blink_rate_per_min=20, seed=4)
    a, b = render_frames(reference, track, config), render_frames(reference, track, config)
    for i in (0, 37, 111, 249):
        fa, fb = a.render(i), b.render(i)
        assert np.array_equal(fa.image, fb.image) and np.array_equal(fa.landmarks_xy, fb.landmarks_xy)
    other = render_frames(reference, track, SamplerConfig(blink_rate_per_min=20, seed=5))
    assert not np.array_equal(a.life.blink, other.life.blink)


def test_rest_with_still_head_and_no_blinks_is_the_reference(reference):
    stream = render_frames(reference, make_track([REST] * 5), SamplerConfig(**STILL))
    for frame in stream:
        assert np.abs(frame.image.astype(int) - reference.frame).max() <= 1
        assert np.abs(frame.landmarks_xy - reference.landmarks_xy).max() < 0.01


def test_open_jaw_parts_the_lips_and_shows_a_dark_interior(reference):
    layout = reference.landmark_layout
    rest, open_ = render_frames(reference, make_track([REST, AA]), SamplerConfig(**STILL))
    assert inner_gap(open_, layout) > inner_gap(rest, layout) + 8
    x0, y0, x1, y1 = mouth_box(reference, open_)
    # the middle of the opened mouth is darker than the same place in the reference's mouth
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    patch = (slice(cy - 2, cy + 3), slice(cx - 6, cx + 7))
    assert open_.image[patch].mean() < rest.image[patch].mean() - 40
    # a band of upper teeth stays bright just under the upper lip
    up = open_.landmarks_xy[INNER_LIP_UPPER[layout][len(INNER_LIP_UPPER[layout]) // 2]]
    teeth = open_.image[int(up[1]) + 1:int(up[1]) + 3, int(up[0]) - 3:int(up[0]) + 4]
    assert teeth.mean() > open_.image[patch].mean() + 60
    # the chin moved down with the jaw
    assert open_.landmarks_xy[152 if layout == "mediapipe_478" else 8, 1] > rest.landmarks_xy[
        152 if layout == "mediapipe_478" else 8, 1] + 5


def test_lip_closure_brings_the_lips_together(reference):
    layout = reference.landmark_layout
    rest, closed = render_frames(reference, make_track([REST, (0.05, 0.45, 0.1, 1.0, 0.0)]), SamplerConfig(**STILL))
    assert inner_gap(rest, layout) > 3          # the astronaut smiles with her teeth showing
    assert abs(inner_gap(closed, layout)) < 0.6


def test_width_and_rounding_move_the_corners(reference):
    layout = reference.landmark_layout
    up = INNER_LIP_UPPER[layout]
    rows = [REST, (0.3, 1.0, 0.0, 0.0, 0.0), (0.3, 0.1, 1.0, 0.0, 0.0)]
    rest, wide, round_ = render_frames(reference, make_track(rows), SamplerConfig(**STILL))

    def width(f):
        return float(f.landmarks_xy[up[-1], 0] - f.landmarks_xy[up[0], 0])
    assert width(wide) > width(rest) + 2 and width(round_) < width(rest) - 6


def test_background_stays_the_reference_with_a_still_head(reference):
    rows = [AA, REST, (0.6, 0.9, 0.0, 0.0, 0.0), (0.05, 0.45, 0.1, 1.0, 0.0)] * 5
    stream = render_frames(reference, make_track(rows), SamplerConfig(motion_strength=0.0, blink_rate_per_min=40))
    x0, y0, x1, y1 = stream.rig.roi
    for frame in stream:
        changed = np.any(frame.image != reference.frame, axis=2)
        ys, xs = np.where(changed)
        if frame.index % 4 != 1:                                           # REST may be unchanged
            assert changed.any()
        if changed.any():
            assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1
        for sl in ((slice(0, 40), slice(0, 40)), (slice(-40, None), slice(-40, None)),
                   (slice(0, 40), slice(-40, None)), (slice(-40, None), slice(0, 40))):
            assert np.array_equal(frame.image[sl], reference.frame[sl])     # the image corners
        assert np.array_equal(frame.image[-40:], reference.frame[-40:])      # bottom rows: the suit
        assert np.array_equal(frame.image[:, -60:], reference.frame[:, -60:])


def test_blinks_close_the_eyes_at_intervals_and_never_at_rate_zero(reference):
    layout = reference.landmark_layout
    track = make_track([REST] * 500)                                        # 20 s
    open_eye = eye_aperture(reference.landmarks_xy, layout)
    stream = render_frames(reference, track, SamplerConfig(motion_strength=0.0, blink_rate_per_min=20, seed=1))
    apertures = np.array([eye_aperture(stream.landmarks(i), layout) for i in range(len(stream))])
    shut = apertures < 0.3 * open_eye
    starts = np.where(shut[1:] & ~shut[:-1])[0] + 1
    assert 2 <= len(starts) <= 15
    assert np.diff(starts).min() >= 25                                     # at least ~1 s apart
    assert np.sort(apertures)[len(apertures) // 2] > 0.95 * open_eye        # open most of the time
    # the pixels show it too: the eye region changes on a shut frame
    k = int(np.argmin(apertures))
    a, b = EYELID_PAIRS[layout][0]
    ex, ey = reference.landmarks_xy[[a, b]].mean(0).astype(int)
    eye = (slice(ey - 2, ey + 3), slice(ex - 3, ex + 4))
    assert np.abs(stream.render(k).image[eye].astype(int) - reference.frame[eye]).mean() > 15
    still = render_frames(reference, track, SamplerConfig(motion_strength=0.0, blink_rate_per_min=0))
    assert not np.any(still.life.blink) and all(
        abs(eye_aperture(still.landmarks(i), layout) - open_eye) < 1e-3 for i in range(0, 500, 7))


def test_head_moves_only_with_motion_strength_and_only_a_few_px(reference):
    nose = NOSE_TIP[reference.landmark_layout]
    phones = [PhonemeTiming(p, i * 0.12, (i + 1) * 0.12) for i, p in enumerate("SIL HH AH L OW W ER L D AA R AE SIL".split())]
    track = build_track(phones, [WordTiming("hello", 0.12, 0.6)], 12 * 0.12 + 0.12, 25.0, method="speech_timings")
    track = make_track(np.tile(track.mouth, (6, 1)))                       # ~9 s of speech
    still = render_frames(reference, track, SamplerConfig(motion_strength=0.0, blink_rate_per_min=0))
    moving = render_frames(reference, track, SamplerConfig(motion_strength=1.0, blink_rate_per_min=0))
    ref_nose = reference.landmarks_xy[nose]
    still_moves = [np.abs(still.landmarks(i)[nose] - ref_nose).max() for i in range(len(still))]
    moves = np.array([np.linalg.norm(moving.landmarks(i)[nose] - ref_nose) for i in range(len(moving))])
    assert max(still_moves) < 0.05
    assert moves.max() > 1.0 and moves.max() < 12.0                        # a few px on a ~100 px face
    # smooth: no jumps between frames
    path = np.array([moving.landmarks(i)[nose] for i in range(len(moving))])
    assert np.abs(np.diff(path, axis=0)).max() < 1.5


def test_warp_never_folds(reference):
    rows = [AA, (0.35, 0.1, 1.0, 0.0, 0.0), (0.1, 0.45, 0.0, 0.0, 1.0), (0.05, 0.45, 0.1, 1.0, 0.0),
            (0.7, 1.0, 0.0, 0.0, 0.0)]
    stream = render_frames(reference, make_track(rows * 8), SamplerConfig(motion_strength=2.0, blink_rate_per_min=60))
    k_blink = int(np.argmax(stream.life.blink))
    for i in sorted({0, 1, 2, 3, 4, k_blink, 17, 33}):
        map_x, map_y = stream.source_map(i)
        det = np.gradient(map_x, axis=1) * np.gradient(map_y, axis=0) - np.gradient(map_x, axis=0) * np.gradient(map_y, axis=1)
        assert det.min() > 0, (i, float(det.min()))


@pytest.mark.slow
def test_long_streams_do_not_hold_frames(reference):
    track = make_track(np.tile(np.array([REST, AA, REST, (0.4, 0.6, 0.2, 0.0, 0.0)], np.float32), (500, 1)))
    stream = render_frames(reference, track, SamplerConfig(width=128, height=128, blink_rate_per_min=20))
    tracemalloc.start()
    count = 0
    for frame in stream:
        count += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 2000 and peak < 50 * 2 ** 20


def test_bad_inputs_name_the_input(reference):
    track = make_track([REST] * 3)
    import dataclasses
    cases = [
        (dataclasses.replace(reference, frame=None), track, SamplerConfig(), "reference"),
        (reference, make_track(np.zeros((0, 5))), SamplerConfig(), "track"),
        (reference, track, SamplerConfig(width=0), "width"),
        (reference, track, SamplerConfig(height=100000), "height"),
        (reference, track, SamplerConfig(motion_strength=2.5), "motion_strength"),
        (reference, track, SamplerConfig(motion_strength=float("nan")), "motion_strength"),
        (reference, track, SamplerConfig(blink_rate_per_min=-1), "blink_rate"),
        (reference, track, SamplerConfig(blink_rate_per_min=61), "blink_rate"),
        (reference, track, SamplerConfig(seed=-3), "seed"),
        ("not a reference", track, SamplerConfig(), "reference"),
    ]
    for ref, trk, config, name in cases:
        with pytest.raises(InputError) as err:
            render_frames(ref, trk, config)
        assert err.value.input_name == name
