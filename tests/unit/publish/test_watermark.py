"""Invisible watermark (issue 6): payload coding, invisibility, detection after real ffmpeg attacks.

A 5 s, 25 fps, 512x512 clip of skimage's astronaut (a slow sub-pixel wobble plus noise, so frames
differ) is marked, encoded like our output (H.264 CRF 18 yuv420p) and attacked with the real
ffmpeg (imageio-ffmpeg's): re-encodes, crops, VP9 WebM, brightness/contrast, frame-rate change, a
cut first second, combinations. Detection must return the exact payload. Attacks the mark does not
yet survive are xfail (strict=False) with the measured reason, so a fix shows up as XPASS.
The clip helpers and the attack table are shared with tests/bench/bench_watermark.py.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_watermark as bw  # noqa: E402
from talkinghead.pipeline.core.errors import InputError  # noqa: E402
from talkinghead.pipeline.publish import watermark as wm  # noqa: E402

PAYLOAD_FIELDS = dict(generator_id=7, clip_id=42, unix_time_s=1764547200)

#: Attacks the current design does not survive on this clip (measured Dec 2026, 512x512 astronaut;
#: soft-bit SNR (mean / std) per coded bit at the right geometry, after the per-ring weighting; in
#: an AWGN simulation the K=9 rate-1/4 code loses ~30% of blocks at 0.70 and ~11% at 0.77). The
#: hardest passing attacks: contrast -10% + crop + CRF 28 at SNR 0.93, 50% downscale 0.96, CRF 28 1.04.
KNOWN_FAILURES = {
    "combo_scale50+crf28": "downscale + CRF 28: only the band's lowest rings survive (host-dominated); "
                           "the sync is not found (z 4.2, unmarked content reaches 5.0) and the data "
                           "SNR at the true geometry is ~0.53, ~1.5x short of decoding (strength 1.7, "
                           "PSNR ~36 dB, survives it: test_strength_1_8_survives_downscale_plus_crf28)",
}


@pytest.fixture(scope="module")
def payload() -> bytes:
    return wm.make_payload(**PAYLOAD_FIELDS)


@pytest.fixture(scope="module")
def clip():
    return list(bw.make_clip(512))


@pytest.fixture(scope="module")
def marked(clip, payload):
    embedder = wm.WatermarkEmbedder(payload)
    return list(embedder.embed_stream(clip))


@pytest.fixture(scope="module")
def master(marked, tmp_path_factory) -> str:
    return bw.write_master(marked, str(tmp_path_factory.mktemp("wm") / "marked.mp4"))


# --- payload and channel coding --------------------------------------------------------------

def test_payload_layout_roundtrip(payload):
    assert len(payload) == 8
    assert wm.parse_payload(payload) == PAYLOAD_FIELDS
    assert payload.hex() == "0007002a" + f"{1764547200:08x}"


@pytest.mark.parametrize("bad", [dict(generator_id=-1), dict(clip_id=1 << 16),
                                 dict(unix_time_s=1 << 32), dict(generator_id=1.5)])
def test_payload_rejects_out_of_range(bad):
    with pytest.raises(InputError):
        wm.make_payload(**{**PAYLOAD_FIELDS, **bad})


def test_channel_code_corrects_noise_and_crc_rejects_garbage(payload):
    key = wm.DEFAULT_WATERMARK_CONFIG.key
    coded = wm.encode_bits(payload, key)
    assert coded.size == wm.coded_bit_count() == 384
    rng = np.random.default_rng(1)
    soft = (coded * 2.0 - 1.0) + rng.normal(0, 0.7, coded.size)  # ~8% raw bit errors
    soft[::17] *= -1.0  # plus a burst of flipped channel bits
    assert np.mean((soft > 0) != coded) > 0.05
    decoded, _ = wm.decode_bits(soft, key)
    assert decoded == payload
    assert wm.decode_bits(soft, "another key")[0] is None  # keyed CRC
    garbage_hits = sum(wm.decode_bits(rng.normal(0, 1, coded.size), key)[0] is not None
                       for _ in range(50))
    assert garbage_hits == 0


# --- embedding --------------------------------------------------------------------------------

def test_psnr_at_least_40_db(clip, marked):
    psnrs = [wm.psnr(a, b) for a, b in zip(clip, marked)]
    assert min(psnrs) >= 40.0, min(psnrs)


def test_weak_on_flat_areas_and_stream_equals_frames(payload, clip, marked):
    embedder = wm.WatermarkEmbedder(payload)
    flat = np.full((256, 256, 3), (200, 160, 140), np.uint8)  # flat skin-like colour
    delta = embedder.embed(flat).astype(np.int16) - flat
    assert np.abs(delta).max() <= 3 and delta.std() <= 1.8, (np.abs(delta).max(), delta.std())
    # the stream's frames are marked under the RMS cap by a 2 % headroom: at most one level apart
    assert np.abs(embedder.embed(clip[3]).astype(np.int16) - marked[3]).max() <= 1
    assert np.array_equal(delta[..., 0], delta[..., 1])  # a luma change: same on R, G, B


def test_stream_reuses_the_mark_where_frames_are_unchanged(payload, clip):
    base = clip[0]
    moved = base.copy()
    moved[200:240, 300:340] = np.roll(base[200:240, 300:340], 7, axis=1)   # a mouth-sized change
    embedder = wm.WatermarkEmbedder(payload)
    first, second = embedder.embed_next(base), embedder.embed_next(moved)
    reach = embedder.config.mask_window_px // 2 + 1
    outside = np.ones(base.shape[:2], bool)
    outside[200 - reach:240 + reach, 300 - reach:340 + reach] = False
    assert np.array_equal(second[outside], first[outside])
    # inside, the mark is that of the changed frame itself (same scale: one level at most)
    assert np.abs(second.astype(np.int16) - embedder.embed(moved)).max() <= 1
    change = (second.astype(np.float64) - moved)[..., 0]
    assert np.sqrt(np.mean(change ** 2)) <= embedder.config.max_rms + 0.05
    # a frame that changed everywhere is marked whole, with its own mask
    darker = (base // 2).astype(np.uint8)
    third = embedder.embed_next(darker)
    assert np.abs(third.astype(np.int16) - embedder.embed(darker)).max() <= 1
    assert wm.psnr(darker, third) >= 40.0
    # an unchanged frame is the last one's marked pixels
    assert np.array_equal(embedder.embed_next(darker), third)


def test_embed_rejects_bad_frames(payload):
    embedder = wm.WatermarkEmbedder(payload)
    with pytest.raises(InputError):
        embedder.embed(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(InputError):
        embedder.embed(np.zeros((64, 64), np.uint8))
    with pytest.raises(InputError):
        wm.WatermarkEmbedder(b"short")


# --- detection --------------------------------------------------------------------------------

def test_detect_raw_frames(marked, payload):
    r = wm.detect_frames(marked)
    assert r.found and r.payload == payload and r.fields == PAYLOAD_FIELDS
    assert r.frames_seen == len(marked) and r.frames_marked_share > 0.9
    assert r.confidence >= wm.DEFAULT_WATERMARK_CONFIG.z_threshold


def test_detect_master_file(master, payload):
    r = wm.detect_file(master)
    assert r.found and r.payload == payload, r.to_dict()


@pytest.mark.parametrize("attack", list(bw.ATTACKS))
def test_payload_survives_attack(attack, master, payload, tmp_path, request):
    if attack in KNOWN_FAILURES:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_FAILURES[attack], strict=False))
    path = bw.attack(master, attack, str(tmp_path))
    r = wm.detect_file(path)
    assert r.found and r.payload == payload, r.to_dict()


def test_unmarked_clip_not_flagged(clip):
    r = wm.detect_frames(clip)
    assert not r.found and r.payload is None


def test_unmarked_corpus_subset_not_flagged():
    """A 24-item slice of the benchmark's 101-item sweep (images, crops, noise, gradients)."""
    items = list(itertools.islice(bw.unmarked_corpus(), 0, 96, 4))
    assert len(items) == 24
    for name, frames in items:
        r = wm.detect_frames(frames)
        assert not r.found, (name, r.to_dict())


