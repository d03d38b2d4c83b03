"""Speak: script text -> speech audio + the exact phoneme and word timings of that audio.

Uses espeak-ng (shipped by the `espeakng-loader` wheel, driven through `espeak.py`). The
synthesiser reports where each phoneme and word starts, to the sample, so the timings here are
not estimates: they describe the very audio returned with them (espeak-ng is not bit-reproducible
run to run, so audio and timings must always come from the same run, as they do here).

Three entry points, from low to high level:

- `iter_speech(script, config)` streams the script block by block (sentences, bounded in length);
  memory stays at one block however long the script is.
- `speak(script, config)` collects the stream into one `SpokenScript` (audio in memory).
- `speak_to_wav(script, path, config)` streams into a 16-bit WAV file written atomically: the long
  script path of the CLI.
"""

from __future__ import annotations

import functools
import os
import re
import tempfile
import unicodedata
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from ..core.audio import AudioClip
from ..core.errors import InputError
from . import espeak
from .timing import PhonemeTiming, SpeechTimings, WordTiming

RATE_WPM_RANGE = (80, 450)  # espeak-ng's own limits for espeakRATE
PITCH_RANGE = (0, 99)

# Longest text given to espeak in one call. Sentences longer than this are cut at a clause or word
# boundary; it bounds the audio held in memory at once (~1000 characters are ~60 s at 175 wpm).
MAX_BLOCK_CHARS = 1000

ProgressFn = Callable[[int, int], None]


@dataclass
class Voice:
    """A voice espeak-ng can speak with.

    Attributes:
        name: human name, e.g. "English (America)".
        identifier: espeak's voice file, e.g. "gmw/en-US"; accepted as `SpeakConfig.voice`.
        languages: language codes this voice speaks, its own first, e.g. ["en-us", "en"]; each
            is accepted as `SpeakConfig.voice` too.
        priorities: espeak's priority of each language (lower = better match for that code).
    """

    name: str
    identifier: str
    languages: list[str]
    priorities: list[int] = field(default_factory=list)


@dataclass
class SpeakConfig:
    """How to speak.

    Attributes:
        voice: a language code ("en-us", "de", "fr"), a voice identifier ("gmw/en-US") or name
            ("English (America)"), optionally with an espeak variant ("en-us+f3").
        rate_wpm: speaking rate in words per minute, 80..450.
        pitch: base pitch on espeak's scale, 0 (low) .. 99 (high); 50 is the voice's default.
    """

    voice: str = "en-us"
    rate_wpm: int = 175
    pitch: int = 50

    def __post_init__(self) -> None:
        self.rate_wpm = _checked_int("rate_wpm", self.rate_wpm, *RATE_WPM_RANGE, "words per minute")
        self.pitch = _checked_int("pitch", self.pitch, *PITCH_RANGE, "on espeak's 0-99 scale")
        if not isinstance(self.voice, str) or not self.voice.strip():
            raise InputError("voice", f"expected a voice name such as 'en-us', got {self.voice!r}",
                             "Give a language code (en-us, de, fr) or a name from list_voices().")


@dataclass
class SpeechChunk:
    """One block of the script, spoken.

    Attributes:
        samples: float32 array of shape [num_samples], mono, in -1..1, at `sample_rate`.
        sample_rate: Hz (espeak-ng's rate, 22050).
        start_sample: index of this chunk's first sample in the whole script's audio.
        text: the block of the script this chunk speaks.
        phonemes: timings in ABSOLUTE seconds from the start of the whole script's audio.
        words: timings in ABSOLUTE seconds from the start of the whole script's audio.
        text_end: characters of the (cleaned) script consumed up to the end of this chunk.
    """

    samples: np.ndarray
    sample_rate: int
    start_sample: int
    text: str
    phonemes: list[PhonemeTiming]
    words: list[WordTiming]
    text_end: int = 0

    @property
    def start_s(self) -> float:
        return self.start_sample / float(self.sample_rate)

    @property
    def end_s(self) -> float:
        return (self.start_sample + len(self.samples)) / float(self.sample_rate)


