"""Watermark nodes and `talkinghead verify` as users meet them."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("c2pa")

from skimage import data  # noqa: E402

from talkinghead.nodes.watermark import TalkingHeadWatermark, TalkingHeadWatermarkDetect  # noqa: E402
from talkinghead.pipeline.core.audio import AudioClip  # noqa: E402
from talkinghead.pipeline.core.errors import InputError  # noqa: E402
from talkinghead.pipeline.core.ffmpeg import find_ffmpeg  # noqa: E402
from talkinghead.pipeline.publish.publish import publish  # noqa: E402


def clip_frames(count=50, size=256):
    base = np.asarray(data.astronaut()[:size, :size])
    return np.stack([np.roll(base, i % 3, axis=1) for i in range(count)])


def test_embed_node_then_detect_node_read_the_payload():
    frames = torch.from_numpy(clip_frames().astype(np.float32) / 255.0)
    embedded = TalkingHeadWatermark().embed(frames, clip_id=4242)
    marked, payload_hex = embedded["result"]
    assert marked.shape == frames.shape
    shown = embedded["ui"]["talkinghead_watermark"][0]  # what the editor shows on the node
    assert shown["payload_hex"] == payload_hex and shown["fields"]["clip_id"] == 4242
    detected = TalkingHeadWatermarkDetect().detect(marked)
    found = json.loads(detected["result"][0])
    assert found["found"] is True and found["payload_hex"] == payload_hex
    shown = detected["ui"]["talkinghead_watermark"][0]
    assert shown["found"] is True and shown["payload_hex"] == payload_hex and shown["confidence"] > 0
    json.dumps(detected["ui"])  # a websocket message: plain JSON
    plain = json.loads(TalkingHeadWatermarkDetect().detect(frames)["result"][0])
    assert plain["found"] is False


def test_embed_node_strength_input():
    frames = torch.from_numpy(clip_frames(10).astype(np.float32) / 255.0)
    assert "strength" in TalkingHeadWatermark.INPUT_TYPES()["optional"]
    changes = {}
    for strength in (1.0, 2.0):
        embedded = TalkingHeadWatermark().embed(frames, clip_id=1, strength=strength)
        changes[strength] = float((embedded["result"][0] - frames).abs().mean())
        shown = embedded["ui"]["talkinghead_watermark"][0]
        assert shown["strength"] == strength and shown["psnr_floor_db"] == pytest.approx(40.0 - 20 * np.log10(strength), abs=0.01)
    assert 1.6 < changes[2.0] / changes[1.0] < 2.2, changes
    with pytest.raises(InputError) as err:
        TalkingHeadWatermark().embed(frames, clip_id=1, strength=5.0)
    assert err.value.input_name == "strength"


def verify(*args, cwd):
    return subprocess.run([sys.executable, "-m", "talkinghead.nodes.headless.cli", "verify", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_verify_signed_clip_then_a_reencoded_copy_then_a_changed_byte(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKINGHEAD_CONFIG_DIR", str(tmp_path / "config"))
    t = np.arange(5 * 16000) / 16000.0  # 5 s, as the robustness clips
    audio = AudioClip((0.2 * np.sin(2 * np.pi * 200 * t))[None].astype(np.float32), 16000)
    result = publish(clip_frames(125, 512), audio, 25, str(tmp_path / "clip.mp4"), unix_time_s=1_800_000_000)
    done = verify("clip.mp4", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Content credentials: Valid" in done.stdout and "trainedAlgorithmicMedia" in done.stdout
    assert "Watermark: found" in done.stdout and result.watermark_payload_hex in done.stdout
    anchor = tmp_path / "config" / "c2pa-local-identity" / "ca_cert.pem"
    assert "Content credentials: Trusted" in verify("clip.mp4", "--trust-anchor", str(anchor), cwd=tmp_path).stdout

    subprocess.run([find_ffmpeg(), "-loglevel", "error", "-y", "-i", "clip.mp4", "-c:v", "libx264", "-crf", "23",
                    "copy.mp4"], cwd=tmp_path, check=True)
    copy = verify("copy.mp4", cwd=tmp_path)
    assert "Content credentials: none" in copy.stdout and "keeps the watermark" in copy.stdout

    raw = bytearray((tmp_path / "clip.mp4").read_bytes())
    at = raw.find(b"mdat") + 64
    raw[at] ^= 0xFF
    (tmp_path / "changed.mp4").write_bytes(bytes(raw))
    assert "Content credentials: Invalid" in verify("changed.mp4", cwd=tmp_path).stdout

    plain = tmp_path / "plain.png"
    from PIL import Image

    Image.fromarray(data.camera()).save(plain)
    nothing = verify("plain.png", cwd=tmp_path)
    assert nothing.returncode == 1 and "Watermark: not found" in nothing.stdout
    assert verify("missing.mp4", cwd=tmp_path).returncode == 2