@pytest.mark.slow
def test_unmarked_corpus_full_not_flagged():
    flagged = [name for name, frames in bw.unmarked_corpus() if wm.detect_frames(frames).found]
    assert flagged == []


def test_other_key_does_not_read(marked):
    other = wm.WatermarkConfig(key="someone-else")
    assert not wm.detect_frames(marked[:50], other).found


# --- strength factor --------------------------------------------------------------------------

def test_strength_factor_scales_the_mark_and_keeps_its_psnr_floor(clip, payload):
    assert wm.config_for_strength(1.0) is wm.DEFAULT_WATERMARK_CONFIG
    for strength in (0.5, 1.7, 2.0):
        config = wm.config_for_strength(strength)
        marked = [wm.WatermarkEmbedder(payload, config).embed(f) for f in clip[:5]]
        psnrs = [wm.psnr(a, b) for a, b in zip(clip, marked)]
        assert min(psnrs) >= wm.psnr_floor_db(strength), (strength, min(psnrs))
        assert min(psnrs) <= wm.psnr_floor_db(strength) + 1.5, (strength, min(psnrs))  # really stronger/fainter
    for bad in (0.49, 2.01, None, "x"):
        with pytest.raises(InputError) as err:
            wm.config_for_strength(bad)
        assert err.value.input_name == "watermark_strength"


