"""Offline forced alignment and recognition of English speech with pocketsphinx.

`align(audio, transcript)` finds when each word and phone of a known transcript is spoken;
`recognize(audio)` finds the words first (no transcript), then aligns them. Phones come out in
the product's phone set (ARPAbet without stress, "SIL" for silence; see phoneset.py), contiguous
over 0..duration.

How it works:
- Audio (any rate, any channels) -> mono 16 kHz int16 with a tiny fixed dither (pocketsphinx
  fails on digital silence: its noise tracking sees -inf energy and the search dies).
- Words: lowercase, punctuation stripped, apostrophes kept ("don't"). Words the CMU dictionary
  lacks (names, numbers, coinages) get a pronunciation from espeak-ng's letter-to-sound rules
  (`phoneset.g2p_arpabet`) through `add_word`, and are listed in `Alignment.oov_words`; none is
  dropped. A hyphenated word whose parts are all in the dictionary is aligned as its parts.
- Long audio: cut at pauses (>= MIN_PAUSE_S of low energy) into segments of at most
  MAX_SEGMENT_S. Words are given to segments in order: each segment's expected word count is
  estimated from its share of the remaining speech time weighted by the words' phone counts,
  then decoded with a grammar that is the word chain with its end left open over a window of
  +-WORD_SLACK words around that estimate, so the acoustics decide where the segment's words
  end; the rest carry to the next segment. The last segment must take all words left. Each
  segment is then aligned at phone level. Work and memory per segment are bounded, so the total
  grows linearly with the audio's length.
- Search failures are retried, never passed on: a word search counts only if it reached the
  transcript's end (pocketsphinx otherwise returns a partial path); a failed state-level pass is
  retried on halves of the audio cut at word boundaries, and with the other decoders, before the
  unscored one-phone-word pass is used (see _phones). Boundaries between speech phones then move
  to the nearest clear spectral change (boundary_refine.py), and pause starts back to the energy
  drop (_trim_speech_ends).
- `score`: mean per 10 ms frame of the alignment's acoustic log-likelihood in natural-log units
  (nats). pocketsphinx normalises senone scores each frame against the best-scoring senone, so
  0 means every frame was explained by the best-matching sound; the more negative, the worse the
  transcript fits the audio. See MISMATCH_SCORE for the calibrated threshold.
"""

from __future__ import annotations

import re
import threading
import unicodedata
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..core.audio import AudioClip
from ..core.audio_dsp import mono_at, to_int16
from ..core.errors import InputError, ToolError
from ..speech.timing import PhonemeTiming, WordTiming
from .boundary_refine import RefineConfig, refine_boundaries
from .noise_reduction import NoiseReductionConfig, reduce_stationary_noise
from .phoneset import ARPABET, g2p_arpabet
from .track import SILENCE

ProgressFn = Callable[[int, int], None]

SAMPLE_RATE = 16000
FRAME_S = 0.01  # pocketsphinx frames: 100 per second
#: Added to every boundary pocketsphinx reports. Its frame i is analysed over a 25.6 ms window
#: starting at i * 10 ms, so a boundary "at frame i" lies near the window's centre; measured on
#: Speak sentences the raw boundaries were 9 ms early on average (median over all phones).
BOUNDARY_SHIFT_S = 0.01
MIN_AUDIO_S = 0.2
#: A pause this long (low energy) may separate two segments of long audio.
MIN_PAUSE_S = 0.3
#: Longest segment aligned in one pass; longer audio is cut at pauses.
MAX_SEGMENT_S = 25.0
#: Audio up to this long is aligned in one pass even without pauses.
SINGLE_PASS_S = 30.0
#: How many words a segment's end may move from its estimate.
WORD_SLACK = 6

#: A forced alignment whose score (mean nats per frame, see module doc) is below this did not fit
#: the audio: the transcript is probably wrong. Calibrated on 40 Speak utterances (20 sentences,
#: en-us and en-gb): correct transcripts scored -4.35 .. -1.78 (median -2.5); another sentence's
#: transcript scored -6.60 .. -4.83 where the search succeeded, and FAILED_FRAME_SCORE (-30)
#: in the 33 of 40 cases where it could not align at all. The margin is thin (0.5 nats).
MISMATCH_SCORE = -4.6

#: When the alignment has no acoustic score (the fallback phone search), the transcript is checked
#: against phone-loop recognition instead: the fraction of 10 ms speech frames whose viseme class
#: agrees. Measured on 20 Speak utterances (en-us/en-gb, 140-210 wpm): correct transcripts 0.47 ..
#: 0.78 (one outlier 0.11), another sentence's transcript (where it aligned at all) 0.13 .. 0.27.
MIN_LOOP_AGREEMENT = 0.35

#: Score given to each frame of a segment where the alignment search failed (words spread evenly).
FAILED_FRAME_SCORE = -30.0

#: Pronunciation the decoder uses for silence and noise entries; never reported as words.
_FILLERS = {"<s>", "</s>", "<sil>", "[NOISE]", "++NOISE++", "[SPEECH]"}

_ENGLISH = re.compile(r"^(en|eng|english)([-_][a-z0-9]+)*$")


def supports_language(language: Optional[str]) -> bool:
    """True for English codes ("en", "en-us", "en-gb", "en_US", ...): the only model shipped."""
    if language is None:
        return True
    return bool(_ENGLISH.match(str(language).strip().lower()))


# --- results ---------------------------------------------------------------------------------


