"""A picture of an ArtifactReport: the numbers over time, for the node preview and the CLI's --plot.

From top to bottom: a header with the summary numbers, then four panels sharing the time axis:
the mouth opening against the speech envelope (shifted by the measured lag, so a good lip-sync
overlays them), the eye aperture with blinks marked, the identity similarity, and the still-region
flicker. Broken frames are red lines across all panels. Same dark theme as the timeline (core/plot_style.py).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from ..core.plot_style import BACKGROUND, DIM_TEXT, GRID, PANEL, TEXT, load_font, format_time, time_step
from .artifact_report import ArtifactConfig, ArtifactReport, blink_mask

MOUTH = (90, 220, 200)
ENVELOPE = (110, 160, 230)
EYE = (240, 200, 60)
BLINK = (250, 140, 40)
IDENTITY = (190, 140, 240)
FLICKER = (150, 220, 110)
BROKEN = (240, 70, 70)


def _scaled(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return (np.asarray(values, np.float64) - lo) / (hi - lo) if hi > lo else np.zeros(len(values))


def render_artifact_plot(report: ArtifactReport, *, width_px: int = 1280, height_px: int = 480,
                         config: ArtifactConfig = ArtifactConfig()) -> np.ndarray:
    """The report drawn as uint8 RGB [height_px, width_px, 3] (at least 320 x 240)."""
    width_px, height_px = int(width_px), int(height_px)
    if width_px < 320 or height_px < 240:
        raise ValueError("render_artifact_plot: the picture must be at least 320 x 240 pixels, "
                         f"got {width_px} x {height_px}")
    image = Image.new("RGB", (width_px, height_px), BACKGROUND)
    draw = ImageDraw.Draw(image)
    small, label = load_font(11), load_font(12)
    margin = 8
    x0, x1 = margin, width_px - margin
    plot_w = x1 - x0
    n = max(int(report.num_frames), 1)
    span = max(n / report.fps, 1e-3)

    def f(value, fmt):
        return "n/a" if value is None or not math.isfinite(value) else format(value, fmt)

    head = (f"{report.num_frames} frames, {report.fps:g} fps, {report.duration_s:.2f} s  |  lag "
            f"{f(report.lip_sync_lag_ms, '+.0f')} ms (r {f(report.lag_correlation, '.2f')})  |  mouth vs track r "
            f"{f(report.mouth_track_correlation, '.2f')}  |  identity drift "
            f"{f(report.identity_drift_per_min, '+.3f')}/min, drop {f(report.identity_max_drop, '.3f')}  |  "
            f"flicker {f(report.flicker_still_mean, '.2f')}  |  {len(report.broken_frames)} broken")
    draw.text((x0, margin), head, fill=TEXT, font=label)

    top = margin + 20
    axis_h = 16
    gap = 4
    panel_h = (height_px - top - margin - axis_h - 3 * gap) // 4
    panels = [(top + k * (panel_h + gap), top + k * (panel_h + gap) + panel_h) for k in range(4)]
    for y_top, y_bottom in panels:
        draw.rectangle([x0, y_top, x1, y_bottom], fill=PANEL)

    def x_of(t):
        return x0 + np.asarray(t, np.float64) / span * plot_w

    # time grid
    step = time_step(span, plot_w)
    tick = 0.0
    while tick <= span + 1e-9:
        tx = float(x_of(tick))
        draw.line([(tx, panels[0][0]), (tx, panels[-1][1])], fill=GRID)
        text = format_time(tick, step)
        if tx + 2 + draw.textlength(text, font=small) < x1:
            draw.text((tx + 2, panels[-1][1] + 2), text, fill=DIM_TEXT, font=small)
        tick += step

    times = (np.arange(report.num_frames) + 0.5) / report.fps

    def curve(panel, values, lo, hi, color, width=2, shift_s=0.0):
        y_top, y_bottom = panel[0] + 14, panel[1] - 3
        v = _scaled(values, lo, hi)
        xs = x_of(times + shift_s)
        ys = y_bottom - np.clip(v, 0, 1) * (y_bottom - y_top)
        run: list[tuple[float, float]] = []
        for x, y, ok in zip(xs.tolist(), ys.tolist(), np.isfinite(v).tolist()):
            if ok and x0 <= x <= x1:
                run.append((x, y))
                continue
            if len(run) > 1:
                draw.line(run, fill=color, width=width)
            run = []
        if len(run) > 1:
            draw.line(run, fill=color, width=width)
        elif len(run) == 1:
            draw.point(run, fill=color)

    def finite_range(values, floor=None, ceil=None):
        v = np.asarray(values, np.float64)
        v = v[np.isfinite(v)]
        lo = float(v.min()) if v.size else 0.0
        hi = float(v.max()) if v.size else 1.0
        if floor is not None:
            lo = min(lo, floor)
        if ceil is not None:
            hi = max(hi, ceil)
        return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)

    # 1: mouth opening vs speech envelope shifted by the lag
    lag_s = report.lip_sync_lag_ms / 1000.0 if math.isfinite(report.lip_sync_lag_ms) else 0.0
    curve(panels[0], report.speech_envelope, 0.0, 1.0, ENVELOPE, 1, shift_s=lag_s)
    lo, hi = finite_range(report.mouth_opening, floor=0.0)
    curve(panels[0], report.mouth_opening, lo, hi, MOUTH, 2)
    draw.text((x0 + 4, panels[0][0] + 1), "mouth opening (inner-lip gap / eye distance)", fill=MOUTH, font=small)
    draw.text((x0 + 4 + draw.textlength("mouth opening (inner-lip gap / eye distance)   ", font=small),
               panels[0][0] + 1), f"speech envelope, shifted {lag_s * 1000:+.0f} ms", fill=ENVELOPE, font=small)

    # 2: eye aperture, blinks
    lo, hi = finite_range(report.eye_aperture, floor=0.0)
    curve(panels[1], report.eye_aperture, lo, hi, EYE, 2)
    for t in times[blink_mask(report.eye_aperture, config)].tolist():
        xb = float(x_of(t))
        draw.line([(xb, panels[1][1] - 8), (xb, panels[1][1] - 1)], fill=BLINK, width=2)
    draw.text((x0 + 4, panels[1][0] + 1), f"eye aperture (EAR)   blinks: {report.blink_count}", fill=EYE, font=small)

    # 3: identity similarity (0..1, zoomed to its range but never less than 0.2 wide)
    ident = np.asarray(report.identity_similarity, np.float64)
    lo = float(np.nanmin(ident)) if np.isfinite(ident).any() else 0.0
    lo = max(0.0, min(lo - 0.02, 0.8))
    curve(panels[2], ident, lo, 1.0, IDENTITY, 2)
    draw.text((x0 + 4, panels[2][0] + 1), f"identity similarity to the {report.reference_kind.replace('_', ' ')} "
              f"({lo:.2f}..1)", fill=IDENTITY, font=small)

    # 4: flicker (0..max(2, peak) grey levels)
    flick = np.asarray(report.flicker, np.float64)
    hi = max(2.0, float(np.nanmax(flick)) if np.isfinite(flick).any() else 2.0)
    curve(panels[3], flick, 0.0, hi, FLICKER, 2)
    draw.text((x0 + 4, panels[3][0] + 1), f"still-region flicker (grey levels, 0..{hi:.1f})", fill=FLICKER, font=small)

    # broken frames across all panels
    for broken in report.broken_frames:
        xb = float(x_of((broken.frame + 0.5) / report.fps))
        draw.line([(xb, panels[0][0]), (xb, panels[-1][1])], fill=BROKEN, width=1)
    if report.broken_frames:
        text = f"{len(report.broken_frames)} broken frame(s)"
        draw.text((x1 - 4 - draw.textlength(text, font=small), panels[0][0] + 1), text, fill=BROKEN, font=small)
    return np.asarray(image, dtype=np.uint8)


__all__ = ["render_artifact_plot"]
