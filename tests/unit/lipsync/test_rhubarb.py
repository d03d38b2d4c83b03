"""Rhubarb Lip Sync shapes, shape rules and JSON export (pipeline/lipsync/rhubarb.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from talkinghead.pipeline.lipsync import rhubarb
from talkinghead.pipeline.lipsync.rhubarb import (
                                                  allowed_shapes, allowed_shapes_per_frame, shape_per_frame, shape_rules, track_to_rhubarb, viseme_to_rhubarb,
                                                  )
from talkinghead.pipeline.lipsync.track import VISEMES
from talkinghead.pipeline.lipsync.visemes import ARPABET_PHONES, VISEME_MOUTH, build_track
from talkinghead.pipeline.speech.timing import PhonemeTiming as P


from phone_sequences import seq  # noqa: E402


def test_allowed_shapes_examples():
    assert allowed_shapes("P", 0.08) == {"A"}
    assert allowed_shapes("B", 0.08) == {"A"}
    assert allowed_shapes("M", 0.08) == {"A"}
    assert "D" in allowed_shapes("AA", 0.15)
    assert allowed_shapes("F", 0.1) == {"G"} and allowed_shapes("V", 0.1) == {"G"}
    assert allowed_shapes("UW", 0.1) == {"F"} and allowed_shapes("W", 0.05) == {"F"}
    assert allowed_shapes("EH", 0.1) == {"C"} and allowed_shapes("IY", 0.1) == {"B"}
    assert allowed_shapes("S", 0.1) == {"B", "F"}
    assert allowed_shapes("HH", 0.05) == set(rhubarb.SHAPES)
    # duration-dependent rules
    assert allowed_shapes("AH", 0.1) == {"C"} and allowed_shapes("AH", 0.25) == {"D"}
    assert allowed_shapes("L", 0.1) == {"B", "E", "F", "H"} and allowed_shapes("L", 0.25) == {"H"}
    assert allowed_shapes("ER", 0.05) == {"B", "C"} and allowed_shapes("ER", 0.1) == {"E"}
    assert allowed_shapes("AY", 0.15) == {"C", "B"} and allowed_shapes("AY", 0.3) == {"D", "B"}
    # stress digits / case tolerated
    assert allowed_shapes("aa1", 0.1) == {"D"}


def test_allowed_shapes_for_every_phone_are_valid():
    for ph in ARPABET_PHONES + ("SIL",):
        for d in (0.03, 0.1, 0.4):
            shapes = allowed_shapes(ph, d, "AA", "AA")
            assert shapes and shapes <= set(rhubarb.SHAPES), (ph, d)


def test_pause_rules():
    assert allowed_shapes("SIL", 1.0) == {"X"}
    assert allowed_shapes("SIL", 0.05) == {"X"}  # edge of the recording (no neighbours)
    assert allowed_shapes("SIL", 0.05, "AA", "T", prev_duration_s=0.2) == {"D", "X"}  # held
    assert allowed_shapes("SIL", 0.2, "AA", "T", prev_duration_s=0.2) == {"C", "B", "X"}  # relaxed
    assert allowed_shapes("SIL", 0.5, "AA", "T") == {"X"}


def test_extended_shape_fallbacks_follow_rhubarb():
    # Rhubarb's getBasicShape(): G -> A, H -> C, X -> A
    assert allowed_shapes("F", 0.1, extended_shapes="HX") == {"A"}
    assert allowed_shapes("L", 0.3, extended_shapes="GX") == {"C"}
    assert allowed_shapes("SIL", 1.0, extended_shapes="") == {"A"}
    assert rhubarb.to_target_shape("G", "") == "A" and rhubarb.to_target_shape("H", "G") == "C"
    assert viseme_to_rhubarb("FF", extended_shapes="") == "A"
    assert viseme_to_rhubarb("sil", extended_shapes="GH") == "A"
    with pytest.raises(ValueError, match="extended"):
        allowed_shapes("AA", 0.1, extended_shapes="Q")


def test_shape_rules_timeline_places_occlusions_at_the_stop_closure():
    phones = seq(("SIL", 0.5), ("AA", 0.2), ("P", 0.15), ("AA", 0.2), ("SIL", 0.5))
    rules = shape_rules(phones, 1.55)
    assert rules[0][0] == 0.0 and rules[-1][1] == pytest.approx(1.55)
    for a, b in zip(rules, rules[1:]):
        assert a[1] == pytest.approx(b[0])
    # our phones start a stop at its closure: the occlusion, clamp(0.2 / 2, 0.04, 0.12) = 0.1, is
    # the first part of the P, the vowel before keeps its own shape
    occlusion = [r for r in rules if r[2] == {"A"}]
    assert len(occlusion) == 1
    assert occlusion[0][0] == pytest.approx(0.7) and occlusion[0][1] == pytest.approx(0.8)
    frames = allowed_shapes_per_frame(phones, 1.55, 100)
    assert len(frames) == 155
    assert frames[65] == {"D"} and frames[69] == {"D"} and frames[75] == {"A"} and frames[82] == set(rhubarb.SHAPES)
    assert frames[10] == {"X"}
    lenient = allowed_shapes_per_frame(phones, 1.55, 100, tolerance_s=0.02)
    assert lenient[69] == {"A", "D"}
    # a stop shorter than its occlusion is occlusion all along
    short = shape_rules(seq(("SIL", 0.5), ("AA", 0.2), ("P", 0.05), ("AA", 0.2)), 0.95)
    assert [r for r in short if r[2] == {"A"}][0][:2] == pytest.approx((0.7, 0.75))


def test_shape_rules_with_stops_timed_at_their_release():
    """Rhubarb's own timing (a stop starts at its burst): the occlusion overrides the end of the phone before."""
    phones = seq(("SIL", 0.5), ("AA", 0.2), ("P", 0.08), ("AA", 0.2), ("SIL", 0.5))
    rules = shape_rules(phones, 1.48, stops="release")
    occlusion = [r for r in rules if r[2] == {"A"}]
    assert len(occlusion) == 1
    assert occlusion[0][0] == pytest.approx(0.6) and occlusion[0][1] == pytest.approx(0.7)
    frames = allowed_shapes_per_frame(phones, 1.48, 100, stops="release")
    assert frames[55] == {"D"} and frames[65] == {"A"} and frames[72] == set(rhubarb.SHAPES)
    with pytest.raises(ValueError, match="stops"):
        shape_rules(phones, 1.48, stops="burst")