@dataclass
class SpokenScript:
    """A whole script, spoken.

    Attributes:
        audio: mono AudioClip, samples float32 of shape [1, num_samples].
        timings: phoneme and word timings of `audio` (seconds from its first sample).
        notes: things the user should know (characters skipped, ...); empty when all went plainly.
    """

    audio: AudioClip
    timings: SpeechTimings
    notes: list[str] = field(default_factory=list)


# --- voices ---------------------------------------------------------------------------------


def list_voices() -> list[Voice]:
    """The usable voices of the bundled espeak-ng, sorted by identifier.

    Voices whose pronunciation dictionary the wheel does not ship (a few "testing" languages)
    are left out: espeak would read them with the wrong rules and complain on stderr.
    """
    return [v for v in _all_voices() if not _missing_dictionary(v.identifier)]


def _all_voices() -> list[Voice]:
    # Fresh objects each call: callers may mutate them; the scan itself is cached.
    return [Voice(v.name, v.identifier, list(v.languages), list(v.priorities))
            for v in _scan_voices()]


# espeak_ListVoices reads every voice file on each call, and the data folder never changes while
# the process runs: scan once.
@functools.lru_cache(maxsize=1)
def _scan_voices() -> tuple[Voice, ...]:
    lib = espeak.library()
    with espeak.LOCK:
        raw = lib.list_voices()
    voices = [
        Voice(name=v.name.strip(), identifier=v.identifier,
              languages=[lang for _, lang in v.languages],
              priorities=[priority for priority, _ in v.languages])
        for v in raw
    ]
    return tuple(sorted(voices, key=lambda v: v.identifier.lower()))


def _data_dir() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


@functools.lru_cache(maxsize=None)
def _missing_dictionary(identifier: str) -> Optional[str]:
    """The dictionary file a voice needs, if this espeak-ng data lacks it; None if all is there.

    espeak's rule: the voice file's `dictionary` line, else its first `language` code up to '-'.
    """
    data = _data_dir()
    voice_file = next((f for f in (data / "lang" / identifier, data / "voices" / identifier)
                       if f.is_file()), None)
    if voice_file is None:
        return None  # not a file-based voice (mbrola etc.): nothing to check here
    dictionary = language = None
    for line in voice_file.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "dictionary" and dictionary is None:
            dictionary = parts[1]
        elif len(parts) >= 2 and parts[0] == "language" and language is None:
            language = parts[1]
    name = dictionary or (language or "").split("-")[0]
    if name and not (data / f"{name}_dict").is_file():
        return f"{name}_dict"
    return None


def _variants() -> list[str]:
    folder = _data_dir() / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def resolve_voice(voice: str) -> str:
    """Maps what the user typed to an espeak voice spec, or raises InputError naming `voice`.

    espeak_SetVoiceByName alone is not a check: it rejects some language codes ("en-gb") and
    accepts unknown variants silently, so the spec is matched against the voice list here.
    """
    base, _, variant = voice.strip().partition("+")
    key = base.strip().lower()
    voices = _all_voices()
    match: Optional[Voice] = None
    for v in voices:  # identifier, its last part, or the name
        if key in (v.identifier.lower(), v.identifier.lower().rsplit("/", 1)[-1],
                   v.name.strip().lower()):
            match = v
            break
    if match is None:  # a language code: the voice that lists it with the best priority
        ranked = [(priority, v) for v in voices
                  for lang, priority in zip(v.languages, v.priorities) if lang.lower() == key]
        if ranked:
            match = min(ranked, key=lambda rv: rv[0])[1]
    usable = [v for v in voices if not _missing_dictionary(v.identifier)]
    if match is None:
        raise InputError("voice", f"unknown voice {voice!r}", _voice_hint(key, usable))
    missing = _missing_dictionary(match.identifier)
    if missing:
        raise InputError("voice", f"the voice {voice!r} ({match.name}) cannot be used: this "
                         f"espeak-ng data has no {missing}", _voice_hint(key, usable))
    spec = match.identifier
    if variant:
        variants = _variants()
        if variant not in variants:
            raise InputError(
                "voice", f"unknown voice variant {variant!r} in {voice!r}",
                f"Use one of {len(variants)} variants, e.g. " + ", ".join(variants[:12])
                + " (or none: 'en-us').")
        spec += "+" + variant
    return spec


