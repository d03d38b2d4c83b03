"""VisemeTrack: what the VisemeAligner gives every TemporalSampler engine.

Timed words and phones, and per video frame a weight for each of the 15 visemes plus the mouth
parameters animators use. Plain data, JSON round-trip, no ComfyUI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..speech.timing import PhonemeTiming, WordTiming

#: The 15-viseme set (Oculus/Meta lip-sync visemes): silence, then consonant and vowel shapes.
VISEMES = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "ih", "oh", "ou")

#: Mouth parameters, each 0..1:
#:   jaw_open    0 closed teeth .. 1 wide open jaw
#:   lip_width   0 narrow/pursed .. 1 wide (smile, "ee")
#:   lip_round   0 relaxed .. 1 fully rounded/protruded ("oo", "w")
#:   lip_closure 0 apart .. 1 lips pressed together (P, B, M)
#:   lip_tuck    0 none .. 1 lower lip tucked under the upper teeth (F, V)
MOUTH_PARAMS = ("jaw_open", "lip_width", "lip_round", "lip_closure", "lip_tuck")

#: Silence in the phone lists (ARPAbet has no symbol for it).
SILENCE = "SIL"


@dataclass
class VisemeTrack:
    """Speech as mouth motion, sampled at the video frame rate.

    Attributes:
        fps: video frames per second the per-frame arrays are sampled at.
        duration_s: length of the audio described.
        words: timed words, in order (seconds from the first audio sample).
        phones: timed phones in ARPAbet without stress digits ("AA", "P", ...; "SIL" for silence),
            in order, covering 0..duration_s.
        viseme_weights: float32 [num_frames, 15] in 0..1, each row sums to 1; column order VISEMES.
            Frame i is on screen during [i / fps, (i + 1) / fps) and shows the mouth for the speech
            heard during that interval (anticipation included; see `visemes.frame_visemes`).
        mouth: float32 [num_frames, 5] in 0..1; column order MOUTH_PARAMS.
        method: how the phones were found: "speech_timings", "forced_alignment", "whisper" (Whisper
            recognised the words, forced alignment placed them), "recognition" (pocketsphinx's word
            search, then forced alignment), "phoneme_ctc" (a local phoneme CTC model, no transcript),
            "acoustic" or "silence".
        audio_quality: the audio quality report of the clip (audio_quality.AudioQualityReport.to_dict():
            {"ok": bool, "checks": [{factor, value, unit, verdict, advice, value_text}]}), or empty.
        transcript: the words the track was made from: the transcript given, Speak's words, or what
            recognition heard (empty for the acoustic estimate); a user can correct it and align again.
        language: language code the audio was treated as.
        alignment_score: mean per-frame acoustic score of the alignment where one was made
            (higher is a better fit), else None.
        warnings: things the user should know (fallbacks taken, silence only, ...).
        loudness: float32 [num_frames] 0..1 speech loudness per frame (pipeline/lipsync/prosody.py), or
            empty when the track was made without audio (older JSON, phones only).
        pitch_hz: float32 [num_frames] voice pitch per frame in Hz, 0 where unvoiced; or empty.
    """

    fps: float
    duration_s: float
    words: list[WordTiming] = field(default_factory=list)
    phones: list[PhonemeTiming] = field(default_factory=list)
    viseme_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, len(VISEMES)), np.float32))
    mouth: np.ndarray = field(default_factory=lambda: np.zeros((0, len(MOUTH_PARAMS)), np.float32))
    method: str = ""
    language: str = "en-us"
    alignment_score: Optional[float] = None
    warnings: list[str] = field(default_factory=list)
    loudness: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    pitch_hz: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    transcript: str = ""
    audio_quality: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.viseme_weights.shape[0])

    def frame_times_s(self) -> np.ndarray:
        """float64 [num_frames]: when each frame goes on screen (i / fps)."""
        return np.arange(self.num_frames, dtype=np.float64) / self.fps

    def dominant_visemes(self) -> list[str]:
        """The heaviest viseme of each frame."""
        return [VISEMES[i] for i in np.argmax(self.viseme_weights, axis=1)] if self.num_frames else []

    def mouth_param(self, name: str) -> np.ndarray:
        """float32 [num_frames] of one mouth parameter, by name (see MOUTH_PARAMS)."""
        return self.mouth[:, MOUTH_PARAMS.index(name)]

    def lip_gap(self) -> np.ndarray:
        """float32 [num_frames] in 0..1: how far apart the lips are meant to be.

        jaw_open x (1 - lip_closure) x (1 - lip_tuck): the jaw opens the mouth, pressed lips (P/B/M)
        and a tucked lower lip (F/V) shut it. What a re-measured inner-lip gap should follow.
        """
        jaw, closure, tuck = (self.mouth_param(n) for n in ("jaw_open", "lip_closure", "lip_tuck"))
        return (jaw * (1.0 - closure) * (1.0 - tuck)).astype(np.float32)

    @property
    def has_prosody(self) -> bool:
        """True when loudness and pitch cover every frame."""
        return len(self.loudness) == self.num_frames > 0 and len(self.pitch_hz) == self.num_frames

    def to_dict(self) -> dict:
        return {
            "format": "talkinghead.viseme_track/1",
            "fps": self.fps,
            "duration_s": self.duration_s,
            "visemes": list(VISEMES),
            "mouth_params": list(MOUTH_PARAMS),
            "words": [vars(w) for w in self.words],
            "phones": [vars(p) for p in self.phones],
            "viseme_weights": np.round(self.viseme_weights, 4).tolist(),
            "mouth": np.round(self.mouth, 4).tolist(),
            "method": self.method,
            "language": self.language,
            "alignment_score": self.alignment_score,
            "warnings": list(self.warnings),
            "loudness": np.round(np.asarray(self.loudness, np.float64), 3).tolist(),
            "pitch_hz": np.round(np.asarray(self.pitch_hz, np.float64), 1).tolist(),
            "transcript": self.transcript,
            "audio_quality": self.audio_quality,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, raw: dict) -> "VisemeTrack":
        if list(raw.get("visemes", VISEMES)) != list(VISEMES) or list(raw.get("mouth_params", MOUTH_PARAMS)) != list(
            MOUTH_PARAMS
        ):
            raise ValueError("viseme track: unknown viseme or mouth-parameter layout")
        return cls(
            fps=float(raw["fps"]),
            duration_s=float(raw["duration_s"]),
            words=[WordTiming(**w) for w in raw.get("words", [])],
            phones=[PhonemeTiming(**p) for p in raw.get("phones", [])],
            viseme_weights=np.asarray(raw.get("viseme_weights", []), np.float32).reshape(-1, len(VISEMES)),
            mouth=np.asarray(raw.get("mouth", []), np.float32).reshape(-1, len(MOUTH_PARAMS)),
            method=raw.get("method", ""),
            language=raw.get("language", "en-us"),
            alignment_score=raw.get("alignment_score"),
            warnings=list(raw.get("warnings", [])),
            loudness=np.asarray(raw.get("loudness", []), np.float32).reshape(-1),
            pitch_hz=np.asarray(raw.get("pitch_hz", []), np.float32).reshape(-1),
            transcript=str(raw.get("transcript", "")),
            audio_quality=dict(raw.get("audio_quality") or {}),
        )

    @classmethod
    def from_json(cls, text: str) -> "VisemeTrack":
        return cls.from_dict(json.loads(text))
