"""The product's phone set (ARPAbet without stress, plus "SIL") and espeak-ng -> ARPAbet mapping.

Everything downstream of speech (forced alignment, visemes, mouth shapes) talks ARPAbet: the 39
phones of the CMU pronouncing dictionary, without stress digits, plus "SIL" for silence. Speak
reports espeak-ng's own phoneme mnemonics ("'aI", "@2", "t#", "n-" ...); this module maps them.

The table covers every mnemonic of espeak-ng 1.52's English phoneme tables (base1 consonants, en,
en-us and the other English accents), checked against the mnemonics seen in real synthesis of a
varied corpus in en-us and en-gb. Anything else gets a best-effort nearest phone; nothing raises.
"""

from __future__ import annotations

import functools
import re

from ..speech.timing import PhonemeTiming, SpeechTimings
from .track import SILENCE

#: The 39 phones of the CMU pronouncing dictionary (ARPAbet), without stress digits.
ARPABET: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH",
    "UW", "V", "W", "Y", "Z", "ZH",
)

_VALID = frozenset(ARPABET) | {SILENCE}

# espeak-ng mnemonic (stress marks removed) -> ARPAbet phones. An empty list: a modifier with no
# articulation of its own (its time goes to the phone before it).
_ESPEAK_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # --- vowels (en, en-us and accent tables) ---
    "@": ("AH",), "@2": ("AH",), "@5": ("AH",), "@-": ("AH",), "@#": ("AH",),
    "@L": ("AH", "L"),           # syllabic l: "little" L IH T AH L
    "a": ("AE",), "a2": ("AH",), "a#": ("AH",), "a#2": ("AH",), "aa": ("AE",), "a/": ("AE",),
    "A:": ("AA",), "A#": ("AA",), "A~": ("AA",), "A@": ("AA", "R"),
    "E": ("EH",), "E#": ("EH",), "E2": ("EH",), "e": ("EH",), "e:": ("EY",), "e#": ("EH",),
    "e@": ("EH", "R"),
    "I": ("IH",), "I2": ("IH",), "I#": ("IH",), "I2#": ("IH",), "IR": ("IH", "R"),
    "i": ("IY",), "i:": ("IY",), "i@": ("IY", "AH"), "i@3": ("IY", "R"), "y": ("IY",),
    "0": ("AA",), "0#": ("AA",), "02": ("AA",),
    "O": ("AO",), "O:": ("AO",), "O2": ("AO",), "O~": ("AO",), "O@": ("AO", "R"),
    "o": ("OW",), "o:": ("OW",), "o@": ("AO", "R"),
    "V": ("AH",), "VR": ("AH", "R"),
    "3": ("ER",), "3:": ("ER",),
    "U": ("UH",), "U@": ("UH", "R"), "u": ("UW",), "u:": ("UW",), "Y": ("UW",),
    "aI": ("AY",), "aI2": ("AY",), "aI@": ("AY", "ER"), "aI3": ("AY", "ER"),
    "aU": ("AW",), "aU@": ("AW", "ER"), "eU": ("OW",), "iU": ("UW",),
    "eI": ("EY",), "EI": ("EY",), "oU": ("OW",), "oU#": ("OW",), "OI": ("OY",), "oI": ("OY",),
    "uI": ("UW", "IY"),
    # --- consonants (base1) ---
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "g": ("G",),
    "t#": ("T",), "t2": ("T",), "d#": ("D",), "t[": ("T",), "d[": ("D",), "c": ("K",),
    "?": ("T",),                 # glottal stop stands for /t/ ("button" B AH T AH N)
    "f": ("F",), "v": ("V",), "v#": ("V",), "B": ("V",), "T": ("TH",), "D": ("DH",),
    "s": ("S",), "z": ("Z",), "z#": ("Z",), "z/2": ("Z",), "s;": ("S",), "z;": ("Z",),
    "s.": ("S",), "z.": ("Z",), "S": ("SH",), "Z": ("ZH",), "S;": ("SH",), "Z;": ("ZH",),
    "h": ("HH",), "x": ("HH",), "C": ("HH",), "X": ("HH",), "Q": ("G",), "Q^": ("G",),
    'Q"': ("G",), "q": ("K",),
    "tS": ("CH",), "dZ": ("JH",), "tS;": ("CH",), "dZ;": ("JH",), "ts": ("T", "S"),
    "m": ("M",), "n": ("N",), "N": ("NG",), "n^": ("N",), "J": ("N", "Y"), "J^": ("Y",),
    "n.": ("N",),
    "m-": ("AH", "M"), "n-": ("AH", "N"), "N-": ("AH", "NG"), "l-": ("AH", "L"),
    "r-": ("R",),
    "l": ("L",), "l/": ("L",), "l/2": ("L",), "l/3": ("L",), "l^": ("L",), "l.": ("L",),
    "L": ("L",), "L/": ("L",), "l#": ("L",),
    "r": ("R",), "r/": ("R",), "R": ("R",), "R2": ("R",), "R3": ("R",), 'r"': ("R",),
    "r.": ("R",), "**": ("R",),
    "w": ("W",), "w#": ("W",), "w2": ("W",), "j": ("Y",),
    # --- modifiers without an articulation of their own ---
    ";": (), ":": (), "-": (), "=": (), "%": (), "%%": (), "#": (),
}

