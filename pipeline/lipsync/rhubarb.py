"""Rhubarb Lip Sync compatibility: its mouth shapes, its shape rules, and its JSON format.

Rhubarb Lip Sync (Daniel S. Wolf, https://github.com/DanielSWolf/rhubarb-lip-sync, MIT) animates
2D mouths with nine shapes (README "Mouth shapes"):

    A  closed mouth (P, B, M)                    B  slightly open, clenched teeth (most consonants, EE)
    C  open (EH, AE; in-between to D)            D  wide open (AA)
    E  slightly rounded (AO, ER; in-between to F) F  puckered (UW, OW, W)
    G  upper teeth on the lower lip (F, V)       H  tongue raised, open (long L)
    X  idle / rest (pauses)

A-F are the basic shapes; G, H and X are optional ("--extendedShapes", default "GHX"). A missing
extended shape is replaced by its basic shape as in Rhubarb's getBasicShape()
(src/animation/animationRules.cpp): G -> A, H -> C, X -> A.

Shape rules (the reference for "the shape set a frame allows"). Reimplemented from Rhubarb's
published rules, not its code: getShapeSets() in src/animation/animationRules.cpp and
getShapeRules() in src/animation/ShapeRule.cpp, with the pause rule of
src/animation/pauseAnimation.cpp. Per phone (durations in seconds):

    AA {D}   AE {C}   EH {C}   AO {E}   IY {B}   IH {B}   UW {F}   UH {F}
    AH: {C} if shorter than 0.20 else {D}        ER: {B,C} (schwa) if shorter than 0.07 else {E}
    diphthongs, first 60 % then the rest: EY {C}->{B}; OY {E}->{B}; OW {E}->{F};
        AY {C}->{B} if shorter than 0.20 else {D}->{B}; AW {C}->{E} if shorter than 0.30 else {D}->{E}
    stops, as occlusion + release; the occlusion lasts clamp(previous phone's duration / 2, 0.04,
        0.12): P B: {A} then any shape;  T D: {B,F} then any open shape (B-H);  K G: {B,C,E,F,H}
        then any open. Where the occlusion goes depends on how the stop is timed (`stops`):
        Rhubarb's recogniser starts a stop at its burst ("release"), so its rule puts the
        occlusion before the phone, over the end of the phone before. Our phones (aligners,
        CMU/ARPAbet, and the benchmark's ground truth) start a stop at its closure ("closure",
        the default): the phone already contains the occlusion, so it covers the stop's first
        min(occlusion, duration); putting it before as well would ask for lips closed 40-120 ms
        before the acoustic closure.
    CH JH TH DH S Z SH ZH {B,F}   F V {G}   M {A}   N {B,C,F,H}   NG {B,C,E,F}
    L: {B,E,F,H} if shorter than 0.20 else {H}   R {B,E,F}   Y {B,C,F}   W {F}   HH any shape
    silence: {X}; but pauses inside speech shorter than 0.12 s hold the previous shape (its set, or
        X), and pauses up to 0.35 s show a relaxed form of it (Rhubarb's relax(): D->C, C->B, E->C,
        F->B, H->B, G->X, B->B, A->A) or X.

What is *not* part of the reference: Rhubarb's own choices inside those sets (its rough animation,
tweens and timing optimisation) - those are one animator's way through the allowed sets, and any
shape in the set is acceptable. The stress-based schwa of Rhubarb's recogniser is not known from
ARPAbet without stress, so AH follows Rhubarb's AH rule.

Our tracks are turned into shapes as Rhubarb would draw them (`shapes_with_phones`): each frame
shows the shape set of the phone whose viseme dominates it (the phone under the frame, or a
neighbour being anticipated or carried over), the mouth parameters choosing within the set; a
frame without phones falls back to `viseme_to_rhubarb` (dominant viseme + mouth parameters).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from ..speech.timing import PhonemeTiming
from . import visemes as _visemes
from .track import MOUTH_PARAMS, SILENCE, VISEMES, VisemeTrack

SHAPES = ("A", "B", "C", "D", "E", "F", "G", "H", "X")
BASIC_SHAPES = frozenset("ABCDEF")
EXTENDED_SHAPES = frozenset("GHX")
#: Rhubarb's getBasicShape(): what an extended shape becomes when it is not in the target set.
BASIC_FALLBACK = {"G": "A", "H": "C", "X": "A"}
#: Rhubarb's relax(): the shape a short pause relaxes the previous shape to.
RELAXED = {"A": "A", "B": "B", "C": "B", "D": "C", "E": "C", "F": "B", "G": "X", "H": "B", "X": "X"}

_ANY = frozenset(SHAPES)
_ANY_OPEN = frozenset("BCDEFGH")

# Rhubarb's timing constants, seconds.
DIPHTHONG_SPLIT = 0.6
OCCLUSION_MIN_S = 0.04
OCCLUSION_MAX_S = 0.12
HOLD_PAUSE_S = 0.12
RELAX_PAUSE_S = 0.35
#: How stop phones are timed: "closure" (they start at the closure: ARPAbet/CMU alignments, ours)
#: or "release" (they start at the burst: Rhubarb's own convention, espeak-ng's events).
STOP_TIMINGS = ("closure", "release")

_SINGLE: dict[str, frozenset] = {
    "AA": frozenset("D"), "AE": frozenset("C"), "EH": frozenset("C"), "AO": frozenset("E"),
    "IY": frozenset("B"), "IH": frozenset("B"), "UW": frozenset("F"), "UH": frozenset("F"),
    "CH": frozenset("BF"), "JH": frozenset("BF"), "TH": frozenset("BF"), "DH": frozenset("BF"),
    "S": frozenset("BF"), "Z": frozenset("BF"), "SH": frozenset("BF"), "ZH": frozenset("BF"),
    "F": frozenset("G"), "V": frozenset("G"), "M": frozenset("A"), "N": frozenset("BCFH"),
    "NG": frozenset("BCEF"), "R": frozenset("BEF"), "Y": frozenset("BCF"), "W": frozenset("F"),
    "HH": _ANY,
}
_PLOSIVES: dict[str, tuple[frozenset, frozenset]] = {
    "P": (frozenset("A"), _ANY), "B": (frozenset("A"), _ANY),
    "T": (frozenset("BF"), _ANY_OPEN), "D": (frozenset("BF"), _ANY_OPEN),
    "K": (frozenset("BCEFH"), _ANY_OPEN), "G": (frozenset("BCEFH"), _ANY_OPEN),
}

ShapeRule = tuple[float, float, frozenset]  # (start, end, allowed shapes), seconds


def _target_set(extended_shapes: str) -> frozenset:
    extra = frozenset(str(extended_shapes).upper())
    unknown = extra - EXTENDED_SHAPES
    if unknown:
        raise ValueError(f"extended_shapes: only G, H and X are extended shapes, got {''.join(sorted(unknown))!r}")
    return BASIC_SHAPES | extra


def to_target_shape(shape: str, extended_shapes: str = "GHX") -> str:
    """A shape as drawn with only the basic shapes plus `extended_shapes` (Rhubarb's fallbacks)."""
    return shape if shape in _target_set(extended_shapes) else BASIC_FALLBACK[shape]


def _convert(shapes: Iterable[str], target: frozenset) -> frozenset:
    return frozenset(s if s in target else BASIC_FALLBACK[s] for s in shapes)


def _check_stops(stops: str) -> str:
    if stops not in STOP_TIMINGS:
        raise ValueError(f"stops: expected one of {', '.join(STOP_TIMINGS)}, got {stops!r}")
    return stops


def phone_shape_rules(phone: str, duration_s: float, prev_duration_s: float = 0.0, *,
                      stops: str = "closure") -> list[ShapeRule]:
    """Rhubarb's shape rules of one phone, times relative to the phone's start.

    Usually one rule over [0, duration]; diphthongs give two (60/40). Stops give the occlusion,
    lasting occ = clamp(prev/2, 0.04, 0.12), then the release; where depends on how the stop is
    timed (`stops`, see the module text): "closure" (our phones: the stop starts at its closure)
    gives the occlusion over [0, min(occ, duration)] and the release over the rest; "release"
    (the stop starts at its burst, Rhubarb's own timing) gives the occlusion over [-occ, 0] and
    the release over [0, duration]. SIL gives {X} (the pause rule needs the neighbours: see
    `shape_rules`).
    """
    ph = _visemes.normalize_phone(phone)
    d = float(duration_s)
    if ph == SILENCE:
        return [(0.0, d, frozenset("X"))]
    if ph in _PLOSIVES:
        occlusion, release = _PLOSIVES[ph]
        occ = min(max(float(prev_duration_s) / 2, OCCLUSION_MIN_S), OCCLUSION_MAX_S)
        if _check_stops(stops) == "release":
            return [(-occ, 0.0, occlusion), (0.0, d, release)]
        occ = min(occ, d)
        return [(0.0, occ, occlusion)] + ([(occ, d, release)] if occ < d else [])
    diphthongs = {
        "EY": ("C", "B"), "OY": ("E", "B"), "OW": ("E", "F"),
        "AY": ("C" if d < 0.20 else "D", "B"), "AW": ("C" if d < 0.30 else "D", "E"),
    }
    if ph in diphthongs:
        first, second = diphthongs[ph]
        split = DIPHTHONG_SPLIT * d
        return [(0.0, split, frozenset(first)), (split, d, frozenset(second))]
    if ph == "AH":
        return [(0.0, d, frozenset("C" if d < 0.20 else "D"))]
    if ph == "ER":
        return [(0.0, d, frozenset("BC") if d < 0.07 else frozenset("E"))]
    if ph == "L":
        return [(0.0, d, frozenset("BEFH") if d < 0.20 else frozenset("H"))]
    return [(0.0, d, _SINGLE[ph])]


def allowed_shapes(
    phone: str,
    duration_s: float,
    prev_phone: Optional[str] = None,
    next_phone: Optional[str] = None,
    *,
    prev_duration_s: Optional[float] = None,
    extended_shapes: str = "GHX",
) -> frozenset:
    """The shapes Rhubarb's rules accept for a phone: the characteristic set of the phone.

    Stops give their occlusion set (P/B -> {A}, T/D -> {B,F}, K/G -> {B,C,E,F,H}): that is the
    shape that shows the stop; the release that follows allows (nearly) any shape (see
    `shape_rules`, which places both in time). Diphthongs give the union of both parts.
    SIL: a pause inside speech (prev_phone and next_phone given, neither silence) shorter than
    0.12 s holds the shapes the previous phone ends with (or X); up to 0.35 s relaxed forms of them (or X);
    longer pauses and pauses at the edges {X}. next_phone is used only for that pause rule
    (no other Rhubarb rule depends on the next phone).

    `duration_s` matters for AH, AY, AW (open when long), ER (schwa when very short) and L.
    Shapes outside the basic set plus `extended_shapes` are replaced as Rhubarb does.
    """
    target = _target_set(extended_shapes)
    ph = _visemes.normalize_phone(phone)
    d = float(duration_s)
    if ph == SILENCE:
        inner = prev_phone is not None and next_phone is not None and \
            _visemes.normalize_phone(next_phone) != SILENCE and _visemes.normalize_phone(prev_phone) != SILENCE
        if not inner or d > RELAX_PAUSE_S:
            return _convert("X", target)
        pd = prev_duration_s if prev_duration_s is not None else 0.1
        prev = phone_shape_rules(prev_phone, pd)[-1][2]  # the shape held at the end of the phone before
        if d < HOLD_PAUSE_S:
            return _convert(prev | {"X"}, target)
        return _convert({RELAXED[s] for s in prev} | {RELAXED[RELAXED[s]] for s in prev} | {"X"}, target)
    rules = phone_shape_rules(ph, d, prev_duration_s or 0.0)
    if ph in _PLOSIVES:
        return _convert(rules[0][2], target)
    out: set[str] = set()
    for _, _, shapes in rules:
        out |= shapes
    return _convert(out, target)


def shape_rules(phones: Sequence[PhonemeTiming], duration_s: Optional[float] = None, *,
                extended_shapes: str = "GHX", stops: str = "closure") -> list[ShapeRule]:
    """Rhubarb's shape-rule timeline for timed phones: contiguous (start, end, shapes) over 0..duration.

    Phones are cleaned like `visemes.frame_visemes` does (gaps -> SIL). Later rules overwrite
    earlier ones where they overlap (a stop's occlusion overwrites the end of the phone before),
    as in Rhubarb's getShapeRules(); pauses inside speech follow the pause rule of
    `allowed_shapes`. `stops`: how stop phones are timed (`phone_shape_rules`).
    """
    _check_stops(stops)
    if duration_s is None:
        duration_s = max((float(p.end_s) for p in phones), default=0.0)
    duration_s = float(duration_s)
    if duration_s <= 0:
        return []
    cleaned = _visemes._clean_phones(phones, duration_s) or [(SILENCE, 0.0, duration_s)]
    target = _target_set(extended_shapes)
    timeline: list[list] = []  # [start, end, shapes] sorted, contiguous

    def put(start: float, end: float, shapes: frozenset) -> None:
        start, end = max(0.0, start), min(duration_s, end)
        if end <= start:
            return
        # Overwrite: trim what is already there (only the tail can overlap: rules go forward).
        while timeline and timeline[-1][1] > start:
            last = timeline[-1]
            if last[0] >= start:
                timeline.pop()
            else:
                last[1] = start
        timeline.append([start, end, shapes])

    n = len(cleaned)
    for i, (ph, s, e) in enumerate(cleaned):
        prev_ph, prev_d = (cleaned[i - 1][0], cleaned[i - 1][2] - cleaned[i - 1][1]) if i else (None, 0.0)
        next_ph = cleaned[i + 1][0] if i + 1 < n else None
        if ph == SILENCE:
            put(s, e, allowed_shapes(ph, e - s, prev_ph, next_ph, prev_duration_s=prev_d, extended_shapes=extended_shapes))
            continue
        for rs, re_, shapes in phone_shape_rules(ph, e - s, prev_d, stops=stops):
            put(s + rs, s + re_, _convert(shapes, target))
    return [(a, b, c) for a, b, c in timeline]


def allowed_shapes_per_frame(
    phones: Sequence[PhonemeTiming],
    duration_s: float,
    frame_rate: float = 100.0,
    *,
    extended_shapes: str = "GHX",
    tolerance_s: float = 0.0,
    stops: str = "closure",
) -> list[frozenset]:
    """The shape set each frame allows (frame k covers [k/rate, (k+1)/rate); its centre decides).

    With tolerance_s > 0 a frame also allows the shapes of the rules within +-tolerance_s of its
    centre (a lenient score for boundary placement). Frames: max(1, round(duration_s * rate)).
    """
    rules = shape_rules(phones, duration_s, extended_shapes=extended_shapes, stops=stops)
    n = _visemes.frame_count(duration_s, frame_rate)
    if not rules:
        return [_convert("X", _target_set(extended_shapes))] * n
    starts = np.array([r[0] for r in rules])
    centres = (np.arange(n) + 0.5) / float(frame_rate)
    lo = np.clip(np.searchsorted(starts, centres - tolerance_s, side="right") - 1, 0, len(rules) - 1)
    hi = np.clip(np.searchsorted(starts, centres + tolerance_s, side="right") - 1, 0, len(rules) - 1)
    out = []
    for a, b in zip(lo.tolist(), hi.tolist()):
        if a == b:
            out.append(rules[a][2])
        else:
            merged: frozenset = frozenset()
            for j in range(a, b + 1):
                merged = merged | rules[j][2]
            out.append(merged)
    return out


# --- our tracks -> Rhubarb shapes -----------------------------------------------------------

_J, _W, _R, _C, _T = range(5)


def viseme_to_rhubarb(viseme: Union[str, Sequence[float], np.ndarray], mouth: Optional[Sequence[float]] = None,
                      *, extended_shapes: str = "GHX") -> str:
    """One Rhubarb shape for a viseme (name, or a row of 15 weights: the heaviest counts) and mouth.

    The viseme picks among the shapes Rhubarb allows for its phones; the mouth row (jaw_open,
    lip_width, lip_round, lip_closure, lip_tuck) decides within them (without it, the viseme's
    default mouth is used):
        sil -> X when the lips are closed or the jaw is nearly shut (else the shape the mouth
               still holds); PP -> A; FF -> G; TH DD SS CH -> F when rounded, else B;
        kk -> F/E by rounding, C when open, else B; nn -> F when rounded, H when open, else B;
        RR -> E (F when fully rounded); aa -> D when the jaw is wide open, else C;
        E -> C; ih -> B; oh -> E; ou -> F.
    """
    if isinstance(viseme, str):
        name = viseme
    else:
        row = np.asarray(viseme, np.float64).reshape(-1)
        if row.shape[0] != len(VISEMES):
            raise ValueError(f"viseme weights: expected {len(VISEMES)} values, got {row.shape[0]}")
        name = VISEMES[int(np.argmax(row))]
    if name not in _visemes.VISEME_MOUTH:
        raise ValueError(f"unknown viseme {name!r}; expected one of {', '.join(VISEMES)}")
    m = np.asarray(mouth if mouth is not None else _visemes.VISEME_MOUTH[name], np.float64).reshape(-1)
    if m.shape[0] != len(MOUTH_PARAMS):
        raise ValueError(f"mouth: expected {len(MOUTH_PARAMS)} values, got {m.shape[0]}")
    shape = _shape(name, m)
    return to_target_shape(shape, extended_shapes)


def _shape(name: str, m: np.ndarray) -> str:
    jaw, rnd = m[_J], m[_R]
    if name == "sil":
        if m[_C] >= 0.3 or jaw < 0.2:
            return "X"
        name = "aa" if jaw >= 0.3 else "ih"  # a pause that holds an open mouth
        if rnd >= 0.6:
            return "F"
        if rnd >= 0.35:
            return "E"
    if name == "PP" and m[_C] >= 0.5:
        return "A"
    if name == "FF" and m[_T] >= 0.5:
        return "G"
    if name in ("PP", "FF"):  # the lips are not (yet / any more) in contact: draw the open mouth
        return "F" if rnd >= 0.6 else "E" if rnd >= 0.35 else "D" if jaw >= 0.58 else "C" if jaw >= 0.3 else "B"
    if name in ("TH", "DD", "SS", "CH"):
        return "F" if rnd >= 0.45 else "B"
    if name == "kk":
        return "F" if rnd >= 0.6 else "E" if rnd >= 0.35 else "C" if jaw >= 0.3 else "B"
    if name == "nn":
        return "F" if rnd >= 0.6 else "H" if jaw >= 0.25 else "B"
    if name == "RR":  # R, ER; a very short ER is unrounded (Rhubarb: a schwa, B or C)
        return "F" if rnd >= 0.85 else "E" if rnd >= 0.3 else "C" if jaw >= 0.3 else "B"
    if name == "aa":
        return "D" if jaw >= 0.55 else "C"
    if name == "E":
        return "C"
    if name == "ih":
        return "B"
    if name == "oh":
        return "E"
    return "F"  # ou


def shapes_for(viseme_weights: np.ndarray, mouth: np.ndarray, *, extended_shapes: str = "GHX") -> list[str]:
    """`viseme_to_rhubarb` for many rows at once: weights [N,15], mouth [N,5] -> N shapes."""
    w = np.asarray(viseme_weights, np.float64).reshape(-1, len(VISEMES))
    m = np.asarray(mouth, np.float64).reshape(-1, len(MOUTH_PARAMS))
    if len(w) != len(m):
        raise ValueError(f"shapes_for: {len(w)} weight rows but {len(m)} mouth rows")
    if not len(w):
        return []
    dominant = np.argmax(w, axis=1)
    # The rules depend on the mouth only through a few thresholds: group equal cases, classify once.
    keys = np.stack([
        dominant,
        np.digitize(m[:, _J], [0.12, 0.2, 0.25, 0.3, 0.55, 0.58]),
        np.digitize(m[:, _R], [0.3, 0.35, 0.45, 0.6, 0.85]),
        m[:, _C] >= 0.3, m[:, _C] >= 0.5, m[:, _T] >= 0.5,
    ], axis=1).astype(np.int64)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    first = np.zeros(len(unique), np.int64)
    first[inverse[::-1]] = np.arange(len(w))[::-1]  # a representative row per group
    table = [to_target_shape(_shape(VISEMES[int(unique[g, 0])], m[first[g]]), extended_shapes)
             for g in range(len(unique))]
    return [table[g] for g in inverse.tolist()]


#: A typical mouth (jaw_open, lip_width, lip_round, lip_closure, lip_tuck) per shape: chooses
#: within a phone's allowed set the shape nearest to the mouth drawn.
_SHAPE_MOUTH = {
    "A": (0.03, 0.45, 0.10, 1.00, 0.00), "B": (0.15, 0.75, 0.05, 0.00, 0.00), "C": (0.45, 0.60, 0.05, 0.00, 0.00),
    "D": (0.85, 0.55, 0.05, 0.00, 0.00), "E": (0.45, 0.35, 0.50, 0.00, 0.00), "F": (0.20, 0.15, 0.95, 0.00, 0.00),
    "G": (0.12, 0.50, 0.05, 0.00, 1.00), "H": (0.38, 0.50, 0.05, 0.00, 0.00), "X": (0.03, 0.45, 0.10, 0.65, 0.00),
}
#: How far (seconds) a shown viseme may be from the phone it belongs to (anticipation / carry-over).
_MATCH_S = 0.15


def _phone_parts(phones: Sequence[PhonemeTiming], duration_s: float, extended_shapes: str):
    """The parts of the cleaned phones as Rhubarb's rules see them (our stop timing): arrays of
    start and end seconds, the viseme index each part shows, and its allowed shape set."""
    cleaned = _visemes._clean_phones(phones, duration_s) or [(SILENCE, 0.0, duration_s)]
    target = _target_set(extended_shapes)
    starts, ends, vis, sets = [], [], [], []
    n = len(cleaned)
    for i, (ph, s, e) in enumerate(cleaned):
        prev_ph, prev_d = (cleaned[i - 1][0], cleaned[i - 1][2] - cleaned[i - 1][1]) if i else (None, 0.0)
        next_ph = cleaned[i + 1][0] if i + 1 < n else None
        if ph == SILENCE:
            parts = [(0.0, e - s, allowed_shapes(ph, e - s, prev_ph, next_ph, prev_duration_s=prev_d,
                                                 extended_shapes=extended_shapes))]
        else:
            parts = phone_shape_rules(ph, e - s, prev_d)
        for j, (a, b, shapes) in enumerate(parts):
            if ph in _visemes.DIPHTHONG_GLIDES and j == 1:
                name = _visemes.DIPHTHONG_GLIDES[ph]
            else:
                name = _visemes.viseme_of(ph, next_ph, prev_ph)
            starts.append(s + a); ends.append(s + b); vis.append(VISEMES.index(name))
            sets.append(_convert(shapes, target))
    return np.asarray(starts), np.asarray(ends), np.asarray(vis), sets


def shapes_with_phones(viseme_weights: np.ndarray, mouth: np.ndarray, phones: Sequence[PhonemeTiming],
                       duration_s: float, frame_rate: float, *, extended_shapes: str = "GHX") -> list[str]:
    """One shape per frame (frame i shows the instant (i + 0.5) / frame_rate), chosen as Rhubarb does:
    from the shape set its rules give the phone whose viseme the frame shows.

    The dominant viseme says which sound's shape is on screen; that is the phone under the frame, or
    a neighbour within 0.15 s whose shape is anticipated or carried over. Within that phone's set the
    `viseme_to_rhubarb` shape is kept when allowed, else the allowed shape nearest to the mouth drawn.
    A P/B/M (F/V) frame whose lips are not in contact, and a viseme no phone nearby shows, keep the
    `viseme_to_rhubarb` shape. So a short "aa" is D (Rhubarb allows only D for AA) even when
    coarticulation keeps its jaw lower, while the mouth parameters stay smooth for animation.
    """
    w = np.asarray(viseme_weights, np.float64).reshape(-1, len(VISEMES))
    m = np.asarray(mouth, np.float64).reshape(-1, len(MOUTH_PARAMS))
    default = shapes_for(w, m, extended_shapes=extended_shapes)
    if not len(default):
        return default
    starts, ends, vis, sets = _phone_parts(phones, float(duration_s), extended_shapes)
    centres = (np.arange(len(w)) + 0.5) / float(frame_rate)
    here = np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, len(starts) - 1)
    dominant = np.argmax(w, axis=1)
    protos = {k: np.asarray(v) for k, v in _SHAPE_MOUTH.items()}
    pp, ff = VISEMES.index("PP"), VISEMES.index("FF")
    out = list(default)
    for i in range(len(w)):
        v, t = int(dominant[i]), centres[i]
        if (v == pp and m[i, _C] < 0.5) or (v == ff and m[i, _T] < 0.5):
            continue  # lips not in contact: draw the open mouth
        best, best_d = -1, _MATCH_S
        k0 = int(here[i])
        for k in range(max(0, k0 - 4), min(len(starts), k0 + 5)):
            if vis[k] == v:
                d = max(starts[k] - t, t - ends[k], 0.0)
                if d < best_d or (d == best_d and best < 0):
                    best, best_d = k, d
        if best < 0:
            continue
        allowed = sets[best]
        if default[i] in allowed:
            continue
        if len(allowed) == 1:
            out[i] = next(iter(allowed))
        else:
            out[i] = min(sorted(allowed), key=lambda sh: float(np.sum((protos[sh] - m[i]) ** 2)))
    return out


