"""Context windows and their fuse weights (pipeline/render/diffusion/windows.py): plain numpy, no models."""

from __future__ import annotations

import numpy as np
import pytest

from talkinghead.pipeline.render.diffusion.windows import (
                                                           border_frames, check_window, coverage, window_starts, window_weights, windows,
                                                           )
from talkinghead.pipeline.core.errors import InputError


@pytest.mark.parametrize("n,length,overlap", [(100, 16, 4), (16, 16, 4), (5, 16, 4), (17, 16, 0), (256, 16, 8), (33, 8, 7)])
def test_windows_are_uniform_and_cover_every_frame(n, length, overlap):
    ws = windows(n, length, overlap)
    assert ws[0][0] == 0 and ws[-1][-1] == n - 1
    assert all(len(w) == min(length, n) for w in ws)
    assert all(np.array_equal(w, np.arange(w[0], w[0] + len(w))) for w in ws)
    for a, b in zip(ws, ws[1:]):
        assert b[0] > a[0] and a[-1] - b[0] + 1 >= overlap  # neighbours share at least `overlap` frames
    assert np.all(coverage(n, length, overlap) > 0)


def test_weights_are_a_trapezoid_that_cross_fades():
    w = window_weights(16, 4)
    np.testing.assert_allclose(w[:5], [0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(w[-5:], [1.0, 0.8, 0.6, 0.4, 0.2])
    assert np.all(w[4:12] == 1.0)
    # inside a regular overlap the two ramps sum to a constant (a linear cross-fade)
    starts = window_starts(100, 16, 4)
    assert starts[:3] == [0, 12, 24]
    assert np.allclose(w[12:16] + w[:4], 1.0)
    assert np.all(window_weights(8, 0) == 1.0)


def test_borders_and_bad_arguments():
    assert list(border_frames(28, 16, 4)) == [11, 15]
    with pytest.raises(InputError, match="context_overlap"):
        check_window(16, 16)
    with pytest.raises(InputError, match="context_length"):
        check_window(0, 0)
