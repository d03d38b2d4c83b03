"""Whisper recognition (the asr extra) for lip sync without a transcript: the real tiny.en model."""

from __future__ import annotations

import numpy as np
import pytest

from talkinghead.pipeline.core.audio import AudioClip
from talkinghead.pipeline.core.errors import InputError
from talkinghead.pipeline.lipsync import aligner, voice_activity, whisper_asr
from talkinghead.pipeline.lipsync.aligner import align_speech
from talkinghead.pipeline.speech.speak import SpeakConfig, speak

needs_whisper = pytest.mark.skipif(not whisper_asr.available(),
                                   reason=f"{whisper_asr.unavailable_reason()} (the test setup installs it)")

FIRST = "Please pass the pepper and the butter."
SECOND = "We saw two ships move slowly from the harbour."


def _words(text: str) -> list[str]:
    return [w.strip(".,!?").lower() for w in text.split()]


@pytest.fixture(scope="module")
def two_sentences():
    """Two Speak sentences with 1.5 s of silence between them, and where that silence lies (s)."""
    first = speak(FIRST, SpeakConfig())
    second = speak(SECOND, SpeakConfig())
    rate = first.audio.sample_rate
    gap = np.zeros((first.audio.samples.shape[0], int(1.5 * rate)), np.float32)
    samples = np.concatenate([first.audio.samples, gap, second.audio.samples], axis=1)
    pause = (first.audio.duration_s, first.audio.duration_s + 1.5)
    return AudioClip(samples, rate), pause


@needs_whisper
def test_recognises_the_words_with_times_inside_the_audio(two_sentences):
    audio, pause = two_sentences
    heard = whisper_asr.transcribe(audio)
    said = _words(FIRST + " " + SECOND)
    got = [w.word.strip(".,!?").lower() for w in heard.words]
    assert len(set(got) & set(said)) >= 0.7 * len(set(said)), heard.text
    assert heard.model.startswith("tiny.en") and heard.language == "en"
    starts = [w.start_s for w in heard.words]
    assert starts == sorted(starts) and 0 <= starts[0] and heard.words[-1].end_s <= audio.duration_s + 0.05
    assert all(0.0 <= w.probability <= 1.0 for w in heard.words)
    # the second sentence's words come after the pause
    assert all(w.start_s > pause[0] for w in heard.words if w.word.strip(".,").lower() in ("ships", "harbour", "harbor"))


@needs_whisper
def test_long_audio_goes_in_chunks_cut_in_pauses(two_sentences, monkeypatch):
    audio, pause = two_sentences
    monkeypatch.setattr(whisper_asr, "CHUNK_MAX_S", audio.duration_s - 1.0)
    monkeypatch.setattr(whisper_asr, "CHUNK_SEARCH_S", audio.duration_s - pause[0] - 0.2)
    calls = []
    heard = whisper_asr.transcribe(audio, progress=lambda done, total: calls.append((done, total)))
    assert heard.chunks == 2 and calls == [(1, 2), (2, 2)]
    samples = whisper_asr.mono_at(audio, whisper_asr.SAMPLE_RATE)
    (_, cut), _ = whisper_asr.chunk_bounds(samples, max_s=whisper_asr.CHUNK_MAX_S,
                                           search_s=whisper_asr.CHUNK_SEARCH_S)
    assert pause[0] < cut / whisper_asr.SAMPLE_RATE < pause[1]       # the cut fell in the silence
    got = {w.word.strip(".,!?").lower() for w in heard.words}
    assert {"pepper", "ships"} <= got, heard.text                     # words from both chunks


@needs_whisper
def test_long_audio_is_aligned_piece_by_piece_with_each_pieces_words(two_sentences, monkeypatch):
    audio, pause = two_sentences
    monkeypatch.setattr(whisper_asr, "CHUNK_MAX_S", audio.duration_s - 1.0)
    monkeypatch.setattr(whisper_asr, "CHUNK_SEARCH_S", audio.duration_s - pause[0] - 0.2)
    track = align_speech(audio, fps=25.0)
    assert track.method == "whisper", track.warnings
    assert all(a.end_s == b.start_s for a, b in zip(track.phones, track.phones[1:]))    # contiguous
    assert track.phones[0].start_s == 0.0 and abs(track.phones[-1].end_s - audio.duration_s) < 0.02
    when = {w.word.lower().strip(".,"): w.start_s for w in track.words}
    assert when["pepper"] < pause[0] and pause[1] - 0.1 < when["ships"] < audio.duration_s, when
    assert [w.start_s for w in track.words] == sorted(w.start_s for w in track.words)


