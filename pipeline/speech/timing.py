"""Exact timings of synthesised speech, carried alongside the audio.

When the audio comes from the Speak stage the synthesiser knows where every phoneme and word
starts; the VisemeAligner uses these as they are instead of estimating them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class PhonemeTiming:
    """One phoneme. `phoneme` is in the synthesiser's notation (espeak-ng mnemonics)."""

    phoneme: str
    start_s: float
    end_s: float


@dataclass
class WordTiming:
    """One word of the script, as spoken."""

    word: str
    start_s: float
    end_s: float


@dataclass
class SpeechTimings:
    """Phoneme and word timings of one piece of synthesised speech.

    Attributes:
        phonemes: in time order; times in seconds from the first audio sample.
        words: in time order; times in seconds from the first audio sample.
        duration_s: length of the audio these timings describe.
        source: what produced them, e.g. "espeak-ng 1.52 voice en-us".
        phoneme_set: notation of `PhonemeTiming.phoneme`, e.g. "espeak".
    """

    phonemes: list[PhonemeTiming] = field(default_factory=list)
    words: list[WordTiming] = field(default_factory=list)
    duration_s: float = 0.0
    source: str = ""
    phoneme_set: str = "espeak"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "SpeechTimings":
        raw = json.loads(text)
        return cls(
            phonemes=[PhonemeTiming(**p) for p in raw.get("phonemes", [])],
            words=[WordTiming(**w) for w in raw.get("words", [])],
            duration_s=float(raw.get("duration_s", 0.0)),
            source=raw.get("source", ""),
            phoneme_set=raw.get("phoneme_set", "espeak"),
        )
