"""The VisemeAligner benchmark's metrics and ground-truth corrections, on hand-made cases."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_visemes as bv  # noqa: E402
import viseme_corpus as vc  # noqa: E402
from talkinghead.pipeline.speech.timing import PhonemeTiming  # noqa: E402


def phones(*spec):
    """phones(("SIL", 0, .1), ("B", .1, .2), ...)"""
    return [PhonemeTiming(p, float(a), float(b)) for p, a, b in spec]


def seq(labels, step=0.1, start=0.0):
    return [PhonemeTiming(p, start + i * step, start + (i + 1) * step) for i, p in enumerate(labels)]


# --- label alignment -----------------------------------------------------------------------


def test_alignment_of_equal_strings_is_the_diagonal():
    assert bv.align_labels(list("ABC"), list("ABC")) == [(0, 0), (1, 1), (2, 2)]


def test_alignment_handles_insertion_deletion_substitution():
    path = bv.align_labels(["SIL", "B", "AA", "B", "SIL"], ["SIL", "B", "AO", "B", "D", "SIL"])
    assert path == [(0, 0), (1, 1), (2, 2), (3, 3), (None, 4), (4, 5)]
    path = bv.align_labels(["P", "IY", "T", "ER"], ["P", "T", "ER"])
    assert path == [(0, 0), (1, None), (2, 1), (3, 2)]
    assert bv.matched_pairs(["P", "IY", "T", "ER"], ["P", "T", "ER"]) == {0: 0, 2: 1, 3: 2}


def test_alignment_edge_cases():
    assert bv.align_labels([], []) == []
    assert bv.align_labels(["A"], []) == [(0, None)]
    assert bv.align_labels([], ["A", "B"]) == [(None, 0), (None, 1)]
    assert bv.matched_pairs(["A", "B"], ["C", "D"]) == {}


# --- boundary error ------------------------------------------------------------------------


def test_identical_tracks_have_zero_boundary_error_and_all_paired():
    ref = seq(["SIL", "B", "AA", "B", "SIL"])
    r = bv.boundary_errors(ref, ref)
    assert r.considered == 4 and r.errors_s == [0.0] * 4
    assert r.ref_phones == 3 and r.matched_phones == 3


def test_shifted_boundaries_measure_the_shift():
    ref = phones(("SIL", 0, .1), ("M", .1, .2), ("AA", .2, .4), ("SIL", .4, .5))
    hyp = phones(("SIL", 0, .12), ("M", .12, .19), ("AA", .19, .43), ("SIL", .43, .5))
    r = bv.boundary_errors(ref, hyp)
    assert np.allclose(sorted(r.errors_s), [0.01, 0.02, 0.03])
    assert bv.percentile_ms(r.errors_s, 50) == pytest.approx(20.0)


def test_boundaries_next_to_an_insertion_are_not_paired():
    ref = phones(("SIL", 0, .1), ("M", .1, .2), ("AA", .2, .4), ("SIL", .4, .5))
    hyp = phones(("SIL", 0, .1), ("M", .1, .15), ("SIL", .15, .2), ("AA", .2, .4), ("SIL", .4, .5))
    r = bv.boundary_errors(ref, hyp)
    # SIL|M and AA|SIL pair; M|AA has an inserted SIL between the matched phones: not paired
    assert r.considered == 3 and len(r.errors_s) == 2 and max(r.errors_s) == 0.0


def test_boundaries_next_to_a_substitution_are_not_paired_but_phones_count():
    ref = seq(["SIL", "P", "IH", "T", "SIL"])
    hyp = seq(["SIL", "P", "EH", "T", "SIL"])
    r = bv.boundary_errors(ref, hyp)
    assert len(r.errors_s) == 2 and r.considered == 4  # SIL|P and T|SIL
    assert r.ref_phones == 3 and r.matched_phones == 2


def test_only_exact_boundaries_count_when_given():
    ref = phones(("SIL", 0, .1), ("AY", .1, .2), ("ER", .2, .3), ("SIL", .3, .4))
    r = bv.boundary_errors(ref, ref, exact=[0.1, 0.3])
    assert r.considered == 2


# --- frame accuracy ------------------------------------------------------------------------


def toy_allowed(phone, duration_s, prev, nxt, **kw):
    return {"SIL": frozenset("X"), "M": frozenset("A"), "AA": frozenset("CD")}[phone]


def test_frame_accuracy_counts_frames_in_the_allowed_set():
    ref = phones(("SIL", 0, .05), ("M", .05, .1), ("AA", .1, .2))
    shapes = ["X"] * 5 + ["A"] * 5 + ["D"] * 10
    assert bv.frame_accuracy(ref, shapes, toy_allowed) == (20, 20)
    shapes = ["X"] * 6 + ["A"] * 4 + ["B"] * 5 + ["C"] * 5  # one frame late, half the vowel wrong
    assert bv.frame_accuracy(ref, shapes, toy_allowed) == (14, 20)


def test_frame_accuracy_uses_the_frame_instant_and_neighbours():
    seen = []

    def allowed(phone, duration_s, prev, nxt, prev_duration_s):
        seen.append((phone, round(duration_s, 3), prev, nxt, round(prev_duration_s, 3)))
        return frozenset("X")

    ref = phones(("M", 0, .05), ("AA", .05, .1))
    assert bv.frame_accuracy(ref, ["X"] * 10, allowed) == (10, 10)
    assert seen == [("M", 0.05, "SIL", "AA", 0.0), ("AA", 0.05, "M", "SIL", 0.05)]  # once per phone
    # frame 4 shows t=0.04 (M) with offset 0, t=0.05 (AA) with offset 1 frame
    assert bv.phone_at(ref, 0.04) == 0 and bv.phone_at(ref, 0.05) == 1 and bv.phone_at(ref, 9.0) == 1
    assert bv.frame_accuracy(ref, ["A"] * 4 + ["C"] * 6, toy_allowed) == (9, 10)
    assert bv.frame_accuracy(ref, ["A"] * 4 + ["C"] * 6, toy_allowed, offset=0.5) == (9, 10)
    assert bv.frame_accuracy(ref, ["A"] * 4 + ["C"] * 6, toy_allowed, offset=1.0) == (10, 10)
    assert bv.frame_accuracy([], ["X"], toy_allowed) == (0, 0)


def test_frame_accuracy_against_per_frame_sets():
    allowed = [frozenset("X"), frozenset("A"), frozenset("CD"), frozenset("CD")]
    assert bv.frame_accuracy_sets(allowed, ["X", "A", "D", "B"]) == (3, 4)
    assert bv.frame_accuracy_sets(allowed, ["X", "A", "D"]) == (3, 3)  # last frame rounded away
    with pytest.raises(ValueError):
        bv.frame_accuracy_sets(allowed, ["X"])


# --- closure recall ------------------------------------------------------------------------


def test_closure_recall_needs_a_closed_frame_inside_each_bilabial():
    ref = phones(("SIL", 0, .1), ("B", .1, .15), ("AA", .15, .3), ("M", .3, .38), ("P", .38, .385),
                 ("SIL", .385, .5))
    closed = np.zeros(50, bool)
    closed[12] = True  # inside B
    assert bv.closure_recall(ref, closed, 100.0) == (1, 3)
    closed[37] = True  # inside M
    closed[38] = True  # the frame nearest the 5 ms P's middle (0.3825 -> frame 38)
    assert bv.closure_recall(ref, closed, 100.0) == (3, 3)
    closed = np.zeros(50, bool)
    closed[15] = True  # t=0.15 is AA, not B
    assert bv.closure_recall(ref, closed, 100.0) == (0, 3)


def test_closure_recall_at_video_rate_widens_by_half_a_frame():
    ref = phones(("SIL", 0, .1), ("P", .105, .135), ("AA", .135, .3))
    closed = np.zeros(8, bool)
    closed[3] = True  # 25 fps frame 3 shows t=0.12: inside P
    assert bv.closure_recall(ref, closed, 25.0) == (1, 1)
    closed = np.zeros(8, bool)
    closed[4] = True  # t=0.16: 25 ms after P ends, outside even when widened by 20 ms
    assert bv.closure_recall(ref, closed, 25.0, widen_s=0.02) == (0, 1)
    closed[4], closed[2] = False, True  # t=0.08: 25 ms before
    assert bv.closure_recall(ref, closed, 25.0, widen_s=0.02) == (0, 1)
    ref = phones(("SIL", 0, .1), ("P", .13, .155), ("AA", .155, .3))  # no 25 fps instant inside
    closed = np.zeros(8, bool)
    closed[4] = True  # t=0.16, 5 ms after: visible within half a frame
    assert bv.closure_recall(ref, closed, 25.0, widen_s=0.02) == (1, 1)


def test_frames_inside():
    assert list(bv.frames_inside(0.1, 0.15, 100, 100.0)) == [10, 11, 12, 13, 14]
    assert list(bv.frames_inside(0.0, 1.0, 10, 100.0)) == list(range(10))  # clipped to the track
    assert list(bv.frames_inside(0.101, 0.104, 100, 100.0)) == [10]  # nearest to the middle


# --- trivial baseline ------------------------------------------------------------------------


def test_energy_baseline_marks_loud_frames_c_and_quiet_x():
    sr = 1000
    x = np.zeros(300)
    x[100:200] = 0.5 * np.sin(np.arange(100))
    x += 1e-4 * np.random.default_rng(0).standard_normal(300)
    shapes = bv.energy_shapes(x, sr, 30)
    assert shapes == ["X"] * 10 + ["C"] * 10 + ["X"] * 10


# --- ground truth builder ------------------------------------------------------------------


def test_stop_closure_moves_back_over_the_digital_silence():
    sr = 1000
    x = np.ones(500) * 0.1
    x[200:240] = 0.0  # closure silence of the P released at 0.24
    ref = phones(("SIL", 0, .05), ("AA", .05, .24), ("P", .24, .3), ("IY", .3, .5))
    x[:50] = 0.0
    out, shifts = vc.correct_stop_closures(ref, x, sr)
    assert [(p.phoneme, round(p.start_s, 3), round(p.end_s, 3)) for p in out] == [
        ("SIL", 0, .05), ("AA", .05, .2), ("P", .2, .3), ("IY", .3, .5)]
    assert shifts == [pytest.approx(0.04)]
    assert ref[2].start_s == 0.24  # input untouched


def test_stop_after_a_pause_gets_the_typical_closure_not_the_whole_pause():
    sr = 1000
    x = np.ones(1000) * 0.1
    x[0:300] = 0.0  # pause, then the closure of T, all digital silence
    x[500:530] = 0.0  # a closure of 30 ms after speech
    ref = phones(("SIL", 0, .3), ("T", .3, .35), ("AA", .35, .53), ("K", .53, .6), ("SIL", .6, 1.0))
    out, shifts = vc.correct_stop_closures(ref, x, sr)
    assert round(out[1].start_s, 3) == 0.27 and round(out[0].end_s, 3) == 0.27  # typical 30 ms
    assert round(out[3].start_s, 3) == 0.5


def test_a_breathy_closure_is_found_by_its_level_for_voiceless_stops_only():
    sr = 8000
    rng = np.random.default_rng(0)
    x = 0.2 * rng.standard_normal(8000)  # loud "vowels"
    x[2000:2400] *= 0.002  # a P closure 50 ms long with a -60 dB noise floor, released at 0.3 s
    x[5000:5400] *= 0.002  # the same before a B at 0.675 s
    ref = phones(("AA", 0, .3), ("P", .3, .35), ("AA", .35, .675), ("B", .675, .7), ("AA", .7, 1.0))
    out, shifts = vc.correct_stop_closures(ref, x, sr)
    assert out[1].start_s == pytest.approx(0.25, abs=0.0026) and out[0].end_s == out[1].start_s
    assert out[3].start_s == 0.675  # voiced: only digital silence counts
    assert vc.quiet_run_before(x, 2400, 0.01, 20, 10_000) == 400
    assert vc.quiet_run_before(x, 2400, 0.01, 20, 100) == 100  # capped


def test_non_stops_and_voiced_closures_are_left_alone():
    sr = 1000
    x = np.ones(400) * 0.1
    x[90:100] = 0.0
    ref = phones(("AA", 0, .1), ("M", .1, .2), ("AA", .2, .3), ("B", .3, .4))  # M after silence; B voiced
    out, shifts = vc.correct_stop_closures(ref, x, sr)
    assert shifts == [] and [p.start_s for p in out] == [0, .1, .2, .3]


def test_noise_has_the_asked_snr_and_is_seeded():
    rng = np.random.default_rng(1)
    x = np.concatenate([np.zeros(1000), 0.3 * rng.standard_normal(8000), np.zeros(1000)])
    for colour in ("white", "pink"):
        y = vc.add_noise(x, 10.0, colour, seed=5)
        noise = y.astype(np.float64) - x
        snr = 10 * np.log10(vc.speech_power(x) / np.mean(noise ** 2))
        assert snr == pytest.approx(10.0, abs=0.1)
        assert np.array_equal(y, vc.add_noise(x, 10.0, colour, seed=5))
    # pink noise has more power in low than in high frequencies (about 1/f)
    p = vc.pink_noise(1 << 14, np.random.default_rng(0))
    spec = np.abs(np.fft.rfft(p)) ** 2
    assert spec[10:100].mean() > 20 * spec[4000:8000].mean()
    assert vc.seed_of("a") == vc.seed_of("a") != vc.seed_of("b")


def test_corpus_plan_covers_the_spec():
    plan = vc.plan()
    assert len({text for _, text, _, _ in plan}) >= 30
    assert {voice for _, _, voice, _ in plan} >= {"en-us", "en-gb", "en-us+f3", "en-us+m3"}
    rates = {rate for _, _, _, rate in plan}
    assert min(rates) == 130 and max(rates) == 220
    assert len({key for key, *_ in vc.plan(full=True)}) == 3 * len(vc.SENTENCES)