def test_strength_1_8_survives_downscale_plus_crf28(clip, payload, tmp_path):
    # The one attack the default mark does not survive (KNOWN_FAILURES): measured at strength 1.7
    # (PSNR 35.8 dB) sync z 6.1, data agreement 13.3; at 2.0 z 8.3, 15.7.
    embedder = wm.WatermarkEmbedder(payload, wm.config_for_strength(1.8))
    master = bw.write_master(list(embedder.embed_stream(clip)), str(tmp_path / "strong.mp4"))
    r = wm.detect_file(bw.attack(master, "combo_scale50+crf28", str(tmp_path)))
    assert r.found and r.payload == payload, r.to_dict()


# --- list decoding ----------------------------------------------------------------------------

def test_list_decoding_recovers_blocks_plain_viterbi_loses(payload):
    key = wm.DEFAULT_WATERMARK_CONFIG.key
    coded = wm.encode_bits(payload, key) * 2.0 - 1.0
    plain = listed = 0
    for seed in range(100):  # per-coded-bit SNR 0.65: plain Viterbi loses about half the blocks
        soft = coded * 0.65 + np.random.default_rng(seed).normal(0, 1, coded.size)
        plain += wm.decode_bits(soft, key)[0] == payload
        got, rank = wm.decode_bits_list(soft, key, 16)
        assert got in (None, payload)
        listed += got == payload
    assert listed >= plain + 15, (plain, listed)  # measured 48 -> 72 on 200 blocks
    noise = np.random.default_rng(99)
    assert all(wm.decode_bits_list(noise.normal(0, 1, coded.size), key, 16)[0] is None for _ in range(100))


def test_list_decoding_only_behind_a_strong_sync_peak(clip, marked, payload, monkeypatch):
    calls = []
    real = wm.decode_bits_list

    def recording(soft, key, list_size):
        calls.append(list_size)
        return real(soft, key, list_size)

    monkeypatch.setattr(wm, "decode_bits_list", recording)
    assert not wm.detect_frames(clip[:20]).found
    assert not calls  # unmarked content (sync z <= 5) never gets the list's extra CRC chances
    # A marked clip whose plain decode "fails": the list (its rank-0 path is the plain one) reads it.
    monkeypatch.setattr(wm, "decode_bits", lambda soft, key: (None, np.zeros(wm.PAYLOAD_BITS + wm.CRC_BITS, np.uint8)))
    r = wm.detect_frames(marked[:20])
    assert calls and calls[0] == wm.DEFAULT_WATERMARK_CONFIG.list_size
    assert r.found and r.payload == payload
    calls.clear()
    import dataclasses

    off = dataclasses.replace(wm.DEFAULT_WATERMARK_CONFIG, list_size=1)
    assert not wm.detect_frames(marked[:20], off).found and not calls
