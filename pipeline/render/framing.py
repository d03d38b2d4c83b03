"""Output framing: which part of the portrait the video shows, and at what size.

Default (no width/height given): the portrait's own size, capped at `max_side_px` (1024) on the long
side, with even dimensions (H.264 4:2:0 needs them). When the portrait is much larger than that, it is
not simply shrunk: the window is cropped around the head first, so the face keeps its detail, as long
as the output's short side still holds `context_faces` face heights (head, hair and shoulders); only
what is left is scaled down. The portrait is never upscaled by default.

Explicit width and height: the portrait is scaled to cover that size and cropped around the face
(never stretched), as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: The default output's long side cap, px.
DEFAULT_MAX_SIDE_PX = 1024
#: Face heights (landmark extent) the output's short side keeps around the face when cropping.
CONTEXT_FACES = 3.0


@dataclass(frozen=True)
class Framing:
    """Where the output comes from.

    width, height: output size, px (even for the default policy).
    crop_xywh: the window of the portrait shown, in portrait px (x, y, w, h; may be fractional).
    scale: output px per portrait px.
    note: one line saying the choice, for the node's report.
    """

    width: int
    height: int
    crop_xywh: tuple
    scale: float
    note: str


def _even(x: float) -> int:
    return max(2, int(math.floor(x / 2.0)) * 2)


def choose_framing(portrait_w: int, portrait_h: int, face_box_xyxy, width: int | None = None,
                   height: int | None = None, max_side_px: int = DEFAULT_MAX_SIDE_PX,
                   context_faces: float = CONTEXT_FACES) -> Framing:
    """The output size and the window of the portrait it shows.

    Args:
        portrait_w, portrait_h: the portrait's size, px.
        face_box_xyxy: the face's landmark box (x0, y0, x1, y1) in portrait px; the window centres on it.
        width, height: an explicit output size (both, or one: the other follows the portrait's aspect);
            None for the default policy.
        max_side_px: the default policy's long-side cap.
        context_faces: face heights the short side keeps when the default policy crops.
    """
    x0, y0, x1, y1 = (float(v) for v in face_box_xyxy)
    face_h = max(y1 - y0, x1 - x0, 1.0)
    centre = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0 - 0.1 * face_h])   # the head sits a bit above the face box
    if width is None and height is None:
        cap = min(1.0, max_side_px / max(portrait_w, portrait_h))
        out_w, out_h = _even(portrait_w * cap), _even(portrait_h * cap)
        # more detail than the whole-picture scale while the short side still holds the head's context
        scale = min(1.0, max(cap, min(out_w, out_h) / (context_faces * face_h)))
        if out_w == portrait_w and out_h == portrait_h:
            note = f"output {out_w}x{out_h}: the portrait's own size"
        elif cap >= 1.0:
            note = (f"output {out_w}x{out_h}: the portrait's size made even (was {portrait_w}x{portrait_h})")
        elif scale > cap + 1e-9:
            note = (f"output {out_w}x{out_h}: the {portrait_w}x{portrait_h} portrait cropped around the face to "
                    f"{out_w / scale:.0f}x{out_h / scale:.0f} and scaled by {scale:.2f}, so the face keeps its detail "
                    f"(long side capped at {max_side_px} px; set width and height for another size)")
        else:
            note = (f"output {out_w}x{out_h}: the {portrait_w}x{portrait_h} portrait scaled by {scale:.2f} (long side "
                    f"capped at {max_side_px} px; set width and height for another size)")
    else:
        if width is None:
            width = _even(portrait_w * height / portrait_h)
        if height is None:
            height = _even(portrait_h * width / portrait_w)
        out_w, out_h = int(width), int(height)
        scale = max(out_w / portrait_w, out_h / portrait_h)
        note = f"output {out_w}x{out_h} as set (the portrait scaled by {scale:.2f} to cover it, cropped around the face)"
    win_w, win_h = out_w / scale, out_h / scale
    cx = float(np.clip(centre[0] - win_w / 2.0, 0.0, max(0.0, portrait_w - win_w)))
    cy = float(np.clip(centre[1] - win_h / 2.0, 0.0, max(0.0, portrait_h - win_h)))
    if abs(scale - 1.0) < 1e-12:   # a plain crop keeps the portrait's pixels exactly
        cx, cy = float(math.floor(cx)), float(math.floor(cy))
    return Framing(width=out_w, height=out_h, crop_xywh=(cx, cy, win_w, win_h), scale=scale, note=note)


def apply_framing(frame: np.ndarray, framing: Framing) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 [height, width, 3] output-sized picture, 2x3 affine portrait px -> output px).

    Integer-aligned windows at scale 1 are plain crops (bit-exact pixels); otherwise the window is
    resampled with INTER_AREA when shrinking and bicubic when enlarging, only the window being read.
    """
    x, y, w, h = framing.crop_xywh
    s = framing.scale
    matrix = np.array([[s, 0.0, -x * s], [0.0, s, -y * s]])
    if abs(s - 1.0) < 1e-12 and float(x).is_integer() and float(y).is_integer():
        xi, yi = int(x), int(y)
        out = np.ascontiguousarray(frame[yi:yi + framing.height, xi:xi + framing.width])
        if out.shape[:2] == (framing.height, framing.width):
            return out, matrix
    # crop a little more than the window (whole pixels), resize it, then take the exact window
    ph, pw = frame.shape[:2]
    ix0, iy0 = max(0, int(math.floor(x)) - 1), max(0, int(math.floor(y)) - 1)
    ix1, iy1 = min(pw, int(math.ceil(x + w)) + 1), min(ph, int(math.ceil(y + h)) + 1)
    window = frame[iy0:iy1, ix0:ix1]
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    big_w, big_h = max(1, int(round((ix1 - ix0) * s))), max(1, int(round((iy1 - iy0) * s)))
    resized = cv2.resize(window, (big_w, big_h), interpolation=interp)
    sx, sy = big_w / (ix1 - ix0), big_h / (iy1 - iy0)
    # cv2.resize maps pixel centres: x_new + 0.5 = (x + 0.5) * s
    ox = int(round((x - ix0 + 0.5) * sx - 0.5))
    oy = int(round((y - iy0 + 0.5) * sy - 0.5))
    ox = int(np.clip(ox, 0, max(0, big_w - framing.width)))
    oy = int(np.clip(oy, 0, max(0, big_h - framing.height)))
    out = resized[oy:oy + framing.height, ox:ox + framing.width]
    if out.shape[:2] != (framing.height, framing.width):   # rounding at the border: pad by replication
        out = cv2.copyMakeBorder(out, 0, framing.height - out.shape[0], 0, framing.width - out.shape[1],
                                 cv2.BORDER_REPLICATE)
    matrix = np.array([[sx, 0.0, (0.5 - ix0) * sx - 0.5 - ox], [0.0, sy, (0.5 - iy0) * sy - 0.5 - oy]])
    return np.ascontiguousarray(out), matrix
