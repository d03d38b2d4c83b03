"""Mux: frames + audio -> an MP4 (H.264 yuv420p + AAC) with a measured A/V offset.

The last stage of the pipeline. Frames are streamed to ffmpeg's stdin as raw YUV 4:2:0, converted
here from RGB with the BT.709 matrix (`yuv420.py`; no temporary image files, memory does not grow
with clip length); the audio goes through a temporary raw float32
file. Timing is made exact in *samples and frames*, never with container tricks: the frame rate is
a rational (24000/1001, not 23.976), audio offsets are made by inserting or dropping samples (no
`-itsoffset`), and the duration policy decides who follows whom -- the video holds its last frame or
is trimmed to the audio, or the audio is padded with silence or trimmed to the video.

After writing, the file is decoded again (PyAV) and the A/V offset and the duration difference are
*measured* from decoded frames and samples, so a regression in ffmpeg's AAC priming handling or edit
lists shows up as a number instead of as lips out of sync.

Nothing here imports ComfyUI or torch: `frames` may be a torch tensor, it is only read through
`numpy.asarray`.
"""

from __future__ import annotations

import hashlib
import math
import os
import queue
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Callable, Iterator, List, Optional, Tuple

import numpy as np

from ..core.audio import AudioClip
from ..core.errors import InputError, ToolError
from ..core.ffmpeg import FfmpegWriter, run_ffmpeg
from ..core.output_paths import atomic_write_path
from ..core.threads import opencv_in_calling_thread
from .yuv420 import i420_shape, rgb_to_i420

#: match_audio: the audio is the master; the video holds its last frame or drops frames so that it
#: lasts as long as the audio (rounded to whole frames). match_video: the video is the master; the
#: audio is padded with silence or trimmed to exactly frame_count / fps.
DURATION_POLICIES = ("match_audio", "match_video")

#: libx264 presets, fastest first.
X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast",
    "medium", "slow", "slower", "veryslow", "placebo",
)

#: x264 options added to a preset. superfast drops x264's macroblock-tree rate control (and the
#: lookahead it needs); kept on, superfast gives veryfast's quality (SSIM 0.9899 against 0.9899 on
#: rendered 1024x1024 and 1920x1080 talking heads at crf 18) from 55 % of its encoder CPU, in a file
#: 6-8 % larger. Without it the file was 2.4x larger. See docs/benchmarks.md (bench_mux).
X264_PRESET_PARAMS = {"superfast": "mbtree=1:rc-lookahead=10"}
#: The default preset: superfast with the macroblock tree (above).
DEFAULT_X264_PRESET = "superfast"

#: NTSC-family rates that users type as decimals (23.976, 29.97, 59.94, ...): k * 1000/1001.
NTSC_BASE_RATES = (24, 30, 48, 60, 120, 240)
#: How close a float fps must be to k*1000/1001 to be taken as that exact rational.
NTSC_MATCH_TOLERANCE = 1e-3
#: Largest denominator when turning any other float fps into a rational.
FPS_MAX_DENOMINATOR = 1001
#: Sensible bounds on fps: beyond these ffmpeg / players misbehave and it is surely a typo.
FPS_MAX = 1000.0

#: Extensions mux can write (the MP4 muxer; +faststart needs MP4/MOV).
MP4_EXTENSIONS = (".mp4", ".m4v", ".mov")


# --------------------------------------------------------------------------------------------
# Rational frame rates
# --------------------------------------------------------------------------------------------


def fps_to_fraction(fps: Any) -> Fraction:
    """Turns a user frame rate into an exact rational (frames per second).

    23.976 -> 24000/1001, 29.97 -> 30000/1001, 59.94 -> 60000/1001 (within 1e-3 of k*1000/1001),
    25 -> 25/1, 12.5 -> 25/2; a Fraction is kept as is.

    Raises:
        InputError: naming `fps` when it is not a finite number in (0, FPS_MAX].
    """
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise InputError("fps", f"must be a number, got {fps!r}", "Give frames per second, e.g. 25")
    if not math.isfinite(value) or value <= 0 or value > FPS_MAX:
        raise InputError(
            "fps",
            f"must be a finite number between 0 and {FPS_MAX:g} (exclusive of 0), got {fps!r}",
            "Give frames per second, e.g. 25 or 29.97",
        )
    if isinstance(fps, Fraction):
        return fps
    for base in NTSC_BASE_RATES:
        ntsc = Fraction(base * 1000, 1001)
        if abs(value - float(ntsc)) < NTSC_MATCH_TOLERANCE:
            return ntsc
    return Fraction(value).limit_denominator(FPS_MAX_DENOMINATOR)


