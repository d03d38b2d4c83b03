"""ArtifactReport: scores any talking-head clip (ours or anyone's) from its frames and its audio.

Nothing here trusts how the clip was made: the face is re-detected in every frame and the audio is
re-analysed, so the same numbers can be computed for our output, another tool's output, or a real
recording. Per frame:

* ``mouth_opening``: inner-lip gap (mean of the three vertical inner-lip distances, iBUG 61-67,
  62-66, 63-65) divided by the inter-ocular distance (eye-contour centres): unitless, ~0 closed,
  ~0.3-0.5 wide open.
* ``eye_aperture``: eye aspect ratio (EAR, Soukupova & Cech 2016) averaged over both eyes: unitless,
  ~0.25-0.35 open, < ~0.15 closed (blinks).
* ``identity_similarity``: the upper face (brows, eyes, nose; not the mouth, so speech does not
  count) of each frame is warped onto the reference's by a similarity fitted to eye corners and
  nose points, and compared with the reference's by normalised cross-correlation of the blurred
  grey levels, clipped to 0..1 (1 = identical). Without a reference the first frame with a face is
  the reference.
* ``flicker``: mean absolute frame-to-frame grey-level difference (0..255) in regions that should be
  still: the background away from the face box and the person below it (``flicker_background``) and
  the forehead and cheeks after registering each frame onto the reference (``flicker_skin``);
  ``flicker`` is the mean of the two where both exist.
* ``landmark_jump_px``: median displacement of the 68 landmarks since the previous frame with a face.

Summaries: the lip-sync lag (cross-correlation of the mouth opening with the speech envelope),
correlation with an intended mouth track, identity drift, mean still-region flicker, blinks and
the frames flagged as broken ("no face", "landmark jump N px", "implausible landmarks").

Frames stream through `score_clip` one at a time; only per-frame numbers and the previous frame are
kept, so memory does not grow with the clip's length.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional

import numpy as np

from ..core.audio import AudioClip
from ..core.audio_dsp import mono_at
from ..core.errors import InputError

FORMAT_NAME = "talkinghead.artifact_report"
FORMAT_VERSION = 1

#: iBUG-68 points the upper-face registration is fitted to: eye corners and the top of the nose bridge
#: (the nostrils and lower nose move with the mouth in Face Mesh, so they are left out).
ALIGN_POINTS = np.array([36, 39, 42, 45, 27], dtype=np.int64)


@dataclass(frozen=True)
class ArtifactConfig:
    """Thresholds and sizes of `score_clip`. Distances in "iod" are multiples of the inter-ocular
    distance (between the eye-contour centres) of the face in that frame.

    Attributes:
        backend: face backend for the landmarks ("auto", "mediapipe", "dlib").
        envelope_sample_rate: Hz the audio is resampled to before the speech envelope is taken.
        envelope_band_hz: (low, high) Hz band-pass applied before the per-frame RMS (speech band).
        max_lag_ms: the lip-sync lag is searched within +-max_lag_ms.
        detrend_s: before correlating, a centred moving average of this many seconds is subtracted
            from the mouth opening and the envelope (slow posture and loudness changes do not count).
        min_audio_s: shortest audio accepted, seconds.
        min_lag_frames: fewest frames with a face needed to measure the lag and correlations.
        jump_iod: a frame whose landmarks moved (median over the 68) more than
            max(jump_min_px, jump_iod * iod) since the previous face is flagged.
        jump_min_px: floor of that threshold, pixels.
        min_landmark_confidence: landmark_confidence (0..1) below which a frame is flagged
            "implausible landmarks".
        canonical_iod_px: inter-ocular distance in the registered upper-face crop, pixels.
        identity_blur_px: Gaussian sigma (crop pixels) applied to the registered crop before the
            normalised cross-correlation and the skin flicker.
        skin_shift_px: the skin flicker is the smallest difference over shifts of up to this many crop
            pixels, so registration jitter is not counted as flicker.
        still_margin: the person region left out of the background flicker is the face box widened
            by this share of its width on each side, from this share of its height above the box
            down to the bottom of the frame.
        blink_fraction: eye_aperture below this share of the clip's median counts as a blink.
        drift_baseline_s: identity max drop is measured from the median similarity of the first
            drift_baseline_s seconds.
        drift_smooth_frames: median filter (frames) applied to the similarity before its minimum is taken.
    """

    backend: str = "auto"
    envelope_sample_rate: int = 16000
    envelope_band_hz: tuple[float, float] = (100.0, 4000.0)
    max_lag_ms: float = 400.0
    detrend_s: float = 1.5
    min_audio_s: float = 0.5
    min_lag_frames: int = 10
    jump_iod: float = 0.25
    jump_min_px: float = 6.0
    min_landmark_confidence: float = 0.5
    canonical_iod_px: int = 64
    identity_blur_px: float = 1.0
    skin_shift_px: int = 1
    still_margin: float = 0.5
    blink_fraction: float = 0.6
    drift_baseline_s: float = 1.0
    drift_smooth_frames: int = 5


@dataclass
class BrokenFrame:
    """A frame flagged as broken: its index, when it is shown (index / fps, seconds) and why."""

    frame: int
    time_s: float
    reason: str

    def to_dict(self) -> dict:
        return {"frame": int(self.frame), "time_s": round(float(self.time_s), 4), "reason": self.reason}


def _nan_list(values: np.ndarray, digits: int = 5) -> list:
    return [None if not math.isfinite(v) else round(float(v), digits) for v in np.asarray(values, np.float64)]


def _from_nan_list(values: Optional[list]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in (values or [])], np.float64)


def _num(value: float, digits: int = 4) -> Optional[float]:
    return None if value is None or not math.isfinite(float(value)) else round(float(value), digits)


def _from_num(value: Optional[float]) -> float:
    return float("nan") if value is None else float(value)


@dataclass
class ArtifactReport:
    """What `score_clip` measured. Per-frame arrays are float64 [num_frames] (NaN where not measured:
    no face in the frame, or no previous frame for the differences), frame i shown at i / fps.

    Attributes:
        fps: frames per second of the clip.
        num_frames: frames scored.
        duration_s: num_frames / fps.
        mouth_opening: inner-lip gap / inter-ocular distance (unitless).
        eye_aperture: mean eye aspect ratio of both eyes (unitless).
        landmarks_found: bool [num_frames], a face was found.
        identity_similarity: 0..1 upper-face similarity to the reference (1 = identical).
        flicker: mean absolute frame-to-frame difference in still regions, grey levels 0..255.
        flicker_background: the same, background only (away from the person).
        flicker_skin: the same, registered forehead and cheeks only.
        landmark_jump_px: median landmark displacement since the previous face, pixels.
        speech_envelope: band-passed RMS of the audio over each frame's interval, scaled to 0..1.
        lip_sync_lag_ms: lag of the video behind the audio, ms (positive = mouth moves after the
            sound; negative = before); NaN when it could not be measured (silence, too few faces).
        lag_correlation: Pearson correlation at that lag (-1..1; > ~0.3 means the lag is meaningful).
        mouth_track_correlation: Pearson correlation of mouth_opening with the intended mouth track
            (no shift), NaN when none was given.
        identity_drift_per_min: slope of identity_similarity, per minute (negative = drifting away).
        identity_max_drop: largest fall of the (median-filtered) similarity below its value over the
            first seconds, 0..1.
        flicker_still_mean: mean of `flicker` over the clip, grey levels.
        blink_count: blinks (runs of frames with eye_aperture below blink_fraction of its median).
        broken_frames: flagged frames, in order.
        reference_kind: "reference" (a Reference's frame) or "first_frame".
        notes: things to know about the measurement.
    """

    fps: float
    num_frames: int
    duration_s: float
    mouth_opening: np.ndarray
    eye_aperture: np.ndarray
    landmarks_found: np.ndarray
    identity_similarity: np.ndarray
    flicker: np.ndarray
    flicker_background: np.ndarray
    flicker_skin: np.ndarray
    landmark_jump_px: np.ndarray
    speech_envelope: np.ndarray
    lip_sync_lag_ms: float = float("nan")
    lag_correlation: float = float("nan")
    mouth_track_correlation: float = float("nan")
    identity_drift_per_min: float = float("nan")
    identity_max_drop: float = float("nan")
    flicker_still_mean: float = float("nan")
    blink_count: int = 0
    broken_frames: list[BrokenFrame] = field(default_factory=list)
    reference_kind: str = "first_frame"
    notes: list[str] = field(default_factory=list)

    PER_FRAME = ("mouth_opening", "eye_aperture", "identity_similarity", "flicker", "flicker_background",
                 "flicker_skin", "landmark_jump_px", "speech_envelope")
    SUMMARY = ("lip_sync_lag_ms", "lag_correlation", "mouth_track_correlation", "identity_drift_per_min",
               "identity_max_drop", "flicker_still_mean")

    @property
    def faces_found_fraction(self) -> float:
        return float(np.mean(self.landmarks_found)) if self.num_frames else 0.0

    def to_dict(self) -> dict:
        """JSON-ready values (NaN becomes null)."""
        out: dict[str, Any] = {"format": f"{FORMAT_NAME}/{FORMAT_VERSION}", "fps": float(self.fps),
                               "num_frames": int(self.num_frames), "duration_s": round(float(self.duration_s), 6)}
        summary = {name: _num(getattr(self, name)) for name in self.SUMMARY}
        summary["blink_count"] = int(self.blink_count)
        summary["faces_found_fraction"] = round(self.faces_found_fraction, 4)
        summary["broken_frame_count"] = len(self.broken_frames)
        out["summary"] = summary
        out["broken_frames"] = [b.to_dict() for b in self.broken_frames]
        out["reference_kind"] = self.reference_kind
        out["notes"] = list(self.notes)
        per_frame = {name: _nan_list(getattr(self, name)) for name in self.PER_FRAME}
        per_frame["landmarks_found"] = [bool(v) for v in self.landmarks_found]
        out["per_frame"] = per_frame
        return out

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, raw: dict) -> "ArtifactReport":
        per_frame = raw.get("per_frame", {})
        summary = raw.get("summary", {})
        return cls(
            fps=float(raw["fps"]), num_frames=int(raw["num_frames"]), duration_s=float(raw["duration_s"]),
            landmarks_found=np.array(per_frame.get("landmarks_found", []), bool),
            **{name: _from_nan_list(per_frame.get(name)) for name in cls.PER_FRAME},
            **{name: _from_num(summary.get(name)) for name in cls.SUMMARY},
            blink_count=int(summary.get("blink_count", 0)),
            broken_frames=[BrokenFrame(int(b["frame"]), float(b["time_s"]), str(b["reason"]))
                           for b in raw.get("broken_frames", [])],
            reference_kind=raw.get("reference_kind", "first_frame"), notes=list(raw.get("notes", [])),
        )

    @classmethod
    def from_json(cls, text: str) -> "ArtifactReport":
        return cls.from_dict(json.loads(text))

    def summary_text(self) -> str:
        """A few lines for a terminal or the node's text preview."""
        def f(value, fmt):
            return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)

        ident = self.identity_similarity[np.isfinite(self.identity_similarity)]
        mean_identity = float(ident.mean()) if ident.size else float("nan")
        lines = [
            f"{self.num_frames} frames at {self.fps:g} fps ({self.duration_s:.2f} s); face found in "
            f"{100 * self.faces_found_fraction:.0f}% of frames",
            f"lip-sync lag {f(self.lip_sync_lag_ms, '+.0f')} ms (video late > 0; correlation "
            f"{f(self.lag_correlation, '.2f')})"
            + (f"; mouth vs intended track r = {f(self.mouth_track_correlation, '.2f')}"
               if math.isfinite(self.mouth_track_correlation) else ""),
            f"identity vs {self.reference_kind.replace('_', ' ')}: mean {f(mean_identity, '.3f')}, "
            f"drift {f(self.identity_drift_per_min, '+.3f')}/min, max drop {f(self.identity_max_drop, '.3f')}",
            f"still-region flicker {f(self.flicker_still_mean, '.2f')} grey levels; {self.blink_count} blink(s)",
        ]
        if self.broken_frames:
            shown = ", ".join(f"{b.frame} ({b.reason})" for b in self.broken_frames[:8])
            more = f" and {len(self.broken_frames) - 8} more" if len(self.broken_frames) > 8 else ""
            lines.append(f"{len(self.broken_frames)} broken frame(s): {shown}{more}")
        else:
            lines.append("no broken frames")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# per-frame geometry