def test_chunks_cover_the_audio_and_keep_to_the_limit():
    rng = np.random.default_rng(0)
    samples = rng.normal(0, 0.1, 16000 * 300).astype(np.float32)
    for start_s in (100.0, 211.0):                                    # two quiet stretches to cut in
        samples[int(start_s * 16000):int((start_s + 0.5) * 16000)] *= 0.001
    bounds = whisper_asr.chunk_bounds(samples, max_s=120.0, search_s=20.0)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(samples)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(end - start <= 120 * 16000 for start, end in bounds)
    assert 100.0 <= bounds[0][1] / 16000 <= 100.5 and 211.0 <= bounds[1][1] / 16000 <= 211.5


@needs_whisper
def test_aligner_aligns_whispers_words_and_hands_them_back():
    spoken = speak("Bob made a big map of the moon, and five brave foxes leaped over the fence.", SpeakConfig())
    track = align_speech(spoken.audio, fps=25.0)
    assert track.method == "whisper", track.warnings
    assert {"big", "map", "moon", "fence"} <= set(_words(track.transcript)), track.transcript
    aligned = [w.word.lower().strip(".,") for w in track.words]
    assert aligned[:3] == _words(track.transcript)[:3]                # forced alignment of those words
    # the B of "big" and the M of "map": the lips close near where Speak put them
    closure = track.mouth_param("lip_closure") >= 0.5
    truth = [p.start_s for p in spoken.timings.phonemes if p.phoneme in ("b", "m")]
    found = [closure[max(0, int(t * 25) - 2):int(t * 25) + 4].any() for t in truth]
    assert np.mean(found) >= 0.8


@pytest.mark.parametrize("heard, expected", [
    # what tiny.en writes for Mandarin news: English stock phrases, unsure of most, that do not fit the sound
    ("thank you very much for watching and see you next time", "acoustic"),
    # one unsure word in five seconds of speech: the model could not make the speech out
    ("I'm", "acoustic"),
    # the words that were said, heard with confidence: aligned
    ("Bonjour a tous, je vous presente une nouvelle methode de travail", "whisper"),
])
def test_words_the_model_could_not_make_out_give_the_acoustic_estimate(monkeypatch, heard, expected):
    french = speak("Bonjour à tous, je vous présente une nouvelle méthode de travail.", SpeakConfig(voice="fr"))
    unsure = expected == "acoustic"
    words = [whisper_asr.RecognisedWord(w, 0.3 * i, 0.3 * i + 0.25, 0.1 if unsure else 0.9)
             for i, w in enumerate(heard.split())]
    monkeypatch.setattr(whisper_asr, "available", lambda model_path=None: True)
    monkeypatch.setattr(whisper_asr, "transcribe",
                        lambda *a, **k: whisper_asr.Transcription(heard, words, "en", "tiny.en (test)", 4.0))
    track = align_speech(french.audio, fps=25.0)                      # language left at English
    assert track.method == expected, (track.method, track.warnings)
    if expected == "acoustic":
        assert any("another language" in w for w in track.warnings), track.warnings
        assert track.mouth_param("jaw_open").max() > 0.2              # still talks, from the sound
        assert track.transcript == heard                               # what was heard, to correct


def test_without_the_extra_pocketsphinx_is_used_and_the_node_says_how_to_improve(monkeypatch):
    monkeypatch.setattr(whisper_asr, "faster_whisper_installed", lambda: False)
    spoken = speak("Bob made a big map of the moon.", SpeakConfig())
    track = align_speech(spoken.audio, fps=25.0)
    assert track.method == "recognition"
    assert any("asr" in w and "faster-whisper" in w for w in track.warnings), track.warnings
    with pytest.raises(InputError) as caught:
        align_speech(spoken.audio, fps=25.0, recogniser="whisper")
    assert caught.value.input_name == "recogniser" and "asr" in str(caught.value)


