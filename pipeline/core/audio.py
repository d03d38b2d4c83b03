"""Audio as the pipeline passes it around: a float32 waveform with its sample rate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError


@dataclass
class AudioClip:
    """A piece of audio.

    Attributes:
        samples: float32 array of shape [channels, num_samples], nominally in -1..1.
        sample_rate: samples per second per channel (Hz).
    """

    samples: np.ndarray
    sample_rate: int

    @property
    def num_channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.num_samples / float(self.sample_rate)

    def validated(self, input_name: str = "audio") -> "AudioClip":
        """Checks shape, rate and values; returns self (float32, C-contiguous) or raises InputError."""
        samples = np.asarray(self.samples)
        if samples.ndim == 1:
            samples = samples[None, :]
        if samples.ndim != 2:
            raise InputError(
                input_name,
                f"expected a waveform of shape [channels, samples], got shape {tuple(samples.shape)}",
                "Pass mono or stereo audio.",
            )
        if not isinstance(self.sample_rate, (int, np.integer)) or self.sample_rate <= 0:
            raise InputError(
                input_name,
                f"sample rate must be a positive whole number of Hz, got {self.sample_rate!r}",
                "Load the audio with a loader that reports its sample rate.",
            )
        if samples.shape[0] < 1 or samples.shape[1] == 0:
            raise InputError(
                input_name,
                "the audio is empty (zero samples)",
                "Give audio with at least some sound in it.",
            )
        if not np.all(np.isfinite(samples)):
            bad = int(np.count_nonzero(~np.isfinite(samples)))
            raise InputError(
                input_name,
                f"the audio holds {bad} NaN or infinite sample(s)",
                "Check the node that produced the audio; its output is corrupt.",
            )
        return AudioClip(np.ascontiguousarray(samples, dtype=np.float32), int(self.sample_rate))
