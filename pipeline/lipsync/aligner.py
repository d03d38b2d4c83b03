"""VisemeAligner: speech -> timed phones -> visemes and mouth parameters per video frame.

Which way the phones are found, best first:
1. `speech_timings` from Speak: the synthesiser's exact phoneme times, used as they are.
2. A transcript and an English voice: forced alignment (pocketsphinx, offline).
3. No transcript, or one that does not match the audio: offline recognition, then forced alignment of
   the recognised words: Whisper (whisper_asr.py, the `asr` extra) where installed, else pocketsphinx's
   word search (recognition.py); or, when a local phoneme CTC model is given (`phoneme_model`,
   pipeline/lipsync/phoneme_ctc.py), its phones. What was recognised is `VisemeTrack.transcript`.
4. A language the models do not cover (without a phoneme model), or recognition that finds nothing:
   a language-independent estimate from acoustic energy and spectral shape.
Every fallback is said in `VisemeTrack.warnings`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

from ..core.audio import AudioClip
from ..core.errors import InputError
from ..speech.timing import PhonemeTiming, SpeechTimings
from . import (acoustic_phones, audio_quality, forced_align, phoneme_ctc, phoneset, recognition as speech_recognition,
               visemes, voice_activity, whisper_asr)
from .prosody import frame_prosody
from .track import SILENCE, VisemeTrack

ProgressFn = Callable[[int, int], None]


@dataclass
class AlignerConfig:
    """Knobs of the VisemeAligner.

    Attributes:
        min_audio_s: shortest audio accepted, seconds (shorter gives too few frames to align).
        min_speech_activity: fraction of 10 ms frames that must hold speech; below it the audio is
            treated as silence only (an all-rest track and a warning).
        timings_tolerance_s: how far Speak's timings may disagree with the audio's duration before
            they are taken to belong to other audio and ignored.
        coarticulation: how phones blend into mouth motion (None: the defaults).
        acoustic: the acoustic estimate's thresholds. vad: the voice-activity measure (voice_activity.py):
            outside its speech regions the mouth rests.
    """

    min_audio_s: float = 0.2
    min_speech_activity: float = 0.02
    timings_tolerance_s: float = 0.25
    coarticulation: Optional[visemes.CoarticulationConfig] = None
    acoustic: acoustic_phones.AcousticConfig = field(default_factory=acoustic_phones.AcousticConfig)
    vad: voice_activity.VadConfig = field(default_factory=voice_activity.VadConfig)


def _check_inputs(audio: AudioClip, fps: float, config: AlignerConfig) -> AudioClip:
    audio = AudioClip(audio.samples, audio.sample_rate).validated("audio")
    if not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise InputError("fps", f"must be a positive number of frames per second, got {fps!r}",
                         "Use the video's frame rate, e.g. 25 or 29.97.")
    if audio.duration_s < config.min_audio_s:
        raise InputError(
            "audio",
            f"is {audio.duration_s * 1000:.0f} ms long; the aligner needs at least {config.min_audio_s * 1000:.0f} ms",
            "Give a longer recording (pad it with silence if the speech really is that short).",
        )
    return audio


#: `align_speech(recogniser=...)`: auto = Whisper where the asr extra (or a model folder) is there, else
#: pocketsphinx.
RECOGNISERS = ("auto", "whisper", "pocketsphinx")
#: Whisper's words are set aside for the acoustic estimate when at least this share of them is
#: low-confidence and forced alignment finds they do not fit the audio, or when there are fewer than
#: MIN_WORDS_PER_SPEECH_S per second of speech: what an English model makes of other languages
#: (measured on the real-world corpus: English 0-8 % low-confidence, 2.5-3.3 words/s; Mandarin and
#: French 59-100 %, 0.2 words/s for one French clip). Synthetic espeak English also reaches 50-88 %
#: with tiny.en, but its words then still fit the audio, so they are kept.
UNSURE_SHARE = 0.5
MIN_WORDS_PER_SPEECH_S = 0.5


def _silence(duration_s: float) -> list[PhonemeTiming]:
    return [PhonemeTiming(SILENCE, 0.0, duration_s)]


def align_speech(
    audio: AudioClip,
    *,
    fps: float,
    transcript: Optional[str] = None,
    language: Optional[str] = None,
    speech_timings: Optional[SpeechTimings] = None,
    config: Optional[AlignerConfig] = None,
    progress: Optional[ProgressFn] = None,
    phoneme_model: Union[None, str, os.PathLike, phoneme_ctc.PhonemeModel] = None,
    recogniser: str = "auto",
    asr_model: Union[None, str, os.PathLike] = None,
) -> VisemeTrack:
    """Turns speech into a VisemeTrack at `fps`.

    Args:
        audio: the speech; any sample rate, mono or stereo, 0.2 s to hours.
        fps: video frames per second of the track (any positive value).
        transcript: what is said, if known; improves accuracy a lot.
        language: language code ("en-us", "de", ...); None means English.
        speech_timings: Speak's exact timings for this very audio; used as they are.
        progress: progress(done, total) in arbitrary steps.
        phoneme_model: a local phoneme CTC model (folder path or `phoneme_ctc.load_phoneme_model`'s
            result). When set, it replaces pocketsphinx recognition where there is no usable
            transcript (method "phoneme_ctc"). None: unchanged behaviour.
        recogniser: without a usable transcript, "auto" (Whisper where installed, else pocketsphinx),
            "whisper" (an InputError when it is not installed) or "pocketsphinx".
        asr_model: a faster-whisper model folder for Whisper; None: the bundled tiny.en.

    Returns:
        VisemeTrack with words, ARPAbet phones, per-frame viseme weights and mouth parameters, and
        per-frame loudness and pitch (for nods and brow lifts).
    """
    config = config or AlignerConfig()
    audio = _check_inputs(audio, fps, config)
    if recogniser not in RECOGNISERS:
        raise InputError("recogniser", f"is {recogniser!r}", f"Use one of: {', '.join(RECOGNISERS)}.")
    asr_model = None if asr_model in (None, "") else os.fspath(asr_model)
    if recogniser == "whisper" and not whisper_asr.available(asr_model):
        raise InputError("recogniser", f"is 'whisper', but {whisper_asr.unavailable_reason(asr_model)}",
                         f"Install it ({whisper_asr.ASR_EXTRA}) or choose 'auto' or 'pocketsphinx'.")
    use_whisper = recogniser == "whisper" or (recogniser == "auto" and whisper_asr.available(asr_model))
    heard_text = ""
    language = (language or "en-us").strip().lower() or "en-us"
    duration_s = audio.duration_s
    warnings: list[str] = []
    words: list = []
    score: Optional[float] = None
    report = progress or (lambda done, total: None)
    report(0, 3)

    phones: Optional[list[PhonemeTiming]] = None
    method = ""
    if speech_timings is not None:
        if abs(speech_timings.duration_s - duration_s) <= config.timings_tolerance_s:
            phones = phoneset.convert_speech_timings(speech_timings)
            words = list(speech_timings.words)
            method = "speech_timings"
        else:
            warnings.append(
                f"speech_timings: they describe {speech_timings.duration_s:.2f} s of speech but the audio lasts "
                f"{duration_s:.2f} s, so they belong to other audio; aligned the audio itself instead."
            )

    if phones is None and acoustic_phones.speech_activity(audio, config=config.acoustic) < config.min_speech_activity:
        warnings.append("audio: no speech found (silence only, or a steady sound such as noise or a tone); the "
                        "track keeps the mouth at rest.")
        phones, method = _silence(duration_s), "silence"

    activity = voice_activity.detect_speech(audio, config.vad) if phones is None else None
    if activity is not None and activity.method == "silero" and not activity.has_speech(config.vad):
        warnings.append(
            f"audio: no speech found: a voice in only {activity.speech_s:.1f} s of {duration_s:.1f} s (music, noise, "
            "tones or silence); the track keeps the mouth at rest. Connect speech, or check the audio input.")
        phones, method = _silence(duration_s), "silence"

    # A phoneme model (espeak IPA, multilingual) also covers languages the English speech models do not.
    if phones is None and not forced_align.supports_language(language) and phoneme_model is None:
        warnings.append(
            f"language: no speech model covers {language!r} (only English here); mouth motion was estimated from "
            "the audio's energy and spectral shape, which follows loudness and openness but not exact phonemes."
        )
        phones, method = acoustic_phones.estimate_phones(audio, config=config.acoustic), "acoustic"

    if phones is None and transcript and transcript.strip() and forced_align.supports_language(language):
        alignment = forced_align.align(audio, transcript, language=language)
        report(1, 3)
        warnings.extend(alignment.notes)
        if forced_align.transcript_mismatch(alignment):
            fit = (f"agreement with recognition {alignment.loop_agreement:.2f}"
                   if alignment.loop_agreement is not None else f"alignment score {alignment.score:.2f}")
            warnings.append(
                f"transcript: it does not match the audio ({fit}); "
                "used speech recognition instead. Check that the transcript belongs to this recording."
            )
        else:
            phones, words, method = alignment.phones, alignment.words, "forced_alignment"
            score = alignment.score if alignment.loop_agreement is None else None

    if phones is None and phoneme_model is not None:
        recognised = phoneme_ctc.recognize(audio, phoneme_model)
        report(2, 3)
        warnings.extend(recognised.notes)
        if phoneme_ctc.speech_phone_count(recognised.phones):
            phones, method = recognised.phones, "phoneme_ctc"
        else:
            warnings.append("audio: the phoneme model recognised no phones; mouth motion was estimated from the "
                            "audio's energy and spectral shape instead.")
            phones, method = acoustic_phones.estimate_phones(audio, config=config.acoustic), "acoustic"

    if phones is None and use_whisper:
        phones, words, score, method, heard_text = _whisper_phones(audio, language, asr_model, config,
                                                                   activity.speech_s, warnings)
        report(2, 3)

    if phones is None:
        if recogniser == "auto" and not use_whisper:
            warnings.append(f"recognition: pocketsphinx's word search (about half of the phones right); "
                            f"{whisper_asr.unavailable_reason(asr_model)}: Whisper gets most words right.")
        recognition = speech_recognition.recognize_for_visemes(audio)
        report(2, 3)
        if recognition.words:
            phones, words, score, method = recognition.phones, recognition.words, recognition.score, "recognition"
            heard_text = recognition.transcript
        else:
            warnings.append("audio: speech recognition found no words; mouth motion was estimated from the audio's "
                            "energy and spectral shape instead.")
            phones, method = acoustic_phones.estimate_phones(audio, config=config.acoustic), "acoustic"

    if activity is not None and method != "silence":
        phones = _rest_where_no_voice(phones, activity, method, warnings)

    track = visemes.build_track(
        phones, words, duration_s, fps, method=method, language=language, alignment_score=score,
        warnings=warnings, config=config.coarticulation,
    )
    if method == "forced_alignment":
        track.transcript = transcript.strip()
    elif method == "speech_timings":
        track.transcript = " ".join(w.word for w in words)
    else:
        track.transcript = heard_text
    quality = audio_quality.measure_audio_quality(audio, activity or voice_activity.detect_speech(audio, config.vad))
    track.audio_quality = quality.to_dict()
    prosody = frame_prosody(audio, fps, track.num_frames)
    track.loudness, track.pitch_hz = prosody.loudness, prosody.pitch_hz
    report(3, 3)
    return track


def _whisper_phones(audio: AudioClip, language: str, asr_model: Optional[str], config: AlignerConfig,
                    speech_s: float, warnings: list[str]):
    """Whisper's words, forced-aligned: (phones, words, score, method, recognised text). Nothing heard:
    the rest track; words the model could not make out (see UNSURE_SHARE): the acoustic estimate; words
    the aligner cannot pronounce: phones None, and pocketsphinx's search is tried next. Each says why in
    `warnings`. speech_s: seconds of voice in the clip (voice_activity)."""
    heard = whisper_asr.transcribe(audio, model_path=asr_model, language=language, input_name="asr_model")
    warnings.extend(heard.notes)
    if not heard.words:
        # a recogniser that hears no word at all in a clip with sound is the voice-activity measure's
        # best witness: music, noise or tones, not speech
        warnings.append("audio: no speech found: Whisper heard no words (music, noise or tones); the track keeps "
                        "the mouth at rest. Connect speech, or give the transcript if there is speech.")
        return _silence(audio.duration_s), [], None, "silence", ""
    try:
        alignment = _align_by_chunk(audio, heard, language)
    except InputError as exc:  # nothing pronounceable (digits only, symbols): the pocketsphinx search decides
        warnings.append(f"recognition: Whisper's words could not be aligned ({exc}); used pocketsphinx instead.")
        return None, [], None, "", heard.text
    low_share = len(heard.low_confidence_words) / len(heard.words)
    too_few = len(heard.words) < MIN_WORDS_PER_SPEECH_S * speech_s
    if too_few or (low_share >= UNSURE_SHARE and forced_align.transcript_mismatch(alignment)):
        # speech in another language than the model's (an English model writes a few English-sounding
        # words for it, unsure of them, and they do not fit the sound), or sounds that are not speech
        warnings.append(
            f"recognition: Whisper ({heard.model}) heard {len(heard.words)} word(s) in {speech_s:.1f} s of speech, "
            f"{low_share:.0%} of them low-confidence" + ("" if too_few else ", and they do not fit the audio")
            + f", as with speech in another language than {language!r} or sounds that are not speech; mouth "
            "motion was estimated from the audio's energy and spectral shape instead. Give the transcript, or "
            "set the language.")
        return acoustic_phones.estimate_phones(audio, config=config.acoustic), [], None, "acoustic", heard.text
    warnings.extend(alignment.notes)
    return alignment.phones, alignment.words, alignment.score, "whisper", heard.text


#: phones silenced outside the voice regions are reported from this many seconds on
REPORT_SILENCED_S = 0.3


def _rest_where_no_voice(phones: list[PhonemeTiming], activity: voice_activity.VoiceActivity, method: str,
                         warnings: list[str]) -> list[PhonemeTiming]:
    """Silero's regions: the mouth rests outside them. The energy measure cannot tell music from speech,
    so with it the phones stay and, without a transcript, the warning says so."""
    if activity.method != "silero":
        if method in ("acoustic", "recognition"):
            warnings.extend(activity.notes)
        return phones
    kept, silenced_s = voice_activity.rest_outside(phones, activity)
    if silenced_s >= REPORT_SILENCED_S:
        warnings.append(
            f"audio: {silenced_s:.1f} s of sound that is not a voice (music, noise) would have moved the mouth; "
            f"it rests there (speech in {activity.speech_share:.0%} of the clip).")
    return kept


def _align_by_chunk(audio: AudioClip, heard: "whisper_asr.Transcription", language: str) -> forced_align.Alignment:
    """Forced alignment of Whisper's words, piece by piece as Whisper heard them (each piece with its own
    words: no guessing which words fall in which stretch of a long recording, and memory bounded by one
    piece). One Alignment over the whole clip: phones contiguous, score the duration-weighted mean, a
    piece flagged as not fitting when its own alignment is."""
    if len(heard.chunk_bounds_s) <= 1:
        return forced_align.align(audio, heard.text, language=language)
    rate = audio.sample_rate
    words, phones, notes, oov = [], [], [], []
    weighted_score, scored_s, mismatched_s = 0.0, 0.0, 0.0
    for (start_s, end_s), text in zip(heard.chunk_bounds_s, heard.chunk_texts):
        a, b = int(round(start_s * rate)), int(round(end_s * rate))
        piece = AudioClip(audio.samples[:, a:b], rate)
        if not forced_align._tokens(text) or piece.duration_s < forced_align.MIN_AUDIO_S:
            part_phones, part_words = [PhonemeTiming(SILENCE, 0.0, piece.duration_s)], []
        else:
            part = forced_align.align(piece, text, language=language)
            part_phones, part_words = part.phones, part.words
            notes.extend(f"{note} (in the part from {start_s:.1f} s)" for note in part.notes)
            oov.extend(part.oov_words)
            weighted_score += part.score * piece.duration_s
            scored_s += piece.duration_s
            if forced_align.transcript_mismatch(part):
                mismatched_s += piece.duration_s
        for phone in part_phones:   # silences meeting at a part boundary become one
            forced_align._push(phones, phone.phoneme, phone.start_s + start_s, phone.end_s + start_s)
        words.extend(type(w)(w.word, round(w.start_s + start_s, 4), round(w.end_s + start_s, 4)) for w in part_words)
    score = weighted_score / scored_s if scored_s else 0.0
    if scored_s and mismatched_s > 0.5 * scored_s:
        score = min(score, forced_align.MISMATCH_SCORE - 1.0)   # most of it does not fit: say so as one alignment
    return forced_align.Alignment(words, phones, score, oov, notes, audio.duration_s)
