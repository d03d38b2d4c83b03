"""Long recordings without a transcript: wall time and peak memory of the VisemeAligner on 5 and 30 minutes.

The speech is made by Speak (espeak-ng, offline): varied sentences at 165 wpm with 0.4-1.2 s pauses, as one
long clip. Each length runs in a fresh process (so its peak RSS is its own), through
`align_speech(audio, fps=25)` as the node runs it: Whisper (asr extra) where installed, its words
forced-aligned, the voice-activity measure and the audio quality report. Reported: seconds of wall time
and CPU per second of audio, peak RSS, and the 30-minute figures as ratios to the 5-minute ones (flat
memory: RSS ratio near 1; linear time: time ratio near 6). Target (issue 18): 30 minutes in <= 5 minutes.

Run: python tests/bench/bench_long_speech.py [--minutes 5,30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

SENTENCES = (
    "Good morning, and welcome back to the weekly review of our project.",
    "Bob made a big map of the moon, and five brave foxes leaped over the fence.",
    "Please pass the pepper and the butter, then put the pot back on the top shelf.",
    "We saw two ships move slowly from the harbour towards the open sea.",
    "The quick brown fox jumps over the lazy dog while the farmer watches.",
    "Numbers matter: we sold three hundred and twelve books in the first week.",
    "Who knew the blue balloon would float all the way up to the roof?",
    "Maybe a warm bowl of soup will help after such a long and rainy day.",
)

CHILD = r"""
import json, resource, sys, time
import numpy as np
from talkinghead.pipeline.core.audio import AudioClip
from talkinghead.pipeline.lipsync.aligner import align_speech
data = np.load(sys.argv[1])
clip = AudioClip(data["samples"], int(data["rate"]))
del data
t0, c0 = time.perf_counter(), time.process_time()
track = align_speech(clip, fps=25.0)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "duration_s": clip.duration_s, "method": track.method,
                  "words": len(track.words), "frames": track.num_frames,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                  "warnings": track.warnings[:3]}))
"""


def make_speech(minutes: float, path: Path) -> float:
    """Writes `minutes` of Speak sentences with pauses to an .npz (samples, rate); returns seconds."""
    import numpy as np

    from talkinghead.pipeline.speech.speak import SpeakConfig, speak

    spoken = [speak(text, SpeakConfig(rate_wpm=165)).audio for text in SENTENCES]
    rate = spoken[0].sample_rate
    rng = np.random.default_rng(7)
    pieces, total = [], 0
    target = int(minutes * 60 * rate)
    i = 0
    while total < target:
        audio = spoken[i % len(spoken)].samples[0]
        pause = np.zeros(int(rng.uniform(0.4, 1.2) * rate), np.float32)
        pieces += [audio, pause]
        total += len(audio) + len(pause)
        i += 1
    samples = np.concatenate(pieces)[:target][None].astype(np.float32)
    np.savez(path, samples=samples, rate=rate)
    return samples.shape[1] / rate


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", default="5,30")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for minutes in [float(m) for m in args.minutes.split(",")]:
            path = Path(work) / f"speech_{minutes:g}.npz"
            make_speech(minutes, path)
            done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                                  timeout=3600)
            if done.returncode != 0:
                print(f"{minutes:g} min: FAILED\n{done.stderr[-2000:]}", file=sys.stderr)
                return 1
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["minutes"] = minutes
            rows.append(row)
    print("audio    wall s  x real time  CPU s/s  peak RSS MB  method   words")
    for r in rows:
        print(f"{r['minutes']:5g} min {r['wall_s']:7.1f} {r['wall_s'] / r['duration_s']:12.3f} "
              f"{r['cpu_s'] / r['duration_s']:8.3f} {r['peak_rss_mb']:12.0f}  {r['method']:8s} {r['words']}")
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        print(f"{last['minutes']:g} min vs {first['minutes']:g} min: time x{last['wall_s'] / first['wall_s']:.2f} "
              f"(audio x{last['duration_s'] / first['duration_s']:.2f}), peak RSS x"
              f"{last['peak_rss_mb'] / first['peak_rss_mb']:.2f}")
    longest = max(rows, key=lambda r: r["duration_s"])
    print(f"target: {longest['minutes']:g} minutes aligned in <= 5 minutes: {longest['wall_s'] / 60:.1f} min "
          f"({'met' if longest['wall_s'] <= 300 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