def test_bad_recogniser_and_model_folder_name_the_input(tmp_path):
    spoken = speak("Hello there.", SpeakConfig())
    with pytest.raises(InputError) as caught:
        align_speech(spoken.audio, fps=25.0, recogniser="sphinx")
    assert caught.value.input_name == "recogniser"
    if not whisper_asr.faster_whisper_installed():
        pytest.skip("faster-whisper is not installed")
    (tmp_path / "not_a_model").mkdir()
    with pytest.raises(InputError) as caught:
        align_speech(spoken.audio, fps=25.0, asr_model=str(tmp_path / "not_a_model"))
    assert caught.value.input_name == "asr_model" and "model.bin" in str(caught.value)


def test_recognisers_listed_for_the_node():
    assert aligner.RECOGNISERS[0] == "auto"


def _tune(seconds: float, rate: int = 16000) -> np.ndarray:
    """A made-up piano line (decaying harmonic notes, one a second) over a noise drum on the beat."""
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros_like(t)
    for i, f in enumerate((261.6, 329.6, 392.0, 523.3, 440.0, 349.2, 293.7, 246.9)[:int(seconds)]):
        note = (t >= i) & (t < i + 1)
        for h in (1, 2, 3, 4):
            out += note * np.exp(-3 * (t - i)) * np.sin(2 * np.pi * f * h * t) / h
    drum = (np.sin(2 * np.pi * 2 * t) > 0.95) * np.random.default_rng(0).normal(0, 0.3, len(t))
    return (0.3 * (out + drum) / np.abs(out).max()).astype(np.float32)


@pytest.mark.parametrize("kind", ["tune", "white noise", "square wave", "silence"])
def test_sounds_that_are_not_speech_keep_the_mouth_at_rest_and_say_so(kind):
    rate, seconds = 16000, 8.0
    t = np.arange(int(seconds * rate)) / rate
    sound = {"tune": lambda: _tune(seconds),
             "white noise": lambda: np.random.default_rng(1).normal(0, 0.1, len(t)),
             "square wave": lambda: 0.3 * np.sign(np.sin(2 * np.pi * 220 * t)),
             "silence": lambda: np.zeros(len(t))}[kind]()
    if kind == "tune" and not voice_activity.silero_available():
        pytest.skip("telling music from speech needs the asr extra (Silero VAD)")
    track = align_speech(AudioClip(np.asarray(sound, np.float32)[None], rate), fps=25.0)
    assert track.method == "silence", (track.method, track.warnings)
    assert np.ptp(track.mouth, axis=0).max() == 0.0                    # one pose, the rest pose, throughout
    assert float(track.mouth_param("jaw_open").max()) < 0.05                    # closed: the lips meet at rest
    assert any(w.startswith("audio: no speech found") for w in track.warnings), track.warnings


@pytest.mark.skipif(not voice_activity.silero_available(), reason="needs the asr extra (Silero VAD)")
def test_music_around_speech_leaves_the_mouth_at_rest_there():
    spoken = speak("Bob made a big map of the moon, and five brave foxes leaped over the fence.", SpeakConfig())
    speech = whisper_asr.mono_at(spoken.audio, 16000)
    clip = AudioClip(np.concatenate([_tune(3.0), speech, _tune(3.0)])[None].astype(np.float32), 16000)
    activity = voice_activity.detect_speech(clip)
    assert activity.method == "silero" and 0.4 < activity.speech_share < 0.75, activity.regions_s
    track = align_speech(clip, fps=25.0)
    jaw = track.mouth_param("jaw_open")
    speech_frames = slice(int(3.0 * 25), int((3.0 + spoken.audio.duration_s) * 25))
    outside = np.concatenate([jaw[:speech_frames.start - 3], jaw[speech_frames.stop + 3:]])
    # Silero takes the first note's onset for a voice (0.0-0.3 s), where forced alignment may put the first
    # word: the mouth rests in at least 95 % of the tune's frames
    assert float(np.mean(outside > 0.05)) <= 0.05, "the tune moved the mouth"
    assert float(np.mean(jaw[speech_frames] > 0.1)) > 0.4, "the speech did not"
