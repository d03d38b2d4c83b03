"""VisemeAligner: speech -> timed phones -> visemes and mouth parameters per video frame.

Which way the phones are found, best first:
1. `speech_timings` from Speak: the synthesiser's exact phoneme times, used as they are.
2. A transcript and an English voice: forced alignment (pocketsphinx, offline).
3. No transcript, or one that does not match the audio: offline recognition, then alignment; or,
   when a local phoneme CTC model is given (`phoneme_model`, pipeline/lipsync/phoneme_ctc.py), its phones.
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
from . import acoustic_phones, forced_align, phoneme_ctc, phoneset, recognition as speech_recognition, visemes
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
    """

    min_audio_s: float = 0.2
    min_speech_activity: float = 0.02
    timings_tolerance_s: float = 0.25
    coarticulation: Optional[visemes.CoarticulationConfig] = None
    acoustic: acoustic_phones.AcousticConfig = field(default_factory=acoustic_phones.AcousticConfig)


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

    Returns:
        VisemeTrack with words, ARPAbet phones, per-frame viseme weights and mouth parameters, and
        per-frame loudness and pitch (for nods and brow lifts).
    """
    config = config or AlignerConfig()
    audio = _check_inputs(audio, fps, config)
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
        warnings.append("audio: no speech found (silence only); the track keeps the mouth at rest.")
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

    if phones is None:
        recognition = speech_recognition.recognize_for_visemes(audio)
        report(2, 3)
        if recognition.words:
            phones, words, score, method = recognition.phones, recognition.words, recognition.score, "recognition"
        else:
            warnings.append("audio: speech recognition found no words; mouth motion was estimated from the audio's "
                            "energy and spectral shape instead.")
            phones, method = acoustic_phones.estimate_phones(audio, config=config.acoustic), "acoustic"

    track = visemes.build_track(
        phones, words, duration_s, fps, method=method, language=language, alignment_score=score,
        warnings=warnings, config=config.coarticulation,
    )
    prosody = frame_prosody(audio, fps, track.num_frames)
    track.loudness, track.pitch_hz = prosody.loudness, prosody.pitch_hz
    report(3, 3)
    return track
