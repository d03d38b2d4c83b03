"""Ground truth for the VisemeAligner benchmark: espeak-ng speech with its exact phoneme times.

Speak (espeak-ng) reports, to the sample, where each phoneme of the audio it returns starts, so
synthesised speech is labelled speech for free. This module turns a list of sentences into items:
the audio (clean or with noise added at a given SNR), the transcript, and the ground-truth phones
in the product's phone set (ARPAbet without stress, plus "SIL"), from the same synthesis run
(espeak-ng is not bit-reproducible, so audio and labels must never be mixed across runs).

One correction is made to espeak's labels, because the benchmark compares against phone
boundaries in the ARPAbet convention (the CMU/pocketsphinx one, and the one lip sync needs):
espeak-ng marks a stop or affricate (p t k b d g tS dZ) at its *release* and renders the closure
before it as exact digital silence, counted in the previous phoneme's time. Lips are closed (P, B)
and the tongue is at the stop (T, K) during that silence, and an aligner puts the stop's start at
the closure's start. So the stop's start is moved back to the start of that silence run (within
the previous phone; after a pause, by the item's typical closure length). The breathy variants
(en-us+f3, en-gb+f2) leave a noise floor in the closure instead of digital silence: there a
voiceless stop's closure is the run of 2.5 ms windows 28 dB under the utterance's vowel level.
`correct_stop_closures` does this and says how much it moved; `CorpusItem.raw_phones` keeps
espeak's labels unchanged. The times are laid out from espeak's events here (only the product's
mnemonic -> ARPAbet label table is reused), not by `phoneset.convert_speech_timings`, which
estimates stop closures from the speaking rate: the code under test must not define the truth.

Noise: white or pink, from a seeded RNG (seed from the item id), scaled to an SNR measured against
the power of the speech samples (digital-silence samples excluded).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

from talkinghead.pipeline.core.audio import AudioClip
from talkinghead.pipeline.lipsync.phoneset import espeak_to_arpabet
from talkinghead.pipeline.speech.timing import PhonemeTiming, SpeechTimings

SILENCE = "SIL"

#: ARPAbet stops and affricates: espeak-ng renders their closure as silence before the event.
STOPS = frozenset({"P", "B", "T", "D", "K", "G", "CH", "JH"})
#: Voiceless ones: their closure is silent (voiced stops carry a voice bar inside their own span).
VOICELESS_STOPS = frozenset({"P", "T", "K", "CH"})
#: Phones during which the lips close.
BILABIALS = frozenset({"P", "B", "M"})

#: 40 distinct English sentences: many P/B/M, F/V, rounded vowels; short and long.
SENTENCES: tuple[str, ...] = (
    "Bob made a big map of the moon.",
    "Peter picked a peck of pickled peppers.",
    "My mom baked a blueberry pie for the bake sale.",
    "Five very brave foxes leaped over the fence.",
    "Who knew the blue balloon would float to the roof?",
    "Please pass the pepper and the butter, Bob.",
    "We saw two ships move slowly through the foggy harbour.",
    "Maybe a warm bowl of soup will help.",
    "The quick brown fox jumps over the lazy dog.",
    "Few people know that the first computer bug was an actual moth.",
    "Put the pot on the top shelf, please.",
    "Vivian found a violin in the vault.",
    "Bring me a bamboo umbrella from the boat.",
    "Good food and cool music make people happy.",
    "My phone buzzed twice, but by the time I looked, the message was gone.",
    "Seven shiny ships sailed slowly through the misty morning harbour.",
    "Moving boxes by bus is both boring and expensive.",
    "Oh no, the yellow window is open.",
    "Stop!",
    "Thank you very much.",
    "Where were you when the wolf woke up?",
    "The bubble popped before the baby could grab it.",
    "Fresh fish from the river feeds five families every week.",
    "Judge the chess match by the number of moves.",
    "Ruth threw the blue shoe through the room.",
    "A big black bear sat on a big black bug.",
    "Mumbling members mumble more than most.",
    "Could you move the map a bit to the left?",
    "Phil values his vivid photographs of the valley.",
    "Our hotel overlooked a beautiful beach with pale pink sand.",
    "Boom!",
    "Perhaps we should pause here for a moment.",
    "The smooth blue pool was full of cool water.",
    "Every evening, my brother plays the bass in a small band.",
    "I am happy, but maybe a bit tired.",
    "Old photos of the moon landing remain very popular.",
    "Puppies and kittens love to play with paper balls.",
    "Wave goodbye to the woman by the boat.",
    "Beneath the bridge, a fat frog jumped from a mossy stone into the bubbling brook, "
    "while twelve pale moths flew above the water.",
    "Vote for me, and I promise a movie every Friday.",
)

#: Voices: espeak English accents and variants (resolve_voice checks them).
VOICES: tuple[str, ...] = ("en-us", "en-gb", "en-us+f3", "en-us+m3", "en-gb+f2", "en-us+m1")
#: Speaking rates in words per minute, 130 to 220.
RATES: tuple[int, ...] = (130, 150, 175, 200, 220)

#: Noise conditions: (name, colour or None, SNR dB or None).
NOISE_DEFAULT: tuple[tuple[str, Optional[str], Optional[float]], ...] = (
    ("clean", None, None),
    ("white 20 dB", "white", 20.0),
    ("pink 10 dB", "pink", 10.0),
)
NOISE_FULL: tuple[tuple[str, Optional[str], Optional[float]], ...] = (
    ("clean", None, None),
    ("white 20 dB", "white", 20.0),
    ("pink 20 dB", "pink", 20.0),
    ("white 10 dB", "white", 10.0),
    ("pink 10 dB", "pink", 10.0),
)


@dataclass
class CorpusItem:
    """One labelled utterance.

    Attributes:
        item_id: stable name, e.g. "s07/en-gb/175/pink 10 dB".
        text: the sentence (the transcript).
        voice, rate_wpm: how it was spoken.
        noise: name of the noise condition; snr_db None when clean.
        audio: mono AudioClip at espeak's rate, noise included.
        timings: Speak's raw timings of this audio (espeak mnemonics).
        phones: ground truth, ARPAbet + SIL, contiguous over 0..duration, stop closures corrected.
        raw_phones: espeak's events as ARPAbet, times unchanged (stops start at their release).
        exact_boundaries: instants (s) that are true phone boundaries, not even splits of one
            espeak phoneme that maps to two ARPAbet phones ("aI@" -> AY ER); boundary errors are
            measured only at these.
        closure_shift_s: how far each corrected stop moved back, seconds.
    """

    item_id: str
    text: str
    voice: str
    rate_wpm: int
    noise: str
    snr_db: Optional[float]
    audio: AudioClip
    timings: SpeechTimings
    phones: list[PhonemeTiming]
    raw_phones: list[PhonemeTiming]
    exact_boundaries: list[float] = field(default_factory=list)
    closure_shift_s: list[float] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.audio.duration_s


# --- noise -----------------------------------------------------------------------------------


def seed_of(name: str) -> int:
    """A stable 32-bit seed from a string (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode("utf-8"))


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise with a 1/f power spectrum (FFT shaping of white noise)."""
    if n <= 0:
        return np.zeros(0, np.float64)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.shape[0], dtype=np.float64)
    f[0] = 1.0
    spectrum /= np.sqrt(f)
    spectrum[0] = 0.0
    out = np.fft.irfft(spectrum, n)
    return out / (np.std(out) + 1e-12)


def speech_power(samples: np.ndarray) -> float:
    """Mean power of the samples that are not digital silence."""
    x = np.asarray(samples, np.float64)
    active = x[np.abs(x) > 1e-6]
    return float(np.mean(active ** 2)) if active.size else 0.0


def add_noise(samples: np.ndarray, snr_db: float, colour: str, seed: int) -> np.ndarray:
    """samples + noise at `snr_db` below the speech power; float32, clipped to -1..1."""
    x = np.asarray(samples, np.float64)
    rng = np.random.default_rng(seed)
    if colour == "white":
        noise = rng.standard_normal(x.shape[0])
    elif colour == "pink":
        noise = pink_noise(x.shape[0], rng)
    else:
        raise ValueError(f"unknown noise colour {colour!r}")
    power = speech_power(x)
    noise *= np.sqrt(power / (10.0 ** (snr_db / 10.0)))
    return np.clip(x + noise, -1.0, 1.0).astype(np.float32)


# --- ground truth from espeak's events ------------------------------------------------------


def espeak_events_to_phones(timings: SpeechTimings) -> list[PhonemeTiming]:
    """espeak-ng's phoneme events -> ARPAbet + SIL, contiguous over 0..duration, times as espeak
    reports them.

    Only the label mapping of the product is reused (`phoneset.espeak_to_arpabet`); the times are
    laid out here, independently of `phoneset.convert_speech_timings` (which also estimates stop
    closures from the speaking rate: the thing under test must not define its own truth). One
    mnemonic mapping to two phones ("aI@" -> AY ER) has its time split evenly (not an exact
    boundary); a phone espeak reports with no duration takes the last 60 ms (at most half) of the
    phone before (not an exact boundary); a modifier without a phone lengthens the phone before;
    pauses and gaps are SIL.
    """
    duration = max(float(timings.duration_s), max((p.end_s for p in timings.phonemes), default=0.0))
    out: list[PhonemeTiming] = []

    def put(ph: str, start: float, end: float) -> None:
        if end <= start:
            return
        if out and out[-1].end_s < start - 1e-9:
            put(SILENCE, out[-1].end_s, start)
        elif not out and start > 1e-9:
            put(SILENCE, 0.0, start)
        if out and ph == SILENCE and out[-1].phoneme == SILENCE:
            out[-1].end_s = max(out[-1].end_s, end)
            return
        out.append(PhonemeTiming(ph, start, end))

    for p in sorted(timings.phonemes, key=lambda p: p.start_s):
        start, end = max(0.0, float(p.start_s)), min(float(p.end_s), duration)
        if out:
            start = max(start, out[-1].end_s)
        labels = espeak_to_arpabet(p.phoneme)
        if end <= start:
            if labels and labels != [SILENCE] and out and out[-1].phoneme != SILENCE:
                # espeak reports some phones with no time of their own (a final "l" at the same
                # sample as the pause after it): it is inside the phone before; give it that
                # phone's last part (not an exact boundary).
                last = out[-1]
                take = min(0.06, 0.5 * (last.end_s - last.start_s))
                last.end_s -= take
                for i, ph in enumerate(labels):
                    out.append(PhonemeTiming(ph, last.end_s + i * take / len(labels),
                                             last.end_s + (i + 1) * take / len(labels)))
            continue
        if not labels:
            if out and abs(out[-1].end_s - start) < 1e-6:
                out[-1].end_s = end
            else:
                put(SILENCE, start, end)
            continue
        step = (end - start) / len(labels)
        for i, ph in enumerate(labels):
            put(ph, start + i * step, end if i == len(labels) - 1 else start + (i + 1) * step)
    if not out:
        return [PhonemeTiming(SILENCE, 0.0, duration)] if duration > 0 else []
    if out[-1].end_s < duration - 1e-9:
        put(SILENCE, out[-1].end_s, duration)
    return out


# --- ground-truth correction -----------------------------------------------------------------


def zero_run_before(samples: np.ndarray, index: int, threshold: float = 1e-6) -> int:
    """Length in samples of the run of |x| < threshold that ends just before `index`."""
    j = min(max(int(index), 0), len(samples))
    start = j
    while start > 0 and abs(samples[start - 1]) < threshold:
        start -= 1
    return j - start


def quiet_run_before(samples: np.ndarray, index: int, threshold_rms: float, hop: int, max_len: int) -> int:
    """Length in samples (a multiple of `hop`) of the run of hop-long windows with RMS below
    `threshold_rms` that ends just before `index`, at most `max_len`."""
    j = min(max(int(index), 0), len(samples))
    n = 0
    while n + hop <= min(j, max_len):
        seg = np.asarray(samples[j - n - hop:j - n], np.float64)
        if np.sqrt(np.mean(seg ** 2)) >= threshold_rms:
            break
        n += hop
    return n


def speech_level_rms(samples: np.ndarray, hop: int) -> float:
    """95th percentile of the RMS of hop-long windows: the loud-vowel level of an utterance."""
    x = np.asarray(samples, np.float64)
    n = len(x) // hop
    if n == 0:
        return 0.0
    return float(np.percentile(np.sqrt(np.mean(x[:n * hop].reshape(n, hop) ** 2, axis=1)), 95))


def closure_run_before(samples: np.ndarray, index: int, sample_rate: int, level_rms: float,
                       max_run_s: float = 0.2, min_zero_s: float = 0.005, below_db: float = 28.0,
                       voiceless: bool = True) -> int:
    """Samples of stop closure just before `index`.

    Most espeak voices render the closure as exact digital silence: that run, to the sample. The
    breathy variants (en-us+f3, en-gb+f2 ...) leave a noise floor in it (-45..-75 dBFS): there,
    for a voiceless stop, the closure is the run of 2.5 ms windows more than `below_db` under the
    utterance's vowel level. A voiced stop takes only a digital-silence run (its voiced closure
    lies inside its own span; a quiet run before it is a nasal murmur or similar).
    """
    zero = zero_run_before(samples, index)
    if zero >= min_zero_s * sample_rate or not voiceless:
        return zero
    hop = max(1, int(round(0.0025 * sample_rate)))
    return quiet_run_before(samples, index, level_rms * 10 ** (-below_db / 20), hop, int(max_run_s * sample_rate))


def correct_stop_closures(
    phones: list[PhonemeTiming],
    samples: np.ndarray,
    sample_rate: int,
    *,
    min_run_s: float = 0.005,
    max_run_s: float = 0.1,
    min_prev_s: float = 0.01,
) -> tuple[list[PhonemeTiming], list[float]]:
    """Moves each stop's start back over the closure espeak renders before it (see
    `closure_run_before`).

    Returns (new phones, shifts in seconds). The phone before a moved stop is shortened (kept at
    least `min_prev_s`); a SIL before it is shortened likewise. After a pause the silence run is
    the pause too, so the stop gets the item's typical closure (median of the runs after speech,
    else 50 ms) instead of the whole run.
    """
    out = [PhonemeTiming(p.phoneme, p.start_s, p.end_s) for p in phones]
    level = speech_level_rms(samples, max(1, int(round(0.0025 * sample_rate))))
    runs = []
    for i, p in enumerate(out):
        if p.phoneme in STOPS and i > 0:
            run_s = closure_run_before(samples, round(p.start_s * sample_rate), sample_rate, level,
                                       voiceless=p.phoneme in VOICELESS_STOPS) / sample_rate
            runs.append((i, run_s))
    typical = [r for i, r in runs if min_run_s <= r <= max_run_s and out[i - 1].phoneme != SILENCE]
    typical_s = float(np.median(typical)) if typical else 0.05
    shifts = []
    for i, run_s in runs:
        if run_s < min_run_s:
            continue
        prev = out[i - 1]
        if prev.phoneme == SILENCE:
            shift = min(run_s, typical_s)
        else:
            shift = min(run_s, max_run_s)
        new_start = max(out[i].start_s - shift, prev.start_s + min_prev_s)
        if new_start >= out[i].start_s:
            continue
        shifts.append(out[i].start_s - new_start)
        prev.end_s = new_start
        out[i].start_s = new_start
    return out, shifts


def exact_boundaries(timings: SpeechTimings, phones: list[PhonemeTiming], raw: list[PhonemeTiming]) -> list[float]:
    """Boundaries of `phones` that are real espeak event times (or corrected stop starts)."""
    events = {round(p.start_s, 6) for p in timings.phonemes} | {round(p.end_s, 6) for p in timings.phonemes}
    raw_starts = {round(p.start_s, 6) for p in raw}
    out = []
    for k in range(1, len(phones)):
        t = round(phones[k].start_s, 6)
        if t in events or (phones[k].phoneme in STOPS and t not in raw_starts):
            out.append(phones[k].start_s)
    return out


# --- building --------------------------------------------------------------------------------


@dataclass
class Utterance:
    """One synthesis: the clean audio and its labels, before any noise."""

    key: str
    text: str
    voice: str
    rate_wpm: int
    audio: AudioClip
    timings: SpeechTimings
    phones: list[PhonemeTiming]
    raw_phones: list[PhonemeTiming]
    exact_boundaries: list[float]
    closure_shift_s: list[float]


def synthesize(key: str, text: str, voice: str, rate_wpm: int) -> Utterance:
    from talkinghead.pipeline.speech.speak import SpeakConfig, speak

    spoken = speak(text, SpeakConfig(voice=voice, rate_wpm=rate_wpm))
    samples = spoken.audio.samples
    mono = samples.mean(axis=0) if samples.shape[0] > 1 else samples[0]
    audio = AudioClip(np.ascontiguousarray(mono[None, :], dtype=np.float32), spoken.audio.sample_rate)
    raw = espeak_events_to_phones(spoken.timings)
    phones, shifts = correct_stop_closures(raw, mono, audio.sample_rate)
    return Utterance(key, text, voice, rate_wpm, audio, spoken.timings, phones, raw,
                     exact_boundaries(spoken.timings, phones, raw), shifts)


def plan(full: bool = False, sentences: Iterable[str] = SENTENCES) -> list[tuple[str, str, str, int]]:
    """(key, text, voice, rate) for each synthesis.

    Default: each sentence once, voices and rates cycled so every voice and every rate occurs
    (co-prime cycle lengths, so the combinations vary). Full: each sentence in three voices at
    three rates spread over 130..220.
    """
    sentences = list(sentences)
    out = []
    if not full:
        for i, text in enumerate(sentences):
            voice = VOICES[i % len(VOICES)]
            rate = RATES[(i * 2 + i // len(RATES)) % len(RATES)]
            out.append((f"s{i:02d}/{voice}/{rate}", text, voice, rate))
        return out
    for i, text in enumerate(sentences):
        for j in range(3):
            voice = VOICES[(i + 2 * j) % len(VOICES)]
            rate = (130, 175, 220)[(i + j) % 3]
            out.append((f"s{i:02d}/{voice}/{rate}", text, voice, rate))
    return out


def with_noise(u: Utterance, noise: str, colour: Optional[str], snr_db: Optional[float]) -> CorpusItem:
    item_id = f"{u.key}/{noise}"
    audio = u.audio
    if colour is not None and snr_db is not None:
        audio = AudioClip(add_noise(u.audio.samples[0], snr_db, colour, seed_of(item_id))[None, :],
                          u.audio.sample_rate)
    return CorpusItem(item_id, u.text, u.voice, u.rate_wpm, noise, snr_db, audio, u.timings,
                      u.phones, u.raw_phones, u.exact_boundaries, u.closure_shift_s)


def build_corpus(full: bool = False, limit: Optional[int] = None) -> tuple[list[Utterance], list[CorpusItem]]:
    """Synthesises the set and adds the noise conditions. Returns (utterances, items)."""
    specs = plan(full)
    if limit is not None:
        specs = specs[:limit]
    utterances = [synthesize(*spec) for spec in specs]
    conditions = NOISE_FULL if full else NOISE_DEFAULT
    items = [with_noise(u, *cond) for cond in conditions for u in utterances]
    return utterances, items
