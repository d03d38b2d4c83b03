"""Mux stage: real ffmpeg (imageio-ffmpeg's), real PyAV decoding, tiny frames so the matrix is fast.

Sync is checked two ways: (1) the timestamps and sample counts measure_av_sync reports, and (2) a
content check that timestamps cannot fool: a white flash in frame k and a tone burst starting at
exactly k / fps in the audio; after decoding, the flash frame and the burst onset must coincide.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from fractions import Fraction

import av
import numpy as np
import pytest

from talkinghead.pipeline.core import ffmpeg as ffmpeg_module
from talkinghead.pipeline.core.audio import AudioClip
from talkinghead.pipeline.core.errors import InputError, ToolError
from talkinghead.pipeline.publish import mux as mux_module
from talkinghead.pipeline.publish.mux import (
                                              DURATION_POLICIES,
                                              fps_to_fraction,
                                              measure_av_sync,
                                              mux,
                                              )

WIDTH, HEIGHT = 64, 48
FPS_VALUES = (23.976, 24, 25, 29.97, 30, 60)
SAMPLE_RATES = (16000, 22050, 44100, 48000)
CHANNELS = (1, 2)

#: Tone burst used as the audio "click": a 1 kHz cosine that starts at its peak, so the onset is a
#: step the detector sees in the first sample (a sine would need 1/12 period = 83 us to reach half
#: amplitude).
BURST_HZ = 1000.0
BURST_AMPLITUDE = 0.8
BURST_S = 0.05
#: Onset = first decoded sample with |x| > half the burst amplitude. AAC (MDCT, 128-sample short
#: blocks on transients) smears a step by at most a few samples and its pre-echo stays far below half
#: amplitude at these bitrates; allowing 1 ms for the detector (16 samples at 16 kHz) on top of the
#: 5 ms sync budget is generous, and the measured error is printed by the matrix test (~0.1 ms).
DETECT_TOLERANCE_MS = 1.0
SYNC_TOLERANCE_MS = 5.0


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def flash_frames(count: int, flash_index: int, height: int = HEIGHT, width: int = WIDTH):
    frames = np.zeros((count, height, width, 3), dtype=np.uint8)
    frames[flash_index] = 255
    return frames


def burst_audio(duration_s: float, onset_s: float, sample_rate: int, channels: int) -> AudioClip:
    total = int(round(duration_s * sample_rate))
    onset = int(round(onset_s * sample_rate))
    samples = np.zeros((channels, total), dtype=np.float32)
    n = int(BURST_S * sample_rate)
    t = np.arange(n) / sample_rate
    samples[:, onset:onset + n] = BURST_AMPLITUDE * np.cos(2 * np.pi * BURST_HZ * t)
    return AudioClip(samples, sample_rate)


def decode(path: str):
    """Returns (frame_times_s, frame_means, audio_start_s, mono_samples, sample_rate)."""
    times, means, chunks = [], [], []
    audio_start, sample_rate = None, None
    with av.open(path) as container:
        for frame in container.decode(container.streams.video[0]):
            times.append(float(frame.time))
            means.append(float(frame.to_ndarray(format="rgb24").mean()))
    with av.open(path) as container:
        for frame in container.decode(container.streams.audio[0]):
            if audio_start is None:
                audio_start, sample_rate = float(frame.time), frame.sample_rate
            data = frame.to_ndarray()
            if data.ndim == 2 and frame.format.is_planar:
                data = data.mean(axis=0)
            else:
                data = data.reshape(-1, len(frame.layout.channels)).mean(axis=1)
            chunks.append(data.astype(np.float32))
    return np.array(times), np.array(means), audio_start, np.concatenate(chunks), sample_rate


def flash_and_onset(path: str):
    """Returns (flash_frame_index, flash_time_s, onset_sample_index, onset_time_s)."""
    times, means, audio_start, mono, sample_rate = decode(path)
    flash_index = int(np.argmax(means))
    assert means[flash_index] > 200 and np.sort(means)[-2] < 60, "flash frame not found cleanly"
    loud = np.flatnonzero(np.abs(mono) > BURST_AMPLITUDE / 2)
    assert loud.size, "burst not found in decoded audio"
    onset = int(loud[0])
    return flash_index, times[flash_index], onset, audio_start + onset / sample_rate


def listing(folder) -> list:
    return sorted(os.listdir(folder))


# ------------------------------------------------------------------------------------------------
# the fps x sample-rate x channels matrix
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", CHANNELS, ids=["mono", "stereo"])
@pytest.mark.parametrize("sample_rate", SAMPLE_RATES)
@pytest.mark.parametrize("fps", FPS_VALUES)
def test_sync_matrix(tmp_path, fps, sample_rate, channels):
    rate = fps_to_fraction(fps)
    frame_count = int(round(float(rate)))  # ~1 s
    flash_index = frame_count // 2 + 1
    onset_s = float(Fraction(flash_index) / rate)
    duration_s = float(Fraction(frame_count) / rate)
    out = tmp_path / "m.mp4"

    result = mux(flash_frames(frame_count, flash_index),
                 burst_audio(duration_s, onset_s, sample_rate, channels), fps, str(out))

    frame_ms = 1000.0 / float(rate)
    assert result.frame_count == frame_count
    assert abs(result.av_offset_ms) <= SYNC_TOLERANCE_MS
    assert abs(result.duration_diff_ms) <= frame_ms
    assert result.audio_sample_rate == sample_rate and result.audio_channels == channels

    got_index, flash_t, onset_sample, onset_t = flash_and_onset(str(out))
    assert got_index == flash_index  # the flash is in frame k of the decoded stream
    expected_onset_sample = int(round(onset_s * sample_rate))
    error_ms = (onset_t - flash_t) * 1000.0
    print(f"fps={fps} sr={sample_rate} ch={channels}: offset={result.av_offset_ms:+.3f} ms "
          f"diff={result.duration_diff_ms:+.3f} ms flash-vs-burst={error_ms:+.3f} ms "
          f"onset_sample_err={onset_sample - expected_onset_sample}")
    assert abs(error_ms) <= SYNC_TOLERANCE_MS + DETECT_TOLERANCE_MS
    # Timestamp-free: counted in decoded samples from the first one.
    assert abs(onset_sample - expected_onset_sample) * 1000.0 / sample_rate <= (
        SYNC_TOLERANCE_MS + DETECT_TOLERANCE_MS)


def test_fps_rationals():
    assert fps_to_fraction(23.976) == Fraction(24000, 1001)
    assert fps_to_fraction(29.97) == Fraction(30000, 1001)
    assert fps_to_fraction(59.94) == Fraction(60000, 1001)
    assert fps_to_fraction(25) == Fraction(25)
    assert fps_to_fraction(12.5) == Fraction(25, 2)
    assert fps_to_fraction(Fraction(24000, 1001)) == Fraction(24000, 1001)


def test_ntsc_file_rate_is_exact(tmp_path):
    out = tmp_path / "ntsc.mp4"
    mux(flash_frames(10, 3), burst_audio(10 * 1001 / 30000, 0.1, 48000, 1), 29.97, str(out))
    with av.open(str(out)) as container:
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)


# ------------------------------------------------------------------------------------------------
# offsets and duration policies
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset_ms", [100.0, -100.0])
def test_audio_offset_moves_the_burst(tmp_path, offset_ms):
    fps, sample_rate = 25, 48000
    flash_index = 10  # 0.4 s
    out = tmp_path / "o.mp4"
    result = mux(flash_frames(25, flash_index), burst_audio(1.0, 0.4, sample_rate, 2), fps,
                 str(out), audio_offset_ms=offset_ms, duration_policy="match_video")
    assert abs(result.av_offset_ms) <= SYNC_TOLERANCE_MS  # streams still start together
    _, flash_t, _, onset_t = flash_and_onset(str(out))
    assert abs((onset_t - flash_t) * 1000.0 - offset_ms) <= SYNC_TOLERANCE_MS + DETECT_TOLERANCE_MS
    assert any("audio" in note and f"{abs(offset_ms):g} ms" in note for note in result.notes)


def _sha(frames: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()


def test_match_audio_holds_last_frame_when_audio_is_longer(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (25, HEIGHT, WIDTH, 3), dtype=np.uint8)
    audio = burst_audio(1.52, 0.2, 48000, 1)
    result = mux(frames, audio, 25, str(tmp_path / "a.mp4"), duration_policy="match_audio")
    assert result.frame_count == 38  # round(1.52 * 25)
    expected = np.concatenate([frames, np.repeat(frames[-1:], 13, axis=0)])
    assert result.frames_sha256 == _sha(expected)
    assert result.audio_sample_count == audio.num_samples
    assert abs(result.video_duration_s - 1.52) < 1e-9
    assert abs(result.audio_duration_s - 1.52) < 1e-9
    assert any("held the last frame" in note for note in result.notes)


def test_match_audio_trims_frames_when_audio_is_shorter(tmp_path):
    frames = np.random.default_rng(1).integers(0, 255, (25, HEIGHT, WIDTH, 3), dtype=np.uint8)
    result = mux(frames, burst_audio(0.6, 0.2, 22050, 2), 25, str(tmp_path / "a.mp4"))
    assert result.frame_count == 15
    assert result.frames_sha256 == _sha(frames[:15])
    assert abs(result.duration_diff_ms) <= 40.0
    assert any("dropped 10 trailing" in note for note in result.notes)


@pytest.mark.parametrize("audio_s", [1.5, 0.6])
def test_match_video_pads_or_trims_audio(tmp_path, audio_s):
    frames = flash_frames(25, 5)
    result = mux(frames, burst_audio(audio_s, 0.1, 44100, 1), 25, str(tmp_path / "v.mp4"),
                 duration_policy="match_video")
    assert result.frame_count == 25
    assert result.audio_sample_count == 44100
    assert abs(result.audio_duration_s - 1.0) < 1e-6 and abs(result.video_duration_s - 1.0) < 1e-9
    word = "trimmed" if audio_s > 1.0 else "padded"
    assert any(word in note for note in result.notes)


# ------------------------------------------------------------------------------------------------
# streaming input
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", DURATION_POLICIES)
def test_generator_matches_array(tmp_path, policy):
    frames = np.random.default_rng(2).random((20, HEIGHT, WIDTH, 3), dtype=np.float32)
    audio = burst_audio(0.7, 0.3, 16000, 1)
    from_array = mux(frames, audio, 24, str(tmp_path / "a.mp4"), duration_policy=policy)
    from_gen = mux((f for f in frames), audio, 24, str(tmp_path / "g.mp4"), duration_policy=policy)
    from_list = mux(list(frames), audio, 24, str(tmp_path / "l.mp4"), duration_policy=policy)
    assert from_gen.frames_sha256 == from_array.frames_sha256 == from_list.frames_sha256
    assert from_gen.frame_count == from_array.frame_count
    for result in (from_array, from_gen):
        assert abs(result.av_offset_ms) <= SYNC_TOLERANCE_MS
        assert abs(result.duration_diff_ms) <= 1000.0 / 24


def test_generator_match_video_two_pass_keeps_sync(tmp_path):
    out = tmp_path / "g.mp4"
    gen = (frame for frame in flash_frames(30, 12))
    result = mux(gen, burst_audio(2.0, 12 / 30, 48000, 2), 30, str(out),
                 duration_policy="match_video")
    assert result.frame_count == 30 and result.audio_sample_count == 48000
    assert abs(result.av_offset_ms) <= SYNC_TOLERANCE_MS
    _, flash_t, _, onset_t = flash_and_onset(str(out))
    assert abs(onset_t - flash_t) * 1000.0 <= SYNC_TOLERANCE_MS + DETECT_TOLERANCE_MS


def test_progress_and_float_uint8_parity(tmp_path):
    frames_u8 = np.random.default_rng(3).integers(0, 255, (10, HEIGHT, WIDTH, 3), dtype=np.uint8)
    calls = []
    a = mux(frames_u8, burst_audio(0.4, 0.1, 16000, 1), 25, str(tmp_path / "u.mp4"),
            progress=lambda done, total: calls.append((done, total)))
    b = mux(frames_u8.astype(np.float32) / 255.0, burst_audio(0.4, 0.1, 16000, 1), 25,
            str(tmp_path / "f.mp4"))
    assert a.frames_sha256 == b.frames_sha256
    assert calls == [(i, 10) for i in range(1, 11)]
    assert json.loads(json.dumps(a.to_dict()))["frames_sha256"] == a.frames_sha256


def test_odd_size_padded_and_alpha_dropped(tmp_path):
    frames = np.full((5, 47, 63, 4), 128, dtype=np.uint8)
    result = mux(frames, burst_audio(0.2, 0.05, 16000, 1), 25, str(tmp_path / "odd.mp4"))
    assert (result.width, result.height) == (64, 48)
    assert any("63x47 to 64x48" in note for note in result.notes)
    assert any("alpha" in note for note in result.notes)
    report = measure_av_sync(result.path)
    assert (report.width, report.height) == (64, 48)


def test_replaces_existing_file_only_on_success(tmp_path):
    out = tmp_path / "x.mp4"
    out.write_bytes(b"old")
    with pytest.raises(InputError):
        mux(np.zeros((0, HEIGHT, WIDTH, 3), np.uint8), burst_audio(0.2, 0.05, 16000, 1), 25,
            str(out))
    assert out.read_bytes() == b"old" and listing(tmp_path) == ["x.mp4"]
    mux(flash_frames(5, 1), burst_audio(0.2, 0.05, 16000, 1), 25, str(out))
    assert out.read_bytes() != b"old" and listing(tmp_path) == ["x.mp4"]


# ------------------------------------------------------------------------------------------------
# bad input: a clear error naming the input, and nothing left on disk
# ------------------------------------------------------------------------------------------------

GOOD_AUDIO = burst_audio(0.4, 0.1, 16000, 1)


def _mismatched_frames():
    for i in range(6):
        yield np.zeros((HEIGHT, WIDTH if i != 3 else WIDTH + 2, 3), np.uint8)


def _nan_frames():
    frames = np.zeros((6, HEIGHT, WIDTH, 3), np.float32)
    frames[4, 0, 0, 0] = np.nan
    return frames


BAD_INPUTS = {
    "empty_array": (dict(frames=np.zeros((0, HEIGHT, WIDTH, 3), np.uint8)), "images", None),
    "empty_generator": (dict(frames=(f for f in [])), "images", None),
    "size_change_midway": (dict(frames=_mismatched_frames), "images", "frame 3 is 66x48"),
    "one_channel": (dict(frames=np.zeros((4, HEIGHT, WIDTH, 1), np.uint8)), "images", None),
    "not_a_batch": (dict(frames=np.zeros((HEIGHT, WIDTH, 3), np.uint8)), "images", None),
    "nan_frame": (dict(frames=_nan_frames), "images", "frame 4"),
    "int16_frames": (dict(frames=np.zeros((4, HEIGHT, WIDTH, 3), np.int16)), "images", "dtype"),
    "zero_length_audio": (dict(audio=AudioClip(np.zeros((1, 0), np.float32), 16000)), "audio",
                          None),
    "nan_audio": (dict(audio=AudioClip(np.full((1, 1600), np.nan, np.float32), 16000)), "audio",
                  "NaN"),
    "not_audio": (dict(audio=[0.0, 0.1]), "audio", None),
    "fps_zero": (dict(fps=0), "fps", None),
    "fps_negative": (dict(fps=-25), "fps", None),
    "fps_nan": (dict(fps=float("nan")), "fps", None),
    "fps_inf": (dict(fps=float("inf")), "fps", None),
    "bad_policy": (dict(duration_policy="stretch"), "duration_policy", "match_audio, match_video"),
    "offset_drops_everything": (dict(audio_offset_ms=-5000.0), "audio_offset_ms", None),
    "bad_crf": (dict(crf=99), "crf", None),
    "bad_preset": (dict(preset="warp9"), "preset", None),
    "not_mp4": (dict(output_name="clip.avi"), "output_path", ".mp4"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_names_the_input_and_leaves_nothing(tmp_path, case):
    overrides, input_name, fragment = BAD_INPUTS[case]
    kwargs = dict(frames=flash_frames(6, 2), audio=GOOD_AUDIO, fps=25)
    kwargs.update(overrides)
    if callable(kwargs["frames"]):
        kwargs["frames"] = kwargs["frames"]()
    name = kwargs.pop("output_name", "out.mp4")
    frames, audio, fps = kwargs.pop("frames"), kwargs.pop("audio"), kwargs.pop("fps")
    with pytest.raises(InputError) as info:
        mux(frames, audio, fps, str(tmp_path / name), **kwargs)
    assert info.value.input_name == input_name
    assert str(info.value).startswith(f"{input_name}: ")
    if fragment:
        assert fragment in str(info.value)
    assert listing(tmp_path) == []


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(InputError) as info:
        mux(flash_frames(4, 1), GOOD_AUDIO, 25, str(blocker / "sub" / "out.mp4"))
    assert info.value.input_name == "output_path" and "output folder" in str(info.value)
    assert listing(tmp_path) == ["not_a_folder"]


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores folder permissions")
def test_read_only_output_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(InputError) as info:
            mux(flash_frames(4, 1), GOOD_AUDIO, 25, str(folder / "out.mp4"))
        assert info.value.input_name == "output_path"
    finally:
        folder.chmod(stat.S_IRWXU)
    assert listing(folder) == []


def test_generator_raising_midway_leaves_nothing(tmp_path):
    def frames():
        for i in range(10):
            if i == 5:
                raise RuntimeError("upstream node failed")
            yield np.zeros((HEIGHT, WIDTH, 3), np.uint8)

    with pytest.raises(RuntimeError, match="upstream node failed"):
        mux(frames(), GOOD_AUDIO, 25, str(tmp_path / "out.mp4"))
    assert listing(tmp_path) == []


def test_ffmpeg_killed_midway(tmp_path, monkeypatch):
    writers = []

    class RecordingWriter(ffmpeg_module.FfmpegWriter):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            writers.append(self)

    monkeypatch.setattr(mux_module, "FfmpegWriter", RecordingWriter)

    def kill_at_frame_5(done, total):
        if done == 5:
            writers[-1].proc.kill()
            writers[-1].proc.wait()

    with pytest.raises(ToolError) as info:
        mux(flash_frames(50, 1), burst_audio(2.0, 0.1, 16000, 1), 25, str(tmp_path / "out.mp4"),
            progress=kill_at_frame_5)
    assert info.value.tool == "ffmpeg"
    assert listing(tmp_path) == []


def test_ffmpeg_impossible_argument(tmp_path, monkeypatch):
    original = mux_module._video_encoder_args
    monkeypatch.setattr(mux_module, "_video_encoder_args",
                        lambda crf, preset: original(crf, preset) + ["-vf", "no_such_filter_xyz"])
    with pytest.raises(ToolError) as info:
        mux(flash_frames(6, 1), GOOD_AUDIO, 25, str(tmp_path / "out.mp4"))
    assert "no_such_filter_xyz" in info.value.stderr_tail
    assert listing(tmp_path) == []


def test_ffmpeg_crashing_binary(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "fake-ffmpeg"
    fake.parent.mkdir()
    # Reads a little of the frame stream, complains, dies: what a crashing encoder looks like.
    fake.write_text("#!/bin/sh\nhead -c 20000 >/dev/null\necho 'fake: encoder exploded' >&2\n"
                    "exit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv(ffmpeg_module.FFMPEG_ENV_VAR, str(fake))
    out_dir = tmp_path / "out"
    with pytest.raises(ToolError) as info:
        mux(flash_frames(40, 1), GOOD_AUDIO, 25, str(out_dir / "out.mp4"))
    assert "encoder exploded" in str(info.value)
    assert listing(out_dir) == []


def test_missing_ffmpeg_env_binary(monkeypatch, tmp_path):
    monkeypatch.setenv(ffmpeg_module.FFMPEG_ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(ToolError) as info:
        ffmpeg_module.find_ffmpeg()
    assert ffmpeg_module.FFMPEG_ENV_VAR in str(info.value)


def test_run_ffmpeg_failure_has_stderr_tail(tmp_path):
    with pytest.raises(ToolError) as info:
        ffmpeg_module.run_ffmpeg(["-i", str(tmp_path / "missing.wav"), str(tmp_path / "o.mp4")])
    assert "missing.wav" in info.value.stderr_tail
