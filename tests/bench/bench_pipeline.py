"""Whole default pipeline (Speak -> VisemeAligner -> ReferenceEncoder -> TemporalSampler -> Mux): wall time and peak RSS.

Each clip length runs in a fresh process (so peak RSS is that run's alone) through the pack's own
executor on workflows/api/script_to_video.api.json, with the sample portrait (512x512) and a script long
enough for the target duration at 175 words per minute. Reported: seconds of wall time per second of
speech (target <= 0.5 for 10 s on the 2-core reference machine), per-stage seconds, and peak RSS
(must stay flat as clips grow). Baseline in the same run: the same length muxed from one held frame
(no rendering), which is the floor that encoding alone sets.

Run: python tests/bench/bench_pipeline.py [--lengths 10,60,600]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SENTENCES = (
    "Good morning, and welcome to the show.",
    "Today we look at how a single photograph can speak, blink and nod along with its words.",
    "Bob made a big map of the moon, and five brave foxes leaped over the fence.",
    "Please pass the pepper and the butter, then put the pot back on the top shelf.",
    "Who knew the blue balloon would float all the way up to the roof?",
)

CHILD = r"""
import json, os, resource, sys, time
from talkinghead.nodes.headless.executor import run_graph
graph = json.load(open(sys.argv[1]))
mode = sys.argv[3]
for node in graph.values():
    if node["class_type"] == "TalkingHeadReferenceEncoder":
        node["inputs"]["consent"] = True
    if node["class_type"] == "TalkingHeadSpeak":
        node["inputs"]["text"] = sys.argv[2]
if mode == "held_frame":  # baseline: no reference encoding, no rendering: the portrait held
    mux = [k for k, v in graph.items() if v["class_type"] == "TalkingHeadMux"][0]
    graph[mux]["inputs"].pop("frame_stream", None)
    graph[mux]["inputs"]["images"] = ["1", 0]
    for k in [k for k, v in graph.items() if v["class_type"] in ("TalkingHeadReferenceEncoder", "TalkingHeadTemporalSampler")]:
        del graph[k]
out = sys.argv[4]
t0 = time.perf_counter()
result = run_graph(graph, input_dir=out, output_dir=out, progress=False)
wall = time.perf_counter() - t0
mux = [v["talkinghead_mux"][0] for v in result.outputs.values() if "talkinghead_mux" in v][0]
print(json.dumps({"wall_s": wall, "duration_s": mux["duration_s"], "frames": mux["frame_count"],
                  "stages": {graph[k]["class_type"].replace("TalkingHead", ""): round(v, 2)
                             for k, v in result.timings_s.items()},
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def script_for(seconds: float, words_per_minute: float = 175.0) -> str:
    words_needed = int(seconds * words_per_minute / 60.0)
    text, count, i = [], 0, 0
    while count < words_needed:
        sentence = SENTENCES[i % len(SENTENCES)]
        text.append(sentence)
        count += len(sentence.split())
        i += 1
    return " ".join(text)


def run_child(seconds: float, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        done = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "workflows" / "api" / "script_to_video.api.json"),
                               script_for(seconds), mode, out], capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            raise SystemExit(f"pipeline run failed ({seconds} s, {mode}):\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", default="10,60,600", help="clip lengths in seconds, comma-separated")
    args = parser.parse_args()
    lengths = [float(v) for v in args.lengths.split(",")]
    lines = [f"{'target':>7} {'speech s':>9} {'frames':>7} {'wall s':>8} {'x real time':>12} {'held-frame x rt':>16} "
             f"{'peak RSS MB':>12}  stages (s)"]
    for seconds in lengths:
        full = run_child(seconds, "full")
        base = run_child(seconds, "held_frame")
        rt = full["wall_s"] / full["duration_s"]
        base_rt = base["wall_s"] / base["duration_s"]
        stages = ", ".join(f"{k} {v}" for k, v in full["stages"].items())
        lines.append(f"{seconds:>6.0f}s {full['duration_s']:>9.1f} {full['frames']:>7d} {full['wall_s']:>8.1f} "
                     f"{rt:>12.3f} {base_rt:>16.3f} {full['peak_rss_mb']:>12.0f}  {stages}")
    lines.append("x real time: wall seconds per second of speech (target <= 0.5 for the 10 s clip). held-frame: "
                 "the same script muxed from one held portrait (Speak, align, mux only) in the same run.")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
