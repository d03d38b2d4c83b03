"""Loudness and pitch per video frame (pipeline/lipsync/prosody.py), and the life they drive (head_motion):
nods on stressed syllables, brows on pitch accents."""

from __future__ import annotations

import numpy as np
import pytest

from talkinghead.pipeline.core.audio import AudioClip
from talkinghead.pipeline.lipsync.prosody import frame_prosody
from talkinghead.pipeline.lipsync.track import MOUTH_PARAMS, VISEMES, VisemeTrack
from talkinghead.pipeline.render.head_motion import life_schedule, pitch_accents, stress_peaks


def voice_like(f0_hz: np.ndarray, sample_rate: int, amplitude: float = 0.3) -> np.ndarray:
    """A buzzy harmonic tone following f0_hz (one value per sample), like a voiced vowel."""
    phase = 2 * np.pi * np.cumsum(f0_hz) / sample_rate
    return (amplitude * sum(np.sin(k * phase) / k for k in range(1, 8))).astype(np.float32)


@pytest.mark.parametrize("sample_rate", [16000, 22050, 48000])
@pytest.mark.parametrize("f0", [80.0, 130.0, 220.0, 350.0])
def test_pitch_of_a_steady_voice_is_within_one_percent(sample_rate, f0):
    samples = voice_like(np.full(2 * sample_rate, f0), sample_rate)
    prosody = frame_prosody(AudioClip(samples[None, :], sample_rate), 25.0, 50)
    inner = prosody.pitch_hz[2:-2]
    assert (inner > 0).all()
    assert np.abs(inner / f0 - 1).max() < 0.01
    assert prosody.loudness[2:-2].min() > 0.9


def test_a_rising_voice_reads_as_rising_and_noise_and_silence_as_unvoiced():
    rate = 22050
    glide = np.linspace(100.0, 200.0, 2 * rate)
    rising = frame_prosody(AudioClip(voice_like(glide, rate)[None, :], rate), 25.0, 50).pitch_hz
    assert np.all(np.diff(rising[2:-2]) > 0)
    assert abs(rising[25] / 150.0 - 1) < 0.02
    noise = np.random.default_rng(0).normal(0, 0.1, 2 * rate).astype(np.float32)
    assert (frame_prosody(AudioClip(noise[None, :], rate), 25.0, 50).pitch_hz > 0).mean() < 0.05
    silent = frame_prosody(AudioClip(np.zeros((1, 2 * rate), np.float32), rate), 25.0, 50)
    assert not silent.pitch_hz.any() and silent.loudness.max() == 0.0


def test_loudness_follows_the_level_and_every_frame_has_values_at_any_fps():
    rate = 16000
    loud = voice_like(np.full(rate, 150.0), rate, 0.3)
    quiet = voice_like(np.full(rate, 150.0), rate, 0.3 * 10 ** (-20 / 20))    # 20 dB down
    clip = AudioClip(np.concatenate([loud, quiet])[None, :], rate)
    for fps in (12.0, 25.0, 29.97, 60.0, 240.0):
        n = int(round(2 * fps))
        prosody = frame_prosody(clip, fps, n)
        assert prosody.loudness.shape == (n,) and prosody.pitch_hz.shape == (n,)
        first, second = prosody.loudness[2:int(fps) - 2], prosody.loudness[int(fps) + 2:-2]
        assert first.min() > 0.95
        assert abs(second.mean() - 0.5) < 0.05                     # 20 dB down on a 40 dB scale
        assert np.abs(prosody.pitch_hz[2:-2] / 150 - 1).max() < 0.02


def test_speech_from_speak_has_a_plausible_voice_and_a_question_rises():
    from talkinghead.pipeline.lipsync.aligner import align_speech
    from talkinghead.pipeline.speech.speak import speak

    def final_rise(text: str) -> tuple[float, VisemeTrack]:
        """Last voiced pitch of the last word over the lowest pitch in that word."""
        spoken = speak(text)
        track = align_speech(spoken.audio, fps=25.0, speech_timings=spoken.timings)
        last = track.words[-1]
        frames = track.pitch_hz[int(last.start_s * 25):int(np.ceil(last.end_s * 25))]
        voiced = frames[frames > 0]
        return float(voiced[-1] / voiced.min()), track

    statement, track = final_rise("You said the blue one was here.")
    question, _ = final_rise("You said the blue one was here?")
    assert track.has_prosody
    voiced = track.pitch_hz[track.pitch_hz > 0]
    assert 0.3 < len(voiced) / track.num_frames < 0.95
    assert 60 < np.median(voiced) < 300
    assert statement < 1.05                                      # a statement ends low
    assert question > 1.15                                       # espeak raises the end of a question
    again = VisemeTrack.from_json(track.to_json())
    assert again.has_prosody
    assert np.allclose(again.pitch_hz, track.pitch_hz, atol=0.05)
    assert np.allclose(again.loudness, track.loudness, atol=0.0005)


