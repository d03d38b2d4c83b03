"""Mux throughput: 512x512 frames/s through mux(), against a baseline measured in the same run.

Baseline: the same ffmpeg binary encoding the same raw RGB24 frames (read from a file, so no Python
in the loop) with the same x264/AAC settings. The ratio mux/baseline shows what our Python side
(conversion, hashing, piping, the verification decode) costs; absolute frames/s depend on the machine.
Also reports peak RSS growth for a streamed clip (memory must not grow with length), and the x264
preset: a talking head rendered by the default engine (the sample portrait upscaled to 1024x1024)
encoded with x264's veryfast (baseline) and with mux's default preset, encoder CPU, file size and SSIM.

Run: python -m talkinghead.tests.bench.bench_mux  or  python tests/bench/bench_mux.py [--frames N]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import tempfile
import time

import numpy as np

from talkinghead.pipeline.core.audio import AudioClip
from talkinghead.pipeline.core.ffmpeg import find_ffmpeg, run_ffmpeg
from talkinghead.pipeline.publish import mux as mux_module
from talkinghead.pipeline.publish.mux import measure_av_sync, mux
from talkinghead.pipeline.publish.yuv420 import rgb_to_i420

SIZE = 512
FPS = 25
SAMPLE_RATE = 48000


#: Distinct frames generated up front and cycled, so frame synthesis is not timed.
POOL_SIZE = 25


def frame_pool(seed: int = 0) -> list:
    """POOL_SIZE moving-gradient float32 frames [SIZE, SIZE, 3] in 0..1 (compressible, not static)."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    rng = np.random.default_rng(seed)
    pool = []
    for i in range(POOL_SIZE):
        phase = i / POOL_SIZE
        frame = np.stack([(x + phase) % 1.0, (y + 0.5 * phase) % 1.0, (x * y + phase) % 1.0], -1)
        frame += rng.normal(0, 0.01, frame.shape).astype(np.float32)
        pool.append(np.clip(frame, 0, 1))
    return pool


def synthetic_frames(count: int, pool: list):
    """Yields `count` frames cycling through `pool` (a stream: nothing accumulates)."""
    for i in range(count):
        yield pool[i % len(pool)]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args()
    n = args.frames
    audio = AudioClip(np.random.default_rng(1).uniform(-0.1, 0.1, (2, int(n / FPS * SAMPLE_RATE)))
                      .astype(np.float32), SAMPLE_RATE)

    with tempfile.TemporaryDirectory() as work:
        # Baseline: raw frames + raw audio from files, same encoder settings.
        raw_video = os.path.join(work, "frames.rgb")
        raw_audio = os.path.join(work, "audio.f32")
        pool = frame_pool()
        with open(raw_video, "wb") as handle:
            for frame in synthetic_frames(n, pool):
                rgb = np.clip(frame * 255 + 0.5, 0, 255).astype(np.uint8)
                handle.write(rgb_to_i420(rgb).tobytes())   # what mux pipes: BT.709 YUV 4:2:0
        mux_module._write_raw_audio(raw_audio, audio.samples)
        rate = mux_module.fps_to_fraction(FPS)
        baseline_args = [
            *mux_module._rawvideo_input_args(SIZE, SIZE, rate)[:-1], raw_video,
            *mux_module._raw_audio_input_args(raw_audio, SAMPLE_RATE, 2),
            *mux_module._video_encoder_args(18, mux_module.DEFAULT_X264_PRESET), *mux_module._audio_encoder_args(192),
            *mux_module._mp4_output_args(os.path.join(work, "baseline.mp4")),
        ]
        start = time.perf_counter()
        run_ffmpeg(baseline_args)
        baseline_s = time.perf_counter() - start

        rss_before = rss_mb()
        start = time.perf_counter()
        result = mux(synthetic_frames(n, pool), audio, FPS, os.path.join(work, "mux.mp4"))
        mux_s = time.perf_counter() - start
        rss_growth = rss_mb() - rss_before

        start = time.perf_counter()
        measure_av_sync(result.path)
        measure_s = time.perf_counter() - start

    print(f"frames: {n} x {SIZE}x{SIZE} @ {FPS} fps, stereo {SAMPLE_RATE} Hz AAC, crf 18 {mux_module.DEFAULT_X264_PRESET}")
    print(f"baseline ffmpeg (raw file -> mp4):  {n / baseline_s:7.1f} frames/s")
    print(f"mux() (generator, incl. verify):   {n / mux_s:7.1f} frames/s "
          f"(ratio {baseline_s / mux_s:.2f} of baseline)")
    print(f"measure_av_sync alone:             {n / measure_s:7.1f} frames/s")
    print(f"peak RSS growth during mux():      {rss_growth:.1f} MB "
          f"(one frame is {SIZE * SIZE * 3 * 4 / 2**20:.1f} MB as float32)")
    print(f"measured av_offset_ms={result.av_offset_ms:+.3f} duration_diff_ms="
          f"{result.duration_diff_ms:+.3f}")


