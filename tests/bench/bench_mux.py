"""Mux throughput: 512x512 frames/s through mux(), against a baseline measured in the same run.

Baseline: the same ffmpeg binary encoding the same raw RGB24 frames (read from a file, so no Python
in the loop) with the same x264/AAC settings. The ratio mux/baseline shows what our Python side
(conversion, hashing, piping, the verification decode) costs; absolute frames/s depend on the machine.
Also reports peak RSS growth for a streamed clip (memory must not grow with length).

Run: python -m talkinghead.tests.bench.bench_mux  or  python tests/bench/bench_mux.py [--frames N]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import numpy as np

from talkinghead.pipeline.core.audio import AudioClip
from talkinghead.pipeline.core.ffmpeg import run_ffmpeg
from talkinghead.pipeline.publish import mux as mux_module
from talkinghead.pipeline.publish.mux import measure_av_sync, mux

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
                handle.write((np.clip(frame * 255 + 0.5, 0, 255)).astype(np.uint8).tobytes())
        mux_module._write_raw_audio(raw_audio, audio.samples)
        rate = mux_module.fps_to_fraction(FPS)
        baseline_args = [
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{SIZE}x{SIZE}",
            "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", raw_video,
            *mux_module._raw_audio_input_args(raw_audio, SAMPLE_RATE, 2),
            *mux_module._video_encoder_args(18, "veryfast"), *mux_module._audio_encoder_args(192),
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

    print(f"frames: {n} x {SIZE}x{SIZE} @ {FPS} fps, stereo {SAMPLE_RATE} Hz AAC, crf 18 veryfast")
    print(f"baseline ffmpeg (raw file -> mp4):  {n / baseline_s:7.1f} frames/s")
    print(f"mux() (generator, incl. verify):   {n / mux_s:7.1f} frames/s "
          f"(ratio {baseline_s / mux_s:.2f} of baseline)")
    print(f"measure_av_sync alone:             {n / measure_s:7.1f} frames/s")
    print(f"peak RSS growth during mux():      {rss_growth:.1f} MB "
          f"(one frame is {SIZE * SIZE * 3 * 4 / 2**20:.1f} MB as float32)")
    print(f"measured av_offset_ms={result.av_offset_ms:+.3f} duration_diff_ms="
          f"{result.duration_diff_ms:+.3f}")


if __name__ == "__main__":
    main()