def _round_fraction(x: Fraction) -> int:
    """Rounds half up (deterministic, unlike banker's rounding of round())."""
    return int(math.floor(x + Fraction(1, 2)))


# --------------------------------------------------------------------------------------------
# Measuring A/V sync
# --------------------------------------------------------------------------------------------


@dataclass
class SyncReport:
    """A/V timing of a muxed file, measured by decoding it.

    Attributes:
        path: the file measured.
        width, height: decoded frame size (pixels).
        video_fps: the video stream's frame rate (frames/s).
        video_frame_count: decoded frames.
        video_start_s: presentation time of the first decoded frame (s).
        video_duration_s: video_frame_count / video_fps (s).
        audio_sample_rate: Hz. audio_channels: channel count.
        audio_start_s: presentation time of the first decoded sample, after the decoder dropped the
            AAC priming samples the edit list marks as skipped (s).
        audio_decoded_samples: samples per channel the decoder produced (includes the AAC encoder's
            end padding, up to 1023 samples, which the container's edit list cuts).
        audio_samples: samples per channel that play: decoded samples cut to the duration the
            container declares (what players that honour edit lists play).
        audio_duration_s: audio_samples / audio_sample_rate (s).
        av_offset_ms: audio_start - video_start (ms); positive = audio starts late.
        duration_diff_ms: audio_duration - video_duration (ms); positive = audio longer.
    """

    path: str
    width: int
    height: int
    video_fps: float
    video_frame_count: int
    video_start_s: float
    video_duration_s: float
    audio_sample_rate: int
    audio_channels: int
    audio_start_s: float
    audio_decoded_samples: int
    audio_samples: int
    audio_duration_s: float
    av_offset_ms: float
    duration_diff_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