def frame_shapes(track: VisemeTrack, *, extended_shapes: str = "GHX") -> list[str]:
    """One Rhubarb shape per video frame of the track (from its phones' rules when it has phones,
    see `shapes_with_phones`; else from the visemes and mouth alone, `shapes_for`)."""
    if track.phones:
        return shapes_with_phones(track.viseme_weights, track.mouth, track.phones, track.duration_s, track.fps,
                                  extended_shapes=extended_shapes)
    return shapes_for(track.viseme_weights, track.mouth, extended_shapes=extended_shapes)


def shape_per_frame(
    track: VisemeTrack,
    frame_rate: float = 100.0,
    *,
    extended_shapes: str = "GHX",
    from_phones: bool = True,
    config: Optional["_visemes.CoarticulationConfig"] = None,
) -> list[str]:
    """One shape per 1/frame_rate s (default 10 ms) over the track: the benchmark's view.

    from_phones (default): the track's phones are rendered again at frame_rate with the same
    coarticulation model (`config`, default settings), so the shapes are not limited by the
    video frame rate. Otherwise (or when the track has no phones) each short frame takes the
    video frame on screen at its centre. Frames: max(1, round(duration_s * frame_rate)).
    """
    n = _visemes.frame_count(track.duration_s, frame_rate)
    if from_phones and track.phones:
        weights, mouth = _visemes.frame_visemes(track.phones, track.duration_s, frame_rate, config)
        return shapes_with_phones(weights, mouth, track.phones, track.duration_s, frame_rate,
                                  extended_shapes=extended_shapes)
    shapes = frame_shapes(track, extended_shapes=extended_shapes)
    if not shapes:
        return [to_target_shape("X", extended_shapes)] * n
    centres = (np.arange(n) + 0.5) / float(frame_rate)
    idx = np.clip(np.floor(centres * track.fps).astype(np.int64), 0, len(shapes) - 1)
    return [shapes[i] for i in idx.tolist()]


