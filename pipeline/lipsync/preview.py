"""A timeline picture of a VisemeTrack: what users see of the alignment inside ComfyUI.

From top to bottom: a time axis, the waveform (min/max envelope per pixel column), the words, the
phones, a strip coloured by the heaviest viseme of each video frame, the jaw-open curve (with the
lip-rounding curve and a red mark wherever the lips are fully closed), and a legend of the viseme
colours. Dark theme close to ComfyUI's.

Long tracks: the picture shows a window, by default the first `max_duration_s` (30 s) of the
track (the header says which part of how much); pass start_s/end_s for another window. Labels
that do not fit their box, or would overlap the previous label, are left out, so a long window
thins out instead of turning into a smear.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from ..core.plot_style import BACKGROUND, DIM_TEXT, GRID, PANEL, TEXT, load_font, format_time, time_step
from .track import MOUTH_PARAMS, SILENCE, VISEMES, VisemeTrack

WAVE = (110, 160, 230)
JAW = (90, 220, 200)
ROUND = (190, 140, 240)
CLOSURE = (240, 80, 80)

#: One colour per viseme (same order as VISEMES); lip contacts warm, vowels cool, silence grey.
VISEME_COLORS: dict[str, tuple[int, int, int]] = {
    "sil": (85, 85, 85),
    "PP": (230, 60, 60),
    "FF": (245, 140, 40),
    "TH": (240, 200, 60),
    "DD": (170, 120, 80),
    "kk": (140, 110, 60),
    "CH": (220, 110, 170),
    "SS": (200, 170, 120),
    "nn": (120, 160, 90),
    "RR": (170, 90, 200),
    "aa": (60, 140, 240),
    "E": (70, 200, 230),
    "ih": (120, 220, 150),
    "oh": (90, 90, 220),
    "ou": (150, 110, 250),
}


def _text_width(draw: ImageDraw.ImageDraw, text: str, font) -> float:
    return draw.textlength(text, font=font)





def _mono(samples: np.ndarray) -> np.ndarray:
    a = np.asarray(samples, dtype=np.float32)
    if a.ndim == 3:  # ComfyUI AUDIO waveform [B,C,T]: the first item
        a = a[0]
    if a.ndim == 2:
        a = a.mean(axis=0) if a.shape[0] <= a.shape[1] else a.mean(axis=1)
    return np.nan_to_num(a.reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)


def render_timeline(
    track: VisemeTrack,
    samples: Optional[np.ndarray],
    sample_rate: Optional[int],
    *,
    width_px: int = 1280,
    height_px: int = 360,
    start_s: float = 0.0,
    end_s: Optional[float] = None,
    max_duration_s: Optional[float] = 30.0,
) -> np.ndarray:
    """The timeline of `track` as uint8 RGB [height_px, width_px, 3].

    Args:
        track: the viseme track to draw.
        samples: the audio (mono [T], or [C,T] / [B,C,T], mixed to mono), or None for no waveform.
        sample_rate: samples per second of `samples`.
        width_px, height_px: picture size (at least 200 x 160).
        start_s, end_s: the window to show; end_s None: start_s + max_duration_s, at most the
            track's end.
        max_duration_s: longest window shown when end_s is None (None: the whole track).
    """
    width_px, height_px = int(width_px), int(height_px)
    if width_px < 200 or height_px < 160:
        raise ValueError(f"render_timeline: the picture must be at least 200 x 160 pixels, got {width_px} x {height_px}")
    total = max(float(track.duration_s), 1e-3)
    start_s = min(max(0.0, float(start_s)), total)
    if end_s is None:
        end_s = total if max_duration_s is None else min(total, start_s + float(max_duration_s))
    end_s = min(float(end_s), total)
    if end_s <= start_s:
        start_s, end_s = max(0.0, end_s - 1.0), max(end_s, 1e-3)
        if end_s <= start_s:
            end_s = start_s + 1.0
    span = end_s - start_s

    image = Image.new("RGB", (width_px, height_px), BACKGROUND)
    draw = ImageDraw.Draw(image)
    small, label = load_font(11), load_font(12)
    margin = 8
    x0, x1 = margin, width_px - margin
    plot_w = x1 - x0

    def x_of(t: np.ndarray | float):
        return x0 + (np.asarray(t, dtype=np.float64) - start_s) / span * plot_w

    # Vertical layout, scaled with the height.
    header_h = 18
    legend_h = 34
    rest = height_px - header_h - legend_h - 2 * margin
    wave_h = int(rest * 0.30)
    words_h = max(16, int(rest * 0.09))
    phones_h = max(14, int(rest * 0.08))
    strip_h = max(10, int(rest * 0.07))
    jaw_h = rest - wave_h - words_h - phones_h - strip_h - 8
    y = margin
    header_y = y
    y += header_h
    wave_y = (y, y + wave_h)
    y += wave_h + 2
    words_y = (y, y + words_h)
    y += words_h + 2
    phones_y = (y, y + phones_h)
    y += phones_h + 2
    strip_y = (y, y + strip_h)
    y += strip_h + 2
    jaw_y = (y, y + jaw_h)
    legend_y = height_px - margin - legend_h

    # Header: what this is and which window.
    part = f"{start_s:.2f}-{end_s:.2f} s of {total:.2f} s" if (start_s > 0 or end_s < total - 1e-6) else f"{total:.2f} s"
    head = f"VisemeTrack  {part}  |  {track.fps:g} fps, {track.num_frames} frames  |  {track.method or 'unknown method'}"
    draw.text((x0, header_y), head, fill=TEXT, font=label)

    # Panels and time grid.
    for top, bottom in (wave_y, words_y, phones_y, strip_y, jaw_y):
        draw.rectangle([x0, top, x1, bottom], fill=PANEL)
    step = time_step(span, plot_w)
    tick = math.ceil(start_s / step - 1e-9) * step
    while tick <= end_s + 1e-9:
        tx = float(x_of(tick))
        draw.line([(tx, wave_y[0]), (tx, jaw_y[1])], fill=GRID)
        text = format_time(tick, step)
        tw = _text_width(draw, text, small)
        if tx + 2 + tw < x1:
            draw.text((tx + 2, jaw_y[1] - 13), text, fill=DIM_TEXT, font=small)
        tick += step

    # Waveform: min/max envelope per pixel column.
    mid = (wave_y[0] + wave_y[1]) / 2
    half = (wave_y[1] - wave_y[0]) / 2 - 2
    draw.line([(x0, mid), (x1, mid)], fill=GRID)
    if samples is not None and sample_rate:
        mono = _mono(samples)
        a = int(max(0, math.floor(start_s * sample_rate)))
        b = int(min(len(mono), math.ceil(end_s * sample_rate)))
        if b - a >= 2:
            seg = mono[a:b]
            peak = float(np.max(np.abs(seg))) or 1.0
            cols = min(plot_w, b - a)
            edges = np.linspace(0, b - a, cols + 1).astype(np.int64)[:-1]
            lo = np.minimum.reduceat(seg, edges) / peak
            hi = np.maximum.reduceat(seg, edges) / peak
            xs = x0 + (np.arange(cols) + 0.5) * plot_w / cols
            for x, l_, h_ in zip(xs.tolist(), lo.tolist(), hi.tolist()):
                draw.line([(x, mid - h_ * half), (x, mid - l_ * half)], fill=WAVE)
    else:
        draw.text((x0 + 4, wave_y[0] + 2), "no audio", fill=DIM_TEXT, font=small)

    # Words and phones: boxes with labels that fit.
    def boxes(items, ys, font, fill_for, text_for):
        last_label_end = -1e9
        for item in items:
            s, e = float(item.start_s), float(item.end_s)
            if e <= start_s or s >= end_s:
                continue
            bx0, bx1 = float(x_of(max(s, start_s))), float(x_of(min(e, end_s)))
            fill = fill_for(item)
            if fill is not None:
                draw.rectangle([bx0, ys[0] + 1, max(bx0, bx1 - 1), ys[1] - 1], fill=fill)
            if bx1 - bx0 >= 3:
                draw.line([(bx0, ys[0] + 1), (bx0, ys[1] - 1)], fill=GRID)
            text = text_for(item)
            if not text:
                continue
            tw = _text_width(draw, text, font)
            if tw + 2 <= bx1 - bx0 and bx0 >= last_label_end:
                draw.text(((bx0 + bx1 - tw) / 2, ys[0] + (ys[1] - ys[0] - 12) / 2), text, fill=TEXT, font=font)
                last_label_end = (bx0 + bx1 + tw) / 2 + 2

    boxes(track.words, words_y, label, lambda w: (58, 70, 88), lambda w: w.word)
    boxes(track.phones, phones_y, small,
          lambda p: None if p.phoneme == SILENCE else (52, 52, 60),
          lambda p: "" if p.phoneme == SILENCE else p.phoneme)

    # Viseme strip and mouth curves, sampled at pixel-column centres.
    if track.num_frames:
        col_t = start_s + (np.arange(plot_w) + 0.5) / plot_w * span
        frame = np.clip(np.floor(col_t * track.fps).astype(np.int64), 0, track.num_frames - 1)
        dominant = np.argmax(track.viseme_weights, axis=1)[frame]
        colors = np.array([VISEME_COLORS[v] for v in VISEMES], np.uint8)[dominant]
        strip = np.repeat(colors[None, :, :], strip_y[1] - strip_y[0], axis=0)
        image.paste(Image.fromarray(strip, "RGB"), (x0, strip_y[0]))
        draw = ImageDraw.Draw(image)

        jaw_top, jaw_bottom = jaw_y[0] + 3, jaw_y[1] - 15
        xs = x0 + np.arange(plot_w) + 0.5

        def curve(values: np.ndarray, color, width: int) -> None:
            ys = jaw_bottom - np.clip(values, 0, 1) * (jaw_bottom - jaw_top)
            draw.line(list(zip(xs.tolist(), ys.tolist())), fill=color, width=width)

        # Per column: the frame's value (a column spanning many frames takes their maximum).
        frames_per_col = span * track.fps / plot_w
        if frames_per_col > 1.5:
            edges = np.clip(np.floor((start_s + np.arange(plot_w) * span / plot_w) * track.fps).astype(np.int64),
                            0, track.num_frames - 1)
            def per_col(col: np.ndarray) -> np.ndarray:
                return np.maximum.reduceat(col, edges)
        else:
            def per_col(col: np.ndarray) -> np.ndarray:
                return col[frame]
        jaw = per_col(track.mouth[:, MOUTH_PARAMS.index("jaw_open")])
        rnd = per_col(track.mouth[:, MOUTH_PARAMS.index("lip_round")])
        closed = per_col(track.mouth[:, MOUTH_PARAMS.index("lip_closure")]) >= 0.9
        draw.line([(x0, jaw_bottom), (x1, jaw_bottom)], fill=GRID)
        curve(rnd, ROUND, 1)
        curve(jaw, JAW, 2)
        for x in xs[closed].tolist():
            draw.line([(x, jaw_bottom + 1), (x, jaw_bottom + 5)], fill=CLOSURE)
        draw.text((x0 + 4, jaw_y[0] + 2), "jaw open", fill=JAW, font=small)
        draw.text((x0 + 4 + _text_width(draw, "jaw open  ", small), jaw_y[0] + 2), "lip round", fill=ROUND, font=small)
        draw.text((x0 + 4 + _text_width(draw, "jaw open  lip round  ", small), jaw_y[0] + 2),
                  "lips closed", fill=CLOSURE, font=small)

    # Legend: the viseme colours.
    per_row = 8
    cell = plot_w / per_row
    for i, name in enumerate(VISEMES):
        row, col = divmod(i, per_row)
        lx = x0 + col * cell
        ly = legend_y + row * 17
        draw.rectangle([lx, ly + 2, lx + 12, ly + 13], fill=VISEME_COLORS[name])
        draw.text((lx + 16, ly + 1), name, fill=TEXT, font=small)
    return np.asarray(image, dtype=np.uint8)
