"""The annotated reference picture (pipeline/face/preview.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from talkinghead.pipeline.face.quality import QualityReport
from talkinghead.pipeline.face.reference import Reference
from talkinghead.pipeline.face.preview import (
                                               pose_axes_2d, render_reference_preview, render_reference_preview_from,
                                               )

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def simple_landmarks(cx, cy, s):
    """68 points on a circle, with point 30 (nose tip) at the centre."""
    t = np.linspace(0, 2 * math.pi, 68, endpoint=False)
    pts = np.stack([cx + s * np.cos(t), cy + s * np.sin(t)], axis=1).astype(np.float32)
    pts[30] = (cx, cy)
    return pts


def test_drawing_changes_pixels_inside_the_box():
    image = np.full((600, 800, 3), 100, np.uint8)
    box = np.array([300, 200, 500, 450], np.float32)
    lm = simple_landmarks(400, 320, 80)
    out = render_reference_preview(image, box, lm, landmarks_dense=lm + 5, pose=(10, -5, 3), face_index=1,
                                   face_count=2)
    assert out.shape == (600, 800, 3) and out.dtype == np.uint8
    inside = out[205:445, 305:495]
    assert (inside != 100).any(axis=2).mean() > 0.005          # landmarks and axes drawn inside
    assert (out[200:203, 300:500] != 100).any()                 # the box edge
    assert (out[:20, :200] != 100).any()                         # the legend band
    assert (out[590:, 700:] == 100).all()                        # far corner untouched
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    Image.fromarray(out).save(ARTIFACTS / "reference_preview.png")


@pytest.mark.parametrize("shape", [(3000, 2000, 3), (200, 150, 3), (1024, 1024, 3)])
def test_size_is_bounded(shape):
    h, w = shape[:2]
    image = np.zeros(shape, np.uint8)
    box = [w * 0.3, h * 0.3, w * 0.7, h * 0.7]
    out = render_reference_preview(image, box, simple_landmarks(w / 2, h / 2, w / 10), pose=(0, 0, 0))
    assert max(out.shape[:2]) <= 1024
    assert abs(out.shape[0] / out.shape[1] - h / w) < 0.01       # aspect ratio kept
    if max(h, w) < 512:
        assert max(out.shape[:2]) == 512                         # small images enlarged for the legend


def test_pose_axes_convention():
    ax = pose_axes_2d(0, 0, 0, 10)
    np.testing.assert_allclose(ax, [[10, 0], [0, -10], [0, 0]], atol=1e-9)
    assert pose_axes_2d(30, 0, 0, 10)[2][0] > 0      # yaw > 0: nose towards image right
    assert pose_axes_2d(0, 30, 0, 10)[2][1] < 0      # pitch > 0: nose up
    assert pose_axes_2d(0, 0, 30, 10)[0][1] > 0      # roll > 0: X axis turns clockwise (y down)


def test_from_reference_without_frame():
    lm = simple_landmarks(32, 24, 10)
    ref = Reference(
        source_width=64, source_height=48, input_kind="8-bit RGB 64x48", face_index=0, face_count=1,
        face_box_xyxy=[10, 5, 54, 44], face_score=0.9, landmarks_xy=lm, landmarks_68=lm,
        landmark_layout="ibug_68", landmark_confidence=0.9, landmark_backend="test", yaw_deg=0, pitch_deg=0,
        roll_deg=0, crop_matrix=np.eye(2, 3), crop_inverse=np.eye(2, 3), crop_size=64, quality=QualityReport(),
    )
    out = render_reference_preview_from(ref)
    assert out.shape == (384, 512, 3)