def _inter_ocular(p: np.ndarray) -> float:
    return float(np.linalg.norm(p[36:42].mean(0) - p[42:48].mean(0)))


def mouth_opening_of(p: np.ndarray) -> float:
    """Inner-lip gap / inter-ocular distance for iBUG-68 points p [68, 2]."""
    gap = (np.linalg.norm(p[61] - p[67]) + np.linalg.norm(p[62] - p[66]) + np.linalg.norm(p[63] - p[65])) / 3
    return float(gap / max(_inter_ocular(p), 1e-6))


def eye_aperture_of(p: np.ndarray) -> float:
    """Mean eye aspect ratio (EAR) of both eyes for iBUG-68 points p [68, 2]."""
    def ear(e):
        width = max(float(np.linalg.norm(e[0] - e[3])), 1e-6)
        return (np.linalg.norm(e[1] - e[5]) + np.linalg.norm(e[2] - e[4])) / (2 * width)

    return float((ear(p[36:42]) + ear(p[42:48])) / 2)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 2x3 similarity (rotation, uniform scale, translation) mapping src -> dst (Umeyama)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    var = float((a ** 2).sum()) or 1e-12
    # complex form: dst = z * src with z = s * e^{i theta}
    za = a[:, 0] + 1j * a[:, 1]
    zb = b[:, 0] + 1j * b[:, 1]
    z = complex(np.sum(np.conj(za) * zb) / var)
    lin = np.array([[z.real, -z.imag], [z.imag, z.real]])
    return np.hstack([lin, (md - lin @ ms)[:, None]])


