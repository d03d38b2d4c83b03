"""An optional visible disclosure label ("AI-generated") drawn into every frame.

The label is rendered once per frame size as an RGBA overlay (white text on a translucent dark
box) and alpha-blended into each frame, so the per-frame cost is one blend of a small region.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from ..core.errors import InputError

POSITIONS = ("bottom_right", "bottom_left", "top_right", "top_left")


@dataclass(frozen=True)
class LabelConfig:
    """The visible label.

    text: what it says.
    position: one of POSITIONS.
    height_frac: text height as a share of the frame height (0.02-0.2).
    opacity: 0..1, of the whole label (box and text).
    """

    text: str = "AI-generated"
    position: str = "bottom_right"
    height_frac: float = 0.045
    opacity: float = 0.8

    def validate(self) -> "LabelConfig":
        if not self.text.strip():
            raise InputError("label_text", "is empty", "Write the label, e.g. 'AI-generated', or turn the label off.")
        if self.position not in POSITIONS:
            raise InputError("label_position", f"unknown position {self.position!r}", f"Use one of {POSITIONS}.")
        if not 0.02 <= float(self.height_frac) <= 0.2:
            raise InputError("label_size", f"{self.height_frac} is outside 0.02..0.2 of the frame height",
                             "Use e.g. 0.045.")
        if not 0.0 < float(self.opacity) <= 1.0:
            raise InputError("label_opacity", f"{self.opacity} is outside (0, 1]", "Use e.g. 0.8.")
        return self


def _overlay(width: int, height: int, config: LabelConfig) -> tuple[np.ndarray, int, int]:
    """(RGBA float32 [h, w, 4] with alpha 0..1, x0, y0) of the label for a frame size."""
    from PIL import Image, ImageDraw, ImageFont

    text_px = max(8, int(round(height * config.height_frac)))
    try:
        font = ImageFont.load_default(size=text_px)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), config.text, font=font)
    pad = max(2, text_px // 3)
    box_w, box_h = min(width, right - left + 2 * pad), min(height, bottom - top + 2 * pad)
    label = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 150))
    ImageDraw.Draw(label).text((pad - left, pad - top), config.text, font=font, fill=(255, 255, 255, 255))
    rgba = np.asarray(label, np.float32) / 255.0
    rgba[..., 3] *= float(config.opacity)
    margin = max(2, int(round(min(width, height) * 0.02)))
    x0 = margin if config.position.endswith("left") else max(0, width - box_w - margin)
    y0 = margin if config.position.startswith("top") else max(0, height - box_h - margin)
    return rgba, x0, y0


class LabelPainter:
    """Draws the label into uint8 RGB frames [H, W, 3]; the overlay is made once per frame size."""

    def __init__(self, config: LabelConfig):
        self.config = config.validate()
        self._cache: dict[tuple[int, int], tuple[np.ndarray, int, int]] = {}

    def paint(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            frame = np.clip(np.asarray(frame, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        frame = frame[..., :3]
        h, w = frame.shape[:2]
        if (w, h) not in self._cache:
            self._cache[(w, h)] = _overlay(w, h, self.config)
        rgba, x0, y0 = self._cache[(w, h)]
        out = frame.copy()
        region = out[y0:y0 + rgba.shape[0], x0:x0 + rgba.shape[1]].astype(np.float32)
        alpha = rgba[: region.shape[0], : region.shape[1], 3:4]
        blended = region * (1.0 - alpha) + rgba[: region.shape[0], : region.shape[1], :3] * 255.0 * alpha
        out[y0:y0 + region.shape[0], x0:x0 + region.shape[1]] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return out

    def paint_stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in frames:
            yield self.paint(frame)