# Stress and syllable marks that prefix mnemonics in events and in text_to_phonemes output.
_STRESS = "',%="
_VOWELS_FALLBACK = {"a": "AE", "e": "EH", "i": "IY", "o": "OW", "u": "UW", "@": "AH",
                    "3": "ER", "0": "AA", "A": "AA", "E": "EH", "I": "IH", "O": "AO",
                    "U": "UH", "V": "AH"}
_MAX_KEY = max(len(k) for k in _ESPEAK_TO_ARPABET)


def is_pause(phoneme: str) -> bool:
    """True for espeak's pauses ("_", "_:", "_!", "||", "") and for "SIL"."""
    core = phoneme.strip()
    return core == "" or core.startswith("_") or core == "||" or core == SILENCE


@functools.lru_cache(maxsize=4096)
def _map(core: str) -> tuple[str, ...]:
    if core in _ESPEAK_TO_ARPABET:
        return _ESPEAK_TO_ARPABET[core]
    if core.upper() in _VALID:  # already ARPAbet (maybe with a stress digit stripped below)
        return (core.upper(),)
    stripped = re.sub(r"[0-2]$", "", core)
    if stripped.upper() in ARPABET and stripped.upper() == stripped:  # "AH0" -> AH
        return (stripped,)
    # Nearest: drop trailing diacritic/length characters one by one, then longest known prefix.
    for cut in range(len(core) - 1, 0, -1):
        if core[:cut] in _ESPEAK_TO_ARPABET and _ESPEAK_TO_ARPABET[core[:cut]]:
            return _ESPEAK_TO_ARPABET[core[:cut]]
    for ch in core:
        if ch in _VOWELS_FALLBACK:
            return (_VOWELS_FALLBACK[ch],)
        if ch in _ESPEAK_TO_ARPABET and _ESPEAK_TO_ARPABET[ch]:
            return _ESPEAK_TO_ARPABET[ch]
        if ch.lower() in _ESPEAK_TO_ARPABET and _ESPEAK_TO_ARPABET[ch.lower()]:
            return _ESPEAK_TO_ARPABET[ch.lower()]
    return ("AH",)  # a sound we cannot place: a neutral, half-open mouth


def espeak_to_arpabet(phoneme: str) -> list[str]:
    """ARPAbet phones (no stress) for one espeak-ng mnemonic as Speak reports it.

    Stress marks (' ,) and other prefixes are ignored. Pauses ("_", "_:", "", ...) give ["SIL"].
    Most mnemonics give one phone; diphthongs with r/schwa and syllabic consonants give two
    ("aI@" -> AY ER, "n-" -> AH N); pure modifiers (";") give []. Unknown mnemonics get the
    nearest known phone (by prefix, else by their first letter); never raises.
    """
    if not isinstance(phoneme, str):
        return ["AH"]
    if is_pause(phoneme):
        return [SILENCE]
    core = phoneme.strip().lstrip(_STRESS)
    if not core:
        return []  # a bare stress mark
    return list(_map(core))