@dataclass
class Alignment:
    """Where a transcript's words and phones are in the audio.

    Attributes:
        words: the transcript's words, in order, with times (seconds from the first sample).
        phones: ARPAbet phones and "SIL", contiguous, covering 0..duration_s.
        score: mean acoustic log-likelihood per 10 ms frame, in nats, relative to the best
            senone of each frame (0 is a perfect fit, more negative is worse); see
            transcript_mismatch.
        oov_words: words missing from the CMU dictionary that got an espeak-ng pronunciation.
        notes: things the user should know (segments that fell back, ...).
        duration_s: length of the audio.
        loop_agreement: only when the alignment had no acoustic score: the fraction of 10 ms
            speech frames whose viseme class agrees with phone-loop recognition (0..1).
    """

    words: list[WordTiming] = field(default_factory=list)
    phones: list[PhonemeTiming] = field(default_factory=list)
    score: float = 0.0
    oov_words: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    loop_agreement: Optional[float] = None


@dataclass
class Recognition:
    """What recognition (no transcript) heard.

    Attributes:
        words: recognised words with times.
        phones: ARPAbet phones and "SIL", contiguous over 0..duration_s.
        transcript: the recognised words as text.
        score: as Alignment.score, for the alignment of the recognised words.
        method_note: how the result was obtained, for warnings and reports.
        notes: further remarks.
        duration_s: length of the audio.
    """

    words: list[WordTiming] = field(default_factory=list)
    phones: list[PhonemeTiming] = field(default_factory=list)
    transcript: str = ""
    score: float = 0.0
    method_note: str = ""
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0


def transcript_mismatch(alignment: Alignment) -> bool:
    """True when the alignment fits the audio so badly that the transcript is probably wrong.

    When pocketsphinx's state-level pass fails (about 1 utterance in 6 of synthetic speech) the
    phones come from a search without scores; the alignment is then compared with phone-loop
    recognition of the same audio instead (`loop_agreement`).
    """
    if alignment.loop_agreement is not None:
        return alignment.loop_agreement < MIN_LOOP_AGREEMENT
    return alignment.score < MISMATCH_SCORE


def _viseme_class_agreement(phones: list[PhonemeTiming], other: list[PhonemeTiming], duration_s: float) -> float:
    """Fraction of 10 ms frames, where either side has speech, whose viseme classes agree."""
    from .visemes import viseme_of

    centres = np.arange(int(duration_s / FRAME_S)) * FRAME_S + FRAME_S / 2

    def classes(seq: list[PhonemeTiming]) -> np.ndarray:
        ends = np.array([p.end_s for p in seq])
        labels = np.array(["sil" if p.phoneme == SILENCE else viseme_of(p.phoneme) for p in seq])
        return labels[np.minimum(np.searchsorted(ends, centres, side="right"), len(seq) - 1)]

    ours, theirs = classes(phones), classes(other)
    speech = (ours != "sil") | (theirs != "sil")
    return float(np.mean(ours[speech] == theirs[speech])) if speech.any() else 1.0


# --- decoders (one of each per process, guarded: pocketsphinx decoders are not thread-safe) ----

_LOCK = threading.RLock()
_decoders: dict[str, object] = {}

# Alignment decoders tried in order when a search fails (measured success on 108 Speak
# utterances: default 108, no fillers 101, wide beams 104; wider beams are not better here).
_ALIGN_KINDS = ("align", "align_nofill", "align_wide")


#: Search settings of the first alignment decoder. Measured on the viseme benchmark's 120 items
#: (tests/bench/bench_visemes.py, with transcript, CPU interleaved in one run): pocketsphinx's
#: defaults (topn 4, beams 1e-48 / 1e-48 / 7e-29, maxhmmpf 30000) -> these: CPU -23 %, frame
#: accuracy 0.8879 -> 0.8886, boundary p90 28.2 -> 28.1 ms, closure recall 0.974 -> 0.973. topn 1
#: costs accuracy (frame 0.875, p90 31 ms); beams of 1e-20 lose closures (0.967). Searches that
#: fail here are retried with the no-filler and the wide-beam decoders, as before.
ALIGN_SEARCH = dict(topn=2, beam=1e-30, pbeam=1e-30, wbeam=1e-20, maxhmmpf=3000)


def _decoder(kind: str):
    """The cached decoder of `kind` ("align", "lm", "phone"). Caller must hold _LOCK."""
    dec = _decoders.get(kind)
    if dec is not None:
        return dec
    try:
        from pocketsphinx import Decoder, get_model_path
    except ImportError as exc:  # a core dependency: only a broken install gets here
        raise ToolError("pocketsphinx", "the `pocketsphinx` package is not installed; "
                        "run `pip install pocketsphinx`") from exc
    quiet = dict(loglevel="FATAL", logfn="/dev/null", samprate=SAMPLE_RATE)
    try:
        if kind == "align":
            dec = Decoder(lm=None, **ALIGN_SEARCH, **quiet)
        elif kind == "align_nofill":
            dec = Decoder(lm=None, fsgusefiller=False, **quiet)
        elif kind == "align_wide":
            dec = Decoder(lm=None, beam=1e-80, pbeam=1e-80, wbeam=1e-60, **quiet)
        elif kind == "lm":
            dec = Decoder(**quiet)
        elif kind == "phone":
            dec = Decoder(allphone=get_model_path("en-us/en-us-phone.lm.bin"), lm=None,
                          lw=2.0, pip=0.3, beam=1e-20, pbeam=1e-20, **quiet)
        else:
            raise ValueError(kind)
    except (RuntimeError, ValueError) as exc:
        raise ToolError("pocketsphinx", f"could not load the English model ({kind}): {exc}") from exc
    _decoders[kind] = dec
    return dec


# --- audio -----------------------------------------------------------------------------------


