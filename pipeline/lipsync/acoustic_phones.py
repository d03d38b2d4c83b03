"""Language-independent phone-class estimate from the audio alone (energy and spectral shape).

The VisemeAligner's fallback when no speech model covers the language, or when recognition finds
nothing. It does not recognise phonemes: it finds what a mouth visibly does, from signal features
that do not depend on the language, and names each class by one representative ARPAbet phone so
the rest of the pipeline (phones -> visemes -> mouth parameters) treats it like any other track:

    SIL          silence (no speech)
    P / T / K    a stop gap: a short low-energy dip inside speech, named by the spectrum of the
                 release burst that follows it (low/diffuse -> P lips, high -> T tongue tip,
                 compact mid -> K back of the tongue); a gap with no burst is P
    M            a voiced low-energy murmur with low-frequency energy and low F2 (nasal, lips shut)
    N            any other voiced, weaker-than-vowel sound (n, l, r, ng, glides)
    S / SH / F   unvoiced (or noisy) fricatives: sharp high-frequency hiss, lower hush, flat weak
    AA           open vowel (high F1)
    AH           central vowel
    EH / IY      front vowels (high F2), mid / close
    OW / UW      back rounded vowels (low F2), mid / close

Method: mono, resampled to 16 kHz in bounded blocks; 10 ms hop frames with a 32 ms Hann window;
per frame the log energy, zero-crossing rate, spectral centroid, high- and low-frequency energy
ratios, voicing (normalised autocorrelation peak at 60-400 Hz) and F1/F2 (peaks of a batched
LPC envelope). Speech is detected with hysteresis thresholds set relative to the clip's own noise
floor and speech level (percentiles), so a quiet and a loud copy of a recording give the same
result; a stationary signal (steady noise, hum) is not speech. Frames are then classified by
rules, smoothed with a mode filter and minimum segment durations (closures may be shorter).

Cost: linear in the audio's length, memory bounded by the block size plus ~100 bytes per 10 ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd
from typing import Optional

import numpy as np

from ..core.audio import AudioClip
from ..core.audio_dsp import to_mono
from ..speech.timing import PhonemeTiming
from .track import SILENCE


@dataclass(frozen=True)
class AcousticConfig:
    """Thresholds of the acoustic phone-class estimate. Levels are in dB relative to the clip's own
    percentiles (so they do not depend on the recording's gain), frequencies in Hz, times in s.

    Attributes:
        analysis_rate: sample rate (Hz) the audio is analysed at.
        hop_s: frame hop, seconds; every output boundary is a multiple of it.
        window_s: analysis window length, seconds.
        block_s: audio analysed per block (whole seconds); bounds memory for long input.
        floor_percentile / peak_percentile: percentiles of frame energy taken as the noise floor
            and as the speech level of the clip.
        max_range_db: the floor is taken no lower than peak - max_range_db (digital silence).
        min_dynamic_db: a clip whose peak is less than this above its floor is stationary (steady
            noise, hum, silence): it holds no speech.
        absolute_floor_dbfs: a region whose loudest frames are quieter than this (dB re full scale, RMS)
            is never speech.
        high_fraction / low_fraction: hysteresis thresholds as fractions of floor..peak; a speech
            region is a run above the low threshold that reaches the high one.
        min_high_db / min_low_db: the thresholds are at least this far above the floor, dB.
        min_speech_s: shorter isolated speech regions are clicks, dropped.
        max_gap_s: a dip below the thresholds inside speech that is at most this long is a stop
            closure ("P"/"T"/"K"), longer ones are silence.
        voiced_threshold: normalised autocorrelation peak (0..1) above which a frame is voiced.
        fricative_hf_ratio: share of energy above `hf_split_hz` above which an unvoiced frame is a
            fricative; so is one whose centroid is above `fricative_centroid_hz` (Hz) or whose
            zero-crossing rate is above `fricative_zcr` (crossings per sample at analysis_rate).
            Weak ones with little high-frequency energy are aspiration ("h") and take the vowel
            class of their formants.
        labiodental_hf_ratio: a weak fricative (see weak_fricative_db) with at least this share of
            high-frequency energy is "F".
        closure_rel_db: frames this far or more below the local speech level that are not
            fricatives are closures.
        hf_split_hz: boundary for the high-frequency energy ratio.
        sibilant_centroid_hz: fricatives whose centroid is above this are "S", below it "SH".
        weak_fricative_db: fricatives this far or more below the local peak, with a flat spectrum,
            are "F" (lip-teeth).
        local_peak_s: half-width of the window of the local speech level, seconds.
        sonorant_rel_db: voiced frames more than this below the local speech level are consonants
            ("N"/"M"), nearer ones vowels.
        nasal_lf_ratio / nasal_centroid_hz / nasal_rel_db: a voiced frame with at least this share
            of energy below 500 Hz, a centroid below nasal_centroid_hz and a level more than
            nasal_rel_db below the local speech level is a nasal murmur.
        m_max_f2_hz: a nasal murmur with F2 below this is "M" (lips closed), else "N".
        open_f1_hz: F1 above this is an open vowel ("AA").
        close_f1_hz: F1 below this is a close vowel ("IY"/"UW").
        front_f2_hz / back_f2_hz: F2 above front_f2 is a front vowel, below back_f2 a rounded one.
        burst_high_hz / burst_low_hz: centroid of the release burst after a gap: above high -> "T",
            below low -> "P", between -> "K".
        mode_filter_frames: odd window of the label mode filter (frames).
        min_segment_s: minimum segment length; shorter ones merge into a neighbour.
        min_closure_s: minimum length of a closure segment ("P", "T", "K").
    """

    analysis_rate: int = 16000
    hop_s: float = 0.010
    window_s: float = 0.032
    block_s: int = 30
    floor_percentile: float = 10.0
    peak_percentile: float = 97.0
    max_range_db: float = 50.0
    min_dynamic_db: float = 12.0
    absolute_floor_dbfs: float = -75.0
    high_fraction: float = 0.45
    low_fraction: float = 0.25
    min_high_db: float = 10.0
    min_low_db: float = 5.0
    min_speech_s: float = 0.05
    max_gap_s: float = 0.09
    voiced_threshold: float = 0.6
    fricative_hf_ratio: float = 0.25
    fricative_centroid_hz: float = 2000.0
    fricative_zcr: float = 0.3
    labiodental_hf_ratio: float = 0.4
    closure_rel_db: float = 30.0
    hf_split_hz: float = 3000.0
    sibilant_centroid_hz: float = 4500.0
    weak_fricative_db: float = 20.0
    local_peak_s: float = 0.15
    sonorant_rel_db: float = 11.0
    nasal_lf_ratio: float = 0.80
    nasal_rel_db: float = 6.0
    nasal_centroid_hz: float = 450.0
    m_max_f2_hz: float = 1600.0
    open_f1_hz: float = 680.0
    close_f1_hz: float = 430.0
    front_f2_hz: float = 1700.0
    back_f2_hz: float = 1200.0
    burst_high_hz: float = 3000.0
    burst_low_hz: float = 1800.0
    mode_filter_frames: int = 5
    min_segment_s: float = 0.04
    min_closure_s: float = 0.02


# Frame classes (internal codes) and the phone each is emitted as.
_PHONES = ("SIL", "P", "T", "K", "M", "N", "S", "SH", "F", "AA", "AH", "EH", "IY", "OW", "UW")
_CODE = {p: i for i, p in enumerate(_PHONES)}
_CLOSURES = frozenset({_CODE["P"], _CODE["T"], _CODE["K"]})
_LPC_ORDER = 16
_NFFT = 1024
_FRAMES_PER_BATCH = 1000  # frames analysed at once (~25 MB of spectra)
_EPS = 1e-12


# --- features -----------------------------------------------------------------------------------


@dataclass
class _Features:
    energy_db: np.ndarray   # dB re full scale (RMS of the windowed frame, 80 Hz .. 7.8 kHz)
    zcr: np.ndarray         # zero crossings per sample
    centroid: np.ndarray    # Hz
    hf_ratio: np.ndarray    # energy share above hf_split_hz
    lf_ratio: np.ndarray    # energy share below 500 Hz
    voicing: np.ndarray     # 0..1
    f1: np.ndarray          # Hz (NaN: none found)
    f2: np.ndarray          # Hz (NaN: none found)


def _num_frames(duration_s: float, hop_s: float) -> int:
    return max(1, int(np.ceil(duration_s / hop_s - 1e-9)))


def _resampled_block(x: np.ndarray, rate: int, target: int, start: int, stop: int) -> np.ndarray:
    """x[start:stop] (input samples) at `target` Hz; start/stop may run past the ends (zeros)."""
    lo, hi = max(start, 0), min(stop, len(x))
    seg = np.zeros(stop - start, dtype=np.float32)
    if hi > lo:
        seg[lo - start:hi - start] = x[lo:hi]
    if rate == target:
        return seg
    from scipy.signal import resample_poly

    common = gcd(rate, target)
    return resample_poly(seg, target // common, rate // common).astype(np.float32)


def _features(audio: AudioClip, config: AcousticConfig) -> _Features:
    rate = int(audio.sample_rate)
    sr = int(config.analysis_rate)
    x = to_mono(audio)
    n_frames = _num_frames(audio.duration_s, config.hop_s)
    hop = int(round(config.hop_s * sr))
    win = int(round(config.window_s * sr))
    block_frames = max(1, int(round(config.block_s / config.hop_s)))
    pad_s = 1  # whole seconds of context on both sides of a block: integer samples at any rate
    names = _Features.__dataclass_fields__.keys()
    out = {name: np.empty(n_frames, dtype=np.float32) for name in names}
    for f0 in range(0, n_frames, block_frames):
        f1 = min(n_frames, f0 + block_frames)
        t0 = f0 * config.hop_s
        # Input sample range [t0 - pad, t0 + block + pad); t0 is a whole number of seconds
        # (block_s integer) so both rates land on whole samples.
        start = int(round(t0 * rate)) - pad_s * rate
        stop = int(round(t0 * rate)) + (config.block_s + pad_s) * rate
        y = _resampled_block(x, rate, sr, start, stop)
        offset = pad_s * sr  # index of t0 in y
        centres = offset + (np.arange(f1 - f0) * hop) + hop // 2
        for c0 in range(0, len(centres), _FRAMES_PER_BATCH):  # bounds the spectra in memory
            c = centres[c0:c0 + _FRAMES_PER_BATCH]
            frames = y[c[:, None] - win // 2 + np.arange(win)[None, :]]
            batch = _frame_features(frames, sr, config)
            for name in names:
                out[name][f0 + c0:f0 + c0 + len(c)] = batch[name]
    return _Features(**out)


def _frame_features(frames: np.ndarray, sr: int, config: AcousticConfig) -> dict:
    n, win = frames.shape
    window = np.hanning(win).astype(np.float32)
    signs = np.signbit(frames)
    zcr = np.count_nonzero(signs[:, 1:] != signs[:, :-1], axis=1) / float(win - 1)
    from scipy import fft as sfft

    spec = sfft.rfft(frames * window, n=_NFFT, axis=1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float64)
    freqs = np.fft.rfftfreq(_NFFT, 1.0 / sr)
    band = (freqs >= 80.0) & (freqs <= 0.49 * sr)
    power[:, ~band] = 0.0
    total = power.sum(axis=1) + _EPS
    # Parseval: sum |X|^2 / N = sum x_w^2; normalise by the window's energy -> mean square.
    mean_square = total / _NFFT / float(np.sum(window.astype(np.float64) ** 2))
    energy_db = 10.0 * np.log10(mean_square + 1e-13)
    centroid = (power * freqs).sum(axis=1) / total
    hf_ratio = power[:, freqs >= config.hf_split_hz].sum(axis=1) / total
    lf_ratio = power[:, freqs < 500.0].sum(axis=1) / total

    # Voicing: autocorrelation (from the power spectrum below 4 kHz), normalised by the window's
    # own autocorrelation, peak over lags for 60..400 Hz.
    vpow = np.where(freqs <= 4000.0, power, 0.0)
    ac = sfft.irfft(vpow, n=_NFFT, axis=1)[:, :win]
    wac = np.fft.irfft(np.abs(np.fft.rfft(window, n=_NFFT)) ** 2, n=_NFFT)[:win]
    lag_lo, lag_hi = int(sr / 400.0), min(int(sr / 60.0), win - 1)
    norm = ac[:, lag_lo:lag_hi] / (ac[:, :1] + _EPS) * (wac[0] / np.maximum(wac[lag_lo:lag_hi], _EPS))
    voicing = np.clip(norm.max(axis=1), 0.0, 1.0)

    f1, f2 = _formants(power, freqs, sr)
    return dict(energy_db=energy_db, zcr=zcr, centroid=centroid, hf_ratio=hf_ratio,
                lf_ratio=lf_ratio, voicing=voicing, f1=f1, f2=f2)


def _formants(power: np.ndarray, freqs: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """F1, F2 from the peaks of an LPC envelope (batched Levinson-Durbin), Hz; NaN where none."""
    n = power.shape[0]
    w = 2.0 * np.pi * freqs / sr
    pre = power * np.abs(1.0 - 0.97 * np.exp(-1j * w)) ** 2  # pre-emphasis, in the spectrum
    from scipy import fft as sfft

    r = sfft.irfft(pre, n=_NFFT, axis=1)[:, :_LPC_ORDER + 1]
    r[:, 0] *= 1.0 + 1e-6  # white-noise correction, keeps the recursion stable
    r[:, 0] += _EPS
    a = np.zeros((n, _LPC_ORDER + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, _LPC_ORDER + 1):
        acc = r[:, i] + np.einsum("ij,ij->i", a[:, 1:i], r[:, i - 1:0:-1]) if i > 1 else r[:, i].copy()
        k = -acc / err
        a_prev = a[:, 1:i].copy()
        a[:, 1:i] = a_prev + k[:, None] * a_prev[:, ::-1]
        a[:, i] = k
        err = err * (1.0 - k * k)
        err = np.maximum(err, _EPS)
    env = -np.log(np.abs(sfft.rfft(a, n=_NFFT, axis=1)) ** 2 + _EPS)
    peak = np.zeros_like(env, dtype=bool)
    peak[:, 1:-1] = (env[:, 1:-1] > env[:, :-2]) & (env[:, 1:-1] >= env[:, 2:])
    peak &= ((freqs >= 200.0) & (freqs <= 3500.0))[None, :]
    has1 = peak.any(axis=1)
    i1 = np.argmax(peak, axis=1)
    f1 = np.where(has1, freqs[i1], np.nan)
    peak2 = peak & (freqs[None, :] > (freqs[i1] + 150.0)[:, None])
    has2 = has1 & peak2.any(axis=1)
    f2 = np.where(has2, freqs[np.argmax(peak2, axis=1)], np.nan)
    return f1.astype(np.float32), f2.astype(np.float32)


# --- speech detection ---------------------------------------------------------------------------


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each run of True."""
    m = np.concatenate(([False], mask.astype(bool), [False]))
    edges = np.flatnonzero(m[1:] != m[:-1])
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def _levels(energy_db: np.ndarray, config: AcousticConfig) -> Optional[tuple[float, float, float]]:
    """(floor, low threshold, high threshold) in dB, or None when the clip holds no speech."""
    peak = float(np.percentile(energy_db, config.peak_percentile))
    floor = float(np.percentile(energy_db, config.floor_percentile))
    floor = max(floor, peak - config.max_range_db)
    if peak < config.absolute_floor_dbfs or peak - floor < config.min_dynamic_db:
        return None
    span = peak - floor
    low = floor + max(config.min_low_db, config.low_fraction * span)
    high = floor + max(config.min_high_db, config.high_fraction * span)
    # the absolute floor gates the loudest part of a region, not its edges: a quiet copy of a clip
    # then keeps the same regions (its fading ends may dip under the floor) while faint clicks stay out
    high = max(high, low, config.absolute_floor_dbfs)
    return floor, low, high


def _speech_mask(energy_db: np.ndarray, config: AcousticConfig) -> np.ndarray:
    """Frames in speech regions (hysteresis), short gaps inside speech included."""
    levels = _levels(energy_db, config)
    mask = np.zeros(len(energy_db), dtype=bool)
    if levels is None:
        return mask
    _, low, high = levels
    above_high = energy_db >= high
    min_frames = max(1, int(round(config.min_speech_s / config.hop_s)))
    for a, b in _runs(energy_db >= low):
        if b - a >= min_frames and above_high[a:b].any():
            mask[a:b] = True
    return mask


def _fill_gaps(mask: np.ndarray, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask with short inner gaps filled, mask of those gaps)."""
    gaps = np.zeros_like(mask)
    for a, b in _runs(~mask):
        if a > 0 and b < len(mask) and b - a <= max_frames:
            gaps[a:b] = True
    return mask | gaps, gaps


def _energy_db_native(audio: AudioClip, config: AcousticConfig) -> np.ndarray:
    """Per-frame energy (dB re full scale) like `_Features.energy_db`, computed at the audio's own rate.

    Same frames (centre of each hop), window length in seconds and band (80 Hz up to 0.49 x
    analysis_rate) as `_features`, but without resampling or the other features: speech_activity
    only needs the energy, and the resampler and formant search were most of its cost (~0.06 s
    per 10 s of 22 kHz speech of the ~0.07 s it took). Values agree with `_features` within a
    fraction of a dB away from the band edges (no anti-alias filter transition here).
    """
    rate = int(audio.sample_rate)
    x = to_mono(audio)
    n_frames = _num_frames(audio.duration_s, config.hop_s)
    hop = config.hop_s * rate
    win = max(8, int(round(config.window_s * rate)))
    nfft = 1 << (win - 1).bit_length()
    window = np.hanning(win).astype(np.float32)
    freqs = np.fft.rfftfreq(nfft, 1.0 / rate)
    band = (freqs >= 80.0) & (freqs <= 0.49 * min(rate, int(config.analysis_rate)))
    norm = nfft * float(np.sum(window.astype(np.float64) ** 2))
    padded = np.concatenate([np.zeros(win, np.float32), x.astype(np.float32, copy=False), np.zeros(win, np.float32)])
    from scipy import fft as sfft

    out = np.empty(n_frames, dtype=np.float32)
    for f0 in range(0, n_frames, _FRAMES_PER_BATCH):
        idx = np.arange(f0, min(n_frames, f0 + _FRAMES_PER_BATCH))
        starts = np.round(idx * hop + hop / 2).astype(np.int64) - win // 2 + win
        frames = padded[starts[:, None] + np.arange(win)[None, :]]
        spec = sfft.rfft(frames * window, n=nfft, axis=1)[:, band]
        mean_square = (spec.real.astype(np.float64) ** 2 + spec.imag.astype(np.float64) ** 2).sum(axis=1) / norm
        out[idx] = 10.0 * np.log10(mean_square + _EPS / norm + 1e-13)
    return out


def speech_activity(audio: AudioClip, *, config: AcousticConfig = AcousticConfig()) -> float:
    """Fraction (0..1) of the clip's 10 ms frames that hold speech; ~0 for silence or steady noise."""
    return float(np.mean(speech_mask_s(audio, config=config)))


def speech_mask_s(audio: AudioClip, *, config: AcousticConfig = AcousticConfig()) -> np.ndarray:
    """bool [frames], one per config.hop_s: where the clip is loud enough, and changing enough, to be speech."""
    audio = AudioClip(audio.samples, audio.sample_rate).validated("audio")
    return _speech_mask(_energy_db_native(audio, config), config)


# --- classification -----------------------------------------------------------------------------


def _classify(feats: _Features, config: AcousticConfig) -> np.ndarray:
    n = len(feats.energy_db)
    speech = _speech_mask(feats.energy_db, config)
    max_gap = max(1, int(round(config.max_gap_s / config.hop_s)))
    speech_all, gaps = _fill_gaps(speech, max_gap)
    labels = np.full(n, _CODE["SIL"], dtype=np.int8)
    if not speech.any():
        return labels

    from scipy.ndimage import maximum_filter1d

    half = max(1, int(round(config.local_peak_s / config.hop_s)))
    e_speech = np.where(speech, feats.energy_db, -200.0)
    local_peak = maximum_filter1d(e_speech, size=2 * half + 1, mode="nearest")
    rel = feats.energy_db - local_peak  # <= 0 inside speech

    voiced = feats.voicing >= config.voiced_threshold
    f1 = np.nan_to_num(feats.f1, nan=500.0)
    f2 = np.nan_to_num(feats.f2, nan=1500.0)

    # Vowel quality by F1 (openness) and F2 (front/back); also used for aspiration ("h"), which
    # takes the shape of the vowel it precedes.
    vowel = np.full(n, _CODE["AH"], dtype=np.int8)
    front = f2 >= config.front_f2_hz
    back = f2 <= config.back_f2_hz
    vowel[front] = _CODE["EH"]
    vowel[front & (f1 < config.close_f1_hz)] = _CODE["IY"]
    vowel[back] = _CODE["OW"]
    vowel[back & (f1 < config.close_f1_hz)] = _CODE["UW"]
    vowel[f1 >= config.open_f1_hz] = _CODE["AA"]

    # Fricatives: noisy energy high in the spectrum, not periodic. Sharp and high -> S, lower ->
    # SH, weak with a flat spectrum reaching high -> F (lip-teeth).
    fric = ~voiced & ((feats.hf_ratio >= config.fricative_hf_ratio)
                      | (feats.centroid >= config.fricative_centroid_hz)
                      | (feats.zcr >= config.fricative_zcr))
    fric |= voiced & (feats.hf_ratio >= 0.5)  # strongly voiced fricatives (z, zh)
    fric_code = np.where(feats.centroid >= config.sibilant_centroid_hz, _CODE["S"], _CODE["SH"])
    labiodental = ((rel <= -config.weak_fricative_db) & (feats.hf_ratio >= config.labiodental_hf_ratio)
                   & (feats.centroid < config.sibilant_centroid_hz))
    fric_code = np.where(labiodental, _CODE["F"], fric_code)
    aspiration = fric & (feats.hf_ratio < config.fricative_hf_ratio) & (rel <= -config.weak_fricative_db)
    fric_code = np.where(aspiration, vowel, fric_code)

    # Weak voiced sounds: nasal murmur (low-frequency dominated) or another sonorant consonant.
    nasal = (voiced & (rel < -config.nasal_rel_db) & (feats.lf_ratio >= config.nasal_lf_ratio)
             & (feats.centroid < config.nasal_centroid_hz))
    weak_voiced = voiced & (rel < -config.sonorant_rel_db)
    cons = np.where(nasal & (f2 < config.m_max_f2_hz), _CODE["M"], _CODE["N"])

    labels = np.where(fric, fric_code, np.where(nasal | weak_voiced, cons, vowel))
    # Near-silent inside speech: a closure (stop gap); the burst after it names it later.
    labels = np.where(~fric & (rel < -config.closure_rel_db), _CODE["P"], labels).astype(np.int8)
    labels[gaps] = _CODE["P"]
    labels[~speech_all] = _CODE["SIL"]
    labels = _smooth(labels, config)
    return _name_closures(labels, feats, config)


def _mode_filter(labels: np.ndarray, size: int) -> np.ndarray:
    if size <= 1:
        return labels
    half = size // 2
    padded = np.pad(labels, half, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, size)
    counts = np.zeros((len(labels), len(_PHONES)), dtype=np.int16)
    for j in range(size):
        counts[np.arange(len(labels)), windows[:, j]] += 1
    counts[np.arange(len(labels)), labels] += 1  # ties keep the frame's own label
    return np.argmax(counts, axis=1).astype(np.int8)


def _smooth(labels: np.ndarray, config: AcousticConfig) -> np.ndarray:
    sil = labels == _CODE["SIL"]
    closure = np.isin(labels, list(_CLOSURES))
    smoothed = _mode_filter(labels, config.mode_filter_frames)
    # The mode filter shapes speech classes only: silence and closures keep their extent (it
    # would otherwise erase short closures, which matter most for the lips).
    keep = sil | closure
    smoothed = np.where(keep, labels, np.where(np.isin(smoothed, [_CODE["SIL"]]), labels, smoothed))
    return _merge_short(smoothed.astype(np.int8), config)


def _merge_short(labels: np.ndarray, config: AcousticConfig) -> np.ndarray:
    """Segments shorter than their minimum join a neighbour (a speech one before silence, the
    longer one otherwise), shortest first; O(n log n) in the number of segments."""
    import heapq

    min_seg = max(1, int(round(config.min_segment_s / config.hop_s)))
    min_clo = max(1, int(round(config.min_closure_s / config.hop_s)))
    starts = np.flatnonzero(np.concatenate(([True], labels[1:] != labels[:-1])))
    start = starts.tolist()
    end = np.append(starts[1:], len(labels)).tolist()
    code = labels[starts].tolist()
    count = len(start)
    prev = list(range(-1, count - 1))
    nxt = list(range(1, count + 1))
    nxt[-1] = -1
    alive = [True] * count
    sil = _CODE["SIL"]

    def minimum(c: int) -> int:
        return min_clo if c in _CLOSURES or c == sil else min_seg

    heap = [(end[i] - start[i] - minimum(code[i]), i) for i in range(count)
            if end[i] - start[i] < minimum(code[i])]
    heapq.heapify(heap)
    remaining = count
    while heap and remaining > 1:
        key, i = heapq.heappop(heap)
        if not alive[i] or key != end[i] - start[i] - minimum(code[i]) or key >= 0:
            continue
        left, right = prev[i], nxt[i]
        cands = [j for j in (left, right) if j >= 0]
        cands.sort(key=lambda j: (code[j] == sil, -(end[j] - start[j])))
        j = cands[0]
        if j == left:
            end[j] = end[i]
        else:
            start[j] = start[i]
        alive[i] = False
        remaining -= 1
        if left >= 0:
            nxt[left] = right
        if right >= 0:
            prev[right] = left
        if left >= 0 and right >= 0 and code[left] == code[right]:
            end[left] = end[right]
            alive[right] = False
            remaining -= 1
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            j = left
        k = end[j] - start[j] - minimum(code[j])
        if k < 0:
            heapq.heappush(heap, (k, j))
    out = np.empty_like(labels)
    for i in range(count):
        if alive[i]:
            out[start[i]:end[i]] = code[i]
    return out


def _name_closures(labels: np.ndarray, feats: _Features, config: AcousticConfig) -> np.ndarray:
    """Each closure run is P, T or K by the centroid of the burst just after it."""
    n = len(labels)
    is_closure = np.isin(labels, list(_CLOSURES))
    for a, b in _runs(is_closure):
        burst = slice(b, min(n, b + 3))
        if b >= n or labels[b] == _CODE["SIL"]:
            labels[a:b] = _CODE["P"]
            continue
        centroid = float(np.max(feats.centroid[burst]))
        if centroid >= config.burst_high_hz:
            code = _CODE["T"]
        elif centroid <= config.burst_low_hz:
            code = _CODE["P"]
        else:
            code = _CODE["K"]
        labels[a:b] = code
    return labels


# --- public -------------------------------------------------------------------------------------


def frame_labels(audio: AudioClip, *, config: AcousticConfig = AcousticConfig()) -> list[str]:
    """The phone class of every `hop_s` frame (frame i covers [i*hop, (i+1)*hop))."""
    audio = AudioClip(audio.samples, audio.sample_rate).validated("audio")
    return [_PHONES[c] for c in _classify(_features(audio, config), config)]


def estimate_phones(audio: AudioClip, *, config: AcousticConfig = AcousticConfig()) -> list[PhonemeTiming]:
    """Contiguous phone-class segments covering 0..duration, from the audio alone.

    Args:
        audio: any sample rate, mono or stereo, any length (processed in bounded blocks).
        config: thresholds; the defaults suit speech recorded at any level.

    Returns:
        PhonemeTiming list in ARPAbet (see the module docstring for the classes) plus "SIL",
        in order, the first starting at 0 and the last ending at the audio's duration. Silence or
        steady noise only gives a single "SIL".
    """
    audio = AudioClip(audio.samples, audio.sample_rate).validated("audio")
    duration = audio.duration_s
    labels = _classify(_features(audio, config), config)
    starts = np.flatnonzero(np.concatenate(([True], labels[1:] != labels[:-1])))
    ends = np.append(starts[1:], len(labels))
    out = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        out.append(PhonemeTiming(_PHONES[labels[s]], min(s * config.hop_s, duration),
                                 min(e * config.hop_s, duration)))
    out[-1].end_s = duration
    out = [p for p in out if p.end_s > p.start_s] or [PhonemeTiming(SILENCE, 0.0, duration)]
    out[0].start_s = 0.0
    return out