def _arpabet_as_is(phoneme: str) -> list[str]:
    core = re.sub(r"[0-2]$", "", (phoneme or "").strip().upper())
    if core in ("", "SP", "SIL", "SILENCE", "PAU") or core.startswith("_") or core.startswith("+"):
        return [SILENCE]
    return [core] if core in _VALID else espeak_to_arpabet(phoneme)


def convert_speech_timings(timings: SpeechTimings) -> list[PhonemeTiming]:
    """Speak's espeak timings -> ARPAbet timings covering 0..timings.duration_s without gaps.

    A mnemonic that maps to two phones has its time split evenly; modifiers without a phone give
    their time to the phone before; pauses and any uncovered gap become "SIL"; adjacent SILs merge.
    Already-ARPAbet timings (phoneme_set "arpabet") are only cleaned the same way.
    """
    to_arpabet = espeak_to_arpabet
    if (timings.phoneme_set or "").lower().startswith("arpa"):
        to_arpabet = _arpabet_as_is
    duration = max(float(timings.duration_s),
                   max((p.end_s for p in timings.phonemes), default=0.0))
    out: list[PhonemeTiming] = []

    def push(ph: str, start: float, end: float) -> None:
        if end <= start:
            return
        if out and out[-1].end_s < start - 1e-9:
            push_raw(SILENCE, out[-1].end_s, start)
        elif not out and start > 1e-9:
            push_raw(SILENCE, 0.0, start)
        push_raw(ph, max(start, out[-1].end_s if out else 0.0), end)

    def push_raw(ph: str, start: float, end: float) -> None:
        if end <= start:
            return
        if out and out[-1].phoneme == SILENCE and ph == SILENCE:
            out[-1].end_s = max(out[-1].end_s, end)
            return
        out.append(PhonemeTiming(ph, start, end))

    for p in sorted(timings.phonemes, key=lambda p: p.start_s):
        start, end = max(0.0, float(p.start_s)), min(float(p.end_s), duration)
        if end <= start and out and out[-1].phoneme != SILENCE and not is_pause(p.phoneme):
            # espeak gives some phones no time of their own ("sells": the l is spoken inside the
            # vowel's transition): give them the last third of the phone before (<= 60 ms).
            phones = to_arpabet(p.phoneme)
            prev = out[-1]
            cut = max(prev.end_s - min((prev.end_s - prev.start_s) / 3.0, 0.06), prev.start_s)
            if phones and cut < prev.end_s and abs(prev.end_s - start) < 1e-6:
                end, start = prev.end_s, cut
                prev.end_s = cut
                step = (end - start) / len(phones)
                for i, ph in enumerate(phones):
                    push_raw(ph, start + i * step, end if i == len(phones) - 1 else start + (i + 1) * step)
            continue
        if end <= start:
            continue
        if out and start < out[-1].end_s:  # overlap: the later phone starts where the last ends
            start = out[-1].end_s
            if end <= start:
                continue
        phones = to_arpabet(p.phoneme)
        if not phones:
            if out and abs(out[-1].end_s - start) < 1e-6:
                out[-1].end_s = end  # modifier: lengthen the phone before
            else:
                push(SILENCE, start, end)
            continue
        step = (end - start) / len(phones)
        for i, ph in enumerate(phones):
            push(ph, start + i * step, end if i == len(phones) - 1 else start + (i + 1) * step)
    if not out:
        return [PhonemeTiming(SILENCE, 0.0, duration)] if duration > 0 else []
    if out[-1].end_s < duration - 1e-9:
        push_raw(SILENCE, out[-1].end_s, duration)
    if to_arpabet is espeak_to_arpabet:
        _move_closures(out, _closure_s(timings.source))
    return out


#: Voiceless stops and affricates whose espeak event marks the release, not the closure.
_CLOSURE_STOPS = frozenset({"P", "T", "K", "CH"})


def _closure_s(source: str) -> float:
    """Length of espeak's stop closure at the rate named in `source` ("... rate 175 wpm ...").

    Measured against forced alignment on Speak sentences: ~55 ms at 130 wpm, ~48 ms at 175,
    ~42 ms at 220, i.e. about 48 ms * sqrt(175 / rate).
    """
    m = re.search(r"rate (\d+) wpm", source or "")
    rate = float(m.group(1)) if m else 175.0
    return 0.048 * (175.0 / max(rate, 40.0)) ** 0.5