def _prepare_audio(audio: AudioClip, *, denoise: bool = False) -> np.ndarray:
    """Audio -> mono 16 kHz int16 with the fixed dither; `denoise`: spectral subtraction of a
    steady background first (noise_reduction.py; clean audio is left as it is)."""
    if not isinstance(audio, AudioClip):
        raise InputError("audio", f"expected an AudioClip, got {type(audio).__name__}",
                         "Pass the audio as AudioClip(samples [channels, samples], sample_rate).")
    audio = audio.validated("audio")
    if audio.duration_s < MIN_AUDIO_S:
        raise InputError("audio", f"is {audio.duration_s * 1000:.0f} ms long; alignment needs at "
                         f"least {MIN_AUDIO_S * 1000:.0f} ms",
                         "Give a longer recording (pad it with silence if the speech is that short).")
    x = mono_at(audio, SAMPLE_RATE)
    if denoise and NOISE_REDUCTION is not None:
        x, _ = reduce_stationary_noise(x, SAMPLE_RATE, NOISE_REDUCTION)
    return _with_noise(x, NOISE_LSB)


#: Forced alignment hears the speech after a steady background is subtracted (see
#: noise_reduction.py for what it gains on the benchmark); None turns that off.
NOISE_REDUCTION: Optional[NoiseReductionConfig] = NoiseReductionConfig()


#: Fixed-seed noise added before decoding, in int16 steps (30 = -61 dBFS, inaudible). On digital
#: (near-)silence, as synthetic speech has, pocketsphinx's noise tracking misjudges the floor and
#: the alignment search dies ("final result does not match the grammar"). Measured on 108 Speak
#: utterances (3 voices/rates): 99 aligned with 8 steps, 108 with 30.
NOISE_LSB = 30.0


def _with_noise(x: np.ndarray, lsb: float) -> np.ndarray:
    rng = np.random.default_rng(1234)
    return to_int16(x + rng.normal(0.0, lsb, len(x)).astype(np.float32) / 32768.0)


def _frame_energy_db(pcm: np.ndarray) -> np.ndarray:
    n = len(pcm) // 160
    frames = pcm[: n * 160].astype(np.float32).reshape(n, 160) / 32768.0
    return 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1e-10)


def _speech_mask(pcm: np.ndarray) -> np.ndarray:
    """bool per 10 ms frame: louder than the noise floor by enough to be speech."""
    db = _frame_energy_db(pcm)
    if len(db) == 0:
        return np.zeros(0, bool)
    floor = np.percentile(db, 10)
    peak = np.percentile(db, 99)
    threshold = max(floor + 0.25 * (peak - floor), peak - 45.0)
    mask = db > threshold
    # Close gaps shorter than 80 ms (stop closures inside words).
    k = 8
    padded = np.concatenate([np.ones(k, bool), mask, np.ones(k, bool)])
    runs = np.flatnonzero(np.diff(padded.astype(np.int8)))
    for s, e in zip(runs[::2], runs[1::2]):
        if e - s < k:
            padded[s + 1: e + 1] = True
    return padded[k:-k]


