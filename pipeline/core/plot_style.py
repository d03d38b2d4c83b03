"""The look shared by the pack's preview pictures (timeline, reference preview, artifact plot): a dark
theme close to ComfyUI's, a font that scales, and time-axis ticks."""

from __future__ import annotations

import math

from PIL import ImageFont

BACKGROUND = (32, 32, 32)
PANEL = (42, 42, 42)
GRID = (60, 60, 60)
TEXT = (220, 220, 220)
DIM_TEXT = (150, 150, 150)


def load_font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at `size` px (a fixed bitmap font on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def time_step(span_s: float, width_px: int, min_px: int = 90) -> float:
    """A round tick spacing in seconds that puts ticks at least `min_px` apart over `width_px`."""
    raw = span_s * min_px / max(width_px, 1)
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if step >= raw:
            return step
    return 3600 * math.ceil(raw / 3600)


def format_time(t: float, step: float) -> str:
    """A tick label for `t` seconds, as precise as the tick spacing `step` needs."""
    if step >= 60:
        return f"{int(t // 60)}:{int(t % 60):02d}"
    if step >= 1:
        return f"{t:.0f}s"
    if step >= 0.1:
        return f"{t:.1f}s"
    return f"{t:.2f}s"
