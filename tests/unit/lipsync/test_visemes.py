"""Phones -> visemes and mouth parameters per video frame (pipeline/lipsync/visemes.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from talkinghead.pipeline.lipsync import visemes
from talkinghead.pipeline.lipsync.track import MOUTH_PARAMS, VISEMES, VisemeTrack
from talkinghead.pipeline.speech.timing import PhonemeTiming as P, WordTiming
from talkinghead.pipeline.lipsync.visemes import (
                                                  ARPABET_PHONES, PHONE_TO_VISEME, VISEME_MOUTH, CoarticulationConfig, build_track, frame_visemes,
                                                  )

JAW, WIDTH, ROUND, CLOSURE, TUCK = range(5)


from phone_sequences import seq  # noqa: E402


def test_mapping_covers_every_arpabet_phone_and_silence():
    assert len(ARPABET_PHONES) == 39
    for ph in ARPABET_PHONES + ("SIL",):
        assert PHONE_TO_VISEME[ph] in VISEMES
    assert set(PHONE_TO_VISEME.values()) == set(VISEMES)
    assert {PHONE_TO_VISEME[p] for p in "P B M".split()} == {"PP"}
    assert {PHONE_TO_VISEME[p] for p in "F V".split()} == {"FF"}
    assert PHONE_TO_VISEME["SIL"] == "sil"


def test_same_phone_set_as_phoneset():
    phoneset = pytest.importorskip("talkinghead.pipeline.lipsync.phoneset")
    assert set(phoneset.ARPABET) == set(ARPABET_PHONES)


def test_viseme_mouth_targets_in_range():
    assert set(VISEME_MOUTH) == set(VISEMES)
    for name, target in VISEME_MOUTH.items():
        assert len(target) == len(MOUTH_PARAMS) and all(0 <= v <= 1 for v in target), name
    assert VISEME_MOUTH["PP"][CLOSURE] == 1.0 and VISEME_MOUTH["FF"][TUCK] == 1.0
    assert VISEME_MOUTH["aa"][JAW] >= 0.8 and VISEME_MOUTH["ou"][ROUND] == 1.0


def test_normalize_and_hh_context():
    assert visemes.normalize_phone("ah0") == "AH"
    assert visemes.normalize_phone("sp") == "SIL" and visemes.normalize_phone("") == "SIL"
    assert visemes.normalize_phone("xyz") == "AH"
    assert visemes.viseme_of("HH", next_phone="UW") == "ou"
    assert visemes.viseme_of("HH", next_phone="SIL", prev_phone="IY") == "ih"


def sentence():
    return seq(("SIL", 0.2), ("HH", 0.05), ("AY", 0.2), ("P", 0.06), ("AA", 0.25), ("M", 0.08),
               ("UW", 0.2), ("F", 0.08), ("IH", 0.1), ("SH", 0.1), ("SIL", 0.3))


@pytest.mark.parametrize("fps", [23.976, 25, 29.97, 60, 100])
def test_shapes_rows_and_ranges(fps):
    phones = sentence()
    duration = phones[-1].end_s
    w, m = frame_visemes(phones, duration, fps)
    n = max(1, round(duration * fps))
    assert w.shape == (n, 15) and m.shape == (n, 5)
    assert w.dtype == np.float32 and m.dtype == np.float32
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-5)
    assert (w >= 0).all() and (m >= 0).all() and (m <= 1).all()


@pytest.mark.parametrize("duration", [0.2, 1.0, 3.3337, 61.01])
@pytest.mark.parametrize("fps", [23.976, 25, 29.97, 60])
def test_frame_count_is_round_duration_times_fps(duration, fps):
    w, m = frame_visemes([P("AA", 0.0, duration)], duration, fps)
    assert len(w) == len(m) == max(1, round(duration * fps)) == visemes.frame_count(duration, fps)


@pytest.mark.parametrize("fps", [25, 23.976, 29.97, 60])
@pytest.mark.parametrize("phone", ["P", "B", "M"])
def test_short_closure_is_always_shown(fps, phone):
    # 20 ms of P/B/M between open vowels, at several offsets against the frame grid.
    for offset in np.linspace(0, 0.04, 9):
        phones = seq(("SIL", 0.3 + offset), ("AA", 0.2), (phone, 0.02), ("AA", 0.2), ("SIL", 0.3))
        duration = phones[-1].end_s
        w, m = frame_visemes(phones, duration, fps)
        assert m[:, CLOSURE].max() >= 0.9, (offset, m[:, CLOSURE].max())
        f = int(np.argmax(m[:, CLOSURE]))
        assert VISEMES[int(np.argmax(w[f]))] == "PP"
        assert abs(f / fps - phones[2].start_s) < 0.2  # near the closure, not in the silence


def test_mouth_starts_closing_before_p():
    phones = seq(("SIL", 0.3), ("AA", 0.3), ("P", 0.08), ("AA", 0.3), ("SIL", 0.3))
    p_start = phones[2].start_s
    w, m = frame_visemes(phones, phones[-1].end_s, 100)
    before = int(round(p_start * 100)) - 2  # the frame [p_start-20ms, p_start-10ms)
    assert m[before, JAW] < m[int(0.45 * 100), JAW] - 0.1  # jaw already rising from the open vowel
    assert m[int(0.35 * 100), CLOSURE] < 0.1         # but not during the body of the vowel


@pytest.mark.parametrize("fps", [100, 60, 25])
@pytest.mark.parametrize("prev", [("AA", 0.08), ("AA", 0.3), ("IY", 0.15), ("S", 0.1), ("UW", 0.24)])
@pytest.mark.parametrize("phone", ["P", "B", "M"])
def test_lips_close_at_the_closure_not_long_before(fps, prev, phone):
    """The P/B/M phone starts at the acoustic closure: the lips close there, at most one frame early."""
    phones = seq(("SIL", 0.3), prev, (phone, 0.09), ("AA", 0.2), ("SIL", 0.3))
    start = phones[2].start_s
    _, m = frame_visemes(phones, phones[-1].end_s, fps)
    closed = np.nonzero(m[:, CLOSURE] >= 0.5)[0]
    closed = closed[closed / fps > 0.3]              # not the rest before speech
    first = closed[0]
    assert first / fps >= start - 1.0 / fps - 1e-9, (first / fps, start)   # at most one frame early
    assert first / fps < start + 1.0 / fps                                    # closed from the frame after the onset


def test_long_p_stays_closed_until_its_release():
    """A long P (a pause folded into the stop, "shelf, please") is closed all along, open at its end."""
    phones = [P("SIL", 0.0, 0.6), P("P", 0.6, 0.85), P("L", 0.85, 0.93), P("IY", 0.93, 1.1), P("SIL", 1.1, 1.3)]
    track = build_track(phones, [], 1.3, 100, method="test")
    closure = track.mouth_param("lip_closure")
    dominant = [VISEMES[int(i)] for i in np.argmax(track.viseme_weights, axis=1)]
    for f in range(60, 83):  # frames inside [0.60, 0.83)
        assert closure[f] >= 0.5 and dominant[f] == "PP", (f, closure[f], dominant[f])
    assert closure[88] < 0.2 and dominant[88] != "PP"  # the L is open
    for fps in (25, 30):  # the same at video rates: closed on every frame inside the P
        t25 = build_track(phones, [], 1.3, fps, method="test")
        c = t25.mouth_param("lip_closure")
        inside = [f for f in range(len(c)) if 0.6 <= f / fps and (f + 1) / fps <= 0.84]
        assert inside and all(c[f] >= 0.5 for f in inside), (fps, [round(float(c[f]), 2) for f in inside])


@pytest.mark.parametrize("fps", [25, 30, 60, 100])
def test_mouth_has_no_single_frame_jitter(fps):
    """Mouth parameters move smoothly: no frame that jumps away and straight back (a spike)."""
    phones = seq(("SIL", 0.3), ("HH", 0.05), ("AY", 0.2), ("P", 0.06), ("AA", 0.09), ("M", 0.08), ("UW", 0.2),
                 ("F", 0.08), ("IH", 0.06), ("SH", 0.1), ("AH", 0.05), ("B", 0.05), ("AA", 0.07), ("B", 0.2),
                 ("L", 0.05), ("IY", 0.1), ("SIL", 0.08), ("T", 0.05), ("ER", 0.12), ("SIL", 0.3))
    _, m = frame_visemes(phones, phones[-1].end_s, fps)
    d = np.diff(m[:, :3], axis=0)  # jaw, width, rounding (contacts may snap: closure is a contact)
    spikes = (np.abs(d[:-1]) > 0.15) & (np.abs(d[1:]) > 0.15) & (np.sign(d[:-1]) != np.sign(d[1:]))
    assert not spikes.any(), np.argwhere(spikes)


def test_long_aa_opens_the_jaw_and_silence_rests():
    phones = seq(("SIL", 0.5), ("AA", 0.4), ("SIL", 0.5))
    w, m = frame_visemes(phones, 1.4, 25)
    middle = int(0.7 * 25)
    assert m[middle, JAW] > 0.75
    assert VISEMES[int(np.argmax(w[middle]))] == "aa"
    for f in (2, 33):
        assert VISEMES[int(np.argmax(w[f]))] == "sil" and m[f, JAW] < 0.1


def test_rounding_is_anticipated_across_consonants():
    # "s t r oo": lips round before the vowel starts
    phones = seq(("SIL", 0.3), ("IY", 0.2), ("S", 0.08), ("T", 0.05), ("UW", 0.3), ("SIL", 0.3))
    uw = phones[4].start_s
    w, m = frame_visemes(phones, phones[-1].end_s, 100)
    assert m[int((uw - 0.04) * 100), ROUND] > m[int((phones[1].start_s + 0.1) * 100), ROUND] + 0.2


def test_low_dominance_consonants_take_the_vowel_lips():
    # K between two rounded vowels is rounded, between two spread vowels it is spread.
    rounded = seq(("SIL", 0.2), ("UW", 0.2), ("K", 0.06), ("UW", 0.2), ("SIL", 0.2))
    spread = seq(("SIL", 0.2), ("IY", 0.2), ("K", 0.06), ("IY", 0.2), ("SIL", 0.2))
    k = int((0.43) * 100)
    _, mr = frame_visemes(rounded, 0.86, 100)
    _, ms = frame_visemes(spread, 0.86, 100)
    assert mr[k, ROUND] > 0.7 and ms[k, ROUND] < 0.2
    assert ms[k, WIDTH] > mr[k, WIDTH] + 0.4


def test_f_v_tuck_and_short_ones_still_shown():
    phones = seq(("SIL", 0.3), ("AA", 0.2), ("F", 0.015), ("AA", 0.2), ("SIL", 0.3))
    w, m = frame_visemes(phones, phones[-1].end_s, 25)
    assert m[:, TUCK].max() >= 0.9


def test_dark_l_keeps_the_vowel_mouth_but_onset_l_shows_its_own():
    # "fool." (coda L before a pause) vs "loo" (onset L): 100 fps, L of 120 ms in both.
    coda = seq(("SIL", 0.3), ("UW", 0.2), ("L", 0.12), ("SIL", 0.3))
    onset = seq(("SIL", 0.3), ("L", 0.12), ("UW", 0.2), ("SIL", 0.3))
    w, m = frame_visemes(coda, coda[-1].end_s, 100)
    l_start = int(coda[2].start_s * 100)
    middle_of_l = l_start + 5
    assert VISEMES[int(np.argmax(w[middle_of_l]))] == "ou"        # still the vowel's rounded lips
    assert m[middle_of_l, ROUND] > 0.8 * m[int((coda[1].start_s + 0.1) * 100), ROUND]
    tongue = int((coda[2].end_s - 0.02) * 100)                     # the last 40 ms: tongue tip up
    assert VISEMES[int(np.argmax(w[tongue]))] == "nn"
    w_on, m_on = frame_visemes(onset, onset[-1].end_s, 100)
    assert VISEMES[int(np.argmax(w_on[int(onset[1].start_s * 100) + 5]))] == "nn"
    # the switch restores the old behaviour: the whole coda L shows its own shape
    w_off, m_off = frame_visemes(coda, coda[-1].end_s, 100, CoarticulationConfig(dark_l=False))
    assert VISEMES[int(np.argmax(w_off[middle_of_l]))] == "nn"
    assert m_off[middle_of_l, ROUND] < m[middle_of_l, ROUND] - 0.2


def test_diphthong_glides():
    phones = seq(("SIL", 0.3), ("AY", 0.4), ("SIL", 0.3))
    w, m = frame_visemes(phones, 1.0, 100)
    assert VISEMES[int(np.argmax(w[40]))] == "aa" and VISEMES[int(np.argmax(w[66]))] == "ih"
    assert m[40, JAW] > m[66, JAW] + 0.3


def test_silence_only_and_empty_phone_lists():
    for phones in ([], [P("SIL", 0.0, 2.0)]):
        w, m = frame_visemes(phones, 2.0, 25)
        assert len(w) == 50
        assert set(np.argmax(w, axis=1).tolist()) == {VISEMES.index("sil")}
        assert m[:, JAW].max() < 0.05


def test_messy_input_is_cleaned():
    # unsorted, overlapping, gaps, stress digits, lower case, NaN, past the end
    phones = [P("aa1", 0.5, 0.8), P("K", 0.1, 0.2), P("IY", 0.15, 0.3), P("zzz", 0.9, 1.0),
              P("S", float("nan"), 0.4), P("M", 1.1, 5.0)]
    w, m = frame_visemes(phones, 1.5, 25)
    assert len(w) == 38 and np.isfinite(w).all() and np.isfinite(m).all()
    track = build_track(phones, [], 1.5, 25, method="test")
    assert [p.phoneme for p in track.phones] == ["SIL", "K", "IY", "SIL", "AA", "SIL", "AH", "SIL", "M"]
    ends = [p.end_s for p in track.phones]
    assert ends[-1] == 1.5 and all(a.end_s == b.start_s for a, b in zip(track.phones, track.phones[1:]))


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), "x"])
def test_bad_fps_and_duration(bad):
    with pytest.raises(ValueError, match="fps"):
        frame_visemes([], 1.0, bad)
    with pytest.raises(ValueError, match="duration_s"):
        frame_visemes([], bad, 25)


def test_config_is_validated_and_changes_motion():
    with pytest.raises(ValueError):
        CoarticulationConfig(anticipation_s=0)
    with pytest.raises(ValueError):
        CoarticulationConfig(release_share=1.5)
    phones = seq(("SIL", 0.3), ("AA", 0.2), ("UW", 0.2), ("SIL", 0.3))
    _, slow = frame_visemes(phones, 1.0, 100, CoarticulationConfig(anticipation_s=0.08, rounding_anticipation_s=0.15))
    _, fast = frame_visemes(phones, 1.0, 100)
    assert slow[int(0.45 * 100), ROUND] > fast[int(0.45 * 100), ROUND]


def test_hour_long_track_runs():
    rng = np.random.default_rng(1)
    durations = rng.uniform(0.03, 0.2, size=25000)
    starts = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
    names = rng.choice(np.array(ARPABET_PHONES + ("SIL",)), size=len(durations))
    phones = [P(str(n), float(s), float(s + d)) for n, s, d in zip(names, starts, durations)]
    duration = float(starts[-1] + durations[-1])
    assert duration > 2800
    w, m = frame_visemes(phones, duration, 25)
    assert len(w) == round(duration * 25)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-4)


def test_build_track_round_trip():
    phones = sentence()
    words = [WordTiming("hi", 0.2, 0.45), WordTiming("pam", 0.45, 0.84)]
    track = build_track(phones, words, phones[-1].end_s, 23.976, method="speech_timings", alignment_score=-1.5,
                        warnings=["note"])
    assert track.fps == 23.976 and track.method == "speech_timings" and track.warnings == ["note"]
    assert track.num_frames == round(phones[-1].end_s * 23.976)
    again = VisemeTrack.from_json(json.dumps(json.loads(track.to_json())))
    assert again.num_frames == track.num_frames and [p.phoneme for p in again.phones] == [p.phoneme for p in track.phones]
    np.testing.assert_allclose(again.mouth, track.mouth, atol=1e-4)


def test_realistic_speech_from_speak():
    speak = pytest.importorskip("talkinghead.pipeline.speech.speak")
    phoneset = pytest.importorskip("talkinghead.pipeline.lipsync.phoneset")
    try:
        spoken = speak.speak("Bob might buy a map.", speak.SpeakConfig())
    except Exception as exc:  # espeak-ng missing in this environment
        pytest.skip(f"Speak unavailable: {exc}")
    phones = phoneset.convert_speech_timings(spoken.timings)
    track = build_track(phones, spoken.timings.words, spoken.audio.duration_s, 25, method="speech_timings")
    closures = [p for p in track.phones if p.phoneme in ("P", "B", "M")]
    assert len(closures) >= 4
    closure = track.mouth_param("lip_closure")
    for p in closures:  # every closure is visible within its occlusion window
        first = max(0, int((p.start_s - 0.12) * 25))
        last = int(p.end_s * 25) + 1
        assert closure[first:last + 1].max() >= 0.9, p
