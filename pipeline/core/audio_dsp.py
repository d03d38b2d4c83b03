"""Small signal helpers shared by the stages that analyse speech (mono mix, resampling)."""

from __future__ import annotations

from math import gcd

import numpy as np

from .audio import AudioClip


def to_mono(clip: AudioClip) -> np.ndarray:
    """Mean of the channels: float32 [num_samples]."""
    return clip.samples.mean(axis=0, dtype=np.float32) if clip.num_channels > 1 else clip.samples[0]


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
