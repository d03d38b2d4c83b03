"""Small signal helpers shared by the stages that analyse speech (mono mix, resampling)."""

from __future__ import annotations

from math import gcd

import numpy as np

from .audio import AudioClip


#: a channel this anti-correlated with the first is taken as wired out of phase (inverted)
OUT_OF_PHASE_CORRELATION = -0.5


def to_mono(clip: AudioClip) -> np.ndarray:
    """Mean of the channels: float32 [num_samples]. A channel out of phase with the first (correlation
    under OUT_OF_PHASE_CORRELATION, a swapped wire) is inverted first: averaged as it is, the voice,
    which is the same on both, would cancel."""
    if clip.num_channels == 1:
        return clip.samples[0]
    first = clip.samples[0]
    signs = [1.0] + [-1.0 if channel_correlation(first, other) < OUT_OF_PHASE_CORRELATION else 1.0
                     for other in clip.samples[1:]]
    if all(sign > 0 for sign in signs):
        return clip.samples.mean(axis=0, dtype=np.float32)
    return np.mean(clip.samples * np.asarray(signs, np.float32)[:, None], axis=0, dtype=np.float32)


#: long signals are summed this many samples at a time (float64 copies of a whole hour would be GBs)
SUM_BLOCK = 1 << 20


def channel_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two channels (1.0 when either is constant)."""
    n = min(len(a), len(b))
    if n == 0:
        return 1.0
    sums = np.zeros(5)                                   # a, b, aa, bb, ab
    for start in range(0, n, SUM_BLOCK):
        x = np.asarray(a[start:start + SUM_BLOCK], np.float64)
        y = np.asarray(b[start:start + SUM_BLOCK], np.float64)
        sums += (x.sum(), y.sum(), np.dot(x, x), np.dot(y, y), np.dot(x, y))
    mean_a, mean_b = sums[0] / n, sums[1] / n
    var_a, var_b = sums[2] / n - mean_a ** 2, sums[3] / n - mean_b ** 2
    if var_a <= 0 or var_b <= 0:
        return 1.0
    return float((sums[4] / n - mean_a * mean_b) / np.sqrt(var_a * var_b))


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Band-limited polyphase resampling (scipy.signal.resample_poly) of a 1-D float signal."""
    if from_rate == to_rate:
        return np.asarray(samples, dtype=np.float32)
    from scipy.signal import resample_poly

    common = gcd(int(from_rate), int(to_rate))
    return resample_poly(samples, int(to_rate) // common, int(from_rate) // common).astype(np.float32)


def mono_at(clip: AudioClip, sample_rate: int) -> np.ndarray:
    """The clip as mono float32 [num_samples] at `sample_rate` Hz."""
    return resample(to_mono(clip), clip.sample_rate, sample_rate)


def to_int16(samples: np.ndarray) -> np.ndarray:
    """float -1..1 -> int16 with clipping (what pocketsphinx and WAV writers take)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)