def measure_av_sync(path: str) -> SyncReport:
    """Reads both streams of `path` with PyAV and measures their start times and durations.

    Audio is decoded; video is read as packets (one per frame, presentation times after the edit
    list), which gives the same start and count as decoding at a third of the cost.
    Measured from decoded samples and frame timestamps, not from container start times: ffmpeg's AAC encoder
    prepends 1024 priming samples, and the MP4 edit list tells the demuxer to skip them; the
    decoder then drops them and shifts the first frame's timestamp. If that chain breaks, the first
    decoded sample's time moves and av_offset_ms shows it.

    Raises:
        InputError: naming `path` when the file lacks a video or an audio stream.
        ToolError: the file could not be opened or decoded.
    """
    import av  # PyAV; imported here so `import pipeline.publish.mux` stays light

    try:
        with av.open(path) as container:
            if not container.streams.video or not container.streams.audio:
                raise InputError(
                    "path", f"{path!r} needs both a video and an audio stream",
                    "Measure a file written by mux()",
                )
            vstream = container.streams.video[0]
            astream = container.streams.audio[0]
            rate = vstream.average_rate or vstream.guessed_rate
            if not rate:
                raise ToolError("PyAV", f"{path!r}: the video stream has no frame rate")
            video_fps = Fraction(rate.numerator, rate.denominator)
            declared_audio_s = (
                float(astream.duration * astream.time_base)
                if astream.duration is not None and astream.time_base is not None
                else None
            )

            video_start_s: Optional[float] = None
            frame_count = 0
            audio_start_s: Optional[float] = None
            decoded_samples = 0
            sample_rate = astream.rate
            channels = astream.channels
            width, height = vstream.codec_context.width, vstream.codec_context.height
            video_time_base = vstream.time_base
            for packet in container.demux(vstream, astream):
                if packet.stream.type == "video":
                    # Video is counted from packets, not decoded (decoding was a third of the
                    # check's time): one H.264 packet per frame; the earliest presentation time
                    # (after the edit list, which the demuxer applies to pts) is the first frame's.
                    if packet.pts is None or packet.size == 0 or packet.is_discard:
                        continue
                    start = float(packet.pts * video_time_base)
                    video_start_s = start if video_start_s is None else min(video_start_s, start)
                    frame_count += 1
                    continue
                for frame in packet.decode():
                    if audio_start_s is None and frame.samples > 0:
                        audio_start_s = float(frame.time)
                        sample_rate = frame.sample_rate
                    decoded_samples += frame.samples
    except (InputError, ToolError):
        raise
    except Exception as exc:  # av.error.* or OSError: the file is unreadable
        raise ToolError("PyAV", f"could not decode {path!r}: {exc}") from exc

    if video_start_s is None or audio_start_s is None:
        raise ToolError("PyAV", f"{path!r}: no decodable video frames or audio samples")
    audio_samples = decoded_samples
    if declared_audio_s is not None and declared_audio_s > 0:
        audio_samples = min(decoded_samples, int(round(declared_audio_s * sample_rate)))
    video_duration_s = float(frame_count / video_fps)
    audio_duration_s = audio_samples / float(sample_rate)
    return SyncReport(
        path=path,
        width=width,
        height=height,
        video_fps=float(video_fps),
        video_frame_count=frame_count,
        video_start_s=video_start_s,
        video_duration_s=video_duration_s,
        audio_sample_rate=int(sample_rate),
        audio_channels=int(channels),
        audio_start_s=audio_start_s,
        audio_decoded_samples=decoded_samples,
        audio_samples=audio_samples,
        audio_duration_s=audio_duration_s,
        av_offset_ms=(audio_start_s - video_start_s) * 1000.0,
        duration_diff_ms=(audio_duration_s - video_duration_s) * 1000.0,
    )


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass
class MuxResult:
    """What mux() wrote, and how well it is in sync (measured by decoding the file).

    Attributes:
        path: absolute path of the MP4.
        width, height: encoded frame size (pixels; input size padded to even numbers if needed).
        frame_count: frames encoded (after the duration policy).
        fps: frame rate (frames/s) as a float; fps_rational: the exact rate, e.g. "24000/1001".
        duration_s: planned video duration, frame_count / fps (s).
        audio_sample_rate: Hz. audio_channels: channel count.
        audio_sample_count: samples per channel handed to the encoder (after offset and policy).
        av_offset_ms: measured audio start - video start (ms), see SyncReport.
        video_duration_s, audio_duration_s: measured durations (s).
        duration_diff_ms: measured audio - video duration (ms).
        frames_sha256: sha256 of the uint8 RGB24 frames as given (after padding and held frames,
            before `frame_filter` such as the watermark, whose payload differs per clip) and so
            before any codec loss; equal hashes mean identical frames.
        duration_policy, audio_offset_ms, crf, preset, audio_bitrate_kbps: the settings used.
        notes: human-readable remarks (padding, held or dropped frames, padded/trimmed audio).
    """

    path: str
    width: int
    height: int
    frame_count: int
    fps: float
    fps_rational: str
    duration_s: float
    audio_sample_rate: int
    audio_channels: int
    audio_sample_count: int
    av_offset_ms: float
    video_duration_s: float
    audio_duration_s: float
    duration_diff_ms: float
    frames_sha256: str
    duration_policy: str
    audio_offset_ms: float
    crf: int
    preset: str
    audio_bitrate_kbps: int
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------


