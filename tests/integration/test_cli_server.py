"""`talkinghead run --server` against the real ComfyUI: progress, downloads, readable errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from talkinghead.pipeline.publish.mux import measure_av_sync

pytestmark = pytest.mark.slow

WORKFLOW = Path(__file__).resolve().parents[2] / "workflows" / "api" / "script_to_video.api.json"


def talkinghead(*args, cwd):
    return subprocess.run([sys.executable, "-m", "talkinghead.nodes.headless.cli", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_run_on_server_downloads_a_synced_mp4_with_a_bar_per_node(comfy_server, tmp_path):
    done = talkinghead("run", str(WORKFLOW), "--server", comfy_server.url, "--out", str(tmp_path / "out"),
                       "--set", "2.text=Straight from the server.", "--set", "3.filename_prefix=cli/server",
                       "--set", "5.consent=true",
                       cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (mp4,) = (tmp_path / "out" / "cli").glob("server_*.mp4")
    assert f"Wrote {mp4}" in done.stdout
    sync = measure_av_sync(str(mp4))
    assert abs(sync.av_offset_ms) <= 5 and abs(sync.duration_diff_ms) <= 40
    # tqdm bars labelled with the node titles from the workflow, driven by the websocket.
    assert "#2 Speak the script" in done.stderr and "#3 Mux MP4" in done.stderr
    assert not list((tmp_path / "out").rglob("*.partial*"))


def test_server_validation_errors_are_rendered_and_exit_2(comfy_server, tmp_path):
    done = talkinghead("run", str(WORKFLOW), "--server", comfy_server.url, "--out", str(tmp_path),
                       "--set", "3.crf=99", "--set", "5.consent=true", cwd=tmp_path)
    assert done.returncode == 2
    # The Viseme Aligner output is still valid, so ComfyUI queues it and drops only the Mux.
    assert "ComfyUI refused part of the workflow" in done.stderr
    assert "node #3 Mux MP4: Value 99 bigger than max of 51" in done.stderr
    assert not list(tmp_path.rglob("*.mp4"))

    done = talkinghead("run", str(WORKFLOW), "--server", comfy_server.url, "--out", str(tmp_path),
                       "--set", "3.crf=99", "--set", "4.fps=0", "--set", "5.crop_size=1", cwd=tmp_path)
    assert done.returncode == 2
    assert "Prompt outputs failed validation" in done.stderr
    assert "node #4 Viseme Aligner: Value 0.0 smaller than min of 1.0" in done.stderr


def test_server_node_failure_names_node_and_input_and_exits_1(comfy_server, tmp_path):
    done = talkinghead("run", str(WORKFLOW), "--server", comfy_server.url, "--out", str(tmp_path),
                       "--set", "3.filename_prefix=../../escape", "--set", "5.consent=true", cwd=tmp_path)
    assert done.returncode == 1
    assert "Node #3 TalkingHeadMux failed" in done.stderr and "filename_prefix" in done.stderr
    assert not list(tmp_path.rglob("*.mp4"))
