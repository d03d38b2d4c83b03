"""Sliding context windows over a clip, and the weights that fuse their predictions.

A clip of N frames is covered by uniform windows of `length` frames that overlap by `overlap`
frames: window starts are 0, S, 2S, ... with stride S = length - overlap, and the last window is
moved back so it ends on the last frame (every window has exactly `length` frames, so the motion
module always sees the clip length it was trained on). A clip no longer than `length` is one window.

Fusing. At every denoising step each window's noise prediction is computed on its own; the
prediction for frame n is the weighted mean over the windows that hold it:

    eps[n] = sum_w weight_w(n - start_w) * eps_w[n] / sum_w weight_w(n - start_w)

with a trapezoid per window, k = 0 .. length-1 the frame's place in it:

    weight(k) = min(1, (k + 1) / (overlap + 1), (length - k) / (overlap + 1))

so across an overlap of O frames one window fades out in steps of 1/(O+1) while the next fades in
(a linear cross-fade, no frame gets its prediction from one window alone next to a frame that gets
it from another). Frames that only one window holds get that window's prediction unchanged
(dividing by the sum), so the edges of the clip are not faded. With overlap 0 the weights are all 1
and windows meet with a hard seam: use overlap >= 2 (default 4 of 16).

Everything here is plain numpy; memory is O(number of frames) for the weights only.
"""

from __future__ import annotations

import numpy as np

from ...core.errors import InputError


def check_window(length: int, overlap: int) -> tuple[int, int]:
    """Validates (length, overlap): length >= 1, 0 <= overlap < length."""
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or int(length) < 1:
        raise InputError("context_length", f"must be a whole number of frames >= 1, got {length!r}",
                         "Use 16 (what AnimateDiff motion modules were trained on)")
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or not 0 <= int(overlap) < int(length):
        raise InputError("context_overlap", f"must be a whole number from 0 to context_length - 1 "
                         f"({int(length) - 1}), got {overlap!r}", "Use about a quarter of context_length, e.g. 4 of 16")
    return int(length), int(overlap)


def window_starts(num_frames: int, length: int, overlap: int) -> list[int]:
    """First frame of each window (see the module docstring)."""
    length, overlap = check_window(length, overlap)
    if num_frames <= length:
        return [0]
    stride = length - overlap
    starts = list(range(0, num_frames - length + 1, stride))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return starts


def windows(num_frames: int, length: int, overlap: int) -> list[np.ndarray]:
    """Frame indices of each window, int64 arrays."""
    if num_frames <= 0:
        return []
    size = min(int(length), num_frames)
    return [np.arange(s, s + size, dtype=np.int64) for s in window_starts(num_frames, length, overlap)]


def window_weights(length: int, overlap: int) -> np.ndarray:
    """float32 [length] trapezoid fuse weights (see the module docstring)."""
    k = np.arange(length, dtype=np.float64)
    ramp = float(overlap + 1)
    return np.minimum(1.0, np.minimum((k + 1) / ramp, (length - k) / ramp)).astype(np.float32)


def coverage(num_frames: int, length: int, overlap: int) -> np.ndarray:
    """float32 [num_frames]: the sum of fuse weights each frame gets (> 0 for every frame)."""
    total = np.zeros(num_frames, np.float32)
    for idx in windows(num_frames, length, overlap):
        total[idx] += window_weights(len(idx), overlap if len(idx) == length else 0)
    return total


def border_frames(num_frames: int, length: int, overlap: int) -> np.ndarray:
    """Frame pairs (n, n+1) where the set of windows holding the frame changes (the places a seam
    would show); returns the n's, sorted."""
    members = [set() for _ in range(num_frames)]
    for w, idx in enumerate(windows(num_frames, length, overlap)):
        for n in idx:
            members[int(n)].add(w)
    return np.array([n for n in range(num_frames - 1) if members[n] != members[n + 1]], np.int64)
