"""The `talkinghead` command as a user runs it: a real subprocess, real files, exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import wave
from pathlib import Path

import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[3]
WORKFLOWS = REPO / "workflows" / "api"
TEMPLATES = REPO / "workflows"  # the editor-format files


#: The shipped workflows leave the Reference Encoder's consent unset: a user attests on the command line.
CONSENT = ("--set", "5.consent=true")


def talkinghead(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "talkinghead.nodes.headless.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


def test_demo_writes_an_mp4_and_says_where(tmp_path):
    done = talkinghead("demo", "--quiet", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = [line.removeprefix("Wrote ").strip() for line in done.stdout.splitlines() if line.startswith("Wrote ")]
    assert len(written) == 1 and written[0].endswith(".mp4") and os.path.getsize(written[0]) > 10_000
    assert "A/V offset" in done.stdout


def test_run_applies_set_overrides(tmp_path):
    done = talkinghead(
        "run", str(WORKFLOWS / "script_to_video.api.json"), "--quiet", "--out", str(tmp_path),
        "--set", "2.text=Just two words.", "--set", "3.fps=30", "--set", "4.fps=30",
        "--set", "3.filename_prefix=custom/clip", *CONSENT,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "at 30.000 fps" in done.stdout
    assert [p.name for p in (tmp_path / "custom").glob("*.mp4")] == ["clip_00001_.mp4"]


def test_refused_workflow_exits_2_with_readable_node_errors(tmp_path):
    done = talkinghead("run", str(WORKFLOWS / "script_to_video.api.json"), "--quiet", "--out", str(tmp_path),
                       "--set", "2.rate_wpm=9000", *CONSENT, cwd=tmp_path)
    assert done.returncode == 2
    assert "node #2 Speak the script: Value 9000 bigger than max of 450" in done.stderr
    assert not list(tmp_path.rglob("*.mp4"))


def test_node_failure_exits_1_naming_node_and_input(tmp_path):
    done = talkinghead("run", str(WORKFLOWS / "script_to_video.api.json"), "--quiet", "--out", str(tmp_path),
                       "--set", "2.text=  ", *CONSENT, cwd=tmp_path)
    assert done.returncode == 1
    assert "Node #2 TalkingHeadSpeak failed" in done.stderr and "text" in done.stderr


def test_ui_format_and_bad_set_are_usage_errors(tmp_path):
    done = talkinghead("run", str(TEMPLATES / "Talking head from a portrait and recorded speech.json"), cwd=tmp_path)
    assert done.returncode == 2 and "UI format" in done.stderr
    done = talkinghead("run", str(WORKFLOWS / "talking_head.api.json"), "--set", "99.fps=3", cwd=tmp_path)
    assert done.returncode == 2 and "no node '99'" in done.stderr
    done = talkinghead("run", str(WORKFLOWS / "talking_head.api.json"), "--set", "fps", cwd=tmp_path)
    assert done.returncode == 2 and "NODE_ID.input=value" in done.stderr


def test_unreachable_server_exits_3(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = talkinghead("run", str(WORKFLOWS / "talking_head.api.json"), "--server", f"http://127.0.0.1:{port}",
                       cwd=tmp_path)
    assert done.returncode == 3 and "could not" in done.stderr and str(port) in done.stderr


def test_speak_writes_wav_and_timings(tmp_path):
    done = talkinghead("speak", "Hello there, world.", "-o", str(tmp_path / "s.wav"),
                       "--timings", str(tmp_path / "s.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with wave.open(str(tmp_path / "s.wav")) as wav:
        duration_s = wav.getnframes() / wav.getframerate()
    timings = json.loads((tmp_path / "s.json").read_text())
    assert [w["word"] for w in timings["words"]] == ["Hello", "there", "world"]
    assert abs(timings["duration_s"] - duration_s) < 0.05


def test_visemes_writes_rhubarb_json_and_a_preview(tmp_path):
    wav = tmp_path / "s.wav"
    assert talkinghead("speak", "Bob bought a blue map.", "-o", str(wav), cwd=tmp_path).returncode == 0
    done = talkinghead("visemes", str(wav), "--text", "Bob bought a blue map.", "--format", "rhubarb",
                       "-o", str(tmp_path / "cues.json"), "--preview", str(tmp_path / "timeline.png"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    cues = json.loads((tmp_path / "cues.json").read_text())
    assert cues["metadata"]["soundFile"] == str(wav)
    values = [cue["value"] for cue in cues["mouthCues"]]
    assert set(values) <= set("ABCDEFGHX") and "A" in values  # B, b, p, m close the lips
    assert all(a["end"] == b["start"] for a, b in zip(cues["mouthCues"], cues["mouthCues"][1:]))
    from PIL import Image

    assert Image.open(tmp_path / "timeline.png").size == (1280, 360)


def test_visemes_track_json_to_stdout_and_bad_audio(tmp_path):
    wav = tmp_path / "s.wav"
    talkinghead("speak", "Hello there.", "-o", str(wav), cwd=tmp_path)
    done = talkinghead("visemes", str(wav), "--fps", "30", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    track = json.loads(done.stdout)
    assert track["format"] == "talkinghead.viseme_track/1" and track["fps"] == 30.0
    # Whisper (the asr extra, installed by the test setup) where there, else pocketsphinx's search
    assert track["method"] in ("whisper", "recognition") and len(track["viseme_weights"]) == len(track["mouth"])
    assert "hello" in track["transcript"].lower() and "heard (" in done.stderr
    assert "Audio quality: OK" in done.stderr and "speech share" in done.stderr   # the report, for the user
    assert track["audio_quality"]["ok"] is True

    (tmp_path / "bad.wav").write_bytes(b"RIFF not really a wave file")
    done = talkinghead("visemes", str(tmp_path / "bad.wav"), cwd=tmp_path)
    assert done.returncode == 2 and "AUDIO" in done.stderr and "bad.wav" in done.stderr
    assert not (tmp_path / "out.json").exists()


def test_reference_needs_consent_then_writes_reference_and_preview(tmp_path):
    pytest.importorskip("mediapipe")
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "portrait.png")
    refused = talkinghead("reference", "portrait.png", "-o", "ref/astro", cwd=tmp_path)
    assert refused.returncode == 2 and "consent" in refused.stderr
    assert not (tmp_path / "ref").exists()
    done = talkinghead("reference", "portrait.png", "--consent", "-o", "ref/astro", "--preview", "p.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Reference quality: OK" in done.stdout and "Head pose: yaw" in done.stdout
    saved = json.loads((tmp_path / "ref" / "astro.json").read_text())
    assert saved["face_count"] == 1 and saved["consent"]["attested"] is True
    assert (tmp_path / "ref" / "astro.safetensors").stat().st_size > 100_000
    assert Image.open(tmp_path / "p.png").size == (512, 512)
    missing = talkinghead("reference", "nothere.png", "--consent", cwd=tmp_path)
    assert missing.returncode == 2 and "IMAGE" in missing.stderr