class _Canonical:
    """The upper-face registration: reference points -> a crop with `iod` px between the eyes.

    Crop coordinates (u, v) in iod units relative to the eye midpoint: u -1.1..1.1, v -0.95..1.0."""

    U = (-1.1, 1.1)
    V = (-0.95, 1.0)

    def __init__(self, ref_points68: np.ndarray, iod_px: int):
        p = np.asarray(ref_points68, np.float64)
        left, right = p[36:42].mean(0), p[42:48].mean(0)
        self.iod = int(iod_px)
        self.width = int(round((self.U[1] - self.U[0]) * iod_px))
        self.height = int(round((self.V[1] - self.V[0]) * iod_px))
        # reference image -> crop: eyes at (U=-0.5, V=0) and (U=0.5, V=0)
        dst = np.array([[(-0.5 - self.U[0]) * iod_px, -self.V[0] * iod_px],
                        [(0.5 - self.U[0]) * iod_px, -self.V[0] * iod_px]])
        m = _similarity(np.stack([left, right]), dst)
        self.targets = p[ALIGN_POINTS] @ m[:, :2].T + m[:, 2]

        def rows(v0, v1):
            return slice(int(round((v0 - self.V[0]) * iod_px)), int(round((v1 - self.V[0]) * iod_px)))

        def cols(u0, u1):
            return slice(int(round((u0 - self.U[0]) * iod_px)), int(round((u1 - self.U[0]) * iod_px)))

        # brows, eyes and nose down to the nostrils; the mouth (about 0.9-1.1 iod below the eyes) is out
        self.identity = (rows(-0.75, 0.55), cols(-1.0, 1.0))
        self.skin = [(rows(-0.9, -0.55), cols(-0.45, 0.45)),   # forehead
                     (rows(0.3, 0.7), cols(-0.9, -0.4)),       # image-left cheek
                     (rows(0.3, 0.7), cols(0.4, 0.9))]         # image-right cheek

    def warp(self, grey: np.ndarray, points68: np.ndarray) -> np.ndarray:
        import cv2  # noqa: PLC0415

        m = _similarity(np.asarray(points68, np.float64)[ALIGN_POINTS], self.targets)
        shrink = m[0, 0] ** 2 + m[1, 0] ** 2 < 0.5
        flags = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        warped = cv2.warpAffine(grey, m, (self.width, self.height), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        return warped.astype(np.float32)


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-9 else 0.0


def _registered_difference(crop: np.ndarray, prev_crop: np.ndarray, regions, shift_px: int) -> float:
    """Mean absolute difference of `regions` (row, col slices) of two registered crops, the smallest
    over shifts of prev_crop by up to +-shift_px (so landmark jitter of a pixel is not read as flicker)."""
    pad = int(shift_px)
    best = float("inf")
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            total, count = 0.0, 0
            for rows, cols in regions:
                r0, r1 = max(rows.start + dy, 0), min(rows.stop + dy, prev_crop.shape[0])
                c0, c1 = max(cols.start + dx, 0), min(cols.stop + dx, prev_crop.shape[1])
                a = crop[r0 - dy:r1 - dy, c0 - dx:c1 - dx]
                b = prev_crop[r0:r1, c0:c1]
                total += float(np.abs(a - b).sum())
                count += a.size
            if count:
                best = min(best, total / count)
    return best if math.isfinite(best) else float("nan")


def _grey(frame: np.ndarray) -> np.ndarray:
    import cv2  # noqa: PLC0415

    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    import cv2  # noqa: PLC0415

    return cv2.GaussianBlur(image, (0, 0), sigma) if sigma > 0 else image


# ---------------------------------------------------------------------------------------------------
# input checks


def _as_frame(frame: Any, index: int, input_name: str) -> np.ndarray:
    if hasattr(frame, "detach"):  # torch tensor
        frame = frame.detach().cpu().numpy()
    a = np.asarray(frame)
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(input_name, f"frame {index} has shape {tuple(a.shape)}, expected [height, width, 3]",
                         "Pass RGB frames (uint8 0..255 or float 0..1).")
    if a.dtype != np.uint8:
        if not np.issubdtype(a.dtype, np.floating):
            raise InputError(input_name, f"frame {index} has dtype {a.dtype}",
                             "Pass uint8 0..255 or float 0..1 frames.")
        a = (np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if min(a.shape[:2]) < 32:
        raise InputError(input_name, f"frame {index} is only {a.shape[1]}x{a.shape[0]} pixels",
                         "Score frames of at least 128 pixels on each side.")
    return np.ascontiguousarray(a)


def _frame_iter(frames: Any, input_name: str) -> tuple[Iterator[Any], int]:
    if frames is None:
        raise InputError(input_name, "no frames were given",
                         "Pass the clip's frames (an array [N,H,W,3] or an iterable).")
    shape = getattr(frames, "shape", None)
    if shape is not None and not isinstance(frames, (list, tuple)):
        if len(shape) != 4:
            raise InputError(input_name, f"expected frames of shape [N, height, width, 3], got {tuple(shape)}",
                             "Pass a batch of RGB frames.")
        return (frames[i] for i in range(int(shape[0]))), int(shape[0])
    try:
        total = len(frames)
    except TypeError:
        total = 0
    try:
        return iter(frames), total
    except TypeError:
        raise InputError(input_name, f"expected frames, got {type(frames).__name__}",
                         "Pass an array [N,H,W,3] or an iterable of [H,W,3] frames.") from None


# ---------------------------------------------------------------------------------------------------
# signals


def speech_envelope(audio: AudioClip, fps: float, num_frames: int,
                    config: ArtifactConfig = ArtifactConfig()) -> np.ndarray:
    """Band-passed RMS of the audio over each frame interval [i/fps, (i+1)/fps), float64 [num_frames],
    scaled so its maximum is 1 (all zeros for silence); frames past the audio's end are 0."""
    from scipy.signal import butter, sosfiltfilt  # noqa: PLC0415

    sr = int(config.envelope_sample_rate)
    mono = mono_at(audio, sr).astype(np.float64)
    low, high = config.envelope_band_hz
    high = min(high, 0.45 * sr)
    if len(mono) > 64:
        sos = butter(2, [low, high], btype="bandpass", fs=sr, output="sos")
        mono = sosfiltfilt(sos, mono)
    edges = np.round(np.arange(num_frames + 1) * sr / fps).astype(np.int64)
    sq = np.concatenate([[0.0], np.cumsum(mono ** 2)])
    a = np.clip(edges[:-1], 0, len(mono))
    b = np.clip(edges[1:], 0, len(mono))
    n = np.maximum(b - a, 1)
    env = np.sqrt(np.maximum(sq[b] - sq[a], 0.0) / n)
    env[b <= a] = 0.0
    peak = float(env.max()) if env.size else 0.0
    return env / peak if peak > 1e-9 else np.zeros(num_frames)


def _fill_nans(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64).copy()
    ok = np.isfinite(x)
    if ok.all() or not ok.any():
        return x if ok.any() else np.zeros_like(x)
    idx = np.arange(len(x))
    x[~ok] = np.interp(idx[~ok], idx[ok], x[ok])
    return x


def _detrend(x: np.ndarray, window: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter1d  # noqa: PLC0415

    if window >= 3 and len(x) > window:
        return x - uniform_filter1d(x, window, mode="nearest")
    return x - x.mean()


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-12 else float("nan")


def lag_by_cross_correlation(video_signal: np.ndarray, audio_signal: np.ndarray, fps: float,
                             max_lag_ms: float) -> tuple[float, float]:
    """Lag (ms) of `video_signal` behind `audio_signal` at the Pearson cross-correlation peak within
    +-max_lag_ms, refined between frames by a parabola through the peak and its neighbours.

    Positive: the video follows the audio (video[i] ~ audio[i - lag]). Returns (lag_ms, correlation at
    the peak frame); (nan, nan) when there is nothing to correlate."""
    v, a = np.asarray(video_signal, np.float64), np.asarray(audio_signal, np.float64)
    n = min(len(v), len(a))
    v, a = v[:n], a[:n]
    max_lag = int(min(math.ceil(max_lag_ms * fps / 1000.0), max(n - 3, 0)))
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.full(len(lags), np.nan)
    for k, lag in enumerate(lags):
        if lag >= 0:
            corr[k] = _pearson(v[lag:], a[:n - lag])
        else:
            corr[k] = _pearson(v[:n + lag], a[-lag:])
    if not np.isfinite(corr).any():
        return float("nan"), float("nan")
    k = int(np.nanargmax(corr))
    delta = 0.0
    if 0 < k < len(lags) - 1 and np.isfinite(corr[k - 1]) and np.isfinite(corr[k + 1]):
        den = corr[k - 1] - 2 * corr[k] + corr[k + 1]
        if den < -1e-12:
            delta = float(np.clip(0.5 * (corr[k - 1] - corr[k + 1]) / den, -0.5, 0.5))
    return float((lags[k] + delta) * 1000.0 / fps), float(corr[k])


# ---------------------------------------------------------------------------------------------------
# scoring


def blink_mask(eye_aperture: np.ndarray, config: ArtifactConfig = ArtifactConfig()) -> np.ndarray:
    """bool [N]: frames whose eye aperture is below config.blink_fraction of the clip's median."""
    eye = np.asarray(eye_aperture, np.float64)
    if not np.isfinite(eye).any():
        return np.zeros(len(eye), bool)
    return np.nan_to_num(eye, nan=np.inf) < config.blink_fraction * float(np.nanmedian(eye))


def _still_mask(height: int, width: int, boxes, margin: float) -> np.ndarray:
    """bool [H, W]: True away from the person (each face box widened by `margin` of its size on the
    sides and above, extended down to the bottom of the frame)."""
    mask = np.ones((height, width), bool)
    for box in boxes:
        if box is None:
            continue
        bw, bh = box[2] - box[0], box[3] - box[1]
        x0 = int(max(0, math.floor(box[0] - margin * bw)))
        x1 = int(min(width, math.ceil(box[2] + margin * bw)))
        y0 = int(max(0, math.floor(box[1] - margin * bh)))
        mask[y0:, x0:x1] = False
    return mask


@dataclass
class _FrameNumbers:
    """What one frame contributes to the report (see ArtifactReport for the units)."""

    found: bool = False
    mouth: float = float("nan")
    eye: float = float("nan")
    identity: float = float("nan")
    jump_px: float = float("nan")
    flicker_background: float = float("nan")
    flicker_skin: float = float("nan")
    broken: Optional[str] = None


class _FrameScorer:
    """The per-frame pass. Keeps only the previous frame (grey), its registered crop and landmarks."""

    def __init__(self, config: ArtifactConfig, reference: Any, notes: list[str]):
        self.config = config
        self.canonical: Optional[_Canonical] = None
        self.ref_crop: Optional[np.ndarray] = None
        self.reference_kind = "first_frame"
        if reference is not None:
            ref_frame = getattr(reference, "frame", None)
            ref_points = getattr(reference, "landmarks_68", None)
            if ref_frame is not None and ref_points is not None:
                self.canonical = _Canonical(ref_points, config.canonical_iod_px)
                self.ref_crop = self._crop(_grey(np.asarray(ref_frame, np.uint8)), ref_points)
                self.reference_kind = "reference"
            else:
                notes.append("the reference has no pixels (loaded without its .safetensors): identity is "
                             "measured against the first frame with a face")
        self.prev_grey: Optional[np.ndarray] = None
        self.prev_crop: Optional[np.ndarray] = None
        self.prev_points: Optional[np.ndarray] = None    # landmarks of the last frame with a face
        self.anchor_points: Optional[np.ndarray] = None  # landmarks before a flagged jump (to see the return)
        self.prev_box: Optional[np.ndarray] = None

    def _crop(self, grey: np.ndarray, points68: np.ndarray) -> np.ndarray:
        return _blur(self.canonical.warp(grey, points68), self.config.identity_blur_px)

    def _jump(self, p: np.ndarray) -> tuple[float, Optional[str]]:
        """Median landmark displacement since the previous face (px) and, if it is a jump, the reason.
        A jump straight back to where the face was before the previous jump is not flagged again."""
        if self.prev_points is None:
            return float("nan"), None
        config = self.config
        moved = float(np.median(np.linalg.norm(p - self.prev_points, axis=1)))
        limit = max(config.jump_min_px, config.jump_iod * _inter_ocular(p))
        if moved <= limit:
            self.anchor_points = None
            return moved, None
        if self.anchor_points is not None and float(np.median(np.linalg.norm(p - self.anchor_points, axis=1))) <= limit:
            self.anchor_points = None
            return moved, None
        self.anchor_points = self.prev_points
        return moved, f"landmark jump {moved:.0f} px"

    def __call__(self, frame: np.ndarray) -> _FrameNumbers:
        from ..face.landmarks import detect_faces  # noqa: PLC0415

        config = self.config
        out = _FrameNumbers()
        grey = _grey(frame)
        faces = detect_faces(frame, config.backend, max_faces=1)
        face = faces[0] if faces else None
        crop = None
        if face is None:
            out.broken = "no face"
        else:
            p = face.landmarks_68().astype(np.float64)
            out.found = True
            out.mouth, out.eye = mouth_opening_of(p), eye_aperture_of(p)
            if self.canonical is None:
                self.canonical = _Canonical(p, config.canonical_iod_px)
            crop = self._crop(grey, p)
            if self.ref_crop is None:
                self.ref_crop = crop
            rows, cols = self.canonical.identity
            out.identity = max(0.0, _ncc(crop[rows, cols], self.ref_crop[rows, cols]))
            out.jump_px, out.broken = self._jump(p)
            if out.broken is None and face.landmark_confidence < config.min_landmark_confidence:
                out.broken = f"implausible landmarks (confidence {face.landmark_confidence:.2f})"
            self.prev_points = p

        if self.prev_grey is not None:
            box = None if face is None else face.box_xyxy
            mask = _still_mask(grey.shape[0], grey.shape[1], (self.prev_box, box), config.still_margin)
            if mask.any():
                diff = np.abs(grey.astype(np.int16) - self.prev_grey.astype(np.int16))
                out.flicker_background = float(diff[mask].mean())
        if crop is not None and self.prev_crop is not None:
            out.flicker_skin = _registered_difference(crop, self.prev_crop, self.canonical.skin, config.skin_shift_px)
        self.prev_grey, self.prev_crop = grey, crop
        if face is not None:
            self.prev_box = face.box_xyxy.astype(np.float64)
        return out


def _check_fps(fps: Any) -> float:
    ok = isinstance(fps, (int, float, np.integer, np.floating)) and not isinstance(fps, bool)
    if not ok or not math.isfinite(float(fps)) or float(fps) <= 0:
        raise InputError("fps", f"must be a positive number of frames per second, got {fps!r}", "Use e.g. 25.")
    return float(fps)


def _summarise(report: ArtifactReport, intended_mouth: Optional[np.ndarray], config: ArtifactConfig) -> None:
    """Fills the summary numbers of a report whose per-frame arrays are set."""
    fps, num_frames, notes = report.fps, report.num_frames, report.notes

    # lip-sync lag
    faces = int(report.landmarks_found.sum())
    if faces < config.min_lag_frames:
        notes.append(f"a face was found in only {faces} frame(s): no lip-sync lag")
    elif float(report.speech_envelope.max()) <= 0:
        notes.append("the audio is silent: no lip-sync lag")
    else:
        window = int(round(config.detrend_s * fps)) | 1
        m = _detrend(_fill_nans(report.mouth_opening), window)
        e = _detrend(report.speech_envelope, window)
        report.lip_sync_lag_ms, report.lag_correlation = lag_by_cross_correlation(m, e, fps, config.max_lag_ms)
        if math.isfinite(report.lag_correlation) and report.lag_correlation < 0.3:
            notes.append(f"weak mouth-speech correlation ({report.lag_correlation:.2f}): the lag is unreliable")

    if intended_mouth is not None:
        intended = np.asarray(intended_mouth, np.float64).reshape(-1)
        n = min(len(intended), num_frames)
        ok = np.isfinite(report.mouth_opening[:n]) & np.isfinite(intended[:n])
        if int(ok.sum()) >= 3:
            report.mouth_track_correlation = _pearson(report.mouth_opening[:n][ok], intended[:n][ok])
        if len(intended) != num_frames:
            notes.append(f"the intended mouth track has {len(intended)} frames, the clip {num_frames}: "
                         f"compared over the first {n}")

    # identity drift
    ok = np.isfinite(report.identity_similarity)
    if int(ok.sum()) >= 2:
        from scipy.ndimage import median_filter  # noqa: PLC0415

        times_min = np.arange(num_frames)[ok] / fps / 60.0
        values = report.identity_similarity[ok]
        report.identity_drift_per_min = float(np.polyfit(times_min, values, 1)[0])
        smooth = median_filter(values, size=max(1, int(config.drift_smooth_frames)), mode="nearest")
        first = values[times_min * 60.0 < config.drift_baseline_s]
        baseline = float(np.median(first if first.size else values[:1]))
        report.identity_max_drop = max(0.0, baseline - float(smooth.min()))
    elif int(ok.sum()) == 1:
        report.identity_drift_per_min, report.identity_max_drop = 0.0, 0.0

    if np.isfinite(report.flicker).any():
        report.flicker_still_mean = float(np.nanmean(report.flicker))
    closed = blink_mask(report.eye_aperture, config)
    report.blink_count = int(np.sum(closed[1:] & ~closed[:-1]) + int(closed[:1].sum()))


def score_clip(
    frames: Iterable[Any],
    audio: AudioClip,
    fps: float,
    *,
    reference: Any = None,
    intended_mouth: Optional[np.ndarray] = None,
    config: ArtifactConfig = ArtifactConfig(),
    progress: Optional[Callable[[int, int], None]] = None,
    frames_name: str = "frames",
    audio_name: str = "audio",
) -> ArtifactReport:
    """Scores a talking-head clip. See the module docstring for what each number measures.

    Args:
        frames: array [N, H, W, 3] (uint8, or float 0..1; a torch tensor works) or any iterable of
            [H, W, 3] frames, consumed one at a time.
        audio: the clip's audio, AudioClip float32 [C, T] at sample_rate Hz; sample 0 plays with frame 0.
        fps: frames per second (> 0).
        reference: optional pipeline.face.reference.Reference with its `frame` pixels; the identity is
            compared with it. Without it (or without its pixels) the first frame with a face is used.
        intended_mouth: optional float [N'] mouth track the clip was meant to follow (e.g. the
            VisemeTrack.lip_gap(), or the renderer's own per-frame intended opening); compared with the measured mouth opening (Pearson).
        config: thresholds, see ArtifactConfig.
        progress: called as progress(frames_done, total) after each frame (total 0 when unknown).
        frames_name, audio_name: input names used in errors.
    Raises:
        InputError: no frames, fps <= 0, audio too short or malformed, frames of changing size.
    """
    fps = _check_fps(fps)
    if not isinstance(audio, AudioClip):
        raise InputError(audio_name, f"expected an AudioClip, got {type(audio).__name__}", "Pass the clip's audio.")
    audio = audio.validated(audio_name)
    if audio.duration_s < config.min_audio_s:
        raise InputError(audio_name, f"the audio is too short ({audio.duration_s * 1000:.0f} ms)",
                         f"Give at least {config.min_audio_s:g} s of audio (the clip's soundtrack).")
    source, total = _frame_iter(frames, frames_name)

    notes: list[str] = []
    scorer = _FrameScorer(config, reference, notes)
    rows: list[_FrameNumbers] = []
    broken: list[BrokenFrame] = []
    size: Optional[tuple[int, int]] = None
    for index, raw in enumerate(source):
        frame = _as_frame(raw, index, frames_name)
        if size is None:
            size = frame.shape[:2]
        elif frame.shape[:2] != size:
            raise InputError(frames_name, f"frame {index} is {frame.shape[1]}x{frame.shape[0]} but the first frame "
                             f"is {size[1]}x{size[0]}", "Give frames of one size.")
        numbers = scorer(frame)
        rows.append(numbers)
        if numbers.broken is not None:
            broken.append(BrokenFrame(index, index / fps, numbers.broken))
        if progress is not None:
            progress(index + 1, total)
    num_frames = len(rows)
    if num_frames == 0:
        raise InputError(frames_name, "no frames were given (the clip is empty)",
                         "Score a clip with at least one frame.")

    def column(name: str) -> np.ndarray:
        return np.array([getattr(r, name) for r in rows], np.float64)

    bg, skin = column("flicker_background"), column("flicker_skin")
    flicker = np.where(np.isfinite(bg) & np.isfinite(skin), (bg + skin) / 2, np.where(np.isfinite(bg), bg, skin))
    duration_s = num_frames / fps
    if audio.duration_s < 0.9 * duration_s:
        notes.append(f"the audio ({audio.duration_s:.2f} s) is shorter than the video ({duration_s:.2f} s); "
                     "frames past its end count as silence")
    report = ArtifactReport(
        fps=fps, num_frames=num_frames, duration_s=duration_s, mouth_opening=column("mouth"),
        eye_aperture=column("eye"), landmarks_found=np.array([r.found for r in rows], bool),
        identity_similarity=column("identity"), flicker=flicker, flicker_background=bg, flicker_skin=skin,
        landmark_jump_px=column("jump_px"), speech_envelope=speech_envelope(audio, fps, num_frames, config),
        broken_frames=broken, reference_kind=scorer.reference_kind, notes=notes,
    )
    _summarise(report, intended_mouth, config)
    return report


# ---------------------------------------------------------------------------------------------------
# files


class VideoFrames:
    """The video frames of a file, decoded with PyAV one at a time as uint8 RGB [H, W, 3].

    Iterable more than once (each pass re-opens the file); len() is the stream's frame count when the
    container states it, else 0."""

    def __init__(self, path: str, input_name: str = "video"):
        import av  # noqa: PLC0415

        self.path = path
        self.input_name = input_name
        try:
            with av.open(path) as container:
                if not container.streams.video:
                    raise InputError(input_name, f"{path!r} holds no video stream", "Choose a video file.")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                self.fps = float(rate) if rate else 0.0
                self.frame_count = int(stream.frames or 0)
        except av.error.FFmpegError as exc:
            raise InputError(input_name, f"{path!r} could not be opened as a video ({exc})",
                             "Give an MP4, MOV, MKV or WebM file.") from exc
        if self.fps <= 0:
            raise InputError(input_name, f"{path!r} does not state its frame rate",
                             "Re-encode it with a constant frame rate.")

    def __len__(self) -> int:
        return self.frame_count

    def __iter__(self) -> Iterator[np.ndarray]:
        import av  # noqa: PLC0415

        with av.open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")


def load_clip(path: str, input_name: str = "video") -> tuple[VideoFrames, AudioClip, float]:
    """(frames, audio, fps) of a video file with sound, for score_clip. Frames are decoded lazily."""
    import os  # noqa: PLC0415

    from ..core.audio_io import load_audio  # noqa: PLC0415

    if not os.path.isfile(path):
        raise InputError(input_name, f"no video file at {path!r}", "Check the file name and folder.")
    frames = VideoFrames(path, input_name)
    audio = load_audio(path, input_name)
    return frames, audio, frames.fps


def score_file(path: str, *, reference: Any = None, intended_mouth: Optional[np.ndarray] = None,
               config: ArtifactConfig = ArtifactConfig(), progress: Optional[Callable[[int, int], None]] = None,
               input_name: str = "video") -> ArtifactReport:
    """score_clip on a video file (see load_clip)."""
    frames, audio, fps = load_clip(path, input_name)
    return score_clip(frames, audio, fps, reference=reference, intended_mouth=intended_mouth, config=config,
                      progress=progress, frames_name=input_name, audio_name=input_name)


__all__ = [
    "ArtifactConfig", "ArtifactReport", "BrokenFrame", "VideoFrames", "blink_mask", "eye_aperture_of",
    "lag_by_cross_correlation",
    "load_clip", "mouth_opening_of", "score_clip", "score_file", "speech_envelope",
]
