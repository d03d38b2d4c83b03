"""VisemeAligner end to end: which path it takes, what it warns, what the track holds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from talkinghead.pipeline.core.audio import AudioClip
from talkinghead.pipeline.core.audio_dsp import resample
from talkinghead.pipeline.core.errors import InputError
from talkinghead.pipeline.lipsync import whisper_asr
from talkinghead.pipeline.lipsync.aligner import align_speech
from talkinghead.pipeline.lipsync.track import MOUTH_PARAMS, VISEMES, VisemeTrack
from talkinghead.pipeline.speech.speak import SpeakConfig, speak

SENTENCE = "Bob made a big map of the moon and a few very smooth blue boats."
#: the no-transcript path: Whisper with the asr extra (the test setup installs it), else pocketsphinx
RECOGNITION_METHOD = "whisper" if whisper_asr.available() else "recognition"


@pytest.fixture(scope="module")
def spoken():
    return speak(SENTENCE, SpeakConfig())


def closure_frames(track: VisemeTrack) -> np.ndarray:
    return track.mouth_param("lip_closure") >= 0.9


def test_speak_timings_are_used_as_they_are(spoken):
    track = align_speech(spoken.audio, fps=25, speech_timings=spoken.timings)
    assert track.method == "speech_timings" and track.warnings == []
    assert track.num_frames == round(spoken.audio.duration_s * 25)
    assert track.viseme_weights.shape == (track.num_frames, len(VISEMES))
    assert track.mouth.shape == (track.num_frames, len(MOUTH_PARAMS))
    assert np.allclose(track.viseme_weights.sum(axis=1), 1.0, atol=1e-4)
    # Every B/M/P in the sentence closes the lips on screen at least once: 9 of them.
    starts = [p.start_s for p in track.phones if p.phoneme in ("P", "B", "M")]
    assert len(starts) >= 9
    closed = closure_frames(track)
    for start_s in starts:
        window = closed[max(0, int(start_s * 25) - 2): int(start_s * 25) + 4]
        assert window.any(), f"no lip closure near the P/B/M at {start_s:.2f} s"


def test_transcript_gives_forced_alignment_close_to_the_truth(spoken):
    track = align_speech(spoken.audio, fps=25, transcript=SENTENCE)
    assert track.method == "forced_alignment", track.warnings
    assert [w.word.lower().strip(".,") for w in track.words] == [w.lower().strip(".") for w in SENTENCE.split()]
    truth = {w.word.lower().strip(".,"): w.start_s for w in spoken.timings.words}
    errors_ms = [abs(w.start_s - truth[w.word.lower().strip(".,")]) * 1000 for w in track.words
                 if w.word.lower().strip(".,") in truth]
    assert np.median(errors_ms) <= 40


def test_a_transcript_of_other_speech_is_detected(spoken):
    track = align_speech(spoken.audio, fps=25, transcript="Seven silly swans swim south in the summer sun.")
    assert track.method == RECOGNITION_METHOD
    assert "swans" not in track.transcript.lower()      # what was heard, not the wrong transcript
    assert any(w.startswith("transcript:") and "does not match" in w for w in track.warnings)


def test_without_a_transcript_speech_is_recognised(spoken):
    track = align_speech(spoken.audio, fps=30, transcript="")
    assert track.method == RECOGNITION_METHOD and len(track.words) >= 5
    assert track.num_frames == round(spoken.audio.duration_s * 30)


def test_unsupported_language_falls_back_to_acoustics_and_says_so():
    german = speak("Guten Morgen, wie geht es Ihnen heute?", SpeakConfig(voice="de"))
    track = align_speech(german.audio, fps=25, language="de")
    assert track.method == "acoustic"
    assert any(w.startswith("language:") and "'de'" in w for w in track.warnings)
    assert track.mouth_param("jaw_open").max() > 0.3  # the mouth does move with the speech


def test_silence_gives_a_resting_track_and_a_warning():
    silence = AudioClip(np.zeros((1, 16000), np.float32), 16000)
    track = align_speech(silence, fps=25, transcript="hello")
    assert track.method == "silence" and "silence only" in track.warnings[0]
    assert set(track.dominant_visemes()) == {"sil"}
    assert track.mouth_param("jaw_open").max() < 0.1


def test_timings_of_other_audio_are_ignored_with_a_warning(spoken):
    other = speak("Short.", SpeakConfig())
    track = align_speech(spoken.audio, fps=25, speech_timings=other.timings, transcript=SENTENCE)
    assert track.method == "forced_alignment"
    assert track.warnings[0].startswith("speech_timings:")


def test_any_rate_and_stereo_give_the_same_track(spoken):
    mono = align_speech(spoken.audio, fps=25, transcript=SENTENCE)
    upsampled = resample(spoken.audio.samples[0], spoken.audio.sample_rate, 44100)
    stereo = AudioClip(np.stack([upsampled, upsampled * 0.5]), 44100)
    other = align_speech(stereo, fps=25, transcript=SENTENCE)
    starts = np.array([w.start_s for w in mono.words])
    shift_s = np.abs(starts - np.array([w.start_s for w in other.words]))
    # Resampling moves a boundary by a frame or two; a word after a nasal ("moon and") may
    # slide further because the boundary between two N-like sounds is acoustically vague.
    assert np.mean(shift_s <= 0.03) >= 0.9 and shift_s.max() <= 0.12


@pytest.mark.parametrize(
    "audio, fps, name",
    [
        (AudioClip(np.zeros((1, 1000), np.float32), 16000), 25, "audio"),  # 62 ms
        (AudioClip(np.full((1, 16000), np.nan, np.float32), 16000), 25, "audio"),
        (AudioClip(np.zeros((1, 0), np.float32), 16000), 25, "audio"),
        (AudioClip(np.zeros((1, 16000), np.float32), 16000), 0, "fps"),
        (AudioClip(np.zeros((1, 16000), np.float32), 16000), float("nan"), "fps"),
    ],
)
def test_bad_input_names_the_input(audio, fps, name):
    with pytest.raises(InputError) as caught:
        align_speech(audio, fps=fps)
    assert caught.value.input_name == name


def test_track_survives_a_json_round_trip(spoken):
    track = align_speech(spoken.audio, fps=23.976, speech_timings=spoken.timings)
    again = VisemeTrack.from_json(json.dumps(json.loads(track.to_json())))
    assert again.method == track.method and again.fps == track.fps
    assert again.transcript == track.transcript and track.transcript.lower().startswith("bob made")
    assert [p.phoneme for p in again.phones] == [p.phoneme for p in track.phones]
    assert np.allclose(again.viseme_weights, track.viseme_weights, atol=1e-4)
    assert np.allclose(again.mouth, track.mouth, atol=1e-4)
