"""The timeline picture of a VisemeTrack (pipeline/lipsync/preview.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from talkinghead.pipeline.lipsync.preview import render_timeline
from talkinghead.pipeline.lipsync.visemes import ARPABET_PHONES, build_track
from talkinghead.pipeline.speech.timing import PhonemeTiming as P, WordTiming

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


from phone_sequences import seq  # noqa: E402


def synthetic(phones, sr=16000):
    """A fake waveform: a tone under every non-silent phone."""
    duration = phones[-1].end_s
    t = np.arange(int(duration * sr)) / sr
    wave = np.zeros_like(t, dtype=np.float32)
    for p in phones:
        if p.phoneme != "SIL":
            sel = (t >= p.start_s) & (t < p.end_s)
            wave[sel] = 0.5 * np.sin(2 * np.pi * 180 * t[sel])
    return wave, sr


def hello_track(fps=25):
    phones = seq(("SIL", 0.3), ("HH", 0.06), ("AH", 0.08), ("L", 0.07), ("OW", 0.25), ("SIL", 0.15),
                 ("M", 0.08), ("AY", 0.22), ("F", 0.08), ("R", 0.05), ("EH", 0.1), ("N", 0.06), ("D", 0.05),
                 ("SIL", 0.4))
    words = [WordTiming("hello", 0.3, 0.76), WordTiming("my", 0.91, 1.21), WordTiming("friend", 1.21, 1.55)]
    return build_track(phones, words, phones[-1].end_s, fps, method="speech_timings"), phones


def test_size_dtype_and_not_blank():
    track, phones = hello_track()
    samples, sr = synthetic(phones)
    image = render_timeline(track, samples, sr)
    assert image.shape == (360, 1280, 3) and image.dtype == np.uint8
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 20  # waveform, labels, colours
    assert image.std() > 10
    small = render_timeline(track, samples[None, :], sr, width_px=640, height_px=240)
    assert small.shape == (240, 640, 3)


def test_saves_a_preview_png():
    from PIL import Image

    speak = pytest.importorskip("talkinghead.pipeline.speech.speak")
    phoneset = pytest.importorskip("talkinghead.pipeline.lipsync.phoneset")
    try:
        spoken = speak.speak("Peter Piper picked a peck of pickled peppers. Would you like some soup?")
        phones = phoneset.convert_speech_timings(spoken.timings)
        samples, sr, words = spoken.audio.samples, spoken.audio.sample_rate, spoken.timings.words
        duration = spoken.audio.duration_s
    except Exception:  # no espeak-ng here: a synthetic track
        track, phones = hello_track()
        samples, sr = synthetic(phones)
        words, duration = track.words, track.duration_s
    track = build_track(phones, words, duration, 25, method="speech_timings")
    image = render_timeline(track, samples, sr)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(ARTIFACTS / "viseme-preview.png")
    assert (ARTIFACTS / "viseme-preview.png").stat().st_size > 5000


def test_different_tracks_give_different_images():
    track, phones = hello_track()
    other = build_track(seq(("SIL", 0.5), ("AA", 1.0), ("SIL", 0.62)), [WordTiming("ah", 0.5, 1.5)], 2.12, 25,
                        method="acoustic")
    a = render_timeline(track, None, None)
    b = render_timeline(other, None, None)
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1


def test_no_audio_and_windows():
    track, phones = hello_track()
    full = render_timeline(track, None, None)
    window = render_timeline(track, None, None, start_s=0.8, end_s=1.6)
    assert full.shape == window.shape and not np.array_equal(full, window)
    # silly windows do not crash
    for start, end in ((5.0, None), (1.0, 0.5), (0.0, 100.0)):
        assert render_timeline(track, None, None, start_s=start, end_s=end).shape == (360, 1280, 3)
    with pytest.raises(ValueError):
        render_timeline(track, None, None, width_px=10)


def test_long_track_thins_labels_and_does_not_crash():
    rng = np.random.default_rng(0)
    durations = rng.uniform(0.04, 0.15, size=8000)
    starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    names = rng.choice(np.array(ARPABET_PHONES + ("SIL",)), size=len(durations))
    phones = [P(str(n), float(s), float(s + d)) for n, s, d in zip(names, starts, durations)]
    words = [WordTiming(f"w{i}", float(starts[i]), float(starts[min(i + 3, len(starts) - 1)]))
             for i in range(0, len(starts) - 3, 3)]
    duration = float(starts[-1] + durations[-1])
    track = build_track(phones, words, duration, 30, method="test")
    sr = 8000
    samples = (rng.standard_normal(int(duration * sr)) * 0.1).astype(np.float32)
    first = render_timeline(track, samples, sr)                     # first 30 s
    whole = render_timeline(track, samples, sr, max_duration_s=None)  # ~13 minutes in 1280 px
    assert first.shape == whole.shape == (360, 1280, 3)
    assert not np.array_equal(first, whole)
