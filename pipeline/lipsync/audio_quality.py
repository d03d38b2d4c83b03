"""Audio quality report: what the speech recording is like, factor by factor, with advice.

Measured on every clip the VisemeAligner aligns (and by `talkinghead visemes`):

| factor | measure | warn when |
| --- | --- | --- |
| speech share | share of the clip in voice regions (voice_activity.py) | < MIN_SPEECH_SHARE; *fail*: no speech |
| SNR | speech level (90th percentile of 20 ms frame RMS in voice regions) over the noise level (median frame RMS outside them), dB | < SNR_WARN_DB |
| clipping | share of samples at full scale (abs >= CLIP_LEVEL) | > CLIP_WARN_SHARE |
| peak level | dBFS of the largest sample | < QUIET_PEAK_DBFS |
| loudness | integrated loudness, ITU-R BS.1770 (pyloudnorm), LUFS | < QUIET_LUFS or > LOUD_LUFS |
| bandwidth | highest frequency where the voice's mean spectrum is within BANDWIDTH_RANGE_DB of its peak, Hz | < NARROW_BAND_HZ (a phone line) |
| DC offset | mean sample value, share of full scale | > DC_WARN |
| channels | stereo: correlation of left and right in the voice regions, and their level difference | out of phase (< audio_dsp.OUT_OF_PHASE_CORRELATION) or one channel LOPSIDED_DB quieter |

Only "no speech at all" fails; everything else passes or warns, with one sentence saying what it
means for lip sync and what would help.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from ..core.audio import AudioClip
from ..core.audio_dsp import OUT_OF_PHASE_CORRELATION, SUM_BLOCK, channel_correlation, to_mono
from .voice_activity import VoiceActivity

PASS, WARN, FAIL = "pass", "warn", "fail"

MIN_SPEECH_SHARE = 0.2
SNR_WARN_DB = 15.0
CLIP_LEVEL = 0.999
CLIP_WARN_SHARE = 0.001
QUIET_PEAK_DBFS = -30.0
QUIET_LUFS = -40.0
LOUD_LUFS = -6.0
NARROW_BAND_HZ = 4500.0
#: the bandwidth is where the voice's mean spectrum (smoothed over BANDWIDTH_SMOOTH_HZ) falls more than
#: BANDWIDTH_RANGE_DB under its peak for good: full-band speech keeps its fricatives (4-8 kHz) within
#: ~40 dB of the peak, a phone line cuts everything above ~3.4 kHz
BANDWIDTH_RANGE_DB = 50.0
BANDWIDTH_SMOOTH_HZ = 200.0
#: SNRs above this are shown as this (digital silence between words has no measurable noise)
SNR_CAP_DB = 80.0
DC_WARN = 0.01
LOPSIDED_DB = 20.0
FRAME_S = 0.02


@dataclass
class AudioCheck:
    """One factor: value in `unit`, verdict pass / warn / fail, one sentence of advice."""

    factor: str
    value: float
    unit: str
    verdict: str
    advice: str

    def value_text(self) -> str:
        if self.value is None or (isinstance(self.value, float) and math.isnan(self.value)):
            return "n/a"
        formats = {"%": "{:.1f} %", "dB": "{:.1f} dB", "dBFS": "{:.1f} dBFS", "LUFS": "{:.1f} LUFS",
                   "Hz": "{:.0f} Hz", "": "{:.2f}"}
        return formats.get(self.unit, "{:.2f} " + self.unit).format(self.value)


@dataclass
class AudioQualityReport:
    """The checks of one clip, in the table's order; ok is False only when there is no speech."""

    checks: list[AudioCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.verdict == FAIL for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {v: sum(c.verdict == v for c in self.checks) for v in (PASS, WARN, FAIL)}

    def by_factor(self, factor: str) -> Optional[AudioCheck]:
        return next((c for c in self.checks if c.factor == factor), None)

    def to_text(self) -> str:
        counts = self.counts()
        lines = [f"Audio quality: {'OK' if self.ok else 'FAIL'} ({counts[FAIL]} fail, {counts[WARN]} warn, "
                 f"{counts[PASS]} pass)"]
        wf = max(len("Factor"), *(len(c.factor) for c in self.checks))
        wv = max(len("Measured"), *(len(c.value_text()) for c in self.checks))
        head = f"{'Factor':<{wf}}  {'Measured':<{wv}}  Verdict  Advice"
        lines += [head, "-" * len(head)]
        lines += [f"{c.factor:<{wf}}  {c.value_text():<{wv}}  {c.verdict.upper():<7}  {c.advice}" for c in self.checks]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-safe: a value that could not be measured (NaN, -inf) is None."""
        return {"ok": self.ok, "checks": [
            dict(asdict(c), value=float(c.value) if c.value is not None and math.isfinite(c.value) else None,
                 value_text=c.value_text()) for c in self.checks]}


def report_from_dict(raw: dict) -> AudioQualityReport:
    """The report back from `AudioQualityReport.to_dict()` (e.g. a VisemeTrack's audio_quality)."""
    fields = ("factor", "value", "unit", "verdict", "advice")
    return AudioQualityReport([AudioCheck(*(c[name] for name in fields)) for c in raw.get("checks", [])])


def _db(x: float) -> float:
    return 20.0 * math.log10(max(x, 1e-10))


def _frame_rms(mono: np.ndarray, rate: int) -> np.ndarray:
    """RMS of each FRAME_S frame, float64 [frames]; computed a block of frames at a time (flat memory)."""
    hop = max(1, int(FRAME_S * rate))
    n = len(mono) // hop
    out = np.empty(n)
    step = max(1, SUM_BLOCK // hop)
    for first in range(0, n, step):
        last = min(n, first + step)
        frames = np.asarray(mono[first * hop:last * hop], np.float64).reshape(last - first, hop)
        out[first:last] = np.sqrt(np.einsum("ij,ij->i", frames, frames) / hop)
    return out


def _in_regions(n_frames: int, rate_hz: float, activity: VoiceActivity) -> np.ndarray:
    mask = np.zeros(n_frames, bool)
    for start, end in activity.regions_s:
        mask[int(start * rate_hz):int(math.ceil(end * rate_hz))] = True
    return mask


def _bandwidth_hz(mono: np.ndarray, rate: int, voice: np.ndarray) -> float:
    """Highest frequency (Hz) where the voice frames' mean spectrum is within BANDWIDTH_RANGE_DB of its peak."""
    n_fft = 1024 if rate > 16000 else 512
    hop = max(1, int(FRAME_S * rate))
    starts = [i * hop for i in np.flatnonzero(voice) if i * hop + n_fft <= len(mono)]
    if not starts:
        return float("nan")
    starts = starts[:: max(1, len(starts) // 400)]        # at most ~400 frames: enough for a spectrum
    window = np.hanning(n_fft)
    power = np.zeros(n_fft // 2 + 1)
    for s in starts:
        power += np.abs(np.fft.rfft(mono[s:s + n_fft] * window)) ** 2
    bin_hz = rate / n_fft
    smooth = max(1, int(round(BANDWIDTH_SMOOTH_HZ / bin_hz)))
    level_db = 10.0 * np.log10(np.convolve(power, np.ones(smooth) / smooth, mode="same") + 1e-20)
    above = np.flatnonzero(level_db >= level_db.max() - BANDWIDTH_RANGE_DB)
    return float(above[-1] * bin_hz) if above.size else float("nan")


def measure_audio_quality(audio: AudioClip, activity: VoiceActivity) -> AudioQualityReport:
    """The report for `audio` (float samples [channels, samples] in -1..1) and its voice regions."""
    samples = np.asarray(audio.samples, np.float32)
    rate = int(audio.sample_rate)
    mono = to_mono(AudioClip(samples, rate))      # an inverted channel is turned back first, as for alignment
    checks: list[AudioCheck] = []

    share = activity.speech_share
    if not activity.has_speech():
        checks.append(AudioCheck("speech share", 100 * share, "%", FAIL,
                                 "No voice in the clip (music, noise, tones or silence): there is nothing to lip-sync; "
                                 "connect a speech recording."))
    elif share < MIN_SPEECH_SHARE:
        checks.append(AudioCheck("speech share", 100 * share, "%", WARN,
                                 "Speech fills only a small part of the clip; the mouth rests elsewhere. Trim the "
                                 "clip to the speech if that is not what you want."))
    else:
        checks.append(AudioCheck("speech share", 100 * share, "%", PASS, "Speech throughout the clip."))
    if activity.method != "silero":
        checks[-1].advice += " (Measured from loudness only: install the asr extra to tell music from speech.)"

    rms = _frame_rms(mono, rate)
    voice = _in_regions(len(rms), 1.0 / FRAME_S, activity)
    if voice.any():
        speech_level = float(np.percentile(rms[voice], 90))
        quiet = rms[~voice] if (~voice).sum() * FRAME_S >= 0.5 else rms
        noise_level = float(np.median(quiet) if quiet is not rms else np.percentile(rms, 10))
        snr = min(SNR_CAP_DB, _db(speech_level) - _db(noise_level))
        checks.append(AudioCheck("SNR", snr, "dB", PASS if snr >= SNR_WARN_DB else WARN,
                                 "Clear speech, little background." if snr >= SNR_WARN_DB else
                                 "Noticeable background noise: mouth shapes are placed less exactly. A quieter "
                                 "room or a closer microphone helps; the transcript helps most."))
    else:
        checks.append(AudioCheck("SNR", float("nan"), "dB", WARN, "No speech to measure it on."))

    clipped = float(np.mean(np.abs(samples) >= CLIP_LEVEL)) if samples.size else 0.0
    checks.append(AudioCheck("clipping", 100 * clipped, "%", PASS if clipped <= CLIP_WARN_SHARE else WARN,
                             "No clipping." if clipped <= CLIP_WARN_SHARE else
                             "Samples at full scale: the recording was too loud and is distorted. Record with "
                             "less gain."))

    peak_dbfs = _db(float(np.max(np.abs(samples))) if samples.size else 0.0)
    checks.append(AudioCheck("peak level", peak_dbfs, "dBFS", PASS if peak_dbfs >= QUIET_PEAK_DBFS else WARN,
                             "Level is fine." if peak_dbfs >= QUIET_PEAK_DBFS else
                             "Very quiet recording: noise and the recorder's hiss weigh more. Record louder or "
                             "normalise it."))

    loudness = _loudness_lufs(samples, rate)
    if math.isnan(loudness) or QUIET_LUFS <= loudness <= LOUD_LUFS:
        checks.append(AudioCheck("loudness", loudness, "LUFS", PASS,
                                 "Loudness is fine (speech for video is usually -23 to -14 LUFS)."))
    else:
        checks.append(AudioCheck("loudness", loudness, "LUFS", WARN,
                                 "Very quiet: viewers will turn it up and hear the noise; normalise to about -16 LUFS."
                                 if loudness < QUIET_LUFS else
                                 "Very loud: likely limited or distorted; about -16 LUFS is usual for speech."))

    bandwidth = _bandwidth_hz(mono, rate, voice)
    narrow = not math.isnan(bandwidth) and bandwidth < NARROW_BAND_HZ
    checks.append(AudioCheck("bandwidth", bandwidth, "Hz", WARN if narrow else PASS,
                             "Narrow-band audio (a phone call or a low sample rate): s, f and th are hard to tell "
                             "apart. A full-band recording aligns better." if narrow else "Full-band speech."))

    dc = float(np.max(np.abs(samples.mean(axis=1)))) if samples.size else 0.0
    checks.append(AudioCheck("DC offset", 100 * dc, "%", WARN if dc > DC_WARN else PASS,
                             "A constant offset in the signal (a faulty interface or cable): it costs headroom and "
                             "clicks at cuts; a high-pass filter removes it." if dc > DC_WARN else "No DC offset."))

    checks.append(_channel_check(samples, rate, voice))
    return AudioQualityReport(checks)


def _loudness_lufs(samples: np.ndarray, rate: int) -> float:
    """Integrated loudness (ITU-R BS.1770-4) with pyloudnorm; NaN for clips under its 0.4 s block."""
    import pyloudnorm  # noqa: PLC0415 - a light dependency, loaded on first use

    if samples.shape[1] < int(0.4 * rate) + 1:
        return float("nan")
    value = pyloudnorm.Meter(rate).integrated_loudness(samples.T.astype(np.float64))
    return float(value) if np.isfinite(value) else float("-inf")


def _channel_check(samples: np.ndarray, rate: int, voice: np.ndarray) -> AudioCheck:
    if samples.shape[0] < 2:
        return AudioCheck("channels", 1.0, "", PASS, "Mono.")
    hop = max(1, int(FRAME_S * rate))
    keep = np.repeat(voice, hop)[:samples.shape[1]] if voice.any() else np.ones(samples.shape[1], bool)
    keep = np.pad(keep, (0, samples.shape[1] - len(keep)))
    left, right = samples[0][keep], samples[1][keep]          # float32: the voice's samples only
    level_l = _db(float(np.sqrt(np.mean(_frame_rms(left, rate) ** 2)))) if len(left) else -200.0
    level_r = _db(float(np.sqrt(np.mean(_frame_rms(right, rate) ** 2)))) if len(right) else -200.0
    if abs(level_l - level_r) >= LOPSIDED_DB:
        return AudioCheck("channels", abs(level_l - level_r), "dB", WARN,
                          f"The {'right' if level_l > level_r else 'left'} channel is nearly silent: the voice is "
                          "on one side only; it is aligned from the mix, but check the recording's channels.")
    correlation = channel_correlation(left, right)
    if correlation < OUT_OF_PHASE_CORRELATION:
        return AudioCheck("channels", correlation, "", WARN,
                          "Left and right are out of phase: mixed to mono (as phones and many players do) the "
                          "voice cancels. It was turned back for alignment; invert one channel in the file.")
    return AudioCheck("channels", correlation, "", PASS, "Stereo channels agree.")
