"""Publishing: visible label, watermark, mux and content credentials, each switchable and said."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("c2pa")

from talkinghead.pipeline.core.audio import AudioClip  # noqa: E402
from talkinghead.pipeline.core.errors import InputError  # noqa: E402
from talkinghead.pipeline.publish.mux import mux  # noqa: E402
from talkinghead.pipeline.publish.provenance import read_manifest  # noqa: E402
from talkinghead.pipeline.publish.publish import GENERATOR_ID, audio_sha256, publish  # noqa: E402
from talkinghead.pipeline.publish.visible_label import LabelConfig, LabelPainter  # noqa: E402
from talkinghead.pipeline.publish.watermark import parse_payload  # noqa: E402

FPS = 25


@pytest.fixture
def clip():
    rng = np.random.default_rng(0)
    base = (rng.random((96, 128, 3)) * 60 + 100).astype(np.uint8)
    frames = np.stack([np.roll(base, i, axis=1) for i in range(25)])
    t = np.arange(16000) / 16000.0
    audio = AudioClip((0.2 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32), 16000)
    return frames, audio


@pytest.fixture(autouse=True)
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TALKINGHEAD_CONFIG_DIR", str(tmp_path / "config"))


def test_everything_off_is_plain_mux_and_says_so(clip, tmp_path):
    frames, audio = clip
    plain = mux(frames, audio, FPS, str(tmp_path / "plain.mp4"))
    result = publish(frames, audio, FPS, str(tmp_path / "off.mp4"), watermark=False, content_credentials=False)
    assert result.watermark_payload_hex is None and result.credentials_state == "off"
    assert any("watermark: off" in n for n in result.notes)
    assert any("content credentials: off" in n for n in result.notes)
    assert result.mux.frames_sha256 == plain.frames_sha256
    assert read_manifest(result.mux.path).state == "None"


def test_default_marks_and_signs_with_the_payload_in_the_manifest(clip, tmp_path):
    frames, audio = clip
    result = publish(frames, audio, FPS, str(tmp_path / "on.mp4"), unix_time_s=1_800_000_000)
    fields = parse_payload(bytes.fromhex(result.watermark_payload_hex))
    assert fields["generator_id"] == GENERATOR_ID and fields["unix_time_s"] == 1_800_000_000
    assert result.credentials_state == "signed (untrusted local certificate)"
    manifest = read_manifest(result.mux.path)
    assert manifest.state == "Valid"
    assert manifest.summary["watermark_payload_hex"] == result.watermark_payload_hex
    assert manifest.summary["audio_sha256"] == audio_sha256(audio)
    assert abs(result.mux.av_offset_ms) <= 5.0
    # frames_sha256 names the frames as given: the mark does not change it
    assert result.mux.frames_sha256 == mux(frames, audio, FPS, str(tmp_path / "plain.mp4")).frames_sha256


def test_visible_label_changes_only_its_corner():
    frame = np.full((240, 320, 3), 90, np.uint8)
    painted = LabelPainter(LabelConfig(position="bottom_right")).paint(frame)
    changed = np.argwhere(np.any(painted != frame, axis=2))
    assert len(changed) > 100
    assert changed[:, 0].min() > 240 * 0.6 and changed[:, 1].min() > 320 * 0.4  # bottom right only
    with pytest.raises(InputError) as err:
        LabelPainter(LabelConfig(position="middle"))
    assert err.value.input_name == "label_position"
    with pytest.raises(InputError):
        LabelPainter(LabelConfig(text="  "))


def _textured_clip(size: int, frames: int):
    rng = np.random.default_rng(3)
    base = (rng.random((size // 8, size // 8, 3)) * 120 + 60).astype(np.uint8)
    base = np.kron(base, np.ones((8, 8, 1), np.uint8))            # 8 px blocks: a picture, not noise
    video = np.stack([np.roll(base, i // 5, axis=1) for i in range(frames)])
    t = np.arange(int(16000 * frames / FPS)) / 16000.0
    return video, AudioClip((0.2 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32), 16000)


def test_small_clips_are_read_back_and_an_unreadable_mark_is_said(clip, tmp_path, monkeypatch):
    frames, audio = _textured_clip(384, 50)
    good = publish(frames, audio, FPS, str(tmp_path / "good.mp4"), content_credentials=False)
    assert good.watermark_readable is True and good.to_dict()["watermark_readable"] is True
    assert not any("could not be read back" in n for n in good.notes)
    # 96x128 px, one second: less than one 128 px tile per frame, too little of the mark to read
    tiny_frames, tiny_audio = clip
    tiny = publish(tiny_frames, tiny_audio, FPS, str(tmp_path / "tiny.mp4"), content_credentials=False)
    assert tiny.watermark_readable is False
    assert any("could not be read back" in n and "96" in n for n in tiny.notes)
    # clips above the limit are not decoded again; the mark off means nothing to check
    import talkinghead.pipeline.publish.publish as publish_module

    monkeypatch.setattr(publish_module, "READBACK_MAX_PIXEL_FRAMES", 384 * 384 * 49)
    assert publish(frames, audio, FPS, str(tmp_path / "big.mp4"), content_credentials=False).watermark_readable is None
    assert publish(frames, audio, FPS, str(tmp_path / "off.mp4"), watermark=False,
                   content_credentials=False).watermark_readable is None


def test_watermark_strength_is_applied_said_and_checked(tmp_path):
    frames, audio = _textured_clip(384, 50)
    strong = publish(frames, audio, FPS, str(tmp_path / "strong.mp4"), watermark_strength=1.7,
                     content_credentials=False)
    assert strong.watermark_readable is True
    assert any("strength 1.7" in n and "PSNR >= 35.4 dB" in n and "grain" in n for n in strong.notes)
    default = publish(frames, audio, FPS, str(tmp_path / "default.mp4"), content_credentials=False)
    assert not any("strength" in n for n in default.notes)
    for bad in (3.0, 0.1, float("nan"), "strong"):
        target = tmp_path / f"bad-{bad}.mp4"
        with pytest.raises(InputError) as err:
            publish(frames, audio, FPS, str(target), watermark_strength=bad, content_credentials=False)
        assert err.value.input_name == "watermark_strength" and "0.5 to 2.0" in str(err.value)
        assert not target.exists()