def _truncate_cs(seconds: float) -> float:
    return math.floor(float(seconds) * 100 + 1e-6) / 100


def track_to_rhubarb(track: VisemeTrack, *, sound_file: str = "", extended_shapes: str = "GHX") -> dict:
    """Rhubarb Lip Sync JSON for a track.

    {"metadata": {"soundFile", "duration"}, "mouthCues": [{"start", "end", "value"}, ...]}: cues are
    contiguous from 0 to the duration (truncated to 0.01 s, as Rhubarb does), times rounded to
    0.01 s, equal neighbours merged, shapes limited to A-F plus `extended_shapes`. A cue starts
    where its first video frame starts (frame i: i / fps).
    """
    target = _target_set(extended_shapes)
    duration = _truncate_cs(track.duration_s)
    shapes = frame_shapes(track, extended_shapes=extended_shapes)
    rest = "X" if "X" in target else "A"
    if not shapes:
        shapes = [rest]
    cues: list[dict] = []
    for i, shape in enumerate(shapes):
        start = round(i / track.fps, 2)
        if start >= duration:
            break
        if cues and cues[-1]["value"] == shape:
            continue
        if cues and start <= cues[-1]["start"]:  # frames shorter than 10 ms: the later shape wins
            cues[-1]["value"] = shape
            if len(cues) > 1 and cues[-2]["value"] == shape:
                cues.pop()
            continue
        if cues:
            cues[-1]["end"] = start
        cues.append({"start": start, "end": duration, "value": shape})
    if not cues:
        cues = [{"start": 0.0, "end": duration, "value": shapes[0]}]
    cues[0]["start"] = 0.0
    cues[-1]["end"] = duration
    return {"metadata": {"soundFile": sound_file, "duration": duration}, "mouthCues": cues}


def shapes_from_rhubarb(payload: dict, frame_rate: float = 100.0, duration_s: Optional[float] = None) -> list[str]:
    """Rhubarb JSON (ours or Rhubarb's own) -> one shape per 1/frame_rate s (frame centres decide)."""
    cues = payload.get("mouthCues", [])
    if duration_s is None:
        duration_s = float(payload.get("metadata", {}).get("duration", 0.0)) or (cues[-1]["end"] if cues else 0.0)
    n = _visemes.frame_count(max(duration_s, 1e-9), frame_rate)
    if not cues:
        return ["X"] * n
    starts = np.array([float(c["start"]) for c in cues])
    centres = (np.arange(n) + 0.5) / float(frame_rate)
    idx = np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, len(cues) - 1)
    return [str(cues[i]["value"]) for i in idx.tolist()]
