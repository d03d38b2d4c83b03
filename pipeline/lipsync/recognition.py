"""Speech recognition for lip sync when no transcript is given (English, offline, pocketsphinx).

`recognize_for_visemes(audio)` returns a `forced_align.Recognition`: the words pocketsphinx's
language-model search heard, forced-aligned to the audio (contiguous ARPAbet phones + SIL over
0..duration). The frame-level viseme accuracy that lip sync needs comes from those phones.

Method (what was kept after measuring; numbers below):
1. The audio is brought to mono 16 kHz int16 by `forced_align` (which also adds its tiny fixed
   dither), then *comfort noise* is added: seeded white noise SPEECH_NOISE_DB below the speech
   level (the 95th percentile of 10 ms frame RMS), when that is above forced_align's dither.
   pocketsphinx's acoustic model was trained on real recordings, which always have a noise
   floor; synthetic or heavily gated speech has (near-)digital silence in pauses and stop
   closures, which its feature normalisation and silence/noise models handle badly. A floor at
   -36 dB re speech is far under the speech and inaudible in practice; on noisy audio it adds
   nothing that matters (the floor is already higher).
2. Word search with the en-us language model (en-us.lm.bin, pocketsphinx's default beams and
   weights: fwdtree + fwdflat + bestpath), segment by segment at pauses for long audio.
3. Forced alignment of the hypothesis to the same (noise-floored) audio with forced_align's
   segment-wise aligner.

Measured on a development set of our own (24 sentences not in the benchmark, six espeak voice
variants not used by the benchmark, 140-210 wpm, clean / white 20 dB / pink 10 dB = 72 items):
10 ms frame accuracy under Rhubarb's rules, P/B/M closure recall, CPU s per s of audio
(two processes on two cores):

    baseline (forced_align.recognize, "words", dither 30 LSB)  0.693  closure 0.548  CPU 0.94
    phone loop (allphone, en-us-phone.lm.bin), lw 2 / pip 0.3   0.666  closure 0.545  CPU 0.07
      lw 1: 0.671; lw 4: 0.653; pip 0.05 / 1.0: 0.665 / 0.666; cmn batch, remove_noise, wider
      beams, topn 8: all within 0.001; triphone context (allphone_ci False): 0.658 at 3.4 s/s
      noise floor 100 / 300 / 1000 LSB (-36 / -26 / -16 dB re speech): 0.680 / 0.667 / 0.569
    words, noise 100 LSB (~-36 dB) for the search only          0.716  closure 0.548  CPU 0.75
    words, -36 dB re speech added for search and alignment     0.713  closure 0.551  CPU 0.64
    words, floor *filled* up to -36 dB (kept)                   0.712  closure 0.583  CPU 0.60
      per condition (kept): clean 0.761 / white 20 dB 0.728 / pink 10 dB 0.648
      (fill for the alignment, full -36 dB for the search: 0.710; the pink 10 dB figure moves
      by +-0.02 between these variants, within its run-to-run spread)

Verified on the benchmark's default set (tests/bench, 40 sentences x clean / white 20 dB /
pink 10 dB, scored the same way): forced_align.recognize 0.672 (0.707 / 0.698 / 0.612), closure
0.505, CPU 0.74 s/s; this module 0.679 (0.728 / 0.692 / 0.617), closure 0.532, CPU 0.68 s/s.

Ceiling: even with the *true* transcript, pocketsphinx alignment reaches ~0.89 on that set, and
the word search gets only about half the phones right on synthetic speech (phones matched ~0.46),
so 0.85 without a transcript is out of reach with these real-speech models: it would need the
word error rate of the search to fall to a few percent.
      + lw 10 (all passes): 0.644; lw 4 / fwdflatlw 5 / bestpathlw 6: 0.716 at 2.6 s/s;
      without fwdflat: 0.709 at 0.65 s/s
    frame-level voting of the word result with 2-4 phone loops (weights 1.5-2.5 : 1, coarse
    Rhubarb classes, short-segment smoothing): 0.692 .. 0.700, worse than words alone.

The way to 0.85 is a stronger phone recogniser whose weights the user supplies: pipeline/lipsync/phoneme_ctc.py
(a local wav2vec2 espeak-IPA phoneme CTC model, `align_speech(phoneme_model=...)`, the VisemeAligner's
`phoneme_model` input). Its accuracy has NOT been measured here (no such weights are available in this
environment); measure it with `tests/bench/bench_visemes.py --phoneme-model PATH`.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

import numpy as np

from ..core.audio import AudioClip
from ..core.audio_dsp import to_int16
from ..speech.timing import PhonemeTiming
from . import forced_align as fa
from .track import SILENCE

ProgressFn = Callable[[int, int], None]

#: Comfort-noise floor, dB under the speech level (95th percentile of 10 ms frame RMS). See the
#: module doc: -36 dB was best of -16 / -26 / -36 dB (and forced_align's fixed ~-60 dB).
SPEECH_NOISE_DB = 36.0
_NOISE_SEED = 4321

METHOD_NOTE = ("recognised words with the en-us language model (comfort-noise floor added), "
               "then forced-aligned them")


def _frame_rms(pcm: np.ndarray) -> np.ndarray:
    n = len(pcm) // 160
    frames = pcm[: n * 160].astype(np.float64).reshape(n, 160)
    return np.sqrt(np.mean(frames * frames, axis=1))


def speech_level(pcm: np.ndarray) -> float:
    """95th percentile of the RMS of 10 ms frames of int16 samples (0 for empty input)."""
    rms = _frame_rms(pcm)
    return float(np.percentile(rms, 95)) if len(rms) else 0.0


def noise_floor(pcm: np.ndarray) -> float:
    """10th percentile of the RMS of 10 ms frames: the level of the quietest parts."""
    rms = _frame_rms(pcm)
    return float(np.percentile(rms, 10)) if len(rms) else 0.0


def with_noise_floor(pcm: np.ndarray, below_db: float = SPEECH_NOISE_DB, *, fill: bool = True) -> np.ndarray:
    """pcm (int16) plus seeded white noise `below_db` under its speech level.

    fill=True: only the RMS missing between the floor found (`noise_floor`) and that target is
    added, so a recording that is already noisy is left alone; fill=False: the full amount is
    added whatever the floor (white noise also fills the spectral gaps of coloured noise).
    Nothing is added when the amount is below forced_align's fixed dither.
    """
    target = speech_level(pcm) * 10.0 ** (-below_db / 20.0)
    floor = noise_floor(pcm) if fill else 0.0
    sigma = float(np.sqrt(max(target * target - floor * floor, 0.0)))
    if sigma <= fa.NOISE_LSB:
        return pcm
    rng = np.random.default_rng(_NOISE_SEED)
    noise = rng.normal(0.0, sigma, len(pcm))
    return to_int16((pcm.astype(np.float64) + noise).astype(np.float32) / 32768.0)


def _lm_words(pcm: np.ndarray, progress: Optional[ProgressFn], total: int) -> list[str]:
    """Word hypothesis of the LM search, segment by segment (caller holds fa._LOCK)."""
    dec = fa._decoder("lm")
    words: list[str] = []
    segments = fa._segments(pcm)
    for si, (f0, f1) in enumerate(segments):
        fa._decode(dec, pcm[f0 * 160: f1 * 160].tobytes())
        for s in dec.seg() or []:
            w = re.sub(r"\(\d+\)$", "", s.word)
            if w in fa._FILLERS or w.startswith("<") or w.startswith("["):
                continue
            words.append(w)
        if progress is not None:
            progress(si + 1, total)
    return words


def recognize_for_visemes(audio: AudioClip, *, language: str = "en-us",
                          progress: Optional[ProgressFn] = None) -> fa.Recognition:
    """Recognises English speech without a transcript and times its phones for lip sync.

    Args:
        audio: speech, any sample rate, mono or stereo, at least 0.2 s.
        language: an English code; others raise InputError("language").
        progress: progress(done, total).

    Returns:
        forced_align.Recognition: words (empty when nothing was heard), contiguous ARPAbet + SIL
        phones over 0..duration, the recognised text, the alignment score, a method note.
    """
    fa._check_language(language)
    # Steady background subtracted first, as for forced alignment (benchmark, pink 10 dB: frame
    # accuracy 0.592 -> 0.628; clean audio is left as it is).
    pcm = with_noise_floor(fa._prepare_audio(audio, denoise=True))
    duration = len(pcm) / float(fa.SAMPLE_RATE)
    n_frames = int(np.ceil(len(pcm) / 160))
    notes: list[str] = []
    with fa._LOCK:
        total = 2 * len(fa._segments(pcm))
        hyp = _lm_words(pcm, progress, total)
        if not hyp:
            return fa.Recognition([], [PhonemeTiming(SILENCE, 0.0, duration)], "", float("-inf"),
                                  METHOD_NOTE, ["recognition: no words were heard"], duration)
        decs = [fa._decoder(kind) for kind in fa._ALIGN_KINDS]
        text = " ".join(hyp)
        words, _, word_notes = fa._prepare_words(decs, text, language)
        notes.extend(word_notes)
        half = total // 2
        step = None if progress is None else (lambda d, t: progress(half + d, half + t))
        entries = fa._align_words(decs, pcm, words, notes, step)
    out_words, phones, score = fa._build_result(entries, words, n_frames)
    if phones:
        phones[-1].end_s = round(duration, 4)
    return fa.Recognition(out_words, phones, text, float(score) if score is not None else 0.0,
                          METHOD_NOTE, notes, duration)
