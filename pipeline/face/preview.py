"""A picture of what the reference encoder found: box, landmarks, head pose axes and a legend.

Drawn on a copy of the image scaled so its longer side is at most `max_side_px` (1024 by default;
small images are enlarged to `min_side_px` so the legend stays readable):

* the face box (orange),
* the dense landmarks (small pale dots) and the 68 iBUG landmarks (larger cyan dots),
* the head pose as 3D axes drawn at the nose tip (landmark 30, else the box centre) in orthographic
  projection: X red (towards the subject's left = image right at zero pose), Y green (up), Z blue
  (out of the face, towards the camera: it shows where the nose points),
* a legend band at the top: face index of count, yaw/pitch/roll, and optionally the quality
  summary and the landmark backend.

Pose convention drawn here (the one `pose_axes_2d` implements): yaw > 0 turns the nose towards
the image's right, pitch > 0 raises the nose, roll > 0 tilts the head clockwise in the image;
the rotation applied is Rz(roll) * Ry(yaw) * Rx(pitch) in camera coordinates (x right, y down).
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..core.image_input import to_rgb_uint8
from ..core.plot_style import load_font

BOX_COLOR = (255, 150, 40)
LANDMARK_COLOR = (40, 230, 230)
DENSE_COLOR = (235, 235, 180)
AXIS_COLORS = ((235, 60, 60), (60, 220, 60), (70, 120, 255))  # X, Y, Z
LEGEND_BACKGROUND = (0, 0, 0, 160)
TEXT_COLOR = (240, 240, 240)


def pose_axes_2d(yaw_deg: float, pitch_deg: float, roll_deg: float, length: float) -> np.ndarray:
    """Image-plane directions of the head's X, Y, Z axes, [3, 2] px (x right, y down).

    Orthographic projection of R = Rz(roll) Ry(yaw) Rx(pitch) applied to the head axes at zero
    pose: X = (1, 0, 0) (image right), Y = (0, -1, 0) (up), Z = (0, 0, -1) (towards the camera).
    """
    y, p, r = (math.radians(v) for v in (yaw_deg, pitch_deg, roll_deg))
    # Signs chosen so yaw > 0 moves the nose right, pitch > 0 moves it up (y down in images).
    ry = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), math.sin(p)], [0, -math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    rotation = rz @ ry @ rx
    axes = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]]).T  # columns X, Y, Z
    rotated = rotation @ axes
    return (rotated[:2].T * length).astype(np.float64)


def _pose_tuple(pose: Any) -> Optional[tuple[float, float, float]]:
    if pose is None:
        return None
    if hasattr(pose, "yaw_deg"):
        return float(pose.yaw_deg), float(pose.pitch_deg), float(getattr(pose, "roll_deg", 0.0))
    values = [float(v) for v in pose] + [0.0, 0.0, 0.0]
    return values[0], values[1], values[2]


def render_reference_preview(
    image_rgb: np.ndarray,
    face_box: Optional[Sequence[float]] = None,
    landmarks_68: Optional[np.ndarray] = None,
    landmarks_dense: Optional[np.ndarray] = None,
    pose: Any = None,
    face_index: int = 0,
    face_count: int = 1,
    quality: Any = None,
    backend: Optional[str] = None,
    max_side_px: int = 1024,
    min_side_px: int = 512,
) -> np.ndarray:
    """Draws the reference annotations; returns uint8 RGB [h, w, 3] with max(h, w) <= max_side_px.

    Args:
        image_rgb: the source image (anything image_input accepts), source pixel coordinates.
        face_box: (x0, y0, x1, y1) px, or None.
        landmarks_68: [68, 2] px, or None.
        landmarks_dense: [N, 2] px, or None.
        pose: (yaw, pitch, roll) degrees or an object with yaw_deg/pitch_deg/roll_deg, or None.
        face_index, face_count: shown as "face 1 of 2" (index is 0-based, shown 1-based).
        quality: a face_quality.QualityReport for a one-line summary, or None.
        backend: landmark backend name for the legend, or None.
        max_side_px: the longer side of the output is at most this.
        min_side_px: smaller images are enlarged to this longer side (never beyond max_side_px).
    """
    rgb = to_rgb_uint8(image_rgb)
    h, w = rgb.shape[:2]
    long_side = max(h, w)
    scale = 1.0
    if long_side > max_side_px:
        scale = max_side_px / long_side
    elif long_side < min(min_side_px, max_side_px):
        scale = min(min_side_px, max_side_px) / long_side
    out_w, out_h = max(1, min(max_side_px, round(w * scale))), max(1, min(max_side_px, round(h * scale)))
    sx, sy = out_w / w, out_h / h
    canvas = Image.fromarray(rgb)
    if (out_w, out_h) != (w, h):
        canvas = canvas.resize((out_w, out_h), Image.LANCZOS if scale < 1 else Image.NEAREST)
    canvas = canvas.convert("RGBA")
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    unit = max(1.0, max(out_w, out_h) / 512.0)

    def pt(xy):
        return float(xy[0]) * sx, float(xy[1]) * sy

    if landmarks_dense is not None:
        r = 0.8 * unit
        for p in np.asarray(landmarks_dense, dtype=np.float64).reshape(-1, 2):
            x, y = pt(p)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=DENSE_COLOR + (200,))
    if face_box is not None:
        x0, y0, x1, y1 = [float(v) for v in np.asarray(face_box).reshape(4)]
        draw.rectangle([x0 * sx, y0 * sy, x1 * sx, y1 * sy], outline=BOX_COLOR + (255,), width=max(2, int(2 * unit)))
    if landmarks_68 is not None:
        r = 1.8 * unit
        for p in np.asarray(landmarks_68, dtype=np.float64).reshape(-1, 2):
            x, y = pt(p)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=LANDMARK_COLOR + (255,))

    angles = _pose_tuple(pose)
    if angles is not None:
        if landmarks_68 is not None:
            origin = pt(np.asarray(landmarks_68).reshape(-1, 2)[30])
        elif face_box is not None:
            x0, y0, x1, y1 = [float(v) for v in np.asarray(face_box).reshape(4)]
            origin = pt(((x0 + x1) / 2, (y0 + y1) / 2))
        else:
            origin = (out_w / 2, out_h / 2)
        length = 0.5 * ((float(face_box[3]) - float(face_box[1])) * sy if face_box is not None else min(out_w, out_h) / 2)
        for direction, color in zip(pose_axes_2d(*angles, length), AXIS_COLORS):
            end = (origin[0] + direction[0], origin[1] + direction[1])
            draw.line([origin, end], fill=color + (255,), width=max(2, int(3 * unit)))
            r = 2.5 * unit
            draw.ellipse([end[0] - r, end[1] - r, end[0] + r, end[1] + r], fill=color + (255,))

    lines = [f"face {int(face_index) + 1} of {int(face_count)}"]
    if angles is not None:
        lines[0] += f"   yaw {angles[0]:+.1f}   pitch {angles[1]:+.1f}   roll {angles[2]:+.1f} deg"
    extra = []
    if quality is not None:
        counts = quality.counts()
        extra.append(f"quality {'OK' if quality.ok else 'FAIL'}: {counts['fail']} fail, {counts['warn']} warn")
    if backend:
        extra.append(f"landmarks: {backend}")
    if extra:
        lines.append("   ".join(extra))
    font_size = max(10, int(13 * unit))
    font = load_font(font_size)
    band_h = int(len(lines) * (font_size + 4) + 6)
    draw.rectangle([0, 0, out_w, band_h], fill=LEGEND_BACKGROUND)
    for i, line in enumerate(lines):
        draw.text((6, 4 + i * (font_size + 4)), line, fill=TEXT_COLOR + (255,), font=font)

    return np.asarray(Image.alpha_composite(canvas, overlay).convert("RGB"))


def render_reference_preview_from(reference: Any, image_rgb: Optional[np.ndarray] = None, **kwargs) -> np.ndarray:
    """render_reference_preview for a reference.Reference (its frame unless `image_rgb` is given)."""
    image = image_rgb if image_rgb is not None else reference.frame
    if image is None:
        image = np.full((reference.source_height, reference.source_width, 3), 96, np.uint8)
    dense = reference.landmarks_xy if reference.landmark_layout != "ibug_68" else None
    return render_reference_preview(
        image, face_box=reference.face_box_xyxy, landmarks_68=reference.landmarks_68, landmarks_dense=dense,
        pose=(reference.yaw_deg, reference.pitch_deg, reference.roll_deg), face_index=reference.face_index,
        face_count=reference.face_count, quality=reference.quality, backend=reference.landmark_backend, **kwargs,
    )