def _frame_source(frames: Any) -> Tuple[Iterator[Any], Optional[int]]:
    """Returns (iterator over [H,W,C] frames, frame count if known without consuming)."""
    shape = getattr(frames, "shape", None)
    if shape is not None and not isinstance(frames, (list, tuple)):
        if len(shape) != 4:
            raise InputError(
                "images",
                f"expected a batch of frames of shape [frames, height, width, 3], got shape "
                f"{tuple(shape)}",
                "Pass an IMAGE batch (ComfyUI) or an array [N,H,W,3]",
            )
        count = int(shape[0])
        # Index frame by frame: never convert the whole batch at once (memory).
        return (frames[i] for i in range(count)), count
    if isinstance(frames, (list, tuple)):
        return iter(frames), len(frames)
    try:
        return iter(frames), None
    except TypeError:
        raise InputError(
            "images", f"expected frames (an array or an iterable of frames), got "
            f"{type(frames).__name__}", "Pass an IMAGE batch or an iterator of [H,W,3] arrays",
        ) from None


class _FrameConverter:
    """Turns one input frame into C-contiguous uint8 RGB24 [H', W', 3] with even H', W'."""

    def __init__(self) -> None:
        self.input_size: Optional[Tuple[int, int]] = None  # (height, width)
        self.pad_hw = (0, 0)
        self.dropped_alpha = False

    def __call__(self, frame: Any, index: int) -> np.ndarray:
        arr = np.asarray(frame)
        if arr.ndim != 3 or arr.shape[-1] not in (3, 4):
            raise InputError(
                "images",
                f"frame {index} has shape {tuple(arr.shape)}; expected [height, width, 3] (RGB)",
                "Give RGB frames (3 channels; a 4th alpha channel is dropped)",
            )
        if arr.shape[-1] == 4:
            arr = arr[..., :3]
            self.dropped_alpha = True
        size = (int(arr.shape[0]), int(arr.shape[1]))
        if self.input_size is None:
            if size[0] < 1 or size[1] < 1:
                raise InputError("images", f"frame {index} is empty ({size[1]}x{size[0]})",
                                 "Give frames with pixels")
            self.input_size = size
            self.pad_hw = (size[0] % 2, size[1] % 2)
        elif size != self.input_size:
            raise InputError(
                "images",
                f"frame {index} is {size[1]}x{size[0]} (WxH) but frame 0 is "
                f"{self.input_size[1]}x{self.input_size[0]}; all frames must have one size",
                "Resize or crop the frames to a single size before muxing",
            )
        if arr.dtype == np.uint8:
            out = arr
        elif np.issubdtype(arr.dtype, np.floating):
            if not np.isfinite(arr).all():
                raise InputError(
                    "images", f"frame {index} holds NaN or infinite values",
                    "Check the node that produced the frames; its output is corrupt",
                )
            # Round to nearest (not truncate): 0.5/255 steps map back to the value they came from.
            out = np.clip(arr.astype(np.float32, copy=False) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            raise InputError(
                "images", f"frame {index} has dtype {arr.dtype}; expected float (0..1) or uint8",
                "Convert the frames to float32 in 0..1 (ComfyUI IMAGE) or uint8",
            )
        if self.pad_hw != (0, 0):
            # H.264 yuv420p needs even dimensions: replicate the last row/column (no black line).
            out = np.pad(out, ((0, self.pad_hw[0]), (0, self.pad_hw[1]), (0, 0)), mode="edge")
        return np.ascontiguousarray(out)

    @property
    def output_size(self) -> Tuple[int, int]:
        assert self.input_size is not None
        return self.input_size[0] + self.pad_hw[0], self.input_size[1] + self.pad_hw[1]


# --------------------------------------------------------------------------------------------
# ffmpeg arguments (module-level so tests can inject failures)
# --------------------------------------------------------------------------------------------


#: What the raw frames are (yuv420.py) and what the stream says. Both sides must be tagged: with
#: an untagged input ffmpeg inserts a scaler that goes YUV -> RGB -> YUV to "convert" to the tags.
_BT709_TV_TAGS = ["-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
                  "-color_range", "tv"]


def _rawvideo_input_args(width: int, height: int, fps: Fraction) -> List[str]:
    return [
        "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}",
        "-framerate", f"{fps.numerator}/{fps.denominator}", *_BT709_TV_TAGS, "-i", "-",
    ]


def _raw_audio_input_args(audio_path: str, sample_rate: int, channels: int) -> List[str]:
    return ["-f", "f32le", "-ar", str(sample_rate), "-ac", str(channels), "-i", audio_path]


def _video_encoder_args(crf: int, preset: str) -> List[str]:
    return [
        "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
        *(["-x264-params", X264_PRESET_PARAMS[preset]] if preset in X264_PRESET_PARAMS else []),
        # the frames arrive as BT.709 TV-range YUV (yuv420.py) and the stream says so: browsers and
        # players assume 709 for untagged video
        *_BT709_TV_TAGS,
    ]


def _audio_encoder_args(bitrate_kbps: int) -> List[str]:
    return ["-c:a", "aac", "-b:a", f"{bitrate_kbps}k"]


def _mp4_output_args(path: str) -> List[str]:
    # +faststart: the index goes to the front so browsers can start playing before the download ends.
    return ["-movflags", "+faststart", "-f", "mp4", "-y", path]


# --------------------------------------------------------------------------------------------
# mux
# --------------------------------------------------------------------------------------------


def _coerce_audio(audio: Any) -> AudioClip:
    if isinstance(audio, dict) and "waveform" in audio and "sample_rate" in audio:
        # ComfyUI AUDIO {"waveform": [B,C,T], "sample_rate"}: take the first item of the batch.
        waveform = np.asarray(audio["waveform"])
        if waveform.ndim == 3:
            waveform = waveform[0]
        audio = AudioClip(waveform, int(audio["sample_rate"]))
    if not isinstance(audio, AudioClip):
        raise InputError(
            "audio", f"expected an AudioClip, got {type(audio).__name__}",
            "Pass pipeline.core.audio.AudioClip(samples [C,T], sample_rate)",
        )
    return audio.validated("audio")


def _validate_settings(duration_policy: str, audio_offset_ms: float, crf: int, preset: str,
                       audio_bitrate_kbps: int, output_path: str) -> None:
    if duration_policy not in DURATION_POLICIES:
        raise InputError(
            "duration_policy", f"unknown policy {duration_policy!r}",
            f"Use one of: {', '.join(DURATION_POLICIES)}",
        )
    try:
        offset_ok = math.isfinite(float(audio_offset_ms))
    except (TypeError, ValueError):
        offset_ok = False
    if not offset_ok:
        raise InputError("audio_offset_ms", f"must be a finite number, got {audio_offset_ms!r}",
                         "Give milliseconds, e.g. 0, 40 or -40")
    if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise InputError("crf", f"must be a whole number 0..51, got {crf!r}",
                         "Use 18 (visually lossless) to 28 (smaller files)")
    if preset not in X264_PRESETS:
        raise InputError("preset", f"unknown x264 preset {preset!r}",
                         f"Use one of: {', '.join(X264_PRESETS)}")
    if (isinstance(audio_bitrate_kbps, bool) or not isinstance(audio_bitrate_kbps, (int, np.integer))
            or not 16 <= audio_bitrate_kbps <= 512):
        raise InputError("audio_bitrate_kbps", f"must be a whole number 16..512, got "
                         f"{audio_bitrate_kbps!r}", "Use 128 or 192")
    if not isinstance(output_path, (str, os.PathLike)) or not str(output_path).strip():
        raise InputError("output_path", "is empty", "Give the path of the .mp4 to write")
    if os.path.splitext(str(output_path))[1].lower() not in MP4_EXTENSIONS:
        raise InputError("output_path", f"{str(output_path)!r} does not end in .mp4",
                         "Name the output file with a .mp4 extension")


def _apply_offset(samples: np.ndarray, offset_samples: int) -> np.ndarray:
    """[C,T] -> [C,T'] with offset_samples of silence prepended (>0) or samples dropped (<0)."""
    if offset_samples > 0:
        pad = np.zeros((samples.shape[0], offset_samples), dtype=np.float32)
        return np.concatenate([pad, samples], axis=1)
    if offset_samples < 0:
        return samples[:, -offset_samples:]
    return samples


def _fit_audio(samples: np.ndarray, target: int) -> np.ndarray:
    """[C,T] -> [C,target]: pad with silence or trim the end."""
    have = samples.shape[1]
    if have < target:
        pad = np.zeros((samples.shape[0], target - have), dtype=np.float32)
        return np.concatenate([samples, pad], axis=1)
    return samples[:, :target]


def _write_raw_audio(path: str, samples: np.ndarray) -> None:
    # f32le interleaved [T,C]: lossless hand-over to ffmpeg, no resampling or dithering.
    with open(path, "wb") as handle:
        chunk = 1 << 20
        for start in range(0, samples.shape[1], chunk):
            handle.write(np.ascontiguousarray(samples[:, start:start + chunk].T, dtype="<f4").tobytes())


class _ProducerFailed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_PRODUCER_DONE = object()


def _made_in_background(items: Iterator, depth: int = 3) -> Iterator:
    """Iterates `items` in a worker thread, at most `depth` ahead of the consumer.

    Exceptions from `items` are re-raised here, in the consumer's thread. If the consumer stops
    early (an error writing, an interrupt), the worker stops before taking another item.
    """
    buffer: "queue.Queue" = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_PRODUCER_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            offer(_ProducerFailed(exc))
        finally:
            # a chained stage (a generator over another background iterator) stops its own worker
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name="talkinghead-mux-frames", daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _PRODUCER_DONE:
                return
            if isinstance(item, _ProducerFailed):
                raise item.error
            yield item
    finally:
        stop.set()
        worker.join()


def mux(
    frames: Any,
    audio: AudioClip,
    fps: float,
    output_path: str,
    *,
    duration_policy: str = "match_audio",
    audio_offset_ms: float = 0.0,
    crf: int = 18,
    preset: str = DEFAULT_X264_PRESET,
    audio_bitrate_kbps: int = 192,
    progress: Optional[Callable[[int, int], None]] = None,
    frame_filter: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> MuxResult:
    """Encodes frames + audio into an MP4 (H.264 yuv420p + AAC), atomically, and measures its sync.

    Args:
        frames: an array [N, H, W, 3] (float 0..1 or uint8; a CPU torch tensor works), or any
            iterable / iterator of [H, W, 3] frames, consumed one at a time (long clips stream:
            memory does not grow with length). A 4th (alpha) channel is dropped. Odd H or W is
            padded to even by repeating the last row / column (noted in `notes`).
        audio: AudioClip, samples float32 [C, T] at sample_rate Hz (a ComfyUI AUDIO dict also works).
        fps: frames per second, any positive float; 23.976 / 29.97 / 59.94 become exactly
            24000/1001, 30000/1001, 60000/1001.
        output_path: the .mp4 to write; written to a hidden temp file then renamed, so no partial
            file is ever left (an existing file is replaced only on success).
        duration_policy: "match_audio" (video follows the audio: hold the last frame or drop frames
            so the video lasts round(audio_s * fps) frames) or "match_video" (audio follows the
            video: pad with silence or trim to exactly N / fps seconds).
        audio_offset_ms: > 0 delays the audio (silence prepended), < 0 advances it (leading samples
            dropped); applied before the duration policy, in whole samples.
        crf: x264 constant rate factor 0..51 (lower = better). preset: x264 preset, plus
            X264_PRESET_PARAMS for it (superfast, the default, keeps its macroblock tree).
        audio_bitrate_kbps: AAC bitrate (kbit/s).
        progress: called as progress(frames_written, total_frames) after every frame; total is the
            planned frame count (0 if unknown: an iterator with match_video).
        frame_filter: applied to each uint8 [H, W, 3] frame (after padding) just before encoding,
            e.g. the visible label and the watermark; must return the same shape. frames_sha256
            hashes the frames before it.
    Returns:
        MuxResult, including the A/V offset and duration difference measured by decoding the file.
    Raises:
        InputError: naming the bad input (images, audio, fps, duration_policy, audio_offset_ms,
            crf, preset, audio_bitrate_kbps, output_path).
        ToolError: ffmpeg failed or died; carries its last stderr lines.
    """
    _validate_settings(duration_policy, audio_offset_ms, crf, preset, audio_bitrate_kbps,
                       output_path)
    rate = fps_to_fraction(fps)
    clip = _coerce_audio(audio)
    sample_rate, channels = clip.sample_rate, clip.num_channels
    notes: List[str] = []

    audio_offset_ms = float(audio_offset_ms)
    offset_samples = int(round(audio_offset_ms * sample_rate / 1000.0))
    samples = _apply_offset(clip.samples, offset_samples)
    if samples.shape[1] == 0:
        raise InputError(
            "audio_offset_ms",
            f"advancing the audio by {-audio_offset_ms:g} ms drops all of its "
            f"{clip.duration_s * 1000:.0f} ms",
            "Use a smaller negative offset",
        )
    if offset_samples > 0:
        notes.append(f"audio delayed by {audio_offset_ms:g} ms ({offset_samples} samples of "
                     "silence prepended)")
    elif offset_samples < 0:
        notes.append(f"audio advanced by {-audio_offset_ms:g} ms ({-offset_samples} leading "
                     "samples dropped)")

    source, known_count = _frame_source(frames)
    convert = _FrameConverter()
    try:
        first = next(source)
    except StopIteration:
        raise InputError("images", "no frames were given (the batch is empty)",
                         "Connect a node that produces at least one frame") from None
    first_rgb = convert(first, 0)
    height, width = convert.output_size

    if duration_policy == "match_audio":
        planned_frames: Optional[int] = max(1, _round_fraction(Fraction(samples.shape[1]) * rate
                                                                / sample_rate))
    else:
        planned_frames = known_count

    output_path = os.path.abspath(str(output_path))
    hasher = hashlib.sha256()
    written = 0

    def frames_to_encode(limit: Optional[int], used: list) -> Iterator[np.ndarray]:
        """Input frames in order, until `limit` frames (holding the last frame if the input runs
        out) or, with no limit, until the input ends. Never reads past the limit (the caller may
        peek at the input afterwards). used[0]: input frames used."""
        current, index = first_rgb, 0
        used[0], count = 1, 0
        while True:
            yield current
            count += 1
            if limit is not None and count >= limit:
                return
            try:
                nxt = next(source)
            except StopIteration:
                if limit is None:
                    return
                continue  # hold the last frame until the audio ends
            index += 1
            current = convert(nxt, index)
            used[0] += 1

    def filtered(frames_in: Iterator[np.ndarray]) -> Iterator[tuple]:
        """(input frame, frame to encode) pairs: the frame filter applied, in order."""
        for current in frames_in:
            yield current, (current if frame_filter is None
                            else np.ascontiguousarray(frame_filter(current), np.uint8))

    def pump(writer: FfmpegWriter, limit: Optional[int]) -> int:
        """Encodes frames_to_encode(limit); returns the number of input frames used.

        Three stages overlap, each in its own thread: making the frames (the renderer behind the
        input iterator), the frame filter (label, watermark), and here hashing and piping them to
        ffmpeg. The first two spend their time in NumPy/OpenCV calls that release the GIL, so on
        two cores the renderer, the watermark and the encoder run side by side; OpenCV's own thread
        pool is turned off meanwhile (one thread per stage wastes less CPU than two pools fighting
        over the same cores: measured 9.7 against 12.1 CPU ms per 1024x1024 frame of rendering).
        """
        nonlocal written
        total = limit if limit is not None else (known_count or 0)
        used = [0]
        # one I420 buffer for every frame: the pipe write has copied it before the next conversion
        planes = np.empty(i420_shape(height, width), np.uint8)
        with opencv_in_calling_thread():
            for current, shown in _made_in_background(filtered(_made_in_background(frames_to_encode(limit, used)))):
                hasher.update(memoryview(current).cast("B"))
                writer.write(memoryview(rgb_to_i420(shown, planes)).cast("B"))
                written += 1
                if progress is not None:
                    progress(written, total)
        return used[0]

    with atomic_write_path(output_path, input_name="output_path") as temp_path, \
            tempfile.TemporaryDirectory(prefix="talkinghead-mux-") as work_dir:
        audio_raw = os.path.join(work_dir, "audio.f32")
        if planned_frames is not None:
            # One pass: the frame count is known up front, so the audio can be fitted first.
            target_samples = (
                samples.shape[1] if duration_policy == "match_audio"
                else _round_fraction(Fraction(planned_frames) * sample_rate / rate)
            )
            samples = _fit_audio(samples, target_samples)
            _write_raw_audio(audio_raw, samples)
            args = [
                *_rawvideo_input_args(width, height, rate),
                *_raw_audio_input_args(audio_raw, sample_rate, channels),
                "-map", "0:v:0", "-map", "1:a:0",
                *_video_encoder_args(crf, preset), *_audio_encoder_args(audio_bitrate_kbps),
                *_mp4_output_args(temp_path),
            ]
            with FfmpegWriter(args) as writer:
                used = pump(writer, planned_frames)
                if duration_policy == "match_audio":
                    extra_input = known_count is not None and known_count > used
                    if known_count is None:
                        # Peek once (never drain: the iterator may be endless).
                        extra_input = next(source, None) is not None
                    if written > used:
                        notes.append(
                            f"held the last frame for {written - used} extra frame(s) so the "
                            "video lasts as long as the audio")
                    elif extra_input:
                        dropped = f"{known_count - used} " if known_count is not None else ""
                        notes.append(f"dropped {dropped}trailing frame(s) so the video lasts as "
                                     "long as the audio")
        else:
            # Iterator + match_video: the frame count is only known at the end. Encode the video
            # alone first (streaming), then fit the audio to it and mux with a stream copy.
            video_only = os.path.join(work_dir, "video.mp4")
            args = [
                *_rawvideo_input_args(width, height, rate),
                *_video_encoder_args(crf, preset), "-an", "-f", "mp4", "-y", video_only,
            ]
            with FfmpegWriter(args) as writer:
                pump(writer, None)
            target_samples = _round_fraction(Fraction(written) * sample_rate / rate)
            samples = _fit_audio(samples, target_samples)
            _write_raw_audio(audio_raw, samples)
            run_ffmpeg([
                "-i", video_only, *_raw_audio_input_args(audio_raw, sample_rate, channels),
                "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                *_audio_encoder_args(audio_bitrate_kbps), *_mp4_output_args(temp_path),
            ])

        report = measure_av_sync(temp_path)

    if duration_policy == "match_video":
        original = clip.num_samples + offset_samples
        diff = samples.shape[1] - original
        if diff > 0:
            notes.append(f"audio padded with {diff * 1000.0 / sample_rate:.1f} ms of silence to "
                         "match the video")
        elif diff < 0:
            notes.append(f"audio trimmed by {-diff * 1000.0 / sample_rate:.1f} ms to match the "
                         "video")
    if convert.pad_hw != (0, 0):
        h0, w0 = convert.input_size
        notes.append(f"frames padded from {w0}x{h0} to {width}x{height} (H.264 yuv420p needs even "
                     "width and height; the last row/column was repeated)")
    if convert.dropped_alpha:
        notes.append("alpha channel dropped (MP4/H.264 has no transparency)")

    return MuxResult(
        path=output_path,
        width=width,
        height=height,
        frame_count=written,
        fps=float(rate),
        fps_rational=f"{rate.numerator}/{rate.denominator}",
        duration_s=float(Fraction(written) / rate),
        audio_sample_rate=sample_rate,
        audio_channels=channels,
        audio_sample_count=int(samples.shape[1]),
        av_offset_ms=report.av_offset_ms,
        video_duration_s=report.video_duration_s,
        audio_duration_s=report.audio_duration_s,
        duration_diff_ms=report.duration_diff_ms,
        frames_sha256=hasher.hexdigest(),
        duration_policy=duration_policy,
        audio_offset_ms=float(audio_offset_ms),
        crf=int(crf),
        preset=preset,
        audio_bitrate_kbps=int(audio_bitrate_kbps),
        notes=notes,
    )