@pytest.mark.parametrize("fps", [100, 25])
@pytest.mark.parametrize("words", [
    (("B", 0.06), ("AA", 0.09), ("B", 0.08)),            # "Bob"
    (("M", 0.07), ("AA", 0.08), ("M", 0.08)),            # "mom"
    (("AH", 0.06), ("V", 0.05)),                         # "of"
    (("T", 0.05), ("AA", 0.07), ("P", 0.07)),            # "top"
])
def test_short_vowels_get_the_shape_rhubarb_allows(fps, words):
    """Coarticulation keeps a short AA's jaw low, but its shape is still D (Rhubarb allows only D)."""
    phones = seq(("SIL", 0.3), ("AH", 0.1), *words, ("SIL", 0.3))
    track = build_track(phones, [], phones[-1].end_s, fps, method="test")
    shapes = rhubarb.frame_shapes(track)
    fine = shape_per_frame(track, 100)
    for p in phones[2:-1]:
        if p.phoneme not in ("AA", "AH"):
            continue
        allowed = allowed_shapes(p.phoneme, p.end_s - p.start_s)
        mid = (p.start_s + p.end_s) / 2
        assert fine[int(mid * 100)] in allowed, (p, fine[int(mid * 100)])
        assert shapes[int(mid * fps)] in allowed, (p, shapes[int(mid * fps)])
    # the mouth itself stays a smooth, partly open jaw (no snap to the D target)
    jaw = track.mouth_param("jaw_open")
    assert jaw.max() < 0.85


def test_viseme_to_rhubarb():
    expected = {"sil": "X", "PP": "A", "FF": "G", "TH": "B", "DD": "B", "kk": "C", "CH": "F", "SS": "B",
                "nn": "H", "RR": "E", "aa": "D", "E": "C", "ih": "B", "oh": "E", "ou": "F"}
    for name in VISEMES:
        assert viseme_to_rhubarb(name) == expected[name], name
        weights = np.zeros(15, np.float32)
        weights[VISEMES.index(name)] = 1
        assert viseme_to_rhubarb(weights, VISEME_MOUTH[name]) == expected[name]
    # the mouth decides within a viseme
    assert viseme_to_rhubarb("aa", (0.4, 0.6, 0, 0, 0)) == "C"
    assert viseme_to_rhubarb("kk", (0.3, 0.2, 0.9, 0, 0)) == "F"
    assert viseme_to_rhubarb("PP", (0.5, 0.5, 0, 0.1, 0)) in {"C", "D"}  # not closed (yet)
    with pytest.raises(ValueError):
        viseme_to_rhubarb("nope")
    with pytest.raises(ValueError):
        viseme_to_rhubarb(np.zeros(3))