def _segments(pcm: np.ndarray) -> list[tuple[int, int]]:
    """Cuts [start, end) in frames at the middle of pauses, each at most MAX_SEGMENT_S long."""
    n = len(pcm) // 160
    if n * FRAME_S <= SINGLE_PASS_S:
        return [(0, n)]
    mask = _speech_mask(pcm)
    min_pause = int(round(MIN_PAUSE_S / FRAME_S))
    cuts: list[int] = []  # candidate cut frames: middles of long pauses
    i = 0
    while i < n:
        if not mask[i]:
            j = i
            while j < n and not mask[j]:
                j += 1
            if j - i >= min_pause and i > 0 and j < n:
                cuts.append((i + j) // 2)
            i = j
        else:
            i += 1
    max_len = int(MAX_SEGMENT_S / FRAME_S)
    db = _frame_energy_db(pcm)
    out: list[tuple[int, int]] = []
    start = 0
    while n - start > max_len:
        ok = [c for c in cuts if start + 2 * min_pause < c <= start + max_len]
        if ok:
            cut = ok[-1]
        else:  # no pause: the quietest 10 ms in the last third of the allowed span
            lo = start + (2 * max_len) // 3
            cut = lo + int(np.argmin(db[lo: start + max_len]))
        out.append((start, cut))
        start = cut
    out.append((start, n))
    return out


# --- transcript --------------------------------------------------------------------------------


@dataclass
class _Word:
    text: str                 # as the user wrote it, without surrounding punctuation
    keys: list[str]           # dictionary entries aligned for it (several for split hyphenations)
    phones: int = 1           # expected phone count (for distributing words over segments)


_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"}


def _tokens(transcript: str) -> list[str]:
    text = unicodedata.normalize("NFKC", transcript)
    for a, b in _APOSTROPHES.items():
        text = text.replace(a, b)
    out = []
    for raw in text.split():
        # Keep letters, digits, inner apostrophes and hyphens; all else separates.
        for piece in re.split(r"[^\w'\-]+", raw):
            piece = piece.strip("'-_")
            if piece and re.search(r"\w", piece):
                out.append(piece)
    return out


def _lookup(dec, key: str) -> Optional[str]:
    try:
        return dec.lookup_word(key)
    except Exception:  # pocketsphinx raises on odd strings in some versions
        return None


#: Accents whose espeak-ng pronunciations are offered to the search as alternatives to the
#: dictionary's (which is American: "what" W AH T, "not" N AA T): the acoustics pick. Measured on
#: the viseme benchmark (40 items, with transcript): phones matched 0.970 -> 0.982, boundaries
#: paired 0.932 -> 0.955, frame accuracy 0.894 -> 0.900; 23 words gained a variant.
PRONUNCIATION_VARIANTS: tuple[str, ...] = ("en-us", "en-gb")

_VARIANTS_DONE: set[tuple[int, str]] = set()


def _add_variants(decs: list, key: str) -> None:
    """Adds espeak-ng's pronunciations of dictionary word `key` as alternatives ("key(2)", ...).

    pocketsphinx's alignment grammar includes a word's alternatives, so the search chooses the
    pronunciation that fits the audio. Done once per decoder and word (the dictionary keeps them).
    """
    dec = decs[0]
    if not PRONUNCIATION_VARIANTS or (id(dec), key) in _VARIANTS_DONE:
        return
    _VARIANTS_DONE.add((id(dec), key))
    known = set()
    slot = 1
    while True:
        name = key if slot == 1 else f"{key}({slot})"
        pron = _lookup(dec, name)
        if pron is None:
            break
        known.add(re.sub(r"\d", "", pron))
        slot += 1
    for voice in PRONUNCIATION_VARIANTS:
        try:
            phones = " ".join(p for p in g2p_arpabet(key, voice) if p in ARPABET)
        except Exception:  # espeak unavailable or the word unspeakable: the dictionary's stand
            continue
        if phones and phones not in known:
            for d in decs:
                try:
                    d.add_word(f"{key}({slot})", phones, True)
                except RuntimeError:  # this decoder has the entry already (pocketsphinx refuses duplicates)
                    pass
            known.add(phones)
            slot += 1


def _prepare_words(decs: list, transcript: str, language: str
                   ) -> tuple[list[_Word], list[str], list[str]]:
    """Transcript -> words with dictionary keys; adds espeak pronunciations for unknown words."""
    dec = decs[0]
    words: list[_Word] = []
    oov: list[str] = []
    notes: list[str] = []
    voice = "en-gb" if language.lower().replace("_", "-").startswith("en-gb") else "en-us"
    for token in _tokens(transcript):
        key = token.lower()
        pron = _lookup(dec, key)
        if pron:
            _add_variants(decs, key)
            words.append(_Word(token, [key], len(pron.split())))
            continue
        parts = [p for p in key.split("-") if p]
        if len(parts) > 1 and all(_lookup(dec, p) for p in parts):
            for part in parts:
                _add_variants(decs, part)
            words.append(_Word(token, parts, sum(len(_lookup(dec, p).split()) for p in parts)))
            continue
        phones = [p for p in g2p_arpabet(key.replace("-", " ").replace("_", " "), voice)
                  if p in ARPABET]
        if not phones:
            notes.append(f"transcript: {token!r} has no pronounceable letters; it was skipped.")
            continue
        safe = re.sub(r"[^\w'\-]", "_", key)
        if not safe.isascii():
            safe = "oov_" + safe.encode("utf-8").hex()
        # the decoders are shared: an earlier transcript (or an earlier part of a long one) may have
        # added this very word already, and pocketsphinx refuses to add a word twice
        if _lookup(dec, safe) is None:
            try:
                for d in decs:
                    d.add_word(safe, " ".join(phones), True)
            except RuntimeError:
                notes.append(f"transcript: {token!r} could not be added to the dictionary; it was skipped.")
                continue
        oov.append(token)
        words.append(_Word(token, [safe], len(phones)))
    return words, oov, notes


# --- decoding ----------------------------------------------------------------------------------


def _decode(dec, pcm: bytes) -> None:
    # pocketsphinx's noise tracking otherwise carries its estimate over from the previous audio:
    # the same noisy clip aligned after a clean one got different boundaries (measured). The
    # binding calls start_stream() deprecated and unnecessary; it still resets that estimate.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        dec.start_stream()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()


def _open_end_fsg(dec, keys: list[str], min_end: int):
    """A grammar: the word chain keys[0..], which may end after any word from min_end on."""
    n = len(keys)
    final = n + 1
    transitions = [(i, i + 1, 1.0, k) for i, k in enumerate(keys)]
    for i in range(max(min_end, 1), n + 1):
        transitions.append((i, final, 1.0))
    return dec.create_fsg("segment", 0, final, transitions)


def _phone_alignment(dec, pcm: bytes, offset_frames: int):
    """Second pass after a decode: (word entries, phone entries) with absolute frames."""
    dec.set_alignment()
    _decode(dec, pcm)
    al = dec.get_alignment()
    if al is None:
        raise RuntimeError("no alignment")
    ln = dec.logmath.log_to_ln
    words = []
    for w in al:
        # Scores come scaled down by 2**10 (pocketsphinx's SENSCR_SHIFT): undo it for nats.
        phones = [(p.name, offset_frames + p.start, p.duration, ln(p.score) * 1024.0) for p in w]
        words.append((w.name, offset_frames + w.start, w.duration, phones))
    return words


def _word_seg(dec) -> list[tuple[str, int, int, float]]:
    """First-pass words (name, start frame, end frame exclusive, ascore in nats), fillers kept."""
    ln = dec.logmath.log_to_ln
    return [(s.word, s.start_frame, s.end_frame + 1, ln(int(s.ascore)))
            for s in (dec.seg() or []) if s.word not in ("<s>", "</s>")]


_PHONE_WORDS: set[int] = set()


def _phone_pass_by_words(dec, pcm: bytes, offset_frames: int, seg):
    """Phone timings without the state-level pass: each phone aligned as a one-phone word.

    pocketsphinx's state-level alignment pass fails on ~1 in 6 synthetic utterances ("failed to
    stop utterance processing") while the word-level search succeeds; the word-level search over
    a chain of one-phone words gives phone boundaries of about the same accuracy.
    """
    if id(dec) not in _PHONE_WORDS:
        missing = [ph for ph in ARPABET if dec.lookup_word("ph_" + ph.lower()) is None]
        for i, ph in enumerate(missing):
            dec.add_word("ph_" + ph.lower(), ph, i == len(missing) - 1)
        _PHONE_WORDS.add(id(dec))
    words = [(name, s0, s1) for name, s0, s1, _ in seg if name not in _FILLERS
             and not name.startswith("<") and not name.startswith("[")]
    prons = [(_lookup(dec, name) or "AH").split() for name, _, _ in words]
    chain = ["ph_" + re.sub(r"\d", "", p).lower() for pron in prons for p in pron]
    dec.set_align_text(" ".join(chain))
    _decode(dec, pcm)
    if dec.hyp() is None:
        raise RuntimeError("phone search failed")
    got = [x for x in _word_seg(dec) if x[0].startswith("ph_")]
    if len(got) != len(chain):
        raise RuntimeError("phone search lost phones")
    out = []
    i = 0
    for (name, _, _), pron in zip(words, prons):
        # The align search reports no acoustic scores (0): None marks these phones unscored.
        plist = [(p[3:].upper(), offset_frames + s0, s1 - s0, None)
                 for p, s0, s1, _ in got[i: i + len(pron)]]
        i += len(pron)
        start = plist[0][1]
        out.append((name, start, plist[-1][1] + plist[-1][2] - start, plist))
    return out


def _is_filler(name: str) -> bool:
    return name in _FILLERS or name.startswith("<") or name.startswith("[") or name.startswith("+")


def _base_word(name: str) -> str:
    """"was(2)" -> "was": the dictionary key of an alternative pronunciation."""
    return re.sub(r"\(\d+\)$", "", name)


def _search_words(dec, pcm: bytes, keys: list[str]) -> None:
    """Word-level alignment search of exactly `keys`; RuntimeError unless it reached the end.

    pocketsphinx returns the best *partial* path when no path reaches the grammar's final state
    (more often the noisier the audio): that hypothesis lacks the last words and must not be
    taken for an alignment.
    """
    dec.set_align_text(" ".join(keys))
    _decode(dec, pcm)
    hyp = dec.hyp()
    if hyp is None:
        raise RuntimeError("alignment search failed")
    got = [w for w in hyp.hypstr.split() if not _is_filler(w)]
    if len(got) != len(keys):
        raise RuntimeError(f"alignment search ended after {len(got)} of {len(keys)} words")


def _align_segment(dec, pcm: bytes, keys: list[str], offset_frames: int, open_end: Optional[int]):
    """Aligns keys (or a prefix of at least open_end keys) to one segment.

    Returns (consumed word count, word entries) or raises RuntimeError when the search fails.
    """
    if open_end is None:
        _search_words(dec, pcm, keys)
        return len(keys), _phones(dec, pcm, offset_frames)
    fsg = _open_end_fsg(dec, keys, open_end)
    dec.add_fsg("segment", fsg)
    dec.activate_search("segment")
    _decode(dec, pcm)
    hyp = dec.hyp()
    if hyp is None:
        raise RuntimeError("segment search failed")
    consumed = len([w for w in hyp.hypstr.split() if not _is_filler(w)])
    if consumed == 0:
        raise RuntimeError("segment search found no words")
    # Re-align exactly the consumed words: the simple align search, then the phone pass.
    _search_words(dec, pcm, keys[:consumed])
    return consumed, _phones(dec, pcm, offset_frames)


def _phones(dec, pcm: bytes, offset_frames: int, depth: int = 0):
    """After a successful word-level search: phone entries, by the state-level pass if it works.

    pocketsphinx's state-level pass is constrained to the word boundaries of the word-level
    search and fails on some of them ("Failed to stop utterance processing"; about 1 utterance
    in 6 of synthetic speech, more under noise). Then the audio is cut at a word boundary near
    its middle (in a pause if there is one) and each part is searched and state-aligned on its
    own, down to SPLIT_DEPTH levels; only a part that still fails gets the one-phone-word pass.
    """
    seg = _word_seg(dec)
    if PHONE_PASS == "state":
        try:
            return _phone_alignment(dec, pcm, offset_frames)
        except RuntimeError:
            pass
        if depth < SPLIT_DEPTH:
            try:
                return _split_and_align(dec, pcm, offset_frames, seg, depth)
            except RuntimeError:
                pass
        if not _ALLOW_UNSCORED[0]:
            raise RuntimeError("state-level alignment failed")
        # the split searches replaced the decoder's hypothesis: search this part again
        _search_words(dec, pcm, [_base_word(w) for w, _, _, _ in seg if not _is_filler(w)])
    return _phone_pass_by_words(dec, pcm, offset_frames, seg)


#: Whether _phones may fall back to the unscored one-phone-word pass (set by _align_segment_any:
#: every decoder is tried for a scored alignment before any is allowed the unscored one).
_ALLOW_UNSCORED = [True]


#: How many times a part whose state-level pass failed may be halved (at word boundaries).
SPLIT_DEPTH = 3
SPLIT_PAD = 3
#: Cut points tried per split (best first).
SPLIT_TRIES = 3


def _clip_entries(entries, end: int):
    """Word/phone entries cut off at frame `end` (entries starting there or later dropped)."""
    out = []
    for name, start, dur, plist in entries:
        if start >= end:
            continue
        phones = [(ph, ps, min(pd, end - ps), sc) for ph, ps, pd, sc in plist if ps < end]
        out.append((name, start, min(dur, end - start), phones))
    return out


def _split_and_align(dec, pcm: bytes, offset_frames: int, seg, depth: int):
    """Cuts the audio at one word boundary of `seg` and aligns both parts separately."""
    n_frames = len(pcm) // 320
    words = [(name, s0, s1) for name, s0, s1, _ in seg if not _is_filler(name)]
    if len(words) < 2:
        raise RuntimeError("one word: nothing to split")
    candidates = []
    for k in range(1, len(words)):
        end_prev, start_next = words[k - 1][2], words[k][1]
        gap = start_next > end_prev  # a filler (pause) lies between the two words
        cut = (end_prev + start_next) // 2 if gap else start_next
        if 5 <= cut <= n_frames - 5:
            # pauses first, then the cuts nearest the middle
            candidates.append(((not gap, abs(cut - n_frames / 2)), k, cut))
    if not candidates:
        raise RuntimeError("no place to split")
    keys = [_base_word(name) for name, _, _ in words]
    others = [d for kind, d in _decoders.items() if kind.startswith("align") and d is not dec]
    error: Optional[Exception] = None
    for _, k, cut in sorted(candidates)[:SPLIT_TRIES]:
        out = []
        try:
            for part_keys, f0, f1 in ((keys[:k], 0, cut), (keys[k:], cut, None)):
                # The left part runs SPLIT_PAD frames past the cut: pocketsphinx's last frames
                # carry too little context for a word to end exactly there; its times are
                # clipped at the cut.
                part = pcm[f0 * 320: None if f1 is None else (f1 + SPLIT_PAD) * 320]
                # Each part: this decoder, then the others (other filler handling, beams).
                for i, d in enumerate([dec] + others):
                    try:
                        _search_words(d, part, part_keys)
                        got = _phones(d, part, offset_frames + f0, depth + 1)
                        break
                    except RuntimeError as exc:
                        if i == len(others):
                            raise
                out.extend(got if f1 is None else _clip_entries(got, offset_frames + f1))
            return out
        except RuntimeError as exc:
            error = exc
    raise RuntimeError(str(error))


#: How phone boundaries are found after the word-level search: "state" (pocketsphinx's
#: state-level pass, falling back to "words" when it fails) or "words" (one-phone words).
PHONE_PASS = "state"


def _align_segment_any(decs: list, pcm: bytes, keys: list[str], offset_frames: int,
                       open_end: Optional[int], expect: Optional[int] = None):
    """_align_segment with each decoder of decs in turn until one succeeds.

    When the open-ended search fails everywhere, the segment is aligned with a fixed word count:
    the estimate `expect`, then one and two words either side of it.
    """
    error: Optional[Exception] = None
    # First every decoder for a scored (state-level) alignment, then with the unscored
    # one-phone-word pass allowed.
    for allow in (False, True):
        _ALLOW_UNSCORED[0] = allow
        try:
            for dec in decs:
                try:
                    return _align_segment(dec, pcm, keys, offset_frames, open_end)
                except RuntimeError as exc:
                    error = exc
        finally:
            _ALLOW_UNSCORED[0] = True
    if open_end is not None and expect is not None:
        for delta in (0, -1, 1, -2, 2):
            count = expect + delta
            if not 1 <= count <= len(keys):
                continue
            for dec in decs:
                try:
                    return _align_segment(dec, pcm, keys[:count], offset_frames, None)
                except RuntimeError as exc:
                    error = exc
    raise RuntimeError(str(error))


def _even_split(keys: list[str], dec, start: int, end: int):
    """Fallback when the search fails: words share [start, end) frames by phone count."""
    prons = [(_lookup(dec, k) or "AH").split() for k in keys]
    total = sum(len(p) for p in prons) or 1
    per = max(end - start, 1) / total
    t = float(start)
    out = []
    for k, pron in zip(keys, prons):
        phones = []
        w0 = t
        for ph in pron:
            d = max(int(round(t + per)) - int(round(t)), 1)
            phones.append((ph, int(round(t)), d, FAILED_FRAME_SCORE * d))
            t += per
        out.append((k, int(round(w0)), max(int(round(t)) - int(round(w0)), 1), phones))
    return out


def _strip_stress(phone: str) -> str:
    p = re.sub(r"\d", "", phone.upper())
    return p if p in ARPABET else SILENCE


def _build_result(entries, word_objs: list[_Word], n_frames: int):
    """Turns pocketsphinx word/phone entries into WordTimings, contiguous phones and a score."""
    duration = n_frames * FRAME_S
    shift = BOUNDARY_SHIFT_S
    phones: list[PhonemeTiming] = []
    aligned_words = []  # (start_s, end_s) per aligned key, fillers skipped
    score_sum, score_frames = 0.0, 0
    for name, start, dur, plist in entries:
        for ph, ps, pd, sc in plist:
            if sc is not None:
                score_sum += sc
                score_frames += pd
        if name in _FILLERS or name.startswith("<") or name.startswith("["):
            continue
        aligned_words.append((min(start * FRAME_S + shift, duration),
                              min((start + dur) * FRAME_S + shift, duration)))
        for ph, ps, pd, _ in plist:
            s, e = min(ps * FRAME_S + shift, duration), min((ps + pd) * FRAME_S + shift, duration)
            label = _strip_stress(ph)
            if phones and phones[-1].end_s < s - 1e-9:
                _push(phones, SILENCE, phones[-1].end_s, s)
            elif not phones and s > 1e-9:
                _push(phones, SILENCE, 0.0, s)
            _push(phones, label, max(s, phones[-1].end_s if phones else 0.0), e)
    if not phones:
        phones = [PhonemeTiming(SILENCE, 0.0, duration)]
    elif phones[-1].end_s < duration - 1e-9:
        _push(phones, SILENCE, phones[-1].end_s, duration)
    phones[-1].end_s = max(phones[-1].end_s, duration)
    # Map aligned keys back to the transcript's words (a split hyphenation spans its parts).
    words: list[WordTiming] = []
    i = 0
    for w in word_objs:
        span = aligned_words[i: i + len(w.keys)]
        i += len(w.keys)
        if span:
            words.append(WordTiming(w.text, round(span[0][0], 4), round(span[-1][1], 4)))
    score = score_sum / score_frames if score_frames else None
    return words, phones, score


def _push(phones: list[PhonemeTiming], label: str, start: float, end: float) -> None:
    if end <= start + 1e-9:
        return
    if phones and phones[-1].phoneme == label == SILENCE:
        phones[-1].end_s = end
        return
    phones.append(PhonemeTiming(label, round(start, 4), round(end, 4)))


#: Boundaries between speech phones move onto the nearest clear spectral change (see
#: boundary_refine.py for what it gains and costs); None turns that off.
REFINE: Optional[RefineConfig] = RefineConfig()

#: Speech -> pause boundaries are moved back to where the speech energy falls to this many dB
#: above the pause's own noise floor (see _trim_speech_ends).
END_TRIM_DB = 6.0
#: At most this much is trimmed from a phone before a pause, and the phone keeps at least
#: END_KEEP_S (weak final fricatives can sink into noise: they must not vanish).
END_TRIM_MAX_S = 0.08
END_KEEP_S = 0.03


def _trim_speech_ends(phones: list[PhonemeTiming], pcm: np.ndarray) -> None:
    """Moves each speech -> pause boundary back to where the speech energy drops off.

    pocketsphinx lets the last phone before a pause run on into it (its models of a phone's last
    state also fit the decaying tail and the silence after it): measured on our own Speak
    sentences, such boundaries came out a median 22-30 ms late while all others were unbiased.
    The acoustic evidence is direct: after the speech ends the energy stays at the noise floor of
    the pause. Energy is measured in 10 ms windows every 5 ms; the floor is the pause's 30th
    percentile (pauses of 60 ms or more; shorter ones are left alone). The boundary moves back
    over the trailing windows that stay within END_TRIM_DB of the floor, never forward.
    """
    hop, win = 80, 160
    n = (len(pcm) - win) // hop + 1
    if n <= 0:
        return
    x = pcm.astype(np.float32) / 32768.0
    sq = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    starts = np.arange(n) * hop
    db = 10.0 * np.log10((sq[starts + win] - sq[starts]) / win + 1e-12)
    centre = (starts + win / 2) / SAMPLE_RATE  # seconds
    for i in range(len(phones) - 1):
        cur, sil = phones[i], phones[i + 1]
        if cur.phoneme == SILENCE or sil.phoneme != SILENCE or sil.end_s - sil.start_s < 0.06:
            continue
        in_sil = (centre >= sil.start_s + 0.01) & (centre <= sil.end_s - 0.01)
        if in_sil.sum() < 3:
            continue
        threshold = np.percentile(db[in_sil], 30) + END_TRIM_DB
        lo = max(cur.start_s + END_KEEP_S, cur.end_s - END_TRIM_MAX_S)
        if lo >= cur.end_s:
            continue
        idx = np.flatnonzero((centre >= lo) & (centre < cur.end_s))
        if len(idx) == 0:
            continue
        loud = idx[db[idx] > threshold]
        if len(loud) and loud[-1] == idx[-1]:
            continue  # loud up to the boundary: nothing to trim
        # new end: just after the last loud window's centre (or lo if none is loud)
        new_end = (centre[loud[-1]] + hop / 2 / SAMPLE_RATE) if len(loud) else lo
        new_end = round(max(lo, min(new_end, cur.end_s)), 4)
        if new_end < cur.end_s:
            cur.end_s = new_end
            sil.start_s = new_end


def _check_language(language: str) -> str:
    if not isinstance(language, str) or not supports_language(language):
        raise InputError("language", f"{language!r} is not covered: the offline speech model here "
                         "knows English only",
                         "Use an English code (en, en-us, en-gb) or an acoustic method for other "
                         "languages.")
    return language


def align(audio: AudioClip, transcript: str, *, language: str = "en-us",
          progress: Optional[ProgressFn] = None) -> Alignment:
    """Forced alignment of `transcript` to `audio` (English).

    Args:
        audio: speech, any sample rate, mono or stereo, at least 0.2 s.
        transcript: what is said. Punctuation is ignored; numbers and unknown words are
            pronounced by espeak-ng's rules.
        language: an English code; others raise InputError("language").
        progress: progress(done_segments, total_segments).

    Returns:
        Alignment (words, contiguous ARPAbet phones, score, oov_words, notes).
    """
    _check_language(language)
    if not isinstance(transcript, str) or not _tokens(transcript):
        raise InputError("transcript", "it has no words",
                         "Give the words spoken in the audio, or leave it out to use recognition.")
    pcm = _prepare_audio(audio, denoise=True)
    n_frames = int(np.ceil(len(pcm) / 160))
    with _LOCK:
        decs = [_decoder(kind) for kind in _ALIGN_KINDS]
        words, oov, notes = _prepare_words(decs, transcript, language)
        if not words:
            raise InputError("transcript", "none of its words can be pronounced",
                             "Give the words spoken in the audio in English spelling.")
        entries = _align_words(decs, pcm, words, notes, progress)
    out_words, phones, score = _build_result(entries, words, n_frames)
    duration = len(pcm) / float(SAMPLE_RATE)
    if REFINE is not None:
        refine_boundaries(phones, pcm, SAMPLE_RATE, REFINE)
    if END_TRIM_DB is not None:
        _trim_speech_ends(phones, pcm)
    loop_agreement = None
    if score is None:
        # The fallback phone search gives no acoustic score: check the transcript another way.
        loop = _recognize_phones(pcm, _segments(pcm), duration, None)
        loop_agreement = _viseme_class_agreement(phones, loop.phones, duration)
        score = 0.0
    if phones:
        phones[-1].end_s = round(duration, 4)
    if oov:
        notes.insert(0, "transcript: not in the dictionary, pronounced by espeak-ng's rules: "
                     + ", ".join(oov[:20]) + (" ..." if len(oov) > 20 else ""))
    return Alignment(out_words, phones, float(score), oov, notes, duration, loop_agreement)


def _align_words(decs: list, pcm: np.ndarray, words: list[_Word], notes: list[str],
                 progress: Optional[ProgressFn]):
    segments = _segments(pcm)
    keys = [k for w in words for k in w.keys]
    weights = np.array([max(w.phones, 1) / len(w.keys) for w in words for _ in w.keys], float)
    mask = _speech_mask(pcm) if len(segments) > 1 else None
    entries = []
    pos = 0
    for si, (f0, f1) in enumerate(segments):
        seg_pcm = pcm[f0 * 160: f1 * 160].tobytes()
        last = si == len(segments) - 1
        remaining = keys[pos:]
        if not remaining:
            break
        if last:
            try:
                _, got = _align_segment_any(decs, seg_pcm, remaining, f0, None)
            except RuntimeError:
                notes.append(f"alignment: the search failed in {f0 * FRAME_S:.1f}-{f1 * FRAME_S:.1f} s; "
                             "words there were spread evenly.")
                got = _even_split(remaining, decs[0], f0, f1)
            entries.extend(got)
            pos = len(keys)
        else:
            # Expected words: this segment's share of the remaining speech, by phone weight.
            speech_here = max(int(mask[f0:f1].sum()), 1)
            speech_left = max(int(mask[f0:].sum()), 1)
            share = speech_here / speech_left
            cum = np.cumsum(weights[pos:]) / max(weights[pos:].sum(), 1e-9)
            expect = int(np.searchsorted(cum, share)) + 1
            expect = min(max(expect, 1), len(remaining))
            hi = min(len(remaining), expect + WORD_SLACK)
            lo = max(1, expect - WORD_SLACK)
            try:
                consumed, got = _align_segment_any(decs, seg_pcm, remaining[:hi], f0, lo, expect)
            except RuntimeError:
                notes.append(f"alignment: the search failed in {f0 * FRAME_S:.1f}-{f1 * FRAME_S:.1f} s; "
                             "words there were spread evenly.")
                consumed = expect
                got = _even_split(remaining[:consumed], decs[0], f0, f1)
            entries.extend(got)
            pos += consumed
        if progress is not None:
            progress(si + 1, len(segments))
    return entries


# --- recognition -------------------------------------------------------------------------------

# Measured on 20 Speak sentences (en-us, 175 wpm), against Speak's exact phones (viseme-class
# agreement per 10 ms frame; phone error rate after edit-distance matching; boundary error of
# the phones that matched):
#   "words":  LM decode (en-us.lm.bin) then forced alignment of the hypothesis:
#             frame class agreement 0.647, PER ~0.41, boundaries median 8.5 ms / p90 30.8 ms,
#             0.58 s CPU per s of audio (the LM search dominates).
#   "phones": phone loop (allphone, en-us-phone.lm.bin): agreement 0.600, PER ~0.50,
#             boundaries 8.4 / 29.4 ms, 0.067 s CPU per s.
#   (With the transcript, forced alignment: agreement 0.855, PER 0.026, 8.6 / 23.5 ms.)
# "words" is the better of the two and the default.
RECOGNITION_METHOD = "words"


def recognize(audio: AudioClip, *, language: str = "en-us",
              progress: Optional[ProgressFn] = None, method: Optional[str] = None) -> Recognition:
    """Offline recognition without a transcript (English), then alignment of what was heard.

    Args:
        audio: speech, any sample rate, mono or stereo, at least 0.2 s.
        language: an English code; others raise InputError("language").
        progress: progress(done, total).
        method: "words" (LM decode, then forced alignment of the hypothesis) or "phones" (phone
            loop); None: RECOGNITION_METHOD.
    """
    _check_language(language)
    method = method or RECOGNITION_METHOD
    if method not in ("words", "phones"):
        raise InputError("method", f"unknown recognition method {method!r}", "Use 'words' or 'phones'.")
    pcm = _prepare_audio(audio)
    duration = len(pcm) / float(SAMPLE_RATE)
    segments = _segments(pcm)
    if method == "phones":
        return _recognize_phones(pcm, segments, duration, progress)
    hyp_words: list[str] = []
    with _LOCK:
        dec = _decoder("lm")
        for si, (f0, f1) in enumerate(segments):
            _decode(dec, pcm[f0 * 160: f1 * 160].tobytes())
            for s in dec.seg() or []:
                w = re.sub(r"\(\d+\)$", "", s.word)
                if w in _FILLERS or w.startswith("<") or w.startswith("["):
                    continue
                hyp_words.append(w)
            if progress is not None:
                progress(si + 1, len(segments) * 2)
    note = "recognised words with the en-us language model, then forced-aligned them"
    if not hyp_words:
        return Recognition([], [PhonemeTiming(SILENCE, 0.0, duration)], "", float("-inf"),
                           note, ["recognition: no words were heard"], duration)
    text = " ".join(hyp_words)
    al = align(audio, text, language=language)
    return Recognition(al.words, al.phones, text, al.score, note, al.notes, duration)


def _recognize_phones(pcm: np.ndarray, segments, duration: float,
                      progress: Optional[ProgressFn]) -> Recognition:
    phones: list[PhonemeTiming] = []
    score_sum, score_frames = 0.0, 0
    with _LOCK:
        dec = _decoder("phone")
        ln = dec.logmath.log_to_ln
        for si, (f0, f1) in enumerate(segments):
            _decode(dec, pcm[f0 * 160: f1 * 160].tobytes())
            for s in dec.seg() or []:
                s0 = min((f0 + s.start_frame) * FRAME_S + BOUNDARY_SHIFT_S, duration)
                s1 = min((f0 + s.end_frame + 1) * FRAME_S + BOUNDARY_SHIFT_S, duration)
                label = _strip_stress(s.word)
                if phones and phones[-1].end_s < s0 - 1e-9:
                    _push(phones, SILENCE, phones[-1].end_s, s0)
                _push(phones, label, max(s0, phones[-1].end_s if phones else 0.0), s1)
                score_sum += ln(int(s.ascore)) if s.ascore else 0.0
                score_frames += s.end_frame + 1 - s.start_frame
            if progress is not None:
                progress(si + 1, len(segments))
    if not phones:
        phones = [PhonemeTiming(SILENCE, 0.0, duration)]
    elif phones[0].start_s > 0:
        phones.insert(0, PhonemeTiming(SILENCE, 0.0, phones[0].start_s))
    if phones[-1].end_s < duration:
        _push(phones, SILENCE, phones[-1].end_s, duration)
    phones[-1].end_s = round(duration, 4)
    return Recognition([], phones, "", score_sum / score_frames if score_frames else float("-inf"),
                       "phone-loop recognition (en-us phone language model); no words",
                       [], duration)
