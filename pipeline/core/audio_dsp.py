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


def channel_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two channels (1.0 when either is constant)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a64, b64 = a64 - a64.mean(), b64 - b64.mean()
    norm = float(np.sqrt(np.dot(a64, a64) * np.dot(b64, b64)))
    return float(np.dot(a64, b64) / norm) if norm > 0 else 1.0


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
