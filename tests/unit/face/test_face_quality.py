"""The reference quality report (pipeline/face/quality.py), on synthetic faces."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from talkinghead.pipeline.face.quality import (
                                               FAIL, PASS, WARN, QualityConfig, QualityReport, assess_quality, eye_aspect_ratio,
                                               )


def face_landmarks_68(cx: float, cy: float, size: float) -> np.ndarray:
    """A plausible frontal iBUG-68 layout for a face `size` px tall centred at (cx, cy)."""
    s = size / 2.0
    pts = []
    for t in np.linspace(math.pi, 0, 17):                       # 0-16 jaw, ear to ear via the chin
        pts.append((cx + 0.8 * s * math.cos(t), cy + 0.1 * s + 0.85 * s * math.sin(t)))
    for x in np.linspace(-0.6, -0.15, 5):                       # 17-21 right brow (image left)
        pts.append((cx + x * s, cy - 0.35 * s))
    for x in np.linspace(0.15, 0.6, 5):                         # 22-26 left brow
        pts.append((cx + x * s, cy - 0.35 * s))
    for y in np.linspace(-0.2, 0.2, 4):                         # 27-30 nose bridge
        pts.append((cx, cy + y * s))
    for x in np.linspace(-0.15, 0.15, 5):                       # 31-35 nostrils
        pts.append((cx + x * s, cy + 0.28 * s))
    for ex in (-0.35, 0.35):                                    # 36-41, 42-47 eyes (EAR 0.3)
        w = 0.2 * s
        pts += [(cx + ex * s - w / 2, cy - 0.18 * s), (cx + ex * s - w / 6, cy - 0.21 * s),
                (cx + ex * s + w / 6, cy - 0.21 * s), (cx + ex * s + w / 2, cy - 0.18 * s),
                (cx + ex * s + w / 6, cy - 0.15 * s), (cx + ex * s - w / 6, cy - 0.15 * s)]
    for t in np.linspace(math.pi, -math.pi, 13)[:-1]:           # 48-59 outer lips
        pts.append((cx + 0.3 * s * math.cos(t), cy + 0.5 * s - 0.1 * s * math.sin(t)))
    for t in np.linspace(math.pi, -math.pi, 9)[:-1]:            # 60-67 inner lips, almost closed
        pts.append((cx + 0.22 * s * math.cos(t), cy + 0.5 * s - 0.02 * s * math.sin(t)))
    return np.asarray(pts, dtype=np.float32)


def synthetic_face(size=512, face=300, skin=(190, 150, 130), background=(120, 120, 120), center=None):
    """(image uint8 [size, size, 3], box (4,), landmarks (68, 2)) of a drawn face."""
    cx, cy = center or (size / 2, size / 2)
    lm = face_landmarks_68(cx, cy, face)
    img = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(img)
    s = face / 2
    draw.ellipse([cx - 0.82 * s, cy - 0.75 * s, cx + 0.82 * s, cy + 0.97 * s], fill=skin)
    for eye in (lm[36:42], lm[42:48]):
        draw.polygon([tuple(p) for p in eye], fill=(40, 30, 30))
    draw.polygon([tuple(p) for p in lm[48:60]], fill=(150, 60, 60))
    draw.line([tuple(lm[60]), tuple(lm[64])], fill=(60, 20, 20), width=max(1, int(face / 100)))
    box = np.array([cx - 0.82 * s, cy - 0.75 * s, cx + 0.82 * s, cy + 0.97 * s], dtype=np.float32)
    return np.asarray(img), box, lm


def verdicts(report):
    return {c.factor: c.verdict for c in report.checks}


def test_good_face_all_pass():
    img, box, lm = synthetic_face()
    report = assess_quality(img, box, lm, 0.95, (2.0, -3.0, 1.0))
    assert report.ok
    assert set(verdicts(report).values()) == {PASS}, report.to_text()
    for factor in ("image size", "face size", "eye distance", "exposure", "clipping", "evenness of light",
                   "landmark confidence", "eyes visible", "mouth visible", "mouth open", "face inside frame",
                   "yaw", "pitch"):
        assert report.by_factor(factor) is not None, factor
    assert report.by_factor("eyes visible").value == pytest.approx(0.3, abs=0.02)


def test_dark_image_warns_exposure():
    img, box, lm = synthetic_face(skin=(40, 30, 25), background=(10, 10, 10))
    report = assess_quality(img, box, lm, 0.9, (0, 0, 0))
    assert verdicts(report)["exposure"] == WARN
    assert report.ok  # a warning never stops the run
    assert "dark" in report.by_factor("exposure").advice


def test_half_lit_face_warns_evenness():
    img, box, lm = synthetic_face()
    img = img.copy()
    mid = int(lm[27:31, 0].mean())
    img[:, mid:] = (img[:, mid:].astype(np.float32) * 0.2).astype(np.uint8)
    report = assess_quality(img, box, lm, 0.9, (0, 0, 0))
    check = report.by_factor("evenness of light")
    assert check.verdict == WARN and check.value > 2.0
    assert "right side" in check.advice


def test_tiny_face_fails():
    img, box, lm = synthetic_face(size=512, face=40)
    report = assess_quality(img, box, lm, 0.9, (0, 0, 0))
    assert verdicts(report)["face size"] == FAIL
    assert not report.ok
    assert report.failures and "too small" in report.failures[0]


def test_no_face_fails():
    img, _, _ = synthetic_face()
    report = assess_quality(img, None)
    assert not report.ok and verdicts(report)["face found"] == FAIL


def test_yaw_40_warns():
    img, box, lm = synthetic_face()
    report = assess_quality(img, box, lm, 0.9, (40.0, 0.0, 0.0))
    assert verdicts(report)["yaw"] == WARN and verdicts(report)["pitch"] == PASS
    assert report.ok


def test_clipped_face_warns():
    img, box, lm = synthetic_face(skin=(255, 255, 255))
    report = assess_quality(img, box, lm, 0.9, (0, 0, 0))
    assert verdicts(report)["clipping"] == WARN
    assert report.by_factor("clipping").value > 50


def test_closed_eyes_border_cut_low_confidence_small_image():
    img, box, lm = synthetic_face(size=300, face=200, center=(150, 60))
    lm = lm.copy()
    lm[[37, 38, 43, 44], 1] += 0.02 * 100   # lids nearly on the lower points
    lm[[40, 41, 46, 47], 1] -= 0.02 * 100
    report = assess_quality(img, box, lm, 0.3, None)
    v = verdicts(report)
    assert v["image size"] == WARN
    assert v["face inside frame"] == WARN
    assert v["landmark confidence"] == WARN
    assert v["eyes visible"] in (WARN,)
    assert "yaw" not in v  # no pose given: no row


def test_eye_aspect_ratio():
    eye = np.array([[0, 0], [1, -1], [2, -1], [3, 0], [2, 1], [1, 1]], dtype=np.float32)
    assert eye_aspect_ratio(eye) == pytest.approx(2 / 3)


def test_text_table_and_dict_round_trip():
    img, box, lm = synthetic_face()
    report = assess_quality(img, box, lm, None, (30.0, 0.0, 0.0), config=QualityConfig(yaw_warn_deg=20))
    text = report.to_text()
    assert text.splitlines()[0].startswith("Reference quality: OK")
    for group in ("[Input resolution]", "[Lighting]", "[Face visibility and occlusion]", "[Frontal pose]"):
        assert group in text
    assert "WARN" in text and "+30.0 deg" in text
    again = QualityReport.from_dict(report.to_dict())
    assert again.to_dict() == report.to_dict()
