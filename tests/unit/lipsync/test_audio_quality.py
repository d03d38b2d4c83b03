"""The audio quality report on made-up clips, one per factor, and where users see it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from talkinghead.pipeline.core.audio import AudioClip
from talkinghead.pipeline.core.audio_dsp import resample
from talkinghead.pipeline.lipsync import audio_quality, voice_activity
from talkinghead.pipeline.lipsync.aligner import align_speech
from talkinghead.pipeline.speech.speak import SpeakConfig, speak


@pytest.fixture(scope="module")
def voice():
    """Speak's sentence with 1 s of silence on each side: mono float32 and its rate."""
    spoken = speak("Please pass the pepper, and five brave foxes will leap over the fence.", SpeakConfig())
    rate = spoken.audio.sample_rate
    pad = np.zeros(rate, np.float32)
    return np.concatenate([pad, spoken.audio.samples[0], pad]), rate


def report(samples: np.ndarray, rate: int) -> audio_quality.AudioQualityReport:
    clip = AudioClip(np.atleast_2d(samples).astype(np.float32), rate)
    return audio_quality.measure_audio_quality(clip, voice_activity.detect_speech(clip))


def verdicts(rep) -> dict:
    return {c.factor: c.verdict for c in rep.checks}


def test_a_clean_recording_passes_every_factor(voice):
    x, rate = voice
    rep = report(x, rate)
    assert rep.ok and set(verdicts(rep).values()) == {"pass"}, rep.to_text()
    assert [c.factor for c in rep.checks] == ["speech share", "SNR", "clipping", "peak level", "loudness",
                                              "bandwidth", "DC offset", "channels"]
    assert "Audio quality: OK" in rep.to_text()


def _noisy(x, snr_db, seed=0):
    speech_rms = np.sqrt(np.mean(x[np.abs(x) > 0.01] ** 2))
    noise = np.random.default_rng(seed).normal(0, speech_rms / 10 ** (snr_db / 20), len(x))
    return (x + noise).astype(np.float32)


@pytest.mark.parametrize("case, factor", [
    ("clipped", "clipping"),
    ("8 kHz", "bandwidth"),
    ("-45 dBFS", "peak level"),
    ("noise at 5 dB SNR", "SNR"),
    ("DC offset", "DC offset"),
    ("inverted channel", "channels"),
    ("one silent channel", "channels"),
])
def test_each_problem_warns_on_its_own_factor_with_advice(voice, case, factor):
    x, rate = voice
    made = {
        "clipped": lambda: (np.clip(x * 8, -1, 1), rate),
        "8 kHz": lambda: (resample(x, rate, 8000), 8000),
        "-45 dBFS": lambda: (x / np.abs(x).max() * 10 ** (-45 / 20), rate),
        "noise at 5 dB SNR": lambda: (_noisy(x, 5.0), rate),
        "DC offset": lambda: (x + 0.05, rate),
        "inverted channel": lambda: (np.stack([x, -x]), rate),
        "one silent channel": lambda: (np.stack([x, np.zeros_like(x)]), rate),
    }[case]
    samples, sample_rate = made()
    rep = report(samples, sample_rate)
    check = rep.by_factor(factor)
    assert check.verdict == "warn", rep.to_text()
    assert len(check.advice.split(". ")) <= 3 and check.advice.endswith(".")
    assert rep.ok                                          # warnings, not failures: the clip still aligns
    assert verdicts(rep)["speech share"] == "pass", rep.to_text()
    if case == "-45 dBFS":
        assert rep.by_factor("loudness").verdict == "warn"


def test_an_inverted_channel_still_aligns(voice):
    x, rate = voice
    track = align_speech(AudioClip(np.stack([x, -x]), rate), fps=25.0,
                         transcript="Please pass the pepper, and five brave foxes will leap over the fence.")
    assert track.method == "forced_alignment", track.warnings
    assert track.mouth_param("jaw_open").max() > 0.3


def test_no_speech_fails_and_the_track_carries_the_report():
    silence = AudioClip(np.random.default_rng(2).normal(0, 0.05, (1, 16000 * 4)).astype(np.float32), 16000)
    track = align_speech(silence, fps=25.0)
    quality = track.audio_quality
    assert quality["ok"] is False
    (share,) = [c for c in quality["checks"] if c["factor"] == "speech share"]
    assert share["verdict"] == "fail" and "nothing to lip-sync" in share["advice"]
    assert all(c["verdict"] != "fail" for c in quality["checks"] if c["factor"] != "speech share")
    json.dumps(quality, allow_nan=False)                   # what the editor receives: strict JSON
    again = audio_quality.report_from_dict(quality)
    assert [c.factor for c in again.checks] == [c["factor"] for c in quality["checks"]] and not again.ok


def test_channel_correlation_matches_numpy_in_blocks():
    from talkinghead.pipeline.core import audio_dsp

    rng = np.random.default_rng(5)
    a = rng.normal(0, 1, audio_dsp.SUM_BLOCK * 2 + 123).astype(np.float32)
    b = (0.6 * a + 0.8 * rng.normal(0, 1, len(a)) + 0.3).astype(np.float32)
    assert abs(audio_dsp.channel_correlation(a, b) - np.corrcoef(a, b)[0, 1]) < 1e-6
    assert abs(audio_dsp.channel_correlation(a, -a) + 1.0) < 1e-6
    assert audio_dsp.channel_correlation(a, np.zeros_like(a)) == 1.0