def _voice_hint(key: str, voices: list[Voice]) -> str:
    # Name the voices most likely meant (same language family or name prefix), then the count.
    stem = re.split(r"[-_ (/]", key, maxsplit=1)[0]
    related = [v for v in voices
               if stem and (any(lang.lower().split("-")[0] == stem for lang in v.languages)
                            or v.name.lower().startswith(stem))]
    known = {lang for v in voices for lang in v.languages}
    common = [c for c in ("en-us", "en-gb", "de", "fr", "es", "it", "pt", "nl", "ru", "cmn", "ja",
                          "hi") if c in known]
    shown = [f"{v.languages[0] if v.languages else v.identifier} ({v.name})" for v in related[:15]]
    if not shown:
        shown = common
    return (f"Available voices include: {', '.join(shown)}; {len(voices)} voices in all "
            "(see talkinghead.pipeline.speech.speak.list_voices()). Give a language code such as "
            "'en-us' or a voice name.")


# --- text cleaning --------------------------------------------------------------------------

# Categories skipped outright. Cc: control characters; Cf: invisible formatting (zero-width
# joiners, soft hyphens); Co/Cn/Cs: private use, unassigned, lone surrogates: none can be spoken.
_SKIP_CATEGORIES = {"Cc", "Cf", "Co", "Cn", "Cs"}
# So/Sk from the arrows block (U+2190) up: emoji, pictographs, dingbats, shapes, skin-tone
# modifiers. espeak reads some of them out by their Unicode name ("slightly smiling face"), which
# is almost never what a script means. Lower ones (°, ©, ™) are words people expect to hear.
_SYMBOL_CATEGORIES = {"So", "Sk"}
_FIRST_PICTOGRAPH = "\u2190"
_KEEP_WHITESPACE = {"\n", "\t", "\r"}


def clean_script(script: str, voice_spec: str = "gmw/en-US") -> tuple[str, list[str]]:
    """Removes characters that cannot (or should not) be spoken.

    Returns the cleaned text and notes (empty if nothing was removed). Invisible format
    characters are dropped (they sit inside words); other skipped characters become a space so
    the words around them stay apart. Other non-ASCII characters are asked of the voice itself:
    if espeak has no pronunciation for one, it is skipped as well.
    """
    skipped: dict[str, int] = {}
    probe_cache: dict[str, bool] = {}
    out: list[str] = []
    for ch in script:
        cat = unicodedata.category(ch)
        if ch in _KEEP_WHITESPACE or (ch.isascii() and cat not in _SKIP_CATEGORIES):
            out.append(ch)
            continue
        if cat in _SKIP_CATEGORIES or (cat in _SYMBOL_CATEGORIES and ch >= _FIRST_PICTOGRAPH) or (
                "\ufe00" <= ch <= "\ufe0f"):  # variation selectors (emoji presentation)
            skipped[ch] = skipped.get(ch, 0) + 1
            out.append("" if cat == "Cf" or cat == "Mn" else " ")
            continue
        if cat.startswith(("L", "M", "N", "Z", "P", "S")):
            # Letters, marks, digits, spaces, punctuation, signs (currency, maths, °): keep those
            # the voice can pronounce. Punctuation legitimately has no phonemes of its own.
            if cat.startswith(("P", "Z", "M")):
                out.append(ch)
                continue
            if ch not in probe_cache:
                lib = espeak.library()
                with espeak.LOCK:
                    probe_cache[ch] = bool(lib.text_to_phonemes(ch, voice_spec))
            if probe_cache[ch]:
                out.append(ch)
                continue
        skipped[ch] = skipped.get(ch, 0) + 1
        out.append(" ")
    notes = []
    if skipped:
        total = sum(skipped.values())
        listed = ", ".join(repr(c) for c in skipped)
        notes.append(f"skipped {total} unsupported character(s): {listed}")
    return "".join(out), notes


