"""Job files for the batch tests: one real portrait, one flat grey "portrait" with no face, short scripts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

#: Short clips keep the batch tests to a few minutes on 2 shared cores: one sentence, 384x384 output.
#: Not 256: a ~1.7 s clip at 256 px carries only four watermark tiles per frame, and for a few
#: payloads the mark's CRC then fails after encoding (seen in CI: 1 of ~40 clips; issue 6 notes it),
#: which would fail the "every good job verifies" checks for a reason that is not the batch's.
SIZE = 384
SENTENCES = ["Hello, this is clip {i}.", "Welcome to take number {i}.", "Here is message {i} for you.",
             "Thanks for watching clip {i}."]


def write_portraits(folder: Path) -> tuple[Path, Path]:
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    presenter, grey = folder / "presenter.png", folder / "no_face.png"
    Image.fromarray(data.astronaut()).save(presenter)
    Image.fromarray(np.full((SIZE, SIZE, 3), 128, np.uint8)).save(grey)
    return presenter, grey


def write_jobs(folder: Path, count: int, bad: set[int] = frozenset()) -> Path:
    """JOBS.jsonl with `count` jobs clip-00..; the indexes in `bad` use the faceless grey image."""
    write_portraits(folder)
    lines = []
    for i in range(count):
        lines.append({"id": f"clip-{i:02d}", "image": "no_face.png" if i in bad else "presenter.png",
                      "script": SENTENCES[i % len(SENTENCES)].format(i=i), "seed": i, "width": SIZE, "height": SIZE,
                      "consent": True})
    path = folder / "jobs.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def manifest_records(out_dir: Path) -> list[dict]:
    path = Path(out_dir) / "batch-manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def no_partial_files(out_dir: Path) -> list[str]:
    """Anything in --out that is not a finished output, the manifest, or the batch folder's logs/lock."""
    leftovers = []
    for path in Path(out_dir).rglob("*"):
        rel = path.relative_to(out_dir).as_posix()
        if path.is_dir():
            continue
        if rel.startswith(".talkinghead-batch/logs/") or rel == ".talkinghead-batch/lock":
            continue
        if rel == "batch-manifest.jsonl" or (rel.endswith(".mp4") and "/" not in rel and ".partial" not in rel):
            continue
        leftovers.append(rel)
    return leftovers


def first_pid_killer(kill_after_s: float = 0.0):
    """An on_event callback that SIGKILLs the worker of the first job started, once; returns (callback, state)."""
    import signal
    import threading

    state = {"killed": None}

    def on_event(kind, data):
        if kind == "started" and state["killed"] is None and data.get("pid"):
            state["killed"] = data["job_id"]
            if kill_after_s:
                threading.Timer(kill_after_s, _kill, args=(data["pid"], signal.SIGKILL)).start()
            else:
                _kill(data["pid"], signal.SIGKILL)

    return on_event, state


def _kill(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
