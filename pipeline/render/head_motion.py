"""Life for the weight-free animator: blink, head-motion and brow schedules, per video frame.

Everything here is a small per-frame array computed once from the VisemeTrack and a seed (a
10-minute clip at 25 fps is 15,000 rows), so the renderer can stream frames without keeping any.

* Blinks: intervals drawn from a gamma distribution whose mean is 60 / rate seconds (never shorter
  than `BlinkConfig.min_interval_s`); each blink closes fast, stays shut for at least one frame and
  opens more slowly. `blink` is 0 (open) .. 1 (shut).
* Head motion: slow smooth wander (sums of sines with seeded random frequencies and phases) of
  roll, horizontal and vertical offset and scale, plus nods (a short downward dip) on stressed
  syllables, found as peaks of the track's loudness (a seeded subset of them nods).
* Brows: a lift on each pitch accent: a peak of the voice's pitch at least
  `LifeConfig.brow_pitch_semitones` above the speaker's median pitch in the clip.
* Tracks without prosody (made from phones only, or older JSON) fall back to the jaw opening for
  both: open vowels are where stress and loudness peak; brows then lift on a seeded subset of those
  peaks and at phrase starts. `LifeSchedule.cues` says which was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class LifeConfig:
    """Tuning of blinks, head motion and brows (times in seconds, angles in degrees).

    Offsets are in units of the face's inter-ocular distance (IOD, ~63 mm on a real face), so the
    motion is the same at any image size; the renderer converts them to pixels.
    """

    min_blink_interval_s: float = 1.2
    blink_interval_shape: float = 3.0          # gamma shape: 3 gives natural, not clockwork, spacing
    blink_close_s: float = 0.08
    blink_shut_s: float = 0.05                 # at least one frame, whatever the fps
    blink_open_s: float = 0.16
    wander_roll_deg: float = 1.6               # amplitude of the slow wander at motion strength 1
    wander_shift_iod: float = 0.05
    wander_scale: float = 0.008
    wander_period_s: tuple = (2.5, 7.0)        # range the random wander periods are drawn from
    nod_shift_iod: float = 0.06                # downward dip of one nod at motion strength 1
    nod_pitch_scale: float = 0.006             # the face also shrinks a little as it tips down
    nod_s: float = 0.40
    nod_min_gap_s: float = 0.7
    nod_jaw_threshold: float = 0.35            # jaw_open a peak must reach to count as emphasis
    nod_probability: float = 0.7
    nod_loudness_threshold: float = 0.75       # loudness a peak must reach to count as a stressed syllable
    brow_lift_probability: float = 0.35        # (jaw fallback only)
    brow_s: float = 0.6
    brow_pitch_semitones: float = 2.0          # a pitch accent rises this far above the median pitch
    brow_min_gap_s: float = 1.0


@dataclass
class LifeSchedule:
    """Per-frame life parameters, all float32 [num_frames].

    blink: 0 open .. 1 shut (both eyes).
    roll_deg: head roll, degrees (positive: clockwise on screen).
    shift_x_iod, shift_y_iod: head offset in inter-ocular distances (y down).
    scale: head scale change (0 = none; 0.01 = 1 % larger).
    brow: brow lift 0..1.
    cues: "prosody" (nods on loudness peaks, brows on pitch accents) or "jaw" (no prosody in the
        track: both from jaw-opening peaks).
    """

    blink: np.ndarray
    roll_deg: np.ndarray
    shift_x_iod: np.ndarray
    shift_y_iod: np.ndarray
    scale: np.ndarray
    brow: np.ndarray
    cues: str = "prosody"


def _raised_cosine(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    x = np.clip((t - centre) / (0.5 * width), -1.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def blink_schedule(num_frames: int, fps: float, rate_per_min: float, rng: np.random.Generator,
                   config: LifeConfig = LifeConfig()) -> np.ndarray:
    """float32 [num_frames] eyelid closure 0..1; all zeros when rate_per_min is 0."""
    out = np.zeros(num_frames, np.float32)
    if rate_per_min <= 0 or num_frames == 0:
        return out
    duration = num_frames / fps
    mean = 60.0 / rate_per_min
    shut = max(config.blink_shut_s, 1.0 / fps)
    t_frames = np.arange(num_frames) / fps
    # first blink somewhere in the first interval, so clips do not all start the same way
    t = rng.uniform(0.3, max(0.31, min(mean, 3.0)))
    while t < duration:
        start = t
        close_end = start + config.blink_close_s
        open_start = close_end + shut
        open_end = open_start + config.blink_open_s
        lo, hi = int(max(0, np.floor(start * fps))), int(min(num_frames, np.ceil(open_end * fps) + 1))
        tt = t_frames[lo:hi]
        v = np.where(tt < start, 0.0,
            np.where(tt < close_end, (tt - start) / config.blink_close_s,
            np.where(tt < open_start, 1.0,
            np.where(tt < open_end, 1.0 - (tt - open_start) / config.blink_open_s, 0.0))))
        v = v * v * (3 - 2 * v)                          # smooth ease in/out
        out[lo:hi] = np.maximum(out[lo:hi], v.astype(np.float32))
        # make sure the shut plateau lands on a frame (the eye is seen shut at least once)
        k = int(np.round((close_end + 0.5 * shut) * fps))
        if 0 <= k < num_frames:
            out[k] = 1.0
        gap = rng.gamma(config.blink_interval_shape, mean / config.blink_interval_shape)
        t = open_end + max(config.min_blink_interval_s, gap)
    return out


def _spaced_peaks(curve: np.ndarray, threshold: float, min_gap_frames: float) -> np.ndarray:
    """Frame indices of local maxima of `curve` >= threshold, strongest first kept, spaced apart."""
    if len(curve) < 3:
        return np.zeros(0, np.int64)
    peaks = np.where((curve[1:-1] >= curve[:-2]) & (curve[1:-1] > curve[2:]) & (curve[1:-1] >= threshold))[0] + 1
    kept: list[int] = []
    for p in peaks[np.argsort(-curve[peaks], kind="stable")]:   # strongest first
        if all(abs(p - q) >= min_gap_frames for q in kept):
            kept.append(int(p))
    return np.array(sorted(kept), np.int64)


def _smooth(curve: np.ndarray, fps: float, seconds: float) -> np.ndarray:
    k = max(1, int(round(seconds * fps)))
    return np.convolve(curve, np.ones(2 * k + 1) / (2 * k + 1), mode="same")


def emphasis_peaks(jaw_open: np.ndarray, fps: float, config: LifeConfig = LifeConfig()) -> np.ndarray:
    """Frame indices of emphasis: local maxima of jaw opening above a threshold, spaced apart."""
    smooth = _smooth(np.asarray(jaw_open, np.float64), fps, 0.06)
    return _spaced_peaks(smooth, config.nod_jaw_threshold, config.nod_min_gap_s * fps)


def stress_peaks(loudness: np.ndarray, fps: float, config: LifeConfig = LifeConfig()) -> np.ndarray:
    """Frame indices of stressed syllables: loudness maxima above a threshold, spaced apart."""
    smooth = _smooth(np.asarray(loudness, np.float64), fps, 0.04)
    return _spaced_peaks(smooth, config.nod_loudness_threshold, config.nod_min_gap_s * fps)


def pitch_accents(pitch_hz: np.ndarray, fps: float, config: LifeConfig = LifeConfig()) -> tuple[np.ndarray, np.ndarray]:
    """(frame indices, semitones above the median) of pitch accents.

    Pitch is taken in semitones relative to the median voiced pitch of the clip (so the rule is
    the same for low and high voices); unvoiced frames are bridged by their voiced neighbours.
    """
    pitch = np.asarray(pitch_hz, np.float64)
    voiced = pitch > 0
    if voiced.sum() < 3:
        return np.zeros(0, np.int64), np.zeros(0)
    semitones = np.full(len(pitch), -np.inf)
    semitones[voiced] = 12.0 * np.log2(pitch[voiced] / np.median(pitch[voiced]))
    # bridge unvoiced frames with the nearest voiced value, smooth, then forget the bridged frames
    index = np.arange(len(pitch))
    filled = np.interp(index, index[voiced], semitones[voiced])
    smooth = np.where(voiced, _smooth(filled, fps, 0.04), -np.inf)
    peaks = _spaced_peaks(smooth, config.brow_pitch_semitones, config.brow_min_gap_s * fps)
    return peaks, smooth[peaks]


def life_schedule(jaw_open: np.ndarray, fps: float, seed: int, motion_strength: float,
                  blink_rate_per_min: float, config: LifeConfig = LifeConfig(),
                  loudness: Optional[np.ndarray] = None, pitch_hz: Optional[np.ndarray] = None) -> LifeSchedule:
    """All per-frame life parameters for one clip; deterministic for (inputs, seed).

    Args:
        jaw_open: float [num_frames] the track's jaw opening.
        loudness, pitch_hz: float [num_frames] the track's prosody (VisemeTrack.loudness /
            pitch_hz); None or the wrong length falls back to jaw-opening peaks.
    Blinks use their own random stream, so changing the motion strength does not move the blinks.
    """
    n = len(jaw_open)
    t = np.arange(n, dtype=np.float64) / fps
    blink_rng = np.random.default_rng([seed, 1])
    motion_rng = np.random.default_rng([seed, 2])
    blink = blink_schedule(n, fps, blink_rate_per_min, blink_rng, config)

    def wander(amplitude: float) -> np.ndarray:
        total = np.zeros(n)
        for _ in range(3):
            period = motion_rng.uniform(*config.wander_period_s)
            total += motion_rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * t / period + motion_rng.uniform(0, 2 * np.pi))
        return amplitude * total / 2.0

    roll = wander(config.wander_roll_deg)
    sx = wander(config.wander_shift_iod)
    sy = wander(config.wander_shift_iod * 0.6)
    scale = wander(config.wander_scale)
    nod = np.zeros(n)
    brow = np.zeros(n)
    use_prosody = (loudness is not None and pitch_hz is not None and len(loudness) == n and len(pitch_hz) == n
                   and n > 0)
    if use_prosody:
        for p in stress_peaks(loudness, fps, config):
            # the nod leads the loudness peak slightly, as the head dips into the stressed syllable
            if motion_rng.uniform() < config.nod_probability:
                nod += motion_rng.uniform(0.6, 1.0) * _raised_cosine(t, t[p] - 0.05, config.nod_s)
        for p, height in zip(*pitch_accents(pitch_hz, fps, config)):
            # higher accents lift further; the lift peaks with the pitch
            strength = float(np.clip(0.5 + (height - config.brow_pitch_semitones) / 4.0, 0.5, 1.0))
            brow = np.maximum(brow, strength * _raised_cosine(t, t[p], config.brow_s))
    else:
        for p in emphasis_peaks(np.asarray(jaw_open, np.float64), fps, config):
            if motion_rng.uniform() < config.nod_probability:
                nod += motion_rng.uniform(0.6, 1.0) * _raised_cosine(t, t[p] - 0.05, config.nod_s)
            if motion_rng.uniform() < config.brow_lift_probability:
                brow += motion_rng.uniform(0.5, 1.0) * _raised_cosine(t, t[p], config.brow_s)
        # phrase starts (jaw leaving silence after >= 0.5 s closed) lift the brows too
        closed = np.asarray(jaw_open) < 0.1
        run = 0
        for i in range(n):
            if closed[i]:
                run += 1
                continue
            if run >= 0.5 * fps and motion_rng.uniform() < 0.5:
                brow += 0.7 * _raised_cosine(t, t[i] + 0.1, config.brow_s)
            run = 0
    nod = np.minimum(nod, 1.0)
    s = float(motion_strength)
    return LifeSchedule(
        blink=blink.astype(np.float32),
        roll_deg=(s * roll).astype(np.float32),
        shift_x_iod=(s * sx).astype(np.float32),
        shift_y_iod=(s * (sy + config.nod_shift_iod * nod)).astype(np.float32),
        scale=(s * (scale - config.nod_pitch_scale * nod)).astype(np.float32),
        brow=(np.minimum(brow, 1.0) * min(1.0, s)).astype(np.float32),
        cues="prosody" if use_prosody else "jaw",
    )