# --- blocks ---------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])[\"'”’)\]]*\s+|\n\s*\n")
# "Dr. Smith" is not a sentence end: splitting there would add a sentence pause.
_ABBREVIATIONS = {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e",
                  "no", "fig", "approx", "mt", "ft", "inc", "ltd", "co"}
_WORD_BEFORE = re.compile(r"(\S+?)[.]$")


def _sentence_end(text: str, start: int, stop: int) -> Optional[re.Match]:
    """The first sentence end in text[start:stop] that is not an abbreviation or an initial."""
    search_from = start
    while True:
        m = _SENTENCE_END.search(text, search_from, stop)
        if m is None:
            return None
        if m.end() > start:
            head = text[max(start, m.start() - 12):m.start()].rstrip("\"'”’)]")
            before = _WORD_BEFORE.search(head.split()[-1] if head.split() else "")
            word = before.group(1).lower().lstrip("(\"'“‘") if before else ""
            if not (word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha())):
                return m
        search_from = m.end()


def _iter_blocks(text: str, max_chars: int = MAX_BLOCK_CHARS) -> Iterator[tuple[int, str]]:
    """Yields (offset, block) covering `text`: whole sentences, none longer than max_chars.

    A sentence longer than max_chars is cut at its last clause break (comma, semicolon...) or
    else its last space before the limit, so no word is ever split.
    """
    pos = 0
    n = len(text)
    while pos < n:
        m = _sentence_end(text, pos, min(n, pos + max_chars))
        if m is not None:
            end = m.end()
        elif n - pos <= max_chars:
            end = n
        else:
            window = text[pos:pos + max_chars]
            cut = None
            for m2 in re.finditer(r"[,;:—–]\s+", window):
                cut = m2.end()
            if cut is None:
                for m2 in re.finditer(r"\s+", window):
                    cut = m2.end()
            end = pos + (cut if cut else max_chars)
        yield pos, text[pos:end]
        pos = end


# --- synthesis ------------------------------------------------------------------------------


def _is_pause(phoneme: str) -> bool:
    # espeak's pause mnemonics: "_" (short), "_:" (clause/sentence), "_!" ... all start with "_".
    return phoneme.startswith("_")


_EDGE_PUNCTUATION = "\"'“”‘’«»„()[]{}<>,;:!?…—–-‐/*_~"


def _strip_punctuation(text: str) -> str:
    """The words of a unit without the punctuation around them ("book." -> "book")."""
    text = " ".join(text.split()).strip(_EDGE_PUNCTUATION + " ")
    # A final period goes unless it ends an abbreviation with inner periods ("e.g.").
    if text.endswith(".") and "." not in text[:-1].rstrip("."):
        text = text.rstrip(".").rstrip(_EDGE_PUNCTUATION + " ")
    return text


