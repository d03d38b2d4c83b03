"""Prosody per video frame: loudness and voice pitch, for the animators' head nods and brow lifts.

    frame_prosody(audio, fps, num_frames) -> Prosody

People nod into stressed syllables (loud) and lift their brows on pitch accents (high). The
VisemeTrack carries both, sampled at the video frame rate like its mouth parameters, so every
TemporalSampler engine can use them without the audio.

* Loudness: RMS level of 40 ms windows every 10 ms in dB, mapped 0..1 from `floor_db` below the
  clip's 95th-percentile level up to that level (0 below -70 dBFS whatever the clip), then averaged
  over each frame's interval.
* Pitch: YIN (de Cheveigne & Kawahara, 2002: cumulative-mean-normalised difference function, first
  dip under a threshold, parabolic refinement) on 40 ms windows of mono audio at 11-22 kHz, 60-400 Hz. Quiet or
  aperiodic windows are unvoiced (0). A frame's pitch is the median of the three windows nearest its
  centre when at least two are voiced. Written here (about 40 lines of numpy) rather than taken from
  a library: librosa's pyin/yin bring numba (~100 MB), praat-parselmouth is GPL, pyworld ships no
  wheels; this needs numpy only and is tested against tones and synthesised speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.audio import AudioClip
from ..core.audio_dsp import to_mono


@dataclass(frozen=True)
class ProsodyConfig:
    """Analysis settings (seconds, Hz, dB)."""

    min_analysis_rate_hz: int = 7000    # audio is decimated by the largest integer factor keeping this rate
    window_s: float = 0.040
    hop_s: float = 0.010
    min_pitch_hz: float = 60.0
    max_pitch_hz: float = 400.0
    yin_threshold: float = 0.15       # CMND dip that counts as periodic (YIN paper: 0.1-0.15)
    voiced_max_cmnd: float = 0.35     # best dip above this: aperiodic, unvoiced
    floor_db: float = 40.0            # loudness 0 this far below the loud reference level
    voiced_min_loudness: float = 0.25  # quieter windows are not given a pitch
    silence_dbfs: float = -70.0       # windows below this absolute level are silent (digital silence, hiss)


@dataclass
class Prosody:
    """Per video frame prosody.

    loudness: float32 [num_frames] 0 (silent, >= floor_db below the clip's loud level) .. 1.
    pitch_hz: float32 [num_frames] voice fundamental frequency in Hz; 0 where unvoiced.
    """

    loudness: np.ndarray
    pitch_hz: np.ndarray


_CHUNK = 1024   # windows analysed at once (keeps memory flat for hour-long audio)


def _windows(samples: np.ndarray, window: int, hop: int) -> np.ndarray:
    """[num_windows, window] read-only view, window k centred at k * hop (zero-padded at both ends)."""
    padded = np.pad(samples, (window // 2, window))
    count = int(np.ceil(len(samples) / hop)) or 1
    return np.lib.stride_tricks.sliding_window_view(padded, window)[::hop][:count]


def _decimated(samples: np.ndarray, rate: int, lowest: int) -> tuple[np.ndarray, float]:
    """(samples, rate) reduced by the largest integer factor that keeps the rate >= `lowest` Hz
    (48 kHz -> 12 kHz, 22.05 kHz -> 11.025 kHz, 16 kHz stays), by block means.

    A block mean is a crude low-pass, enough for pitch (<= 400 Hz) and level; it avoids importing
    scipy.signal (~1 s) on the Speak path, where nothing else needs it.
    """
    factor = max(1, rate // lowest)
    if factor == 1:
        return samples, float(rate)
    usable = len(samples) // factor * factor
    return samples[:usable].reshape(-1, factor).mean(axis=1), rate / factor


def _yin(windows: np.ndarray, sample_rate: float, config: ProsodyConfig) -> tuple[np.ndarray, np.ndarray]:
    """(f0 Hz, best CMND value) per window; f0 is 0 where no dip is found."""
    num, width = windows.shape
    min_lag = int(sample_rate / config.max_pitch_hz)
    max_lag = min(int(np.ceil(sample_rate / config.min_pitch_hz)), width // 2)
    half = width - max_lag                       # comparison length, the same for every lag
    frames = (windows - windows.mean(axis=1, keepdims=True)).astype(np.float32)
    n_fft = 1 << int(np.ceil(np.log2(width + half)))
    spec_a = np.fft.rfft(frames[:, :half], n_fft)
    spec_b = np.fft.rfft(frames, n_fft)
    # cross term sum_j x[j] x[j + tau] for j < half, all lags at once
    cross = np.fft.irfft(np.conj(spec_a) * spec_b, n_fft)[:, : max_lag + 1].astype(np.float64)
    energy = np.cumsum(np.pad(frames.astype(np.float64) ** 2, ((0, 0), (1, 0))), axis=1)
    e0 = energy[:, half][:, None]
    lags = np.arange(max_lag + 1)
    e_tau = energy[:, lags + half] - energy[:, lags]
    diff = np.maximum(e0 + e_tau - 2.0 * cross, 0.0)
    running = np.cumsum(diff[:, 1:], axis=1) / np.arange(1, max_lag + 1)
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] / np.maximum(running, 1e-12)
    search = cmnd[:, min_lag:max_lag]
    below = search < config.yin_threshold
    # first dip under the threshold, followed down to its local minimum; else the global minimum
    first = np.where(below.any(axis=1), below.argmax(axis=1), search.argmin(axis=1))
    cols = np.arange(search.shape[1])[None, :]
    local_min = np.ones_like(search, dtype=bool)
    local_min[:, :-1] = search[:, :-1] <= search[:, 1:]
    lag = (local_min & (cols >= first[:, None])).argmax(axis=1)
    best = search[np.arange(num), lag]
    tau = (lag + min_lag).astype(np.float64)
    # parabolic refinement around the dip
    inner = (lag > 0) & (lag < search.shape[1] - 1)
    rows = np.arange(num)[inner]
    a = search[rows, lag[inner] - 1]
    b = search[rows, lag[inner]]
    c = search[rows, lag[inner] + 1]
    denom = a - 2 * b + c
    shift = np.where(np.abs(denom) > 1e-12, 0.5 * (a - c) / np.where(denom == 0, 1, denom), 0.0)
    tau[inner] += np.clip(shift, -1.0, 1.0)
    f0 = np.where(best <= config.voiced_max_cmnd, sample_rate / tau, 0.0)
    return f0, best


def frame_prosody(audio: AudioClip, fps: float, num_frames: int, config: ProsodyConfig = ProsodyConfig()) -> Prosody:
    """Loudness and pitch of `audio` per video frame (frame i covers [i / fps, (i + 1) / fps)).

    Args:
        audio: the speech (any rate, mono or stereo).
        fps: video frame rate of the track.
        num_frames: frames to describe (frames past the audio's end are silent, unvoiced).
    """
    samples, rate = _decimated(to_mono(audio).astype(np.float32), int(audio.sample_rate), config.min_analysis_rate_hz)
    loudness = np.zeros(num_frames, np.float32)
    pitch = np.zeros(num_frames, np.float32)
    if num_frames <= 0 or samples.size == 0:
        return Prosody(loudness, pitch)
    window, hop = int(round(config.window_s * rate)), int(round(config.hop_s * rate))
    windows = _windows(samples, window, hop)
    squares = np.concatenate([[0.0], np.cumsum(np.pad(samples, (window // 2, window)).astype(np.float64) ** 2)])
    starts = np.arange(len(windows)) * hop
    level_db = 10.0 * np.log10((squares[starts + window] - squares[starts]) / window + 1e-12)
    loud_db = float(np.percentile(level_db, 95))
    window_loudness = np.clip((level_db - (loud_db - config.floor_db)) / config.floor_db, 0.0, 1.0)
    window_loudness[level_db < config.silence_dbfs] = 0.0
    # each frame's pitch comes from the three windows nearest its centre: only those are analysed,
    # and quiet windows get no pitch
    nearest = np.clip(np.round((np.arange(num_frames) + 0.5) / fps * rate / hop).astype(np.int64),
                      0, len(windows) - 1)
    used = np.zeros(len(windows), bool)
    used[np.clip(nearest[:, None] + np.array([-1, 0, 1])[None, :], 0, len(windows) - 1)] = True
    f0 = np.zeros(len(windows))
    loud = np.nonzero(used & (window_loudness >= config.voiced_min_loudness))[0]
    for k in range(0, len(loud), _CHUNK):
        rows = loud[k:k + _CHUNK]
        f0[rows] = _yin(windows[rows], rate, config)[0]
    # each frame takes the windows centred in [i / fps, (i + 1) / fps); frames shorter than a hop
    # (fps > 100) take the window nearest their centre
    frame_of = np.floor(np.arange(len(windows)) * (hop / rate) * fps).astype(np.int64)
    inside = frame_of < num_frames
    sums = np.bincount(frame_of[inside], weights=window_loudness[inside], minlength=num_frames)
    counts = np.bincount(frame_of[inside], minlength=num_frames)
    loudness[:] = np.where(counts > 0, sums / np.maximum(counts, 1), window_loudness[nearest])
    # pitch: median of the three windows around the frame centre, when at least two are voiced
    around = f0[np.clip(nearest[:, None] + np.array([-1, 0, 1])[None, :], 0, len(f0) - 1)]
    voiced = around > 0
    enough = voiced.sum(axis=1) >= 2
    masked = np.where(voiced, around, np.nan)
    with np.errstate(all="ignore"):
        pitch[enough] = np.nanmedian(masked[enough], axis=1)
    return Prosody(loudness, pitch)
