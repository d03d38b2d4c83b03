"""The inside of the mouth, synthesised where the warped lips part.

A warp can only stretch the reference's pixels; where the lips open it would smear the lip edge.
`paint_mouth_interior` covers the opening (the polygon of the moved inner-lip landmarks) with a
dark cavity, an upper-teeth band hanging from the upper lip (its height grows with the opening,
up to a real tooth's proportion of the mouth width), and on wide openings a hint of lower teeth
and tongue. Colours come from the reference: the cavity is the lip colour darkened, the teeth an
off-white scaled to the face's brightness, so the inside is lit like the face. The edge is
feathered by ~1 px; the lips outside the polygon are not touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class InteriorConfig:
    """Proportions (in mouth widths, MW = corner-to-corner distance) and colour factors."""

    teeth_height_per_gap: float = 0.5        # upper teeth shown per px of opening
    teeth_max_height_mw: float = 0.15          # a real upper incisor is ~1/5 of the mouth's width
    teeth_width_fraction: float = 0.80         # of the opening's width
    lower_teeth_from_gap_mw: float = 0.18      # lower teeth appear once the opening exceeds this
    lower_teeth_max_height_mw: float = 0.05
    tongue_from_gap_mw: float = 0.22
    cavity_darkness: float = 0.3              # cavity = lip colour * this (back of the mouth)
    teeth_rgb: tuple = (236.0, 228.0, 214.0)   # off-white, before matching the face's brightness
    feather_px_per_mw: float = 0.025           # edge softness
    fade_in_gap_px: float = 1.5                # the interior fades in over this much opening


@dataclass(frozen=True)
class MouthColours:
    """float32 RGB 0..255 colours measured on the reference."""

    cavity: np.ndarray
    teeth: np.ndarray
    tongue: np.ndarray
    lip: np.ndarray


def measure_colours(frame: np.ndarray, lip_polygon_xy: np.ndarray, skin_polygon_xy: np.ndarray,
                    config: InteriorConfig = InteriorConfig(), inner_polygon_xy: np.ndarray | None = None) -> MouthColours:
    """Colours of the synthesised interior from the reference's lips and skin.

    Args:
        frame: uint8 [H, W, 3] RGB reference.
        lip_polygon_xy: float [K, 2] outer-lip polygon, px.
        skin_polygon_xy: float [M, 2] polygon of plain skin (e.g. the cheeks/nose area), px.
        inner_polygon_xy: float [J, 2] inner-lip polygon, px: an open mouth's teeth and cavity are
            left out of the lip colour.
    """
    h, w = frame.shape[:2]

    def mean_in(poly: np.ndarray, hole: np.ndarray | None = None) -> np.ndarray:
        mask = np.zeros((h, w), np.uint8)
        cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 1)
        if hole is not None:
            cv2.fillPoly(mask, [np.round(hole).astype(np.int32)], 0)
        if mask.sum() < 4:
            return np.array([150.0, 110.0, 100.0], np.float32)
        return np.median(frame[mask > 0].astype(np.float32), axis=0)

    lip = mean_in(lip_polygon_xy, inner_polygon_xy)
    skin = mean_in(skin_polygon_xy)
    luma = float(0.299 * skin[0] + 0.587 * skin[1] + 0.114 * skin[2]) / 255.0
    light = float(np.clip(luma / 0.62, 0.45, 1.05))
    teeth = np.asarray(config.teeth_rgb, np.float32) * light
    # teeth pick up a little of the ambient (skin) tint
    teeth = 0.85 * teeth + 0.15 * skin * (teeth.mean() / max(1.0, skin.mean()))
    cavity = lip * config.cavity_darkness * np.array([1.15, 0.85, 0.85], np.float32)   # warmer, redder
    tongue = lip * 0.62 + np.array([12.0, -4.0, -4.0], np.float32) * light
    return MouthColours(cavity=cavity.astype(np.float32), teeth=np.clip(teeth, 0, 255).astype(np.float32),
                        tongue=np.clip(tongue, 0, 255).astype(np.float32), lip=lip.astype(np.float32))


def paint_closed_lips(image: np.ndarray, upper_xy: np.ndarray, lower_xy: np.ndarray, mouth_width_px: float,
                      amount: float, colours: MouthColours) -> None:
    """Lets pressed lips (P/B/M) meet where the warp leaves a sliver of the reference's open mouth.

    On a portrait with an open mouth the lips close along the reference's own opening, which the
    coarse warp cannot squeeze to nothing everywhere; the teeth would show as a light line. The
    sliver between the moved inner lips is covered with the lips' own colour, a touch darker along
    the seam, feathered, weight `amount` (0..1: the closure).

    Args:
        image: uint8 [H, W, 3] warped frame, changed in place.
        upper_xy, lower_xy: float [K, 2] upper / lower inner-lip points, corner to corner, px.
        mouth_width_px: corner-to-corner width, px (sets the feather and the seam line).
    """
    if amount <= 0.0:
        return
    poly = np.concatenate([upper_xy, lower_xy[::-1]], 0).astype(np.float32)
    h, w = image.shape[:2]
    pad = int(math.ceil(0.04 * mouth_width_px)) + 2
    x0, y0 = np.floor(poly.min(0)).astype(int) - pad
    x1, y1 = np.ceil(poly.max(0)).astype(int) + pad + 1
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    local = poly - np.array([x0, y0], np.float32)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round(local * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
    grow = max(1, int(round(0.012 * mouth_width_px)))
    mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(0.6, 0.012 * mouth_width_px))
    # the seam: half way between the lips, at the upper lip's points
    upper_local, lower_local = local[: len(upper_xy)], local[len(upper_xy):]
    by_x = np.argsort(lower_local[:, 0])
    lower_y = np.interp(upper_local[:, 0], lower_local[by_x, 0], lower_local[by_x, 1])
    middle = np.stack([upper_local[:, 0], (upper_local[:, 1] + lower_y) / 2], 1)
    seam = np.zeros_like(mask)
    cv2.polylines(seam, [np.round(middle * 4).astype(np.int32)], False, 255, max(1, int(round(0.015 * mouth_width_px))),
                  cv2.LINE_AA, shift=2)
    seam_a = cv2.GaussianBlur(seam.astype(np.float32) / 255.0, (0, 0), max(0.5, 0.008 * mouth_width_px))
    colour = colours.lip[None, None, :] * (1.0 - 0.6 * seam_a[..., None])
    a = (np.clip(alpha, 0.0, 1.0) * float(amount))[..., None]
    region = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = np.clip(region * (1 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)


def paint_mouth_interior(image: np.ndarray, upper_xy: np.ndarray, lower_xy: np.ndarray, mouth_width_px: float,
                         extra_gap_px: float, colours: MouthColours,
                         config: InteriorConfig = InteriorConfig()) -> None:
    """Paints the mouth interior into `image` in place.

    Args:
        image: uint8 [H, W, 3] warped frame.
        upper_xy: float [K, 2] upper inner-lip points, corner to corner (left to right), px.
        lower_xy: float [K', 2] lower inner-lip points, corner to corner (left to right), px.
        mouth_width_px: corner-to-corner width, px (sets the proportions).
        extra_gap_px: how much wider the opening is than in the reference, px; the interior fades in
            over `fade_in_gap_px` so a frame with the reference's own mouth keeps its pixels.
    """
    strength = float(np.clip(extra_gap_px / config.fade_in_gap_px, 0.0, 1.0))
    if strength <= 0.0:
        return
    poly = np.concatenate([upper_xy, lower_xy[::-1]], 0).astype(np.float32)
    h, w = image.shape[:2]
    x0, y0 = np.floor(poly.min(0)).astype(int) - 2
    x1, y1 = np.ceil(poly.max(0)).astype(int) + 3
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    bw, bh = x1 - x0, y1 - y0
    local = poly - np.array([x0, y0], np.float32)
    mask = np.zeros((bh, bw), np.uint8)
    cv2.fillPoly(mask, [np.round(local * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
    alpha = mask.astype(np.float32) * (strength / 255.0)
    feather = config.feather_px_per_mw * mouth_width_px
    if feather > 0.3:
        alpha = cv2.GaussianBlur(alpha, (0, 0), feather) * (alpha > 0) + 0.0
    # per column: the upper and lower lip edges
    xs = np.arange(bw, dtype=np.float32) + 0.5
    uo = np.argsort(local[: len(upper_xy), 0], kind="stable")
    lo = np.argsort(local[len(upper_xy):, 0], kind="stable")
    up = local[: len(upper_xy)][uo]
    low = local[len(upper_xy):][lo]
    y_up = np.interp(xs, up[:, 0], up[:, 1]).astype(np.float32)
    y_lo = np.interp(xs, low[:, 0], low[:, 1]).astype(np.float32)
    gap = np.maximum(y_lo - y_up, 0.0)
    max_gap = float(gap.max())
    left, right = float(poly[:, 0].min() - x0), float(poly[:, 0].max() - x0)
    centre, half = 0.5 * (left + right), max(1.0, 0.5 * (right - left))
    u = (xs - centre) / half                                   # -1 .. 1 across the opening
    ys = np.arange(bh, dtype=np.float32)[:, None] + 0.5
    depth = np.clip((ys - y_up[None]) / np.maximum(gap[None], 1.0), 0.0, 1.0)   # 0 upper lip .. 1 lower lip
    # cavity: darkest at the centre back, a little lighter toward the lips and corners
    shade = 0.75 + 0.5 * np.clip(np.abs(u)[None] ** 2 + (2 * depth - 1) ** 2 * 0.3, 0, 1)
    out = colours.cavity[None, None, :] * shade[..., None]
    # upper teeth: a band below the upper lip, receding into shadow toward the corners
    teeth_h = min(config.teeth_height_per_gap * max_gap, config.teeth_max_height_mw * mouth_width_px)
    across = np.clip(np.abs(u) / config.teeth_width_fraction, 0, 1)
    in_upper = np.clip((y_up[None] + teeth_h * (1 - across[None] ** 4) - ys) / 0.8, 0, 1)
    tooth_light = (1.0 - 0.55 * across ** 2)[None, :, None]
    # faint gaps between teeth (incisors ~ 1/8 of the mouth width)
    tooth_w = max(1.5, mouth_width_px / 8.5)
    gaps = 1.0 - 0.18 * np.clip(1.0 - np.abs(((xs - centre) / tooth_w) % 1.0 - 0.5) * 8.0, 0, 1)
    teeth_col = colours.teeth[None, None, :] * tooth_light * gaps[None, :, None]
    # the teeth's lower edge is a touch darker (depth)
    out = out * (1 - in_upper[..., None]) + teeth_col * in_upper[..., None]
    open_mw = max_gap / max(1.0, mouth_width_px)
    if open_mw > config.tongue_from_gap_mw:
        k = min(1.0, (open_mw - config.tongue_from_gap_mw) / 0.1)
        ty = y_lo[None] - ys
        tongue = np.clip(1.0 - (u[None] / 0.7) ** 2 - (ty / np.maximum(0.35 * gap[None], 1.0)) ** 2, 0, 1)
        tongue = np.clip(tongue * 3.0, 0, 1) * 0.8 * k
        out = out * (1 - tongue[..., None]) + colours.tongue[None, None, :] * tongue[..., None]
    if open_mw > config.lower_teeth_from_gap_mw:
        k = min(1.0, (open_mw - config.lower_teeth_from_gap_mw) / 0.1)
        lh = config.lower_teeth_max_height_mw * mouth_width_px * k
        in_lower = np.clip((ys - (y_lo[None] - lh * (1 - across[None] ** 2))) / 0.8, 0, 1) * 0.85
        out = out * (1 - in_lower[..., None]) + teeth_col * 0.8 * in_lower[..., None]
    region = image[y0:y1, x0:x1].astype(np.float32)
    a = alpha[..., None]
    image[y0:y1, x0:x1] = np.clip(region * (1 - a) + out * a + 0.5, 0, 255).astype(np.uint8)