def _chunk_from_raw(raw: espeak.RawSynthesis, block: str, block_offset: int, start_sample: int,
                    sample_rate: int) -> SpeechChunk:
    """Turns one synthesis call into a chunk with absolute timings."""
    num = len(raw.samples)
    rate = float(sample_rate)

    def t(sample: int) -> float:
        return (start_sample + min(max(sample, 0), num)) / rate

    # Phonemes: start at the event's sample, end at the next phoneme's start (or the chunk end).
    ph_events = [e for e in raw.events if e.kind == espeak.EVENT_PHONEME and e.phoneme]
    phonemes: list[PhonemeTiming] = []
    for i, e in enumerate(ph_events):
        end = ph_events[i + 1].sample if i + 1 < len(ph_events) else num
        start_s, end_s = t(e.sample), t(max(end, e.sample))
        # Zero-length pauses carry no information (espeak emits "_" right before a word event).
        if _is_pause(e.phoneme) and end_s <= start_s:
            continue
        phonemes.append(PhonemeTiming(e.phoneme, start_s, end_s))

    # Words. espeak's WORD events are not one per script word: it speaks "for a" as one unit
    # (one event), gives a hyphenated compound one event, and a number several (one per spoken
    # part, all pointing inside the same digits). So a word unit here is: one event, merged with
    # the following events that point inside it, owning the script text up to the next unit.
    # Every character of the block thus belongs to exactly one unit, in order: no word is lost.
    units: list[list[int]] = []  # [text_start, text_end_hint, sample]
    for e in raw.events:
        if e.kind != espeak.EVENT_WORD:
            continue
        pos = max(e.text_position - 1, 0)  # 1-based character index into the block
        if units and pos < max(units[-1][1], units[-1][0] + 1):
            units[-1][1] = max(units[-1][1], pos + e.length)
            continue
        units.append([pos, pos + e.length, e.sample])
    if units:
        units[0][0] = 0  # leading quotes etc. belong to the first word
    words: list[WordTiming] = []
    for i, (pos, hint_end, sample) in enumerate(units):
        text_end = units[i + 1][0] if i + 1 < len(units) else len(block)
        word = _strip_punctuation(block[pos:text_end]) or block[pos:hint_end].strip()
        if not word:
            continue
        nxt = units[i + 1][2] if i + 1 < len(units) else num
        start_s, next_s = t(sample), t(max(nxt, sample))
        # End where its last (non-pause) phoneme ends, so a pause after it is not part of it.
        ends = [p.end_s for p in phonemes
                if not _is_pause(p.phoneme) and start_s <= p.start_s < next_s]
        end_s = min(max(ends), next_s) if ends else next_s
        words.append(WordTiming(word, start_s, max(end_s, start_s)))

    samples = raw.samples.astype(np.float32) / 32768.0
    return SpeechChunk(samples=samples, sample_rate=sample_rate, start_sample=start_sample,
                       text=block, phonemes=phonemes, words=words,
                       text_end=block_offset + len(block))


def _prepare(script: str, config: SpeakConfig) -> tuple[str, str, list[str]]:
    if not isinstance(config, SpeakConfig):
        raise InputError("config", f"expected a SpeakConfig, got {type(config).__name__}",
                         "Pass SpeakConfig(voice=..., rate_wpm=..., pitch=...).")
    if not isinstance(script, str):
        raise InputError("text", f"expected text, got {type(script).__name__}",
                         "Pass the script as a string.")
    if not script.strip():
        raise InputError("text", "the script is empty", "Give some text to speak.")
    spec = resolve_voice(config.voice)
    text, notes = clean_script(script, spec)
    if not text.strip():
        raise InputError("text", "the script has nothing speakable left after skipping "
                         "unsupported characters" + (f" ({notes[0]})" if notes else ""),
                         "Give text in the voice's language.")
    return text, spec, notes


def iter_speech(script: str, config: Optional[SpeakConfig] = None,
                notes: Optional[list[str]] = None) -> Iterator[SpeechChunk]:
    """Speaks `script` block by block.

    Input is checked before the first chunk is produced (this is not a lazy generator at the
    check stage): an empty script, an unknown voice etc. raise InputError right away.

    Args:
        script: the text to speak.
        config: voice, rate and pitch; SpeakConfig() if None.
        notes: if given, notes about the input (skipped characters) are appended to it.

    Yields:
        SpeechChunk per block, in order; timings in absolute seconds from the script's start.
        Only the current chunk is held: memory does not grow with the script's length.
    """
    config = config or SpeakConfig()
    text, spec, input_notes = _prepare(script, config)
    if notes is not None:
        notes.extend(input_notes)
    return _generate(text, spec, config)