def _move_closures(phones: list[PhonemeTiming], closure: float) -> None:
    """Starts voiceless stops at their closure instead of their release.

    espeak reports a stop's PHONEME event at the burst; the silent closure before it is counted
    in the phone before. For mouth motion the closure is what matters (the lips close for P at
    its start), so the stop takes over the end of the phone before it: `closure` seconds, at most
    60% of that phone.
    """
    for i in range(1, len(phones)):
        cur, prev = phones[i], phones[i - 1]
        if cur.phoneme not in _CLOSURE_STOPS:
            continue
        take = min(closure, 0.6 * (prev.end_s - prev.start_s))
        if take <= 0:
            continue
        prev.end_s -= take
        cur.start_s -= take



# --- IPA (espeak-ng's IPA output, as phoneme recognisers emit it) -> ARPAbet ----------------

# IPA symbol (or symbol sequence) -> ARPAbet. Covers espeak-ng's English IPA and the common symbols
# of the other languages that multilingual espeak-IPA recognisers (wav2vec2 *-espeak-cv-ft) emit,
# each mapped to the English phone with the nearest mouth shape. Longer tokens ("aɪə", "ɑːɹ") are
# read as a sequence of these by longest match; length, stress and other modifier marks are ignored.
_IPA_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # vowels and diphthongs
    "a": ("AA",), "æ": ("AE",), "ɑ": ("AA",), "ɒ": ("AA",), "ɶ": ("AA",), "ɐ": ("AH",), "ʌ": ("AH",),
    "ə": ("AH",), "ɘ": ("AH",), "ɤ": ("AH",), "ɞ": ("AH",), "ɚ": ("ER",), "ɝ": ("ER",), "ɜ": ("ER",),
    "ɛ": ("EH",), "e": ("EH",), "ɪ": ("IH",), "ᵻ": ("IH",), "ɨ": ("IH",), "i": ("IY",),
    "ɔ": ("AO",), "o": ("OW",), "ʊ": ("UH",), "ɵ": ("UH",), "ʏ": ("UH",), "u": ("UW",), "ʉ": ("UW",),
    "ɯ": ("UW",), "y": ("UW",), "ø": ("OW",), "œ": ("AO",),
    "eɪ": ("EY",), "ei": ("EY",), "aɪ": ("AY",), "ai": ("AY",), "aʊ": ("AW",), "au": ("AW",),
    "oʊ": ("OW",), "əʊ": ("OW",), "ou": ("OW",), "ɔɪ": ("OY",), "oi": ("OY",), "ɔy": ("OY",),
    "əl": ("AH", "L"), "ɪə": ("IH", "AH"), "iə": ("IY", "AH"), "eə": ("EH", "R"), "ɛə": ("EH", "R"),
    "ʊə": ("UH", "R"),
    # consonants
    "p": ("P",), "b": ("B",), "t": ("T",), "d": ("D",), "k": ("K",), "g": ("G",), "ɡ": ("G",),
    "ʔ": ("T",), "ɾ": ("D",), "c": ("K",), "ɟ": ("G",), "q": ("K",), "ɢ": ("G",), "ʈ": ("T",),
    "ɖ": ("D",), "f": ("F",), "v": ("V",), "β": ("V",), "ɸ": ("F",), "ʋ": ("V",), "θ": ("TH",),
    "ð": ("DH",), "s": ("S",), "z": ("Z",), "ʃ": ("SH",), "ʒ": ("ZH",), "ʂ": ("SH",), "ʐ": ("ZH",),
    "ɕ": ("SH",), "ʑ": ("ZH",), "h": ("HH",), "ɦ": ("HH",), "x": ("HH",), "ç": ("HH",), "χ": ("HH",),
    "ħ": ("HH",), "ɣ": ("G",), "ʝ": ("Y",), "tʃ": ("CH",), "dʒ": ("JH",), "ts": ("T", "S"),
    "dz": ("D", "Z"), "tɕ": ("CH",), "dʑ": ("JH",), "tʂ": ("CH",), "dʐ": ("JH",),
    "m": ("M",), "ɱ": ("M",), "n": ("N",), "ɳ": ("N",), "ŋ": ("NG",), "ɲ": ("N", "Y"), "ɴ": ("NG",),
    "l": ("L",), "ɫ": ("L",), "ɬ": ("L",), "ɮ": ("L",), "ɭ": ("L",), "ʎ": ("L",),
    "ɹ": ("R",), "r": ("R",), "ɻ": ("R",), "ʁ": ("R",), "ʀ": ("R",), "ɽ": ("R",),
    "w": ("W",), "ʍ": ("W",), "ɥ": ("W",), "ɰ": ("W",), "j": ("Y",),
}
_IPA_MAX_KEY = max(len(k) for k in _IPA_TO_ARPABET)


