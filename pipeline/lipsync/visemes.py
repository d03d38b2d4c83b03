"""Timed phones -> the 15 visemes and the mouth parameters, per video frame, with coarticulation.

Phone set: ARPAbet (the 39 CMU phones, no stress digits) plus "SIL" (see `phoneset`).

Mapping (`PHONE_TO_VISEME`): the Oculus/Meta Lipsync viseme reference (sil; PP p b m; FF f v;
TH th dh; DD t d; kk k g; CH tS dZ S; SS s z; nn n l; RR r; aa "car"; E "bed"; ih "tip";
oh "toe"; ou "book"), extended to every ARPAbet phone:

* AE ("bat") and AH ("cup", schwa) -> ``aa``: both are open (low / open-mid) vowels whose most
  visible cue is the dropped jaw, which is what ``aa`` draws; ``E`` is the mid-front /e/ of "bed".
  They are not drawn like AA though: every phone has its own mouth target (`PHONE_MOUTH`), so AE
  opens less and spreads the lips more, and AH opens like C when short and like AA when long
  (Rhubarb Lip Sync uses the same 0.2 s rule; short vowels undershoot their target).
* Diphthongs glide between two shapes: AY aa->ih, AW aa->oh, EY E->ih, OW oh->ou, OY oh->ih, the
  first shape held for 60 % of the phone (Rhubarb's diphthong timing). `PHONE_TO_VISEME` gives the
  first (main) shape; `DIPHTHONG_GLIDES` the second.
* HH has no mouth shape of its own: /h/ is the voiceless onset of the next vowel, so it takes that
  vowel's viseme and mouth (coarticulation; the previous sound's when no vowel follows).
* NG -> kk (velar), Y -> ih, W -> ou, ER -> RR, ZH/SH/CH/JH -> CH.

Frame rule. A video frame i is on screen during [i/fps, (i+1)/fps): it shows the mouth for the
speech heard while it is shown, i.e. the mouth averaged over that interval (sub-sampled every
~5 ms), with the anticipation below built into the mouth motion. A frame is therefore never later
than its sound (late pictures are what viewers notice first); an instant-sampled frame would show
sounds shorter than a frame only by luck. N = max(1, round(duration_s * fps)) frames.

Coarticulation (a dominance model after Cohen & Massaro 1993, "Modeling coarticulation in
synthetic visual speech"). Each phone has a target mouth and, per mouth parameter, a dominance:
how strongly it claims that parameter. The mouth at time t is the dominance-weighted mean of the
targets of the phones around t. A phone's dominance is full over its *core* and decays
exponentially outside it, with a longer time constant before the core (anticipation: the mouth
moves toward a shape before its sound) than after (carry-over), and longer still for lip rounding
(rounding is anticipated across several consonants).

* Cores tile the timeline and start at their phone. Phones are timed as aligners (CMU/ARPAbet)
  and `phoneset.convert_speech_timings` time them: a stop starts at its closure, so a P/B phone
  *is* the closure (however long: an aligner may fold a pause into it) plus the burst. P/B keep
  the lips closed over the whole phone and open over its last `release_s` (at most
  `release_share` of it) toward the next sound; M is closed over all of it.
* Lip contacts dominate: P B M claim lip closure and F V the lower-lip tuck almost absolutely,
  with very fast contact time constants (1.5 ms before, 2 ms after): the lips close at the
  acoustic closure (measured on espeak-ng speech: median 3 ms, at most 9 ms before it at 100
  frames/s; under one frame at video rates) while the jaw and lip width, which carry the
  visible approach, anticipate at their own pace. Every P/B/M also gets at least one frame of full
  closure (and every F/V one frame of full tuck) however short it is: viewers notice a missing
  closure.
* Consonants that do not need the lips (DD, kk, nn, SS, TH) have low dominance over lip width and
  rounding, so they take the lip shape of the neighbouring vowels; kk and nn (tongue back / tongue
  tip) also leave most of the jaw to their neighbours, while S/Z/T/D keep the jaw high.
* Minimum hold: phones shorter than `min_hold_s` (lip contacts excepted) lose dominance in
  proportion (down to `min_hold_floor`), so they lean on their neighbours instead of flickering;
  at video rates the frame averaging merges what is shorter than a frame. Pauses shorter than
  `short_pause_s` hold the surrounding mouth (Rhubarb's pause rule), longer ones relax to rest.
* Viseme weights use shorter time constants than the mouth: the weights say which sound's shape
  is showing (they cross near the phone boundaries, which is what Rhubarb's per-phone rules
  expect), while the mouth parameters carry the smooth motion that engines animate.

Defaults were tuned on espeak-ng speech (28 sentences of our own, not the benchmark's, 130-220
wpm, exact phone times, stops starting at their closure): rendered at 100 frames/s and turned
into Rhubarb shapes (`rhubarb.shape_per_frame`, which picks each frame's shape from the rules of
the phone it shows), 98.7 % of 10 ms frames fall in the shape set Rhubarb's rules allow
(`rhubarb.allowed_shapes_per_frame`), and every P/B/M is closed on a 100 fps frame inside it.
* Vowel undershoot (Lindblom 1963): vowels shorter than `full_vowel_s` reach only part of their
  target, measured from a neutral half-open mouth.

Everything is vectorised over frames: an hour at 25 fps (90 000 frames) takes well under a second.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

from ..speech.timing import PhonemeTiming, WordTiming
from .track import MOUTH_PARAMS, SILENCE, VISEMES, VisemeTrack

#: The 39 CMU phones (ARPAbet, no stress); same list as `phoneset.ARPABET`.
ARPABET_PHONES: tuple[str, ...] = (
    "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH",
    "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH",
    "UW", "V", "W", "Y", "Z", "ZH",
)

VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY",
                    "UH", "UW"})

#: Every ARPAbet phone and SIL -> one of the 15 visemes (HH: see `viseme_of` / the module text).
PHONE_TO_VISEME: dict[str, str] = {
    SILENCE: "sil",
    "P": "PP", "B": "PP", "M": "PP",
    "F": "FF", "V": "FF",
    "TH": "TH", "DH": "TH",
    "T": "DD", "D": "DD",
    "K": "kk", "G": "kk", "NG": "kk",
    "CH": "CH", "JH": "CH", "SH": "CH", "ZH": "CH",
    "S": "SS", "Z": "SS",
    "N": "nn", "L": "nn",
    "R": "RR", "ER": "RR",
    "AA": "aa", "AE": "aa", "AH": "aa", "AY": "aa", "AW": "aa",
    "EH": "E", "EY": "E",
    "IH": "ih", "IY": "ih", "Y": "ih",
    "AO": "oh", "OW": "oh", "OY": "oh",
    "UW": "ou", "UH": "ou", "W": "ou",
    # HH: the next vowel's viseme in context (frame_visemes); alone it is an open breath.
    "HH": "aa",
}

#: Diphthongs: the shape glided to over the last 40 % of the phone.
DIPHTHONG_GLIDES: dict[str, str] = {"AY": "ih", "AW": "oh", "EY": "ih", "OW": "ou", "OY": "ih"}
#: Share of a diphthong spent on its first shape (Rhubarb Lip Sync's diphthong timing).
DIPHTHONG_SPLIT = 0.6

_M = MOUTH_PARAMS  # ("jaw_open", "lip_width", "lip_round", "lip_closure", "lip_tuck")

#: Target mouth per viseme, (jaw_open, lip_width, lip_round, lip_closure, lip_tuck), each 0..1.
VISEME_MOUTH: dict[str, tuple[float, float, float, float, float]] = {
    "sil": (0.03, 0.45, 0.10, 0.65, 0.00),  # rest: lips together but relaxed
    "PP": (0.03, 0.45, 0.10, 1.00, 0.00),   # lips pressed together
    "FF": (0.12, 0.50, 0.05, 0.00, 1.00),   # lower lip under the upper teeth
    "TH": (0.18, 0.55, 0.05, 0.00, 0.15),   # tongue tip between the teeth
    "DD": (0.15, 0.55, 0.05, 0.00, 0.00),   # teeth nearly together, tongue on the ridge
    "kk": (0.35, 0.50, 0.10, 0.00, 0.00),   # tongue back: jaw follows the vowels
    "CH": (0.12, 0.30, 0.75, 0.00, 0.00),   # teeth together, lips protruded
    "SS": (0.10, 0.65, 0.00, 0.00, 0.00),   # teeth together, lips spread
    "nn": (0.30, 0.50, 0.10, 0.00, 0.00),   # tongue tip up, slightly open
    "RR": (0.25, 0.35, 0.50, 0.00, 0.00),   # slightly rounded
    "aa": (0.90, 0.55, 0.05, 0.00, 0.00),   # wide open jaw
    "E": (0.45, 0.75, 0.00, 0.00, 0.00),    # open, spread
    "ih": (0.18, 0.85, 0.00, 0.00, 0.00),   # nearly closed, wide spread
    "oh": (0.50, 0.30, 0.55, 0.00, 0.00),   # open, rounded
    "ou": (0.25, 0.15, 1.00, 0.00, 0.00),   # puckered
}

#: Phones drawn differently from their viseme's default (same parameter order).
PHONE_MOUTH: dict[str, tuple[float, float, float, float, float]] = {
    "AE": (0.48, 0.70, 0.00, 0.00, 0.00),   # open and spread, less than AA
    "AH": (0.45, 0.50, 0.05, 0.00, 0.00),   # short "uh"; long AH opens like AA (LONG_OPEN_VOWELS)
    "AO": (0.55, 0.35, 0.55, 0.00, 0.00),
    "ER": (0.25, 0.35, 0.45, 0.00, 0.00),
    "UH": (0.30, 0.25, 0.80, 0.00, 0.00),
    "W": (0.12, 0.10, 1.00, 0.00, 0.00),
    "IY": (0.15, 0.90, 0.00, 0.00, 0.00),
    "Y": (0.15, 0.85, 0.00, 0.00, 0.00),
    "L": (0.38, 0.50, 0.05, 0.00, 0.00),    # tongue tip up behind the teeth, visibly open
    "N": (0.25, 0.50, 0.05, 0.00, 0.00),
    "NG": (0.30, 0.50, 0.10, 0.00, 0.00),
    "ZH": (0.12, 0.30, 0.75, 0.00, 0.00),
}

#: Open vowels (first part) that open fully only when long: phone -> (short jaw, long jaw, seconds
#: from which the long opening applies). The thresholds are Rhubarb Lip Sync's (AH, AY 0.2 s;
#: AW 0.3 s: C below, D from there).
LONG_OPEN_VOWELS: dict[str, tuple[float, float, float]] = {
    "AH": (0.45, 0.80, 0.20),
    "AY": (0.48, 0.85, 0.20),
    "AW": (0.48, 0.85, 0.30),
}

#: Phones drawn differently when very short: phone -> (below this many seconds, mouth). A very
#: short ER is a reduced, unrounded schwa-like "r" (Rhubarb: shorter than 0.07 s it is a schwa).
SHORT_FORMS: dict[str, tuple[float, tuple[float, float, float, float, float]]] = {
    "ER": (0.07, (0.32, 0.50, 0.15, 0.00, 0.00)),
}

#: The neutral half-open mouth short vowels undershoot toward.
NEUTRAL_MOUTH = (0.25, 0.50, 0.10, 0.00, 0.00)

_CLOSURE_STOPS = frozenset({"P", "B"})
_STOPS = frozenset({"P", "B", "T", "D", "K", "G"})
_CONTACT_CLOSURE = frozenset({"P", "B", "M"})
_CONTACT_TUCK = frozenset({"F", "V"})

_V = {name: i for i, name in enumerate(VISEMES)}
_JAW, _WIDTH, _ROUND, _CLOSURE, _TUCK = range(5)

# Dominance per viseme class over (jaw, width, round, closure, tuck), and its "visibility": how
# strongly the phone claims the viseme weights.
_DOMINANCE: dict[str, tuple[tuple[float, float, float, float, float], float]] = {
    "sil": ((1.0, 1.0, 1.0, 1.0, 1.0), 1.0),
    "PP": ((4.0, 0.5, 0.4, 30.0, 10.0), 3.0),
    "FF": ((3.0, 0.5, 0.4, 10.0, 30.0), 3.0),
    "TH": ((2.0, 0.4, 0.3, 5.0, 3.0), 1.2),
    "DD": ((2.0, 0.4, 0.3, 5.0, 5.0), 1.2),
    "kk": ((0.8, 0.3, 0.3, 5.0, 5.0), 1.0),
    "CH": ((2.0, 1.0, 2.0, 5.0, 5.0), 1.5),
    "SS": ((2.5, 0.6, 0.3, 5.0, 5.0), 1.5),
    "nn": ((0.8, 0.3, 0.3, 5.0, 5.0), 1.0),
    "RR": ((1.0, 1.0, 1.5, 5.0, 5.0), 1.0),
    "aa": ((1.5, 1.0, 1.0, 2.0, 2.0), 1.3),
    "E": ((1.2, 1.0, 1.0, 2.0, 2.0), 1.3),
    "ih": ((1.0, 1.2, 1.0, 2.0, 2.0), 1.3),
    "oh": ((1.2, 1.0, 1.5, 2.0, 2.0), 1.3),
    "ou": ((1.0, 1.2, 2.0, 2.0, 2.0), 1.3),
}
# Sounds without a shape of their own (HH, the opening after a P/B burst, very short pauses).
_WEAK_DOMINANCE = ((0.05, 0.05, 0.05, 0.05, 0.05), 0.05)


@dataclass(frozen=True)
class CoarticulationConfig:
    """How the mouth moves between phones. Times in seconds.

    Attributes:
        anticipation_s: time constant of the mouth moving toward a coming shape: a phone's
            dominance falls by e for every anticipation_s before its core (motion visibly starts
            ~2-3x this, i.e. 50-75 ms, ahead of the sound).
        carryover_s: the same after a phone's core (the mouth leaving a shape).
        rounding_anticipation_s: time constant for lip rounding/protrusion, which is anticipated
            further ahead (across consonants, e.g. "str" in "straw").
        contact_s: time constant for lip closure (P B M) and lower-lip tuck (F V) after the
            contact's core: contacts are broken fast.
        contact_anticipation_s: the same before the core: the lips close at the closure onset
            (the phone's start), not before it.
        viseme_anticipation_s, viseme_carryover_s: the same time constants for the viseme
            weights. Shorter than the mouth's: the weights say which sound's shape is showing
            (they cross over near the phone boundary), the mouth parameters carry the motion.
        lead_s: every shape's core starts this much before its sound.
        release_s, release_share: P/B keep the lips closed over their phone (the closure) but
            its last min(release_s, release_share x duration), where they open toward the next
            sound (the burst).
        min_hold_s: phones shorter than this (lip contacts excepted) have their dominance scaled
            down in proportion, merging them into their neighbours.
        min_hold_floor: the least share of its dominance a very short phone keeps.
        short_pause_s: pauses inside speech shorter than this hold the surrounding mouth instead
            of going to rest (Rhubarb: 0.12 s).
        full_vowel_s: vowels shorter than this undershoot their target in proportion (down to
            `min_vowel_reach`).
        min_vowel_reach: the least share of its target a very short vowel reaches.
        contact_frame_threshold: a P/B/M (F/V) whose closure (tuck) does not reach this on any
            frame gets the frame that overlaps it most forced to full closure (tuck).
        sample_step_s: sub-sampling step inside a frame (the frame shows the mean of its samples, taken at
            the midpoints of equal sub-intervals).
        max_samples_per_frame: cap on sub-samples per frame.
        dark_l: an L after a vowel and before a consonant or pause (the "dark", velarised L of
            "feel", "old", "help") keeps the vowel's mouth: its tongue works behind closed teeth
            and it is often vocalised outright, so the lips and jaw show the vowel until the
            next sound, but for its last `dark_l_tongue_s` (the tongue tip touching). Onset L
            ("light", "hello") keeps its own open, tongue-up shape throughout.
    """

    anticipation_s: float = 0.025
    carryover_s: float = 0.02
    rounding_anticipation_s: float = 0.05
    contact_s: float = 0.002
    contact_anticipation_s: float = 0.0015
    viseme_anticipation_s: float = 0.012
    viseme_carryover_s: float = 0.012
    lead_s: float = 0.0
    release_s: float = 0.015
    release_share: float = 0.3
    min_hold_s: float = 0.02
    min_hold_floor: float = 0.5
    short_pause_s: float = 0.12
    full_vowel_s: float = 0.10
    min_vowel_reach: float = 0.7
    contact_frame_threshold: float = 0.9
    sample_step_s: float = 0.01
    max_samples_per_frame: int = 16
    dark_l: bool = True
    dark_l_tongue_s: float = 0.04

    def __post_init__(self) -> None:
        for name in ("anticipation_s", "carryover_s", "rounding_anticipation_s", "contact_s", "contact_anticipation_s",
                     "viseme_anticipation_s", "viseme_carryover_s", "sample_step_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"CoarticulationConfig.{name} must be a positive number of seconds, got {value!r}")
        for name in ("lead_s", "release_s", "min_hold_s", "short_pause_s", "full_vowel_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"CoarticulationConfig.{name} must be >= 0 seconds, got {value!r}")
        if not 0 <= self.release_share < 1:
            raise ValueError(f"CoarticulationConfig.release_share must be in [0, 1), got {self.release_share!r}")
        if not 0 < self.min_vowel_reach <= 1 or not 0 < self.contact_frame_threshold <= 1:
            raise ValueError("CoarticulationConfig: min_vowel_reach and contact_frame_threshold must be in (0, 1]")
        if int(self.max_samples_per_frame) < 1:
            raise ValueError("CoarticulationConfig.max_samples_per_frame must be >= 1")


# --- phones ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def normalize_phone(phone: str) -> str:
    """An ARPAbet phone without stress ("AH0" -> "AH"), "SIL" for silences; unknown -> "AH".

    Accepts the usual silence spellings ("", "sil", "sp", "pau", "_"), lower case and stress
    digits. Anything else unknown gets the neutral half-open "AH" (never raises).
    """
    core = (phone or "").strip().upper()
    if core in ("", "SIL", "SP", "SPN", "PAU", "SILENCE", "<SIL>", "NSN") or core.startswith("_") or core.startswith("+"):
        return SILENCE
    if core[-1:] in "012" and core[:-1] in PHONE_TO_VISEME:
        core = core[:-1]
    return core if core in PHONE_TO_VISEME else "AH"


def viseme_of(phone: str, next_phone: Optional[str] = None, prev_phone: Optional[str] = None) -> str:
    """The viseme of one phone in context: HH takes the next vowel's (else the previous phone's)."""
    phone = normalize_phone(phone)
    if phone == "HH":
        for other in (next_phone, prev_phone):
            if other is not None and normalize_phone(other) not in (SILENCE, "HH"):
                return PHONE_TO_VISEME[normalize_phone(other)]
    return PHONE_TO_VISEME[phone]


def frame_count(duration_s: float, fps: float) -> int:
    """Frames of a track: max(1, round(duration_s * fps))."""
    return max(1, int(round(float(duration_s) * float(fps))))


def _check_positive(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


@dataclass
class _Segments:
    """Phones expanded to shape segments (diphthongs split, P/B burst split), as arrays."""

    core_start: np.ndarray  # float64 [M] (cores tile: core_end[i] == core_start[i+1])
    core_end: np.ndarray
    viseme: np.ndarray      # int [M]
    target: np.ndarray      # float64 [M,5]
    alpha: np.ndarray       # float64 [M,5]
    valpha: np.ndarray      # float64 [M]
    contact: np.ndarray     # int8 [M]: 0 none, 1 closure (P B M), 2 tuck (F V)


def _clean_phones(phones: Sequence[PhonemeTiming], duration_s: float) -> list[tuple[str, float, float]]:
    """Sorted, clipped, gap-free (gaps -> SIL), adjacent SILs merged, covering 0..duration_s."""
    items = []
    for p in phones:
        start, end = float(p.start_s), float(p.end_s)
        if not (start == start and end == end):  # NaN
            continue
        start, end = max(0.0, start), min(duration_s, end)
        if end - start > 1e-9:
            items.append((start, end, normalize_phone(p.phoneme)))
    if any(items[i][0] > items[i + 1][0] for i in range(len(items) - 1)):
        items.sort(key=lambda x: (x[0], x[1]))
    out: list[list] = []
    cursor = 0.0
    for start, end, ph in items:
        if start < cursor:
            start = cursor
            if end - start <= 1e-9:
                continue
        if start > cursor + 1e-9:
            if out and out[-1][0] == SILENCE:
                out[-1][2] = start
            else:
                out.append([SILENCE, cursor, start])
        if ph == SILENCE and out and out[-1][0] == SILENCE:
            out[-1][2] = end
        else:
            out.append([ph, start, end])
        cursor = end
    if cursor < duration_s - 1e-9:
        if out and out[-1][0] == SILENCE:
            out[-1][2] = duration_s
        else:
            out.append([SILENCE, cursor, duration_s])
    return [(ph, s, e) for ph, s, e in out]


@functools.lru_cache(maxsize=512)
def _phone_target(phone: str, part: int, long_: bool, short: bool = False) -> tuple[float, ...]:
    """Target mouth of a phone (part 1: a diphthong's glide), before vowel undershoot."""
    if short and phone in SHORT_FORMS:
        return SHORT_FORMS[phone][1]
    if phone in DIPHTHONG_GLIDES and part == 1:
        return VISEME_MOUTH[DIPHTHONG_GLIDES[phone]]
    target = list(PHONE_MOUTH.get(phone, VISEME_MOUTH[PHONE_TO_VISEME[phone]]))
    if phone in LONG_OPEN_VOWELS:
        short, long_jaw, _ = LONG_OPEN_VOWELS[phone]
        target[_JAW] = long_jaw if long_ else short
    return tuple(target)


def _segments(phones: list[tuple[str, float, float]], config: CoarticulationConfig) -> _Segments:
    """Shape segments with their cores, targets and dominances."""
    # Per segment: start, end, viseme name, target, dominance, visibility, contact, lead, kind, vowel
    # duration (for undershoot; 0 = not a vowel).
    seg_start: list[float] = []
    seg_end: list[float] = []
    seg_vis: list[str] = []
    seg_target: list[tuple] = []
    seg_dom: list[tuple] = []
    seg_valpha: list[float] = []
    seg_contact: list[int] = []
    seg_lead: list[float] = []
    seg_kind: list[str] = []
    seg_vowel: list[float] = []

    def add(s, e, vis, target, dom, valpha, contact, lead, kind, vowel_dur=0.0):
        seg_start.append(s); seg_end.append(e); seg_vis.append(vis); seg_target.append(target)
        seg_dom.append(dom); seg_valpha.append(valpha); seg_contact.append(contact); seg_lead.append(lead)
        seg_kind.append(kind); seg_vowel.append(vowel_dur)

    n = len(phones)
    for i, (ph, s, e) in enumerate(phones):
        dur = e - s
        if ph == SILENCE:
            weak = 0 < i < n - 1 and dur < config.short_pause_s
            dom, vis = _WEAK_DOMINANCE if weak else _DOMINANCE["sil"]
            add(s, e, "sil", VISEME_MOUTH["sil"], dom, vis, 0, 0.0, "sil")
        else:
            lead = config.lead_s
            vis_name = PHONE_TO_VISEME[ph]
            vowel_dur = dur if ph in VOWELS else 0.0
            long_ = ph in LONG_OPEN_VOWELS and dur >= LONG_OPEN_VOWELS[ph][2]
            if ph in DIPHTHONG_GLIDES:
                mid = s + DIPHTHONG_SPLIT * dur
                dom, vis = _DOMINANCE[vis_name]
                add(s, mid, vis_name, _phone_target(ph, 0, long_), dom, vis, 0, lead, "phone", vowel_dur)
                glide = DIPHTHONG_GLIDES[ph]
                dom, vis = _DOMINANCE[glide]
                add(mid, e, glide, _phone_target(ph, 1, long_), dom, vis, 0, 0.0, "phone", vowel_dur)
            elif ph == "HH":
                add(s, e, "aa", NEUTRAL_MOUTH, *_WEAK_DOMINANCE, 0, lead, "weak")
            elif (ph == "L" and config.dark_l and i > 0 and phones[i - 1][0] in VOWELS
                  and (i == n - 1 or phones[i + 1][0] not in VOWELS)):
                dom, vis = _DOMINANCE[vis_name]
                tongue = max(e - config.dark_l_tongue_s, s)
                if tongue > s:  # the vowel goes on, as strongly as before
                    add(s, tongue, seg_vis[-1], seg_target[-1], seg_dom[-1], seg_valpha[-1], 0, 0.0, "phone")
                add(tongue, e, vis_name, _phone_target(ph, 0, False), dom, vis, 0, 0.0, "phone")
            elif ph in _CLOSURE_STOPS and dur > 2 * config.release_s and i < n - 1:
                # The phone is the closure (however long) and then the burst: closed until the release.
                release = min(config.release_s, config.release_share * dur)
                dom, vis = _DOMINANCE[vis_name]
                add(s, e - release, vis_name, _phone_target(ph, 0, False), dom, vis, 1, lead, "phone")
                add(e - release, e, "aa", NEUTRAL_MOUTH, *_WEAK_DOMINANCE, 0, 0.0, "weak")
            else:
                dom, vis = _DOMINANCE[vis_name]
                contact = 1 if ph in _CONTACT_CLOSURE else 2 if ph in _CONTACT_TUCK else 0
                short = ph in SHORT_FORMS and dur < SHORT_FORMS[ph][0]
                add(s, e, vis_name, _phone_target(ph, 0, long_, short), dom, vis, contact, lead, "phone", vowel_dur)

    # Weak segments (HH, the opening after a P/B burst) take the shape of the next sound (HH:
    # else the previous one; a burst before a pause opens toward rest).
    m = len(seg_start)
    following = None
    for i in range(m - 1, -1, -1):
        kind = seg_kind[i]
        if kind == "weak":
            if following is not None:
                seg_vis[i], seg_target[i] = following
            else:
                seg_vis[i], seg_target[i] = "sil", VISEME_MOUTH["sil"]
                if i > 0 and seg_kind[i - 1] == "phone" and seg_contact[i - 1] != 1:
                    seg_vis[i], seg_target[i] = seg_vis[i - 1], seg_target[i - 1]
        elif kind == "sil":
            following = None
        else:
            following = (seg_vis[i], seg_target[i])

    start = np.asarray(seg_start, np.float64)
    end = np.asarray(seg_end, np.float64)
    core_start = start - np.asarray(seg_lead, np.float64)
    core_start[0] = start[0]
    core_start = np.maximum.accumulate(core_start)   # cores never start before the previous one
    core_end = np.empty(m, np.float64)
    core_end[:-1] = core_start[1:]
    core_end[-1] = end[-1]
    target = np.asarray(seg_target, np.float64)
    vowel = np.asarray(seg_vowel, np.float64)
    if config.full_vowel_s > 0:  # vowel undershoot toward the neutral mouth
        reach = np.where(vowel > 0, np.minimum(1.0, config.min_vowel_reach + (1 - config.min_vowel_reach)
                                               * vowel / config.full_vowel_s), 1.0)
        neutral = np.asarray(NEUTRAL_MOUTH, np.float64)
        target = neutral + (target - neutral) * reach[:, None]
    alpha = np.asarray(seg_dom, np.float64)
    valpha = np.asarray(seg_valpha, np.float64)
    contact = np.asarray(seg_contact, np.int8)
    if config.min_hold_s > 0:  # minimum hold: short shapes (contacts excepted) merge into neighbours
        scale = np.clip((core_end - core_start) / config.min_hold_s, config.min_hold_floor, 1.0)
        scale[contact > 0] = 1.0
        alpha *= scale[:, None]
        valpha *= scale
    return _Segments(core_start=core_start, core_end=core_end,
                     viseme=np.asarray([_V[v] for v in seg_vis], np.int64),
                     target=target, alpha=alpha, valpha=valpha, contact=contact)


def _blend(seg: _Segments, t: np.ndarray, config: CoarticulationConfig, reach: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Viseme weights [S,15] and mouth [S,5] at times t (float64 [S]), float32."""
    m = len(seg.core_start)
    idx = np.searchsorted(seg.core_start, t, side="right") - 1
    k = idx[:, None] + np.arange(-reach, reach + 1)[None, :]          # [S,K] nearby segments
    valid = (k >= 0) & (k < m)
    k = np.clip(k, 0, m - 1)
    before = np.maximum(seg.core_start[k] - t[:, None], 0.0).astype(np.float32)  # t before the core
    after = np.maximum(t[:, None] - seg.core_end[k], 0.0).astype(np.float32)     # t after the core
    # Three decay profiles: jaw/width (and visemes), rounding, contacts (closure/tuck).
    d_main = np.exp(-(before / config.anticipation_s + after / config.carryover_s)) * valid
    d_round = np.exp(-(before / config.rounding_anticipation_s + after / config.carryover_s)) * valid
    d_contact = np.exp(-(before / config.contact_anticipation_s + after / config.contact_s)) * valid
    alpha = seg.alpha.astype(np.float32)[k]                            # [S,K,5]
    target = seg.target.astype(np.float32)[k]
    dom = np.empty_like(alpha)
    dom[:, :, 0:2] = alpha[:, :, 0:2] * d_main[:, :, None]
    dom[:, :, 2] = alpha[:, :, 2] * d_round
    dom[:, :, 3:5] = alpha[:, :, 3:5] * d_contact[:, :, None]
    mouth = np.einsum("skp,skp->sp", dom, target) / np.maximum(dom.sum(axis=1), 1e-12)

    # Visibility: lip contacts appear and vanish at contact speed, other shapes at the main one.
    d_vis = np.exp(-(before / config.viseme_anticipation_s + after / config.viseme_carryover_s)) * valid
    vdom = seg.valpha.astype(np.float32)[k] * np.where(seg.contact[k] > 0, d_contact, d_vis)   # [S,K]
    vis = seg.viseme[k]
    weights = np.zeros((len(t), len(VISEMES)), np.float32)
    rows = np.arange(len(t))
    for j in range(k.shape[1]):  # one column at a time: no repeated (row, viseme) pairs
        weights[rows, vis[:, j]] += vdom[:, j]
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    return weights, mouth


def frame_visemes(
    phones: Sequence[PhonemeTiming],
    duration_s: float,
    fps: float,
    config: Optional[CoarticulationConfig] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per video frame: viseme weights float32 [N,15] (rows sum to 1) and mouth float32 [N,5] (0..1).

    Args:
        phones: ARPAbet phones (stress digits and silence spellings tolerated, see
            `normalize_phone`) with start/end seconds; gaps count as silence.
        duration_s: length of the audio; N = max(1, round(duration_s * fps)).
        fps: video frame rate, any positive value (23.976, 25, 29.97, 60, 100 ...).
        config: coarticulation settings (defaults: `CoarticulationConfig()`).

    Frame i covers [i/fps, (i+1)/fps) and shows the mean over that interval (module docstring).
    """
    config = config or CoarticulationConfig()
    duration_s = _check_positive("duration_s", duration_s)
    fps = _check_positive("fps", fps)
    n = frame_count(duration_s, fps)
    cleaned = _clean_phones(phones, duration_s) or [(SILENCE, 0.0, duration_s)]
    seg = _segments(cleaned, config)

    per_frame = int(min(max(1, math.ceil((1.0 / fps) / config.sample_step_s)), config.max_samples_per_frame))
    weights = np.empty((n, len(VISEMES)), np.float32)
    mouth = np.empty((n, len(MOUTH_PARAMS)), np.float32)
    sub = (np.arange(per_frame) + 0.5) / per_frame
    chunk = max(1, 65536 // per_frame)
    for first in range(0, n, chunk):
        frames = np.arange(first, min(n, first + chunk))
        t = ((frames[:, None] + sub[None, :]) / fps).ravel()
        w, mo = _blend(seg, t, config)
        weights[frames] = w.reshape(len(frames), per_frame, -1).mean(axis=1)
        mouth[frames] = mo.reshape(len(frames), per_frame, -1).mean(axis=1)

    _force_contacts(seg, weights, mouth, fps, config)
    np.clip(mouth, 0.0, 1.0, out=mouth)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights.astype(np.float32), mouth.astype(np.float32)


def _force_contacts(seg: _Segments, weights: np.ndarray, mouth: np.ndarray, fps: float,
                    config: CoarticulationConfig) -> None:
    """Every P/B/M reaches full lip closure (F/V full tuck) on the frame overlapping it most."""
    n = len(weights)
    for kind, param, viseme in ((1, _CLOSURE, "PP"), (2, _TUCK, "FF")):
        sel = np.nonzero(seg.contact == kind)[0]
        if not len(sel):
            continue
        a = np.clip(seg.core_start[sel], 0.0, n / fps)
        b = np.clip(seg.core_end[sel], 0.0, n / fps)
        mid = np.clip(np.floor((a + b) / 2 * fps).astype(np.int64), 0, n - 1)
        cand = np.clip(mid[:, None] + np.array([-1, 0, 1])[None, :], 0, n - 1)   # [C,3]
        overlap = np.minimum(b[:, None], (cand + 1) / fps) - np.maximum(a[:, None], cand / fps)
        best = cand[np.arange(len(sel)), np.argmax(overlap, axis=1)]
        # Segments already fully shown somewhere in their span need nothing.
        first = np.clip(np.floor(a * fps).astype(np.int64), 0, n - 1)
        last = np.clip(np.ceil(b * fps).astype(np.int64) - 1, 0, n - 1)
        last = np.maximum(last, first)
        ok = np.zeros(len(sel), bool)
        for j in range(3):  # cores of contacts are short: checking up to a few frames suffices
            f = np.minimum(first + j, last)
            ok |= mouth[f, param] >= config.contact_frame_threshold
        long_span = (last - first) >= 3
        if np.any(long_span):  # long closures (a held "mmm"): check their whole span
            for c in np.nonzero(long_span)[0]:
                ok[c] |= bool(np.max(mouth[first[c]:last[c] + 1, param]) >= config.contact_frame_threshold)
        f = best[~ok]
        if not len(f):
            continue
        target = VISEME_MOUTH[viseme]
        mouth[f, param] = 1.0
        mouth[f, _JAW] = np.minimum(mouth[f, _JAW], target[_JAW] + 0.05)
        other = _TUCK if param == _CLOSURE else _CLOSURE
        mouth[f, other] = 0.0
        onehot = np.zeros(len(VISEMES), np.float32)
        onehot[_V[viseme]] = 1.0
        weights[f] = 0.75 * onehot + 0.25 * weights[f]


def build_track(
    phones: Sequence[PhonemeTiming],
    words: Sequence[WordTiming],
    duration_s: float,
    fps: float,
    *,
    method: str,
    language: str = "en-us",
    alignment_score: Optional[float] = None,
    warnings: Iterable[str] = (),
    config: Optional[CoarticulationConfig] = None,
) -> VisemeTrack:
    """A VisemeTrack from timed phones (ARPAbet + SIL) and words.

    The phones are cleaned (stress digits dropped, sorted, clipped to 0..duration_s, gaps filled
    with SIL) and stored as such; the per-frame arrays come from `frame_visemes`.
    """
    duration_s = _check_positive("duration_s", duration_s)
    fps = _check_positive("fps", fps)
    cleaned = _clean_phones(phones, duration_s) or [(SILENCE, 0.0, duration_s)]
    weights, mouth = frame_visemes([PhonemeTiming(p, s, e) for p, s, e in cleaned], duration_s, fps, config)
    return VisemeTrack(
        fps=fps,
        duration_s=duration_s,
        words=[WordTiming(w.word, float(w.start_s), float(w.end_s)) for w in words],
        phones=[PhonemeTiming(p, float(s), float(e)) for p, s, e in cleaned],
        viseme_weights=weights,
        mouth=mouth,
        method=method,
        language=language,
        alignment_score=alignment_score,
        warnings=list(warnings),
    )