def _generate(text: str, spec: str, config: SpeakConfig) -> Iterator[SpeechChunk]:
    lib = espeak.library()
    start_sample = 0
    for offset, block in _iter_blocks(text):
        if not block.strip():
            continue
        # The lock is held per block only, never across a yield: another thread (or another
        # generator in this thread) can speak in between; voice and parameters are re-set.
        with espeak.LOCK:
            raw = lib.synthesize(block, spec, config.rate_wpm, config.pitch)
        chunk = _chunk_from_raw(raw, block, offset, start_sample, lib.sample_rate)
        del raw
        start_sample += len(chunk.samples)
        yield chunk


def _source(config: SpeakConfig, spec: str) -> str:
    lib = espeak.library()
    return (f"espeak-ng {lib.version} voice {spec} rate {config.rate_wpm} wpm "
            f"pitch {config.pitch}")


def speak(script: str, config: Optional[SpeakConfig] = None,
          progress: Optional[ProgressFn] = None) -> SpokenScript:
    """Speaks the whole script into memory.

    Args:
        script: the text to speak.
        config: voice, rate and pitch; SpeakConfig() if None.
        progress: called as progress(done_chars, total_chars) after each block.

    Returns:
        SpokenScript with mono audio [1, num_samples] float32 and its timings.
    """
    config = config or SpeakConfig()
    text, spec, notes = _prepare(script, config)
    parts: list[np.ndarray] = []
    timings = SpeechTimings(source=_source(config, spec), phoneme_set="espeak")
    sample_rate = espeak.library().sample_rate
    for chunk in _generate(text, spec, config):
        parts.append(chunk.samples)
        timings.phonemes.extend(chunk.phonemes)
        timings.words.extend(chunk.words)
        if progress is not None:
            progress(chunk.text_end, len(text))
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    timings.duration_s = len(samples) / float(sample_rate)
    return SpokenScript(AudioClip(samples[None, :], sample_rate), timings, notes)


def speak_to_wav(script: str, path: str | os.PathLike, config: Optional[SpeakConfig] = None,
                 progress: Optional[ProgressFn] = None) -> tuple[SpeechTimings, list[str]]:
    """Speaks the script straight into a mono 16-bit WAV file, streaming (bounded memory).

    The file is written to a temporary file beside `path` and renamed over it at the end, so
    `path` is either the complete result or untouched; nothing partial is left on error.

    Returns:
        (timings, notes) as in `speak`.
    """
    config = config or SpeakConfig()
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError("path", f"the folder {str(path.parent)!r} does not exist",
                         "Create it first or choose another output path.")
    if path.is_dir():
        raise InputError("path", f"{str(path)!r} is a folder", "Give a file name ending in .wav.")
    text, spec, notes = _prepare(script, config)
    sample_rate = espeak.library().sample_rate
    timings = SpeechTimings(source=_source(config, spec), phoneme_set="espeak")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    total_samples = 0
    try:
        with os.fdopen(fd, "wb") as fh, wave.open(fh, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            for chunk in _generate(text, spec, config):
                pcm = np.clip(np.round(chunk.samples * 32768.0), -32768, 32767).astype("<i2")
                wav.writeframes(pcm.tobytes())
                total_samples += len(pcm)
                timings.phonemes.extend(chunk.phonemes)
                timings.words.extend(chunk.words)
                if progress is not None:
                    progress(chunk.text_end, len(text))
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    timings.duration_s = total_samples / float(sample_rate)
    return timings, notes


def _checked_int(name: str, value, low: int, high: int, unit: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer, float)) or (
            isinstance(value, float) and not value.is_integer()):
        raise InputError(name, f"expected a whole number, got {value!r}",
                         f"Give a value from {low} to {high} ({unit}).")
    value = int(value)
    if not low <= value <= high:
        raise InputError(name, f"{value} is out of range",
                         f"Give a value from {low} to {high} ({unit}).")
    return value