def child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rendered_talking_head(work: str, frames: int, size: int = 1024) -> tuple:
    """Renders `frames` frames of the sample portrait (upscaled to size x size) speaking a sentence;
    writes them as raw I420 (what mux pipes); returns (path, width, height)."""
    import cv2

    from talkinghead.pipeline.core.portraits import sample_portrait
    from talkinghead.pipeline.face.encoder import encode_reference
    from talkinghead.pipeline.lipsync.aligner import align_speech
    from talkinghead.pipeline.render.weight_free import SamplerConfig, render_frames
    from talkinghead.pipeline.speech.speak import SpeakConfig, speak

    portrait = cv2.resize(sample_portrait(), (size, size), interpolation=cv2.INTER_CUBIC)
    spoken = speak("Bob made a big map of the moon, and five brave foxes leaped over the fence, "
                   "then we all went home for tea.", SpeakConfig())
    track = align_speech(spoken.audio, fps=FPS, speech_timings=spoken.timings)
    stream = render_frames(encode_reference(portrait, consent=True).reference, track, SamplerConfig())
    path = os.path.join(work, "talking.yuv")
    with open(path, "wb") as handle:
        for i, frame in enumerate(stream.images()):
            if i >= frames:
                break
            handle.write(rgb_to_i420(frame).tobytes())
    return path, stream.width, stream.height


def encode_with_preset(raw: str, width: int, height: int, preset: str, out: str) -> tuple:
    """(encoder CPU s, file bytes, SSIM against the raw frames) for one preset (with its X264_PRESET_PARAMS)."""
    rate = mux_module.fps_to_fraction(FPS)
    before = child_cpu_s()
    run_ffmpeg([*mux_module._rawvideo_input_args(width, height, rate)[:-1], raw,
                *mux_module._video_encoder_args(18, preset), "-f", "mp4", "-y", out])
    cpu = child_cpu_s() - before
    done = subprocess.run([find_ffmpeg(), "-hide_banner", "-i", out, *mux_module._rawvideo_input_args(
        width, height, rate)[:-1], raw, "-lavfi", "[0:v][1:v]ssim", "-f", "null", "-"],
        capture_output=True, text=True, check=True)
    ssim = float(re.search(r"All:([0-9.]+)", done.stderr).group(1))
    return cpu, os.path.getsize(out), ssim


def preset_comparison(frames: int = 150) -> None:
    try:
        import cv2  # noqa: F401
        from talkinghead.pipeline.face.encoder import encode_reference  # noqa: F401
    except ImportError as exc:
        print(f"x264 preset comparison skipped: {exc} (needs the faces extra)")
        return
    with tempfile.TemporaryDirectory() as work:
        raw, width, height = rendered_talking_head(work, frames)
        rows = [(preset, *encode_with_preset(raw, width, height, preset, os.path.join(work, f"{preset}.mp4")))
                for preset in ("veryfast", mux_module.DEFAULT_X264_PRESET)]
    base_cpu, base_size, _ = rows[0][1:]
    print(f"\nx264 preset on a rendered talking head ({frames} frames, {width}x{height}, crf 18):")
    print("preset (x264 params)                          encoder CPU s  x veryfast   size kB  x veryfast   SSIM")
    for preset, cpu, size, ssim in rows:
        name = f"{preset} ({mux_module.X264_PRESET_PARAMS.get(preset, 'as x264 defines it')})"
        print(f"{name:45s} {cpu:13.2f} {cpu / base_cpu:10.2f} {size / 1024:9.0f} {size / base_size:11.2f} {ssim:7.4f}")


if __name__ == "__main__":
    main()
    preset_comparison()