def _ipa_modifier(ch: str) -> bool:
    """Length, stress, tie bars, aspiration, nasalisation ...: marks without an articulation of their own."""
    import unicodedata

    return unicodedata.category(ch) in ("Lm", "Sk", "Mn", "Me", "Po") or ch in "ˈˌːˑ‿͡"


@functools.lru_cache(maxsize=4096)
def _ipa_cached(token: str) -> tuple[str, ...]:
    import unicodedata

    text = unicodedata.normalize("NFD", token.strip())
    phones: list[str] = []
    i, n = 0, len(text)
    while i < n:
        for size in range(min(_IPA_MAX_KEY, n - i), 0, -1):
            piece = unicodedata.normalize("NFC", text[i:i + size])
            if piece in _IPA_TO_ARPABET:
                phones.extend(_IPA_TO_ARPABET[piece])
                i += size
                break
        else:
            if not _ipa_modifier(text[i]):
                return ()  # a symbol we cannot place: the whole token is unknown
            i += 1
    return tuple(phones)


def ipa_to_arpabet(token: str) -> list[str]:
    """ARPAbet phones for one IPA phoneme token as espeak-IPA recognisers emit it ("aɪ", "ɹ", "iː").

    Read by longest match over the IPA table (so "aɪə" -> AY AH, "ɑːɹ" -> AA R);
    length, stress, tie and diacritic marks are ignored. Returns [] for a token holding a symbol
    the table does not know (callers skip and count those) or only marks; never raises.
    """
    if not isinstance(token, str) or not token.strip():
        return []
    return list(_ipa_cached(token))

# --- grapheme to phoneme through espeak-ng ---------------------------------------------------

# Tokens of espeak's mnemonic output: known mnemonics (longest first) and the marks to skip.
_TOKENS = sorted(_ESPEAK_TO_ARPABET, key=len, reverse=True)


def parse_espeak_phonemes(text: str) -> list[str]:
    """Splits espeak's mnemonic transcription ("D@2 kw'Ik") into ARPAbet phones.

    Longest-match over the known mnemonics (as espeak itself reads phoneme strings); stress
    marks, pauses and unknown characters are skipped.
    """
    phones: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace() or ch in _STRESS or ch == "_" or ch == "|":
            i += 1
            continue
        for size in range(min(_MAX_KEY, n - i), 0, -1):
            piece = text[i:i + size]
            if piece in _ESPEAK_TO_ARPABET:
                phones.extend(_ESPEAK_TO_ARPABET[piece])
                i += size
                break
        else:
            mapped = _map(ch) if ch.isalnum() or ch in "@" else ()
            phones.extend(mapped)
            i += 1
    return phones


@functools.lru_cache(maxsize=4096)
def _g2p_cached(word: str, voice: str) -> tuple[str, ...]:
    from ..speech import espeak
    from ..speech.speak import resolve_voice

    spec = resolve_voice(voice)
    lib = espeak.library()
    with espeak.LOCK:
        text = lib.text_to_phonemes(word, spec)
    return tuple(parse_espeak_phonemes(text))


def g2p_arpabet(word: str, voice: str = "en-us") -> list[str]:
    """A pronunciation in ARPAbet for any word, from espeak-ng's letter-to-sound rules.

    espeak-ng applies its English dictionary and rules (and expands digits: "25" -> twenty five),
    so this is a real grapheme-to-phoneme conversion, not a spelling. Returns [] when espeak
    says nothing speakable (punctuation only).
    """
    word = (word or "").strip()
    if not word:
        return []
    return list(_g2p_cached(word, voice))
