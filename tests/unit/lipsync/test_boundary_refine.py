"""Boundary refinement: aligned phone boundaries move onto the real spectral change."""

import numpy as np

from talkinghead.pipeline.lipsync.boundary_refine import RefineConfig, log_mel_frames, refine_boundaries
from talkinghead.pipeline.speech.timing import PhonemeTiming

SR = 16000


def _two_sounds(change_s: float, total_s: float = 1.0) -> np.ndarray:
    """A low harmonic vowel-like sound, then a high-band hiss from `change_s` on."""
    t = np.arange(int(total_s * SR)) / SR
    vowel = sum(np.sin(2 * np.pi * 140 * h * t) / h for h in range(1, 8))
    rng = np.random.default_rng(0)
    hiss = np.convolve(rng.standard_normal(len(t)), [1, -1], mode="same")  # high-passed noise
    out = np.where(t < change_s, 0.3 * vowel, 0.3 * hiss)
    return out.astype(np.float32)


def _phones(boundary_s: float) -> list[PhonemeTiming]:
    return [PhonemeTiming("SIL", 0.0, 0.2), PhonemeTiming("AA", 0.2, boundary_s),
            PhonemeTiming("S", boundary_s, 0.8), PhonemeTiming("SIL", 0.8, 1.0)]


def test_boundary_moves_onto_the_change():
    samples = _two_sounds(0.503)
    for aligned in (0.49, 0.51, 0.515):
        phones = _phones(aligned)
        moved = refine_boundaries(phones, samples, SR)
        assert moved == 1
        # within 5 ms: the louder hiss leaks into windows just before it (see the module doc)
        assert abs(phones[2].start_s - 0.503) <= 0.005, (aligned, phones[2].start_s)
        assert phones[1].end_s == phones[2].start_s  # still contiguous


def test_no_move_beyond_the_search_window_or_into_silence_edges():
    samples = _two_sounds(0.55)
    phones = _phones(0.50)  # the change is 50 ms away: out of reach
    refine_boundaries(phones, samples, SR)
    assert abs(phones[2].start_s - 0.55) > 0.03
    assert abs(phones[2].start_s - 0.50) <= RefineConfig().search_s + 1e-9
    assert phones[0].end_s == 0.2 and phones[3].start_s == 0.8  # pause edges untouched


def test_steady_sound_keeps_its_boundary():
    t = np.arange(SR) / SR
    steady = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    phones = _phones(0.5)
    assert refine_boundaries(phones, steady, SR) == 0
    assert phones[2].start_s == 0.5


def test_log_mel_grid_matches_hop():
    feats = log_mel_frames(np.zeros(SR, np.int16), SR)
    assert feats.shape[1] == 24 and abs(feats.shape[0] - SR / 40) <= 1  # one row per 2.5 ms
    assert np.isfinite(feats).all()


def test_bilabial_boundaries_stay_put():
    # the lip closure is timed by the aligner; a burst nearby must not drag it
    samples = _two_sounds(0.503)
    phones = _phones(0.51)
    phones[2].phoneme = "M"
    assert refine_boundaries(phones, samples, SR) == 0 and phones[2].start_s == 0.51