def test_tracks_without_prosody_still_load_and_say_so():
    mouth = np.zeros((10, len(MOUTH_PARAMS)), np.float32)
    track = VisemeTrack(fps=25.0, duration_s=0.4, viseme_weights=np.eye(len(VISEMES), dtype=np.float32)[[0] * 10],
                        mouth=mouth)
    raw = track.to_dict()
    del raw["loudness"], raw["pitch_hz"]                         # JSON from before prosody existed
    old = VisemeTrack.from_dict(raw)
    assert not old.has_prosody
    life = life_schedule(old.mouth[:, 0], 25.0, 0, 1.0, 15.0)
    assert life.cues == "jaw"


def schedule_for(loudness_peaks_s, accents_s, seconds=6.0, fps=25.0, seed=0):
    n = int(seconds * fps)
    t = np.arange(n) / fps
    loudness = np.full(n, 0.4)
    for c in loudness_peaks_s:
        loudness += 0.55 * np.exp(-0.5 * ((t - c) / 0.05) ** 2)
    pitch = np.full(n, 110.0)
    for c in accents_s:
        pitch *= 2 ** ((4.0 / 12) * np.exp(-0.5 * ((t - c) / 0.08) ** 2))   # a 4-semitone accent
    pitch[(t % 0.5) > 0.4] = 0.0                                             # unvoiced gaps
    jaw = 0.5 + 0.4 * np.sin(2 * np.pi * t * 3)                              # jaw peaks everywhere
    return t, life_schedule(jaw, fps, seed, 1.0, 0.0, loudness=loudness, pitch_hz=pitch)


def test_brows_lift_on_pitch_accents_and_nowhere_else():
    t, life = schedule_for(loudness_peaks_s=[1.0, 4.0], accents_s=[2.0, 4.8])
    assert life.cues == "prosody"
    lifted = t[life.brow > 0.2]
    assert lifted.size > 0
    for c in (2.0, 4.8):
        near = np.abs(t - c) < 0.35
        assert life.brow[near].max() > 0.45
        assert abs(t[near][np.argmax(life.brow[near])] - c) <= 0.08       # peaks with the pitch (2 frames)
    assert np.all((np.abs(lifted - 2.0) < 0.35) | (np.abs(lifted - 4.8) < 0.35))
    # the loudness peaks alone (1.0 s, 4.0 s) do not lift the brows
    assert life.brow[np.abs(t - 1.0) < 0.2].max() < 0.05


def test_nods_follow_stressed_syllables_not_pitch():
    loud_at = [0.8, 2.0, 3.2, 4.4]
    hits = 0
    for seed in range(5):
        t, life = schedule_for(loudness_peaks_s=loud_at, accents_s=[5.5], seed=seed)
        _, still = schedule_for(loudness_peaks_s=[], accents_s=[5.5], seed=seed)
        dip = life.shift_y_iod - still.shift_y_iod                          # the nods alone
        for c in loud_at:
            near = np.abs(t - c) < 0.3
            if dip[near].max() > 0.02:
                hits += 1
                assert abs(t[near][np.argmax(dip[near])] - (c - 0.05)) <= 0.08
        assert np.abs(dip[np.abs(t - 5.5) < 0.3]).max() < 1e-6             # the accent alone: no nod
    assert hits >= 0.5 * 5 * len(loud_at)                                    # most stressed syllables nod


def test_peak_finders_on_speech_like_curves():
    fps = 25.0
    t = np.arange(150) / fps
    loudness = 0.5 + 0.45 * np.exp(-0.5 * ((t - 3.0) / 0.05) ** 2)
    assert list(stress_peaks(loudness, fps) / fps) == [3.0]
    flat = np.full(150, 120.0)
    frames, heights = pitch_accents(flat, fps)
    assert frames.size == 0 and heights.size == 0
