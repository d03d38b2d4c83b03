"""Real recordings through the VisemeAligner, without and with a transcript: the path taken, per file.

Every speech file in `../shared/realworld/speech` (or $TALKINGHEAD_REALWORLD_DIR; its manifest says language and
hard case) is aligned twice: without a transcript (as most users run it), then with the transcript that run
recognised ("with"), so the second row shows what forced alignment makes of the recognised words. Reported per
file, numbers only (the recordings carry no licence to reuse: no words, no audio leave this machine): the
language the manifest gives, the path taken, words recognised and how many were low-confidence, the speech share
and the audio quality verdicts, CPU seconds per second of audio. When the corpus is absent it says so and stops.

Run: python tests/bench/bench_real_speech.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[3] / "shared" / "realworld"


def main() -> int:
    from talkinghead.pipeline.core.audio_io import load_audio
    from talkinghead.pipeline.lipsync import whisper_asr
    from talkinghead.pipeline.lipsync.aligner import align_speech

    corpus = Path(os.environ.get("TALKINGHEAD_REALWORLD_DIR", str(DEFAULT_CORPUS)))
    if not (corpus / "manifest.json").is_file():
        print(f"Real-world corpus not found at {corpus} (set TALKINGHEAD_REALWORLD_DIR): nothing measured.")
        return 0
    manifest = [e for e in json.loads((corpus / "manifest.json").read_text()) if e["kind"] == "speech"]
    recogniser = "Whisper (asr extra)" if whisper_asr.available() else f"pocketsphinx ({whisper_asr.unavailable_reason()})"
    first = load_audio(str(corpus / manifest[0]["file"]))
    align_speech(type(first)(first.samples[:, :2 * first.sample_rate], first.sample_rate), fps=25.0)  # load models
    print(f"{len(manifest)} recordings; recogniser: {recogniser}. Times are CPU s per s of audio, one process.\n")
    print("| file | language | s | no transcript: path | words (low conf.) | CPU/s | with the recognised "
          "transcript: path | CPU/s | speech share | quality warnings |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for entry in manifest:
        audio = load_audio(str(corpus / entry["file"]))
        t0 = time.process_time()
        heard = align_speech(audio, fps=25.0)
        cpu_heard = time.process_time() - t0
        low = next((w for w in heard.warnings if "low confidence" in w), "")
        low_count = int(low.split("recognition: ", 1)[1].split(" ", 1)[0]) if low.startswith("recognition: ") else 0
        with_row = ("-", float("nan"))
        if heard.transcript.strip():
            t0 = time.process_time()
            again = align_speech(audio, fps=25.0, transcript=heard.transcript)
            with_row = (again.method, (time.process_time() - t0) / audio.duration_s)
        checks = heard.audio_quality.get("checks", [])
        share = next((c["value_text"] for c in checks if c["factor"] == "speech share"), "n/a")
        warned = ", ".join(f"{c['factor']} {c['value_text']}" for c in checks if c["verdict"] != "pass") or "none"
        print(f"| {Path(entry['file']).name} | {entry.get('language', '?')} | {audio.duration_s:.1f} | {heard.method} | "
              f"{len(heard.transcript.split())} ({low_count}) | {cpu_heard / audio.duration_s:.3f} | {with_row[0]} | "
              f"{with_row[1]:.3f} | {share} | {warned} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
