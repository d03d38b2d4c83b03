"""ArtifactReport on synthetic clips whose truth is known, made without the animation engine.

The astronaut portrait's mouth is opened by a known amount per frame (the jaw below the lips is
pushed down and the gap painted dark), following the envelope of amplitude-modulated noise
"syllables"; delaying the mouth signal by 80 ms makes a clip whose video is 80 ms late.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("mediapipe")

from skimage import data  # noqa: E402

from talkinghead.pipeline.report.plot import render_artifact_plot  # noqa: E402
from talkinghead.pipeline.report.artifact_report import (  # noqa: E402
                                                         ArtifactReport,
                                                         lag_by_cross_correlation,
                                                         load_clip,
                                                         score_clip,
                                                         )
from talkinghead.pipeline.core.audio import AudioClip  # noqa: E402
from talkinghead.pipeline.core.errors import InputError  # noqa: E402
from talkinghead.pipeline.face.encoder import encode_reference  # noqa: E402

FPS = 25.0
SR = 16000
DURATION_S = 3.0
FRAME_MS = 1000.0 / FPS


@pytest.fixture(scope="module")
def reference():
    return encode_reference(data.astronaut(), consent=True).reference


def open_mouth(image: np.ndarray, p68: np.ndarray, opening_px: float) -> np.ndarray:
    """`image` with the mouth opened by opening_px: everything below the lip line, between the mouth
    corners (smooth falloff) down to the chin (fading out below), moves down; the gap is painted dark."""
    import cv2

    h, w = image.shape[:2]
    y0 = float(p68[60:68, 1].mean())
    xl, xr = p68[48, 0] - 12, p68[54, 0] + 12
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
    wx = np.clip(np.sin(np.pi * np.clip((xs - xl) / (xr - xl), 0, 1)), 0, 1) ** 0.7
    chin = float(p68[8, 1])
    wy = np.where(ys < y0, 0, np.where(ys <= chin, 1, np.clip(1 - (ys - chin) / 40, 0, 1)))
    mx, my = np.meshgrid(xs, ys)
    src_y = (my - opening_px * wx[None, :] * wy[:, None]).astype(np.float32)
    out = cv2.remap(image, mx, src_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out[(my >= y0) & (src_y < y0)] = (45, 18, 22)
    return out


def syllables(duration_s: float, seed: int = 0):
    """s(t): irregular raised-cosine bumps 120-220 ms long (about 4 per second), 0..1."""
    rng = np.random.default_rng(seed)
    bumps, t = [], 0.15
    while t < duration_s - 0.3:
        length = rng.uniform(0.12, 0.22)
        bumps.append((t, length, rng.uniform(0.6, 1.0)))
        t += length + rng.uniform(0.03, 0.2)

    def s(times):
        times = np.asarray(times, np.float64)
        out = np.zeros_like(times)
        for start, length, amp in bumps:
            u = (times - start) / length
            out += amp * np.where((u >= 0) & (u <= 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0)
        return out

    return s


def speech_like(duration_s: float = DURATION_S, seed: int = 0):
    s = syllables(duration_s, seed)
    t = np.arange(int(duration_s * SR)) / SR
    noise = np.random.default_rng(seed + 1).standard_normal(len(t))
    return s, AudioClip((0.5 * s(t) * noise).astype(np.float32)[None], SR)


def talking_frames(reference, s, delay_s: float, num_frames: int):
    """A generator (streamed, like a real clip) and the intended mouth signal per frame."""
    times = (np.arange(num_frames) + 0.5) / FPS
    signal = s(times - delay_s)
    p = reference.landmarks_68.astype(np.float64)
    return (open_mouth(reference.frame, p, 5.0 + 10.0 * signal[i]) for i in range(num_frames)), signal


@pytest.fixture(scope="module")
def delayed_report(reference):
    s, audio = speech_like()
    n = int(DURATION_S * FPS)
    frames, signal = talking_frames(reference, s, 0.080, n)
    calls = []
    report = score_clip(frames, audio, FPS, reference=reference, intended_mouth=signal,
                        progress=lambda done, total: calls.append((done, total)))
    return report, calls


def test_delayed_clip_measures_80_ms_and_follows_the_mouth(delayed_report):
    report, calls = delayed_report
    assert report.num_frames == 75 and report.duration_s == pytest.approx(3.0)
    assert calls[-1] == (75, 0)  # a generator: total unknown
    assert abs(report.lip_sync_lag_ms - 80.0) <= FRAME_MS, report.summary_text()
    assert report.lag_correlation > 0.8
    assert report.mouth_track_correlation >= 0.8
    assert report.landmarks_found.all() and not report.broken_frames
    # identity: same person, upper face untouched by the mouth motion -> flat and high
    assert report.reference_kind == "reference"
    assert np.nanmin(report.identity_similarity) > 0.95
    assert abs(report.identity_drift_per_min) < 0.1 and report.identity_max_drop < 0.03
    # motion strength 0: the background is identical, the registered skin nearly so
    assert np.nanmax(report.flicker_background) < 0.01
    assert report.flicker_still_mean < 1.5


def test_undelayed_clip_measures_zero_lag(reference):
    s, audio = speech_like(seed=3)
    frames, signal = talking_frames(reference, s, 0.0, int(DURATION_S * FPS))
    report = score_clip(frames, audio, FPS, intended_mouth=signal)
    assert abs(report.lip_sync_lag_ms) <= FRAME_MS, report.summary_text()
    assert report.mouth_track_correlation >= 0.8
    assert report.reference_kind == "first_frame"


def test_lag_sign_and_subframe_interpolation():
    rng = np.random.default_rng(0)
    x = np.convolve(rng.standard_normal(400), np.ones(5) / 5, mode="same")
    t = np.arange(400)
    # video = audio delayed by 2.5 frames (linear interpolation of the shifted signal)
    video = np.interp(t - 2.5, t, x)
    lag_ms, corr = lag_by_cross_correlation(video, x, 25.0, 400.0)
    assert lag_ms == pytest.approx(100.0, abs=12.0) and corr > 0.9
    lag_ms, _ = lag_by_cross_correlation(x, video, 25.0, 400.0)
    assert lag_ms == pytest.approx(-100.0, abs=12.0)


@pytest.fixture(scope="module")
def still_frames(reference):
    return [reference.frame.copy() for _ in range(30)]


def test_still_clip_has_no_flicker_and_flat_identity(still_frames):
    _, audio = speech_like(1.2)
    report = score_clip(np.stack(still_frames), audio, FPS)
    assert report.num_frames == 30
    assert np.isnan(report.flicker[0])
    assert report.flicker_still_mean == pytest.approx(0.0, abs=0.01)
    assert report.identity_similarity == pytest.approx(np.ones(30), abs=1e-6)
    assert abs(report.identity_drift_per_min) < 1e-3 and report.identity_max_drop < 1e-3
    assert not report.broken_frames and report.blink_count == 0
    assert report.mouth_opening == pytest.approx(np.full(30, report.mouth_opening[0]))
    assert 0.1 < report.eye_aperture[0] < 0.5


def test_blank_and_jumping_frames_are_flagged(still_frames):
    frames = list(still_frames)
    frames[10] = np.full_like(frames[10], 128)           # face lost
    frames[20] = np.roll(frames[20], 40, axis=1)          # landmarks jump 40 px for one frame
    _, audio = speech_like(1.2)
    report = score_clip(iter(frames), audio, FPS)
    reasons = {b.frame: b.reason for b in report.broken_frames}
    assert reasons.get(10) == "no face"
    assert 20 in reasons and reasons[20].startswith("landmark jump")
    assert 35 <= int(reasons[20].split()[2]) <= 45
    assert 21 not in reasons  # coming back to where the face was is not a second jump
    assert not report.landmarks_found[10] and np.isnan(report.mouth_opening[10])
    assert report.landmark_jump_px[20] == pytest.approx(40.0, abs=3.0)
    assert report.flicker[10] > 10 and report.flicker[20] > 1
    assert "2 broken frame(s)" in report.summary_text()


def test_json_round_trip_and_plot(delayed_report):
    report, _ = delayed_report
    raw = json.loads(report.to_json())
    assert raw["format"] == "talkinghead.artifact_report/1"
    assert raw["summary"]["lip_sync_lag_ms"] == pytest.approx(report.lip_sync_lag_ms, abs=1e-3)
    assert raw["per_frame"]["flicker"][0] is None  # NaN -> null
    back = ArtifactReport.from_json(report.to_json())
    for name in ArtifactReport.PER_FRAME:
        np.testing.assert_allclose(getattr(back, name), getattr(report, name), atol=1e-4, equal_nan=True)
    for name in ArtifactReport.SUMMARY:
        a, b = getattr(back, name), getattr(report, name)
        assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-3)
    assert back.landmarks_found.tolist() == report.landmarks_found.tolist()
    assert back.to_dict() == report.to_dict()

    plot = render_artifact_plot(report)
    assert plot.shape == (480, 1280, 3) and plot.dtype == np.uint8
    assert len(np.unique(plot.reshape(-1, 3), axis=0)) > 20  # curves and text, not a blank canvas
    assert render_artifact_plot(report, width_px=640, height_px=320).shape == (320, 640, 3)


def test_bad_inputs_name_the_input(reference):
    _, audio = speech_like(1.0)
    frame = reference.frame
    with pytest.raises(InputError) as err:
        score_clip([], audio, FPS)
    assert err.value.input_name == "frames"
    with pytest.raises(InputError) as err:
        score_clip(np.zeros((0, 64, 64, 3), np.uint8), audio, FPS, frames_name="images")
    assert err.value.input_name == "images"
    for fps in (0, -25.0, float("nan")):
        with pytest.raises(InputError) as err:
            score_clip([frame], audio, fps)
        assert err.value.input_name == "fps"
    with pytest.raises(InputError) as err:
        score_clip([frame], AudioClip(np.zeros((1, 800), np.float32), SR), FPS)
    assert err.value.input_name == "audio" and "too short" in str(err.value)
    with pytest.raises(InputError) as err:
        score_clip([frame[:, :, 0]], audio, FPS)
    assert err.value.input_name == "frames"
    with pytest.raises(InputError) as err:
        score_clip([frame, frame[:256]], audio, FPS)
    assert err.value.input_name == "frames" and "first frame" in str(err.value)


def test_node_scores_an_image_batch(reference):
    torch = pytest.importorskip("torch")
    from talkinghead.nodes.artifacts import TalkingHeadArtifactReport
    from talkinghead.nodes.comfy_env import clip_to_audio
    from talkinghead.pipeline.lipsync.track import VisemeTrack

    frames = np.stack([reference.frame] * 12).astype(np.float32) / 255.0
    _, audio = speech_like(12 / FPS + 0.1)
    track = VisemeTrack(fps=FPS, duration_s=0.5, viseme_weights=np.zeros((12, 15), np.float32),
                        mouth=np.zeros((12, 5), np.float32))
    node = TalkingHeadArtifactReport()
    inputs = TalkingHeadArtifactReport.INPUT_TYPES()
    for group in inputs.values():
        for spec in group.values():
            assert spec[1].get("tooltip")
    out = node.score(torch.from_numpy(frames), clip_to_audio(audio), FPS, reference=reference, viseme_track=track)
    report_json, plot = out["result"]
    raw = json.loads(report_json)
    assert raw["num_frames"] == 12 and raw["reference_kind"] == "reference"
    assert tuple(plot.shape) == (1, 480, 1280, 3)
    assert "12 frames" in out["ui"]["text"][0]


def test_cli_scores_an_mp4(reference, tmp_path):
    from talkinghead.pipeline.publish.mux import mux

    from talkinghead.pipeline.lipsync.track import VisemeTrack

    s, audio = speech_like(1.6, seed=5)
    frames, signal = talking_frames(reference, s, 0.0, 40)
    video = tmp_path / "clip.mp4"
    mux(frames, audio, FPS, str(video))
    reference.save(str(tmp_path / "ref"))
    mouth = np.zeros((40, 5), np.float32)
    mouth[:, 0] = signal
    track = VisemeTrack(fps=FPS, duration_s=1.6, viseme_weights=np.full((40, 15), 1 / 15, np.float32), mouth=mouth)
    (tmp_path / "track.json").write_text(track.to_json())
    loaded_frames, loaded_audio, fps = load_clip(str(video))
    assert fps == pytest.approx(FPS) and loaded_audio.duration_s == pytest.approx(1.6, abs=0.05)
    first = next(iter(loaded_frames))
    assert first.shape == reference.frame.shape and first.dtype == np.uint8

    report_path, plot_path = tmp_path / "out" / "report.json", tmp_path / "out" / "plot.png"
    done = subprocess.run(
        [sys.executable, "-m", "talkinghead.nodes.headless.cli_artifacts", "artifacts", str(video),
         "--reference", str(tmp_path / "ref.json"), "--track", str(tmp_path / "track.json"),
         "-o", str(report_path), "--plot", str(plot_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "lip-sync lag" in done.stdout
    raw = json.loads(report_path.read_text())
    assert raw["num_frames"] == 40 and raw["summary"]["faces_found_fraction"] == 1.0
    assert abs(raw["summary"]["lip_sync_lag_ms"]) <= FRAME_MS
    assert raw["reference_kind"] == "reference" and raw["summary"]["mouth_track_correlation"] >= 0.8
    from PIL import Image

    assert Image.open(plot_path).size == (1280, 480)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left

    missing = subprocess.run(
        [sys.executable, "-m", "talkinghead.nodes.headless.cli_artifacts", "artifacts", str(tmp_path / "nope.mp4")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert missing.returncode == 2
    assert "VIDEO" in missing.stderr and "no video file" in missing.stderr
    bad_track = subprocess.run(
        [sys.executable, "-m", "talkinghead.nodes.headless.cli_artifacts", "artifacts", str(video),
         "--track", str(report_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert bad_track.returncode == 2 and "--track" in bad_track.stderr