def sentence_track(fps=25.0):
    phones = seq(("SIL", 0.3), ("HH", 0.05), ("AY", 0.22), ("SIL", 0.1), ("M", 0.08), ("AA", 0.2), ("M", 0.07),
                 ("AH", 0.1), ("F", 0.08), ("UW", 0.2), ("L", 0.22), ("SIL", 0.357))
    return build_track(phones, [], phones[-1].end_s, fps, method="test")


@pytest.mark.parametrize("fps", [23.976, 25, 60, 100, 240])
@pytest.mark.parametrize("extended", ["GHX", "", "GX", "H"])
def test_track_to_rhubarb_json(fps, extended):
    track = sentence_track(fps)
    payload = track_to_rhubarb(track, sound_file="/x/hi.wav", extended_shapes=extended)
    payload = json.loads(json.dumps(payload))  # plain JSON
    assert set(payload) == {"metadata", "mouthCues"}
    assert payload["metadata"] == {"soundFile": "/x/hi.wav", "duration": 1.97}  # 1.977 truncated
    cues = payload["mouthCues"]
    assert cues[0]["start"] == 0.0 and cues[-1]["end"] == 1.97
    allowed = set("ABCDEF") | set(extended)
    for cue in cues:
        assert set(cue) == {"start", "end", "value"}
        assert cue["value"] in allowed
        assert cue["end"] > cue["start"]
        assert round(cue["start"], 2) == cue["start"] and round(cue["end"], 2) == cue["end"]
    for a, b in zip(cues, cues[1:]):
        assert a["end"] == b["start"] and a["value"] != b["value"]
    values = [c["value"] for c in cues]
    assert values[0] == ("X" if "X" in extended else "A")
    assert "A" in values and "D" in values
    if "G" in extended:
        assert "G" in values


def test_shape_per_frame_and_reading_rhubarb_json():
    track = sentence_track()
    shapes = shape_per_frame(track, 100)
    assert len(shapes) == round(track.duration_s * 100)
    held = shape_per_frame(track, 100, from_phones=False)
    assert len(held) == len(shapes)
    assert set(shapes) <= set(rhubarb.SHAPES) and set(held) <= set(rhubarb.SHAPES)
    allowed = allowed_shapes_per_frame(track.phones, track.duration_s, 100)
    accuracy = np.mean([s in a for s, a in zip(shapes, allowed)])
    assert accuracy > 0.85
    back = rhubarb.shapes_from_rhubarb(track_to_rhubarb(track), 100)
    assert len(back) == 197
    assert np.mean([a == b for a, b in zip(back, held)]) > 0.95


def test_accuracy_on_speech_from_speak():
    """Perfect phones from espeak-ng: our shapes must agree with Rhubarb's rules almost everywhere."""
    speak = pytest.importorskip("talkinghead.pipeline.speech.speak")
    phoneset = pytest.importorskip("talkinghead.pipeline.lipsync.phoneset")
    text = "Peter Piper picked a peck of pickled peppers. Would you like a bowl of soup?"
    try:
        spoken = speak.speak(text, speak.SpeakConfig())
    except Exception as exc:
        pytest.skip(f"Speak unavailable: {exc}")
    phones = phoneset.convert_speech_timings(spoken.timings)
    duration = spoken.audio.duration_s
    track = build_track(phones, spoken.timings.words, duration, 25, method="speech_timings")
    shapes = shape_per_frame(track, 100)
    allowed = allowed_shapes_per_frame(phones, duration, 100)
    accuracy = float(np.mean([s in a for s, a in zip(shapes, allowed)]))
    assert accuracy >= 0.93, accuracy


def test_vectorised_shapes_match_the_per_row_rule():
    rng = np.random.default_rng(3)
    weights = rng.dirichlet(np.full(15, 0.3), size=4000).astype(np.float32)
    mouth = rng.uniform(0, 1, size=(4000, 5)).astype(np.float32)
    mouth[::3] = np.round(mouth[::3] * 20) / 20  # values exactly on the thresholds
    for extended in ("GHX", ""):
        fast = rhubarb.shapes_for(weights, mouth, extended_shapes=extended)
        slow = [viseme_to_rhubarb(w, m, extended_shapes=extended) for w, m in zip(weights, mouth)]
        assert fast == slow
