"""The weight-free TemporalSampler engine: a talking head from one photo, by warping its own pixels.

`render_frames(reference, track, config)` returns a lazy `FrameStream` of `RenderedFrame`s at the
track's frame rate, exactly `track.num_frames` long, the same for the same seed.

How a frame is made
-------------------
Once per reference (`FaceRig`): the frame is fitted to the output size, and on a coarse grid over a
region around the head (grid step `field_step_mw` mouth widths, so the grid has the same number of
cells at any resolution) a handful of *basis displacement fields* are built from the 68-point
geometry, each the motion of one unit of one control:

* ``jaw``: the lower face below the lip seam drops (chin, lower lip, jawline; the neck below the
  chin takes up the stretch), the lower lip following a lens profile so the opening is rounded;
* ``upper_lip`` / ``lower_lip``: the lips alone move toward each other (closure, F/V tuck) or apart;
* ``corners``: the lip corners move out (wide) or in (rounded);
* ``blink_left`` / ``blink_right``: the upper lid comes down to ~10 % of the eye opening, the skin
  above it stretching, the eye between compressing;
* ``brows``: the brows and the skin around them lift.

The same functions are evaluated at the reference's dense landmarks, so returned landmarks follow
the picture exactly. Per frame the fields are mixed with coefficients from the mouth parameters and
the life schedule (`head_motion`), checked for folding (the Jacobian determinant of the forward map
must stay >= `min_jacobian_det`; otherwise the expression is scaled back), inverted by Newton steps
into a backward map, composed with a small head similarity (roll, shift, scale) that fades out
smoothly around the head, upsampled and applied with one `cv2.remap` of the head region. The rest of
the frame is the reference's pixels, unchanged. Where the lips part more than in the reference, the
mouth interior is synthesised (`mouth_interior`).

Mouth parameters are read relative to the rest pose (`neutral_mouth`, the track's silence shape),
which shows the reference's own mouth: a silent frame with a still head is the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Optional

import cv2
import numpy as np

from ..core.errors import InputError
from ..face.reference import Reference
from ..lipsync.track import VisemeTrack
from .framing import DEFAULT_MAX_SIDE_PX, apply_framing, choose_framing
from .head_motion import LifeConfig, LifeSchedule, life_schedule
from .mouth_interior import InteriorConfig, MouthColours, measure_colours, paint_closed_lips, paint_mouth_interior

ProgressFn = Callable[[int, int], None]

#: Inner-lip contours (left corner -> right corner in the image) per landmark layout.
INNER_LIP_UPPER = {
    "mediapipe_478": (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308),
    "ibug_68": (60, 61, 62, 63, 64),
}
INNER_LIP_LOWER = {
    "mediapipe_478": (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308),
    "ibug_68": (60, 67, 66, 65, 64),
}
#: Upper / lower eyelid middle points per eye (image-left eye first), for measuring eye aperture.
EYELID_PAIRS = {
    "mediapipe_478": ((159, 145), (386, 374)),
    "ibug_68": ((37, 41), (44, 46)),
}
#: Nose tip, a point that moves only with the head.
NOSE_TIP = {"mediapipe_478": 4, "ibug_68": 30}

#: How far above the upper lid (in eye half widths) the blink stretches the skin.
BLINK_SKIN_REACH = 0.9

BASES = ("jaw", "upper_lip", "lower_lip", "corners", "blink_left", "blink_right", "brows")

MAX_SIDE_PX = 4096
#: OpenCV's remap takes maps shorter than SHRT_MAX (32,767) per side; point lists are sampled in
#: rows of REMAP_CHUNK.
REMAP_MAX_SIDE = 32767
REMAP_CHUNK = 16384


@dataclass(frozen=True)
class SamplerConfig:
    """Settings of the weight-free animator.

    Attributes:
        width, height: output size in px; None for the default framing (the reference's size capped at
            `max_side_px` on the long side, even, cropped around the head rather than shrunk when the
            portrait is much larger than the face: see `framing`). An explicit size scales the reference
            to cover it and crops around the face (never stretches it); one of them alone keeps the aspect.
        max_side_px: the default framing's long-side cap, px.
        motion_strength: 0 still head (only mouth and blinks move) .. 1 natural .. 2 lively.
        blink_rate_per_min: mean blinks per minute (0: none; people blink ~15-20 times a minute).
        seed: random seed of blink times and head motion.
        jaw_drop_mw: chin drop at jaw_open 1, in mouth widths (corner-to-corner distance).
        lip_width_mw: lip-corner shift per unit of lip_width away from rest, in mouth widths (each side).
        lip_round_mw: corner pull-in at lip_round 1, in mouth widths (each side).
        round_open_mw: how much rounding pushes the lips apart vertically, in mouth widths.
        upper_lip_lift: upper-lip rise per unit of jaw drop (the upper lip shows more teeth when wide).
        tuck_gap_mw: opening left between the lips at full F/V tuck (shows the upper teeth's edge).
        neutral_mouth: mouth parameters that show the reference's own mouth (the track's rest shape).
        blink_depth: fraction of the eye opening the upper lid covers when shut (< 1 keeps the map
            invertible; what is left is a lash line).
        closed_eye_from: blink level (0..1) from which the lash line covers what is left of the eye.
        brow_lift_iod: brow lift at full emphasis, in inter-ocular distances.
        field_step_mw: grid step of the displacement field, in mouth widths.
        min_jacobian_det: smallest allowed local area ratio of the forward map (no folds).
        newton_steps: iterations inverting the forward map.
        band_cells: grid rows per remapped band (the moving region is remapped band by band, each
            band only as wide as its moving cells).
        life: blink / head-motion / brow tuning.
        interior: mouth-interior tuning.
    """

    width: Optional[int] = None
    height: Optional[int] = None
    max_side_px: int = DEFAULT_MAX_SIDE_PX
    motion_strength: float = 1.0
    blink_rate_per_min: float = 15.0
    seed: int = 0
    jaw_drop_mw: float = 0.8
    lip_width_mw: float = 0.10
    lip_round_mw: float = 0.16
    round_open_mw: float = 0.05
    upper_lip_lift: float = 0.08
    tuck_gap_mw: float = 0.03
    neutral_mouth: tuple = (0.03, 0.45, 0.10, 0.65, 0.00)
    blink_depth: float = 0.95
    closed_eye_from: float = 0.6
    brow_lift_iod: float = 0.05
    field_step_mw: float = 0.05
    min_jacobian_det: float = 0.02
    newton_steps: int = 6
    band_cells: int = 8
    life: LifeConfig = field(default_factory=LifeConfig)
    interior: InteriorConfig = field(default_factory=InteriorConfig)


@dataclass
class MovingBand:
    """A band of output pixels that can change: box (x0, y0, x1, y1) in px, and float32 [h, w, 2]
    pixel_xy, the x, y of each of its pixels (the identity map that a frame's displacement adds to)."""

    box: tuple[int, int, int, int]
    pixel_xy: np.ndarray


@dataclass
class RenderedFrame:
    """One output frame.

    index: frame number (on screen from index / fps seconds).
    image: uint8 [H, W, 3] RGB.
    landmarks_xy: float32 [N, 2] landmarks of this frame in output px, same layout as the reference.
    """

    index: int
    image: np.ndarray
    landmarks_xy: np.ndarray


# ---------------------------------------------------------------------------------------- helpers

def _smoothstep(e0: float, e1, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (np.asarray(e1) - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _frame_axes(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(centre, ex, ey, half_length): a frame along a->b with ey pointing 'down' (ex rotated +90 deg)."""
    d = (b - a).astype(np.float64)
    half = float(np.linalg.norm(d)) / 2.0
    ex = d / max(2 * half, 1e-6)
    ey = np.array([-ex[1], ex[0]])
    return (a + b) / 2.0, ex, ey, max(half, 1e-3)


def _sample(field_hw2: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Bilinear samples of a coarse [h, w, C] float32 field at fractional grid coords (same shape as gx)."""
    gx, gy = gx.astype(np.float32), gy.astype(np.float32)
    if max(gx.shape) < REMAP_MAX_SIDE:
        return cv2.remap(field_hw2, gx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # cv2.remap refuses maps with a side >= SHRT_MAX (a large face gives ~10^5 dense points in one
    # row): sample the points as rows of a bounded width instead
    flat_x, flat_y = gx.ravel(), gy.ravel()
    rows = -(-flat_x.size // REMAP_CHUNK)
    pad = rows * REMAP_CHUNK - flat_x.size
    mx = np.pad(flat_x, (0, pad)).reshape(rows, REMAP_CHUNK)
    my = np.pad(flat_y, (0, pad)).reshape(rows, REMAP_CHUNK)
    out = cv2.remap(field_hw2, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    channels = out.shape[2:] if out.ndim == 3 else ()
    return out.reshape((rows * REMAP_CHUNK,) + channels)[: flat_x.size].reshape(gx.shape + channels)


def _fit_to_output(reference: Reference, config: SamplerConfig, width: Optional[int], height: Optional[int]):
    """(frame, landmarks, landmarks_68, framing): the reference framed for the output (see `framing`)."""
    frame = reference.frame
    h, w = frame.shape[:2]
    lm = reference.landmarks_xy.astype(np.float64)
    lm68 = reference.landmarks_68.astype(np.float64)
    box = (*lm68.min(0), *lm68.max(0))
    framing = choose_framing(w, h, box, width, height, max_side_px=config.max_side_px)
    if (framing.width, framing.height) == (w, h):
        return frame, lm, lm68, framing
    out, matrix = apply_framing(frame, framing)

    def tf(p):
        return p @ matrix[:, :2].T + matrix[:, 2]
    return out, tf(lm), tf(lm68), framing


def _lip_sides(layout: str, count: int) -> np.ndarray:
    """[count]: -1 for the upper inner-lip landmarks of `layout`, +1 for the lower ones (corners 0)."""
    side = np.zeros(count)
    upper, lower = INNER_LIP_UPPER[layout], INNER_LIP_LOWER[layout]
    corners = {upper[0], upper[-1]}
    side[[i for i in upper if i not in corners]] = -1.0
    side[[i for i in lower if i not in corners]] = 1.0
    if layout == "ibug_68":
        side[[61, 62, 63]], side[[65, 66, 67]] = -1.0, 1.0
    return side


# ---------------------------------------------------------------------------------------- eyelids

class LashLine:
    """The last sliver of a closing eye, covered by its own lash line.

    The blink warp brings the reference's upper lid, its lashes and the lid skin above it down over
    the eye (so the closed lid is the reference's own skin, closing top-down); what the warp cannot
    fold away is a sliver of white and iris along the lower lid. This covers that sliver, between the
    moved upper-lid margin and the lower lid, with the tone of the reference's upper lash line (a
    low percentile of a thin band along its upper lid), feathered, so the lids meet in a lash line.

    Attributes:
        lash_rgb: float32 [3] the lash-line tone; iod: inter-ocular distance of the frame, px.
    """

    def __init__(self, frame: np.ndarray, contour: np.ndarray, iod: float):
        h, w = frame.shape[:2]
        self.iod = float(iod)
        upper = np.concatenate([contour[:1], contour[1:3], contour[3:4]], 0)    # corner, upper lid, corner
        band = np.zeros((h, w), np.uint8)
        thick = max(1, int(round(0.04 * iod)))
        cv2.polylines(band, [np.round(upper).astype(np.int32)], False, 1, thick)
        pixels = frame[band > 0].reshape(-1, 3).astype(np.float32)
        self.lash_rgb = np.percentile(pixels, 20, axis=0).astype(np.float32) if len(pixels) else \
            np.array([40.0, 30.0, 30.0], np.float32)

    def paint(self, image: np.ndarray, eye_xy: np.ndarray, amount: float) -> None:
        """Covers the sliver of eye `eye_xy` (its 6 iBUG points in this frame) in place, weight 0..1."""
        if amount <= 0:
            return
        # corner, upper lid (moved down by the warp), corner, lower lid
        poly = np.concatenate([eye_xy[0:4], eye_xy[4:6]], 0)
        window = _eye_window(image.shape, poly, self.iod)
        if window is None:
            return
        x0, y0, x1, y1 = window
        mask = _polygon_mask(poly, window)
        # the lids meet in a line a little thicker than the sliver itself
        lid = np.concatenate([poly[:1], poly[4:6][::-1], poly[3:4]], 0) - (x0, y0)
        cv2.polylines(mask, [np.round(lid * 4).astype(np.int32)], False, 255, max(1, int(round(0.025 * self.iod))),
                      cv2.LINE_AA, shift=2)
        alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(0.5, 0.012 * self.iod)) * amount
        _blend(image, window, alpha, self.lash_rgb)


def _eye_window(shape: tuple, poly: np.ndarray, iod: float) -> Optional[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1): a polygon's box in the image with room for its feathering; None if < 2 px."""
    pad = int(math.ceil(0.05 * iod)) + 2
    lo = np.floor(poly.min(0)).astype(int) - pad
    hi = np.ceil(poly.max(0)).astype(int) + pad + 1
    h, w = shape[:2]
    x0, y0, x1, y1 = max(0, lo[0]), max(0, lo[1]), min(w, hi[0]), min(h, hi[1])
    return None if x1 - x0 < 2 or y1 - y0 < 2 else (int(x0), int(y0), int(x1), int(y1))


def _polygon_mask(poly: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """uint8 [y1 - y0, x1 - x0]: the polygon filled with 255, anti-aliased at quarter-pixel precision."""
    x0, y0, x1, y1 = window
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round((poly - (x0, y0)) * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
    return mask


def _blend(image: np.ndarray, window: tuple[int, int, int, int], alpha: np.ndarray, colour: np.ndarray) -> None:
    """image[window] = image * (1 - alpha) + colour * alpha, in place; colour [3] or [w, 3] per column."""
    x0, y0, x1, y1 = window
    region = image[y0:y1, x0:x1].astype(np.float32)
    a = np.clip(alpha, 0.0, 1.0)[..., None]
    image[y0:y1, x0:x1] = np.clip(region * (1 - a) + colour * a + 0.5, 0, 255).astype(np.uint8)


class LidSkin:
    """The closed upper lid's skin, taken from the reference's own lid just above the open eye.

    The blink warp brings the upper lid margin down, and with it the eyeliner and lashes along it:
    on made-up eyes that band is thick and dark, and a closed eye would show a dark stripe where a
    real one shows lid skin. This lays the lid's own colour over the closed eye, top-down, between
    the open eye's upper outline (a little above, to take in the eyeliner) and a lash line's
    thickness above where the lids meet; the lash line itself is left to `LashLine`. The colour is
    measured per column, in a band 0.05-0.15 IOD above the upper lid of the reference, so it keeps
    the lid's shading from the inner to the outer corner.

    Attributes:
        columns_x: float32 [n] x of each measured column, reference px; column_rgb: float32 [n, 3].
        centre: float64 [2] the eye's centre in the reference; iod: inter-ocular distance, px.
    """

    #: where the lid skin is measured, IOD above the upper lid (below the brow, above the eyeliner)
    BAND_IOD = (0.05, 0.15)
    #: how much of the covered area takes the lid colour (the warped lid shows through the rest)
    COVER = 0.9

    def __init__(self, frame: np.ndarray, contour: np.ndarray, iod: float):
        h, w = frame.shape[:2]
        self.iod = float(iod)
        self.centre = contour.mean(0)
        x0, x1 = int(np.floor(contour[:, 0].min())), int(np.ceil(contour[:, 0].max())) + 1
        xs = np.arange(max(0, x0), min(w, x1))
        upper_y = np.interp(xs, *_lid_curve(contour[0:4]))
        near, far = (np.asarray(self.BAND_IOD) * iod)
        rgb = []
        for x, y in zip(xs, upper_y):
            ya, yb = int(round(y - far)), int(round(y - near)) + 1
            column = frame[max(0, ya):max(0, min(h, yb)), x].astype(np.float32)
            rgb.append(np.median(column, axis=0) if len(column) else np.full(3, np.nan, np.float32))
        rgb = np.asarray(rgb, np.float32).reshape(-1, 3)
        ok = np.isfinite(rgb).all(1)
        self.columns_x = xs[ok].astype(np.float32)
        # smoothed along the lid: shading, not single columns of lashes or pores
        self.column_rgb = cv2.GaussianBlur(rgb[ok][None], (0, 0), max(1.0, 0.03 * iod))[0] if ok.sum() > 2 \
            else rgb[ok]

    def paint(self, image: np.ndarray, open_xy: np.ndarray, closed_xy: np.ndarray, amount: float) -> None:
        """Lays the lid colour over the closing eye in place. open_xy / closed_xy: the eye's 6 iBUG
        points in this frame without / with the blink; amount 0..1."""
        if amount <= 0 or len(self.columns_x) < 2:
            return
        iod = self.iod
        top = open_xy[0:4] - (0.0, 0.035 * iod)                     # above the eyeliner
        bottom = closed_xy[0:4] - (0.0, 0.03 * iod)                 # above the lash line
        bottom[:, 1] = np.maximum(bottom[:, 1], top[:, 1])
        poly = np.concatenate([top, bottom[::-1]], 0)
        window = _eye_window(image.shape, poly, iod)
        if window is None:
            return
        alpha = cv2.GaussianBlur(_polygon_mask(poly, window).astype(np.float32) / 255.0, (0, 0), max(0.5, 0.015 * iod))
        alpha *= self.COVER * amount
        # the reference's columns, moved with the eye (head motion)
        x0, _, x1, _ = window
        xs = np.arange(x0, x1, dtype=np.float32) - float(open_xy.mean(0)[0] - self.centre[0])
        colour = np.stack([np.interp(xs, self.columns_x, self.column_rgb[:, c]) for c in range(3)], 1)
        _blend(image, window, alpha, colour[None])


def _lid_curve(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of a lid outline (corner, two lid points, corner) sorted by x, for np.interp."""
    order = np.argsort(points[:, 0])
    return points[order, 0], points[order, 1]


# ---------------------------------------------------------------------------------------- the rig

class FaceRig:
    """Per-reference precomputation: region, coarse grid, basis fields and colours.

    Attributes:
        frame: uint8 [H, W, 3] reference fitted to the output size.
        landmarks: float64 [N, 2] dense landmarks in output px; landmarks_68 likewise [68, 2].
        roi: (x0, y0, x1, y1) output-px region that can change; outside it frames are the reference.
        step_px: coarse-grid step, px; grid_x, grid_y: float32 [gh, gw] grid positions, px.
        basis_grid: float32 [K, gh, gw, 2] forward displacement per unit of each control (BASES order).
        basis_landmarks: float64 [K, N, 2] the same at the dense landmarks.
        head_weight_grid: float32 [gh, gw]; head_weight_landmarks [N]: how much the head motion applies.
    """

    def __init__(self, frame: np.ndarray, landmarks: np.ndarray, landmarks_68: np.ndarray, layout: str,
                 config: SamplerConfig):
        self.frame = frame
        self.layout = layout
        self.landmarks = landmarks
        self.landmarks_68 = p = landmarks_68
        h, w = frame.shape[:2]
        self.mouth_c, self.mouth_ex, self.mouth_ey, self.mouth_hw = _frame_axes(p[48], p[54])
        self.mouth_c = p[60:68].mean(0)
        eye_l, eye_r = p[36:42].mean(0), p[42:48].mean(0)
        self.iod = float(np.linalg.norm(eye_r - eye_l))
        # region that may move: around the head, generous enough for the head motion to fade out
        lo, hi = p.min(0), p.max(0)
        size = float(max(hi - lo))
        centre = (lo + hi) / 2.0 - np.array([0.0, 0.15 * size])
        self.head_centre, self.head_size = centre, size
        # integer grid step; the grid spans a slightly larger, unclipped box so that one
        # cv2.resize of the coarse field lands exactly on the pixels (node k at x0u + (k + .5) step - .5)
        self.step_px = step = int(max(1, round(config.field_step_mw * 2 * self.mouth_hw)))
        gw = gh = int(math.ceil(3.3 * size / step))
        x0u, y0u = np.round(centre - 0.5 * gw * step).astype(int)
        self.grid_origin = (int(x0u), int(y0u))
        self.roi = (max(0, x0u), max(0, y0u), min(w, x0u + gw * step), min(h, y0u + gh * step))
        x0, y0, x1, y1 = self.roi
        if x1 <= x0 or y1 <= y0:
            raise InputError("reference", "has its face outside the output frame", "Use an output size that "
                             "keeps the face in view")
        gx, gy = np.meshgrid(x0u + (np.arange(gw) + 0.5) * step - 0.5, y0u + (np.arange(gh) + 0.5) * step - 0.5)
        self.grid_x, self.grid_y = gx.astype(np.float32), gy.astype(np.float32)
        grid_pts = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float64)
        self._region = self._jaw_region_map(gh, gw)
        pts = np.concatenate([grid_pts, landmarks], 0)
        side = np.concatenate([np.zeros(len(grid_pts)), _lip_sides(layout, len(landmarks))])
        fields = self._basis(pts, side)                             # [K, P, 2]
        ng = grid_pts.shape[0]
        # cut each field's far tail (< 0.5 % of its peak) so the moving box stays small
        mag = np.linalg.norm(fields, axis=2)
        peak = mag[:, :ng].max(axis=1, keepdims=True)
        fields = fields * _smoothstep(0.005, 0.01, mag / np.maximum(peak, 1e-9))[..., None]
        basis_grid = fields[:, :ng].reshape(len(BASES), gh, gw, 2).astype(np.float32)
        # the expression only moves a box around the face: invert it there only
        live = np.abs(basis_grid).max(axis=(0, 3)) > 0
        rows, cols = np.where(live)
        if len(rows) == 0:
            rows, cols = np.array([0, gh - 1]), np.array([0, gw - 1])
        r0, r1 = max(0, rows.min() - 2), min(gh, rows.max() + 3)
        c0, c1 = max(0, cols.min() - 2), min(gw, cols.max() + 3)
        self.live = (r0, r1, c0, c1)
        self.basis_grid = np.ascontiguousarray(basis_grid[:, r0:r1, c0:c1])
        self.basis_landmarks = fields[:, ng:]
        basis_68 = self._basis(p, _lip_sides("ibug_68", 68))
        mag68 = np.linalg.norm(basis_68, axis=2)
        basis_68 = basis_68 * _smoothstep(0.005, 0.01, mag68 / np.maximum(peak, 1e-9))[..., None]
        self.basis_68 = basis_68
        hw_all = self._head_weight(pts)
        self.head_weight_grid = hw_all[:ng].reshape(gh, gw).astype(np.float32)
        self.head_weight_landmarks = hw_all[ng:]
        self.head_weight_68 = self._head_weight(p)
        self.head_pivot = p[8] + 0.25 * (p[8] - p[27])               # top of the neck, below the chin
        self.bands = self._moving_bands(config.band_cells)
        # mouth measurements used per frame (units: mouth half widths along the mouth's ey)
        ey = self.mouth_ey
        self.gap0_hw = max(0.0, float((p[66] - p[62]) @ ey) / self.mouth_hw)
        #: how the centre inner-lip gap (px) changes per unit of each mouth coefficient
        self.gap_sensitivity = (basis_68[:4, 66] - basis_68[:4, 62]) @ ey
        outer = p[48:60]
        skin = np.array([p[1] * 0.5 + p[31] * 0.5, p[29], p[15] * 0.5 + p[35] * 0.5, p[33]])
        self.colours: MouthColours = measure_colours(frame, outer, skin, config.interior, inner_polygon_xy=p[60:68])
        self.closed_eyes = [LashLine(frame, p[36:42], self.iod), LashLine(frame, p[42:48], self.iod)]
        self.lid_skins = [LidSkin(frame, p[36:42], self.iod), LidSkin(frame, p[42:48], self.iod)]

    # -- geometry in the mouth frame ------------------------------------------------------------

    def _mouth_uv(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = pts - self.mouth_c
        return d @ self.mouth_ex / self.mouth_hw, d @ self.mouth_ey / self.mouth_hw

    def _seam(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(seam v, half opening v) at mouth coordinate u, from the inner lips."""
        p = self.landmarks_68
        up_idx, lo_idx = (60, 61, 62, 63, 64), (60, 67, 66, 65, 64)
        uu, vu = self._mouth_uv(p[list(up_idx)])
        ul, vl = self._mouth_uv(p[list(lo_idx)])
        us = (uu + ul) / 2
        order = np.argsort(us)
        seam = np.interp(u, us[order], ((vu + vl) / 2)[order])
        half = np.interp(u, us[order], np.maximum((vl - vu) / 2, 0)[order], left=0.0, right=0.0)
        return seam, half

    def _jaw_region_map(self, gh: int, gw: int) -> np.ndarray:
        """float32 [gh, gw]: 1 inside the jaw outline, falling to 0 over ~1.2 half mouth widths outside."""
        p = self.landmarks_68
        poly = self.to_grid(p[0:17])
        mask = np.zeros((gh, gw), np.uint8)
        cv2.fillPoly(mask, [np.round(poly * 4).astype(np.int32)], 255, shift=2)
        outside = cv2.distanceTransform(255 - mask, cv2.DIST_L2, 5) * self.step_px / self.mouth_hw
        region = 1.0 - _smoothstep(0.0, 1.4, outside)
        return cv2.GaussianBlur(region.astype(np.float32), (0, 0), 0.3 * self.mouth_hw / self.step_px)

    def to_grid(self, pts: np.ndarray) -> np.ndarray:
        """Fractional grid coordinates (column, row) of points [P, 2] in px."""
        return (pts - self.grid_origin + 0.5) / self.step_px - 0.5

    def _region_at(self, pts: np.ndarray) -> np.ndarray:
        g = self.to_grid(pts)
        return _sample(self._region, g[None, :, 0], g[None, :, 1])[0].astype(np.float64)

    def _basis(self, pts: np.ndarray, lip_side: Optional[np.ndarray] = None) -> np.ndarray:
        """float64 [K, P, 2]: forward displacement (px) of each unit control at points [P, 2].

        lip_side: optional [P] of -1 (a point of the upper lip's inner edge), +1 (the lower lip's), 0
        (anything else). On a closed mouth both inner edges lie on the seam, where the field is half
        way between the upper and the lower face; a landmark known to belong to one lip moves with it.
        """
        hw = self.mouth_hw
        ex, ey = self.mouth_ex, self.mouth_ey
        u, v = self._mouth_uv(pts)
        seam, half = self._seam(u)
        s = v - seam
        au = np.abs(u)
        g = np.maximum(half, self.step_px / self.mouth_hw) + 0.5 * np.maximum(au - 0.8, 0.0)
        if lip_side is not None:
            # only where the lips touch (an open mouth's inner edges already sit on their own side)
            touching = half <= self.step_px / self.mouth_hw
            s = np.where(touching & (lip_side < 0), np.minimum(s, -g),
                         np.where(touching & (lip_side > 0), np.maximum(s, g), s))
        # linear across the opening: closing it compresses the gap evenly (no fold before it is shut)
        gate = np.clip(0.5 + 0.5 * s / g, 0.0, 1.0)                 # 0 upper face .. 1 lower face
        lens = np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))
        m = _smoothstep(0.0, 1.0, s)
        region = self._region_at(pts)
        jaw = gate * region * (lens + (1 - lens) * m) * (0.8 + 0.2 * m)
        # the lips close along the reference's own opening (its half height across the mouth)
        _, half_centre = self._seam(np.zeros(1))
        if float(half_centre[0]) > self.step_px / hw:
            profile = np.clip(half / float(half_centre[0]), 0.0, 1.0)
        else:
            profile = lens
        lip_lo = gate * profile * (1.0 - _smoothstep(0.3, 1.2, s))
        lip_up = (1.0 - gate) * profile * (1.0 - _smoothstep(0.2, 0.9, -s))
        # the corners drag the cheeks and chin a little, but not the nose above
        corner = (np.minimum(au, 1.0) * np.exp(-(np.maximum(au - 1.0, 0.0) / 0.6) ** 2)
                  * np.exp(-(s / np.where(s < 0, 0.55, 0.9)) ** 2))
        out = np.zeros((len(BASES), len(pts), 2))
        out[0] = (jaw * hw)[:, None] * ey                           # per half mouth width of chin drop
        out[1] = (lip_up * hw)[:, None] * ey                        # upper lip down
        out[2] = -(lip_lo * hw)[:, None] * ey                       # lower lip up
        out[3] = (corner * np.sign(u) * hw)[:, None] * ex            # corners outward
        p = self.landmarks_68
        for k, (c0, c1, ups, lows) in enumerate(((36, 39, (37, 38), (41, 40)), (42, 45, (43, 44), (47, 46)))):
            out[4 + k] = self._blink_field(pts, p[c0], p[c1], p[list(ups)], p[list(lows)])
        out[6] = self._brow_field(pts)
        return out

    def _blink_field(self, pts, corner_a, corner_b, uppers, lowers) -> np.ndarray:
        """[P, 2] displacement that closes one eye fully (upper lid onto the lower lid)."""
        c, ex, ey, half = _frame_axes(corner_a, corner_b)

        def uv(q):
            d = q - c
            return d @ ex / half, d @ ey / half

        uu, vu = uv(uppers)
        ul, vl = uv(lowers)
        v_up0 = float(np.mean(vu / np.maximum(1 - uu ** 2, 0.3)))
        v_lo0 = float(np.mean(vl / np.maximum(1 - ul ** 2, 0.3)))
        ue, ve = uv(pts)
        lens = np.clip(1.0 - ue ** 2, 0.0, 1.0)
        v_up, v_lo = v_up0 * lens, v_lo0 * lens
        h = np.maximum(v_lo - v_up, 1e-6)
        # the lid skin up to about the crease stretches; the brow above it stays nearly still
        above = 1.0 - _smoothstep(0.0, BLINK_SKIN_REACH, v_up - ve)
        band = np.clip((v_lo - ve) / h, 0.0, 1.0)
        w = np.where(ve <= v_up, above, band)
        # the lid travels the eye's opening at each column, so the eye compresses evenly (no fold)
        amount = (v_lo0 - v_up0) * lens * half
        return (amount * w)[:, None] * ey

    def _brow_field(self, pts) -> np.ndarray:
        """[P, 2] displacement lifting both brows by one inter-ocular distance (scaled per frame)."""
        p = self.landmarks_68
        brows = p[17:27]
        _, _, ey, _ = _frame_axes(p[36], p[45])
        d2 = ((pts[:, None, :] - brows[None]) ** 2).sum(-1).min(1)
        sigma = 0.32 * self.iod
        w = np.exp(-d2 / (sigma * sigma))
        return -(w * self.iod)[:, None] * ey

    def _head_weight(self, pts: np.ndarray) -> np.ndarray:
        d = (pts - self.head_centre) / (np.array([0.72, 0.95]) * self.head_size)
        r = np.sqrt((d ** 2).sum(1))
        return 1.0 - _smoothstep(1.0, 1.5, r)

    def _moving_bands(self, band_cells: int) -> list["MovingBand"]:
        """Horizontal bands of the ROI that can change, each as wide as its moving grid cells.

        A pixel can move only where the head weight or an expression field is non-zero; the head
        region is an ellipse, so a band per few grid rows remaps ~half the pixels of its bounding
        box. One cell of margin covers the bilinear upsampling's reach into the next cell.
        """
        gh, gw = self.grid_x.shape
        moving = self.head_weight_grid > 0
        r0, r1, c0, c1 = self.live
        moving[r0:r1, c0:c1] |= np.abs(self.basis_grid).max(axis=(0, 3)) > 0
        moving = cv2.dilate(moving.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        x0u, y0u = self.grid_origin
        fx0, fy0, fx1, fy1 = self.roi
        step = self.step_px
        bands = []
        for top in range(0, gh, band_cells):
            cols = np.where(moving[top:top + band_cells].any(axis=0))[0]
            if len(cols) == 0:
                continue
            y0, y1 = max(fy0, y0u + top * step), min(fy1, y0u + min(gh, top + band_cells) * step)
            x0, x1 = max(fx0, x0u + int(cols[0]) * step), min(fx1, x0u + (int(cols[-1]) + 1) * step)
            if y1 > y0 and x1 > x0:
                bx, by = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
                bands.append(MovingBand((x0, y0, x1, y1), np.dstack([bx, by])))
        return bands


# ---------------------------------------------------------------------------------------- per frame

@dataclass
class FrameControls:
    """Per-frame control values: coefficients of BASES (px units folded in) and the head similarity."""

    coefficients: np.ndarray       # float64 [K]
    roll_rad: float
    shift_px: np.ndarray           # float64 [2]
    scale: float


def _mouth_coefficients(rig: FaceRig, mouth: np.ndarray, config: SamplerConfig) -> np.ndarray:
    """Coefficients of (jaw, upper_lip, lower_lip, corners), in half mouth widths."""
    jaw, width, rnd, closure, tuck = (float(x) for x in mouth)
    n_jaw, n_width, n_round, _, _ = config.neutral_mouth
    mw = 2.0  # one mouth width in half-width units
    drop = config.jaw_drop_mw * mw * max(0.0, jaw - n_jaw) / (1.0 - n_jaw)
    r = max(0.0, rnd - n_round) / (1.0 - n_round)
    corners = config.lip_width_mw * mw * (width - n_width) - config.lip_round_mw * mw * r
    upper = -config.upper_lip_lift * drop - 0.5 * config.round_open_mw * mw * r
    lower = -0.5 * config.round_open_mw * mw * r
    coef = np.array([drop, upper, lower, corners])
    sens = rig.gap_sensitivity
    gap_px = rig.gap0_hw * rig.mouth_hw + float(sens @ coef)
    c = _closure_amount(mouth, config)
    t = float(np.clip(tuck, 0.0, 1.0))
    close = max(c, t)
    # F/V: the lower lip rises to the upper teeth, leaving a sliver where their edge shows
    amount_px = close * 0.97 * gap_px - t * config.tuck_gap_mw * 2 * rig.mouth_hw
    if amount_px > 0:
        # closing: 35 % by the upper lip, 65 % by the lower lip (gap falls as they move in)
        per_unit = -(0.35 * sens[1] + 0.65 * sens[2])
        if per_unit > 1e-6:
            k = amount_px / per_unit
            coef[1] += 0.35 * k
            coef[2] += 0.65 * k
    return coef


def _closure_amount(mouth: np.ndarray, config: SamplerConfig) -> float:
    """0..1: how pressed together the lips are meant to be (P/B/M), relative to the rest shape."""
    n_closure = config.neutral_mouth[3]
    return float(np.clip((float(mouth[3]) - n_closure) / (1.0 - n_closure), 0.0, 1.0))


def frame_controls(rig: FaceRig, track_mouth: np.ndarray, life: LifeSchedule, index: int,
                   config: SamplerConfig) -> FrameControls:
    """The controls of frame `index`."""
    coef = np.zeros(len(BASES))
    coef[:4] = _mouth_coefficients(rig, track_mouth[index], config)
    coef[4] = coef[5] = config.blink_depth * float(life.blink[index])
    coef[6] = config.brow_lift_iod * float(life.brow[index])
    shift = np.array([life.shift_x_iod[index], life.shift_y_iod[index]], np.float64) * rig.iod
    return FrameControls(coef, math.radians(float(life.roll_deg[index])), shift, float(life.scale[index]))


def _head_matrix(rig: FaceRig, c: FrameControls) -> np.ndarray:
    """2x3 forward similarity of the head about the neck pivot."""
    cos, sin = math.cos(c.roll_rad), math.sin(c.roll_rad)
    a = (1.0 + c.scale) * np.array([[cos, -sin], [sin, cos]])
    t = rig.head_pivot + c.shift_px - a @ rig.head_pivot
    return np.concatenate([a, t[:, None]], 1)


def _expression_field(rig: FaceRig, coef: np.ndarray, config: SamplerConfig) -> tuple[np.ndarray, float]:
    """(forward field float32 [gh, gw, 2], factor applied) with folds prevented."""
    # a weighted sum, not np.tensordot: BLAS would wake its thread pool for a 7-term sum per frame
    fwd = np.zeros(rig.basis_grid.shape[1:], np.float32)
    for k, basis in zip(coef, rig.basis_grid):
        if k != 0:
            fwd += np.float32(k) * basis
    factor = 1.0
    for _ in range(6):
        dxx, dxy = np.gradient(fwd[..., 0], rig.step_px)[::-1]
        dyx, dyy = np.gradient(fwd[..., 1], rig.step_px)[::-1]
        det = (1 + dxx) * (1 + dyy) - dxy * dyx
        if float(det.min()) >= config.min_jacobian_det:
            break
        factor *= 0.8
        fwd = fwd * np.float32(0.8)
    return fwd, factor


def _invert(rig: FaceRig, fwd: np.ndarray, steps: int) -> np.ndarray:
    """Backward displacement float32 [gh, gw, 2]: B with y + B(y) + F(y + B(y)) = y.

    Newton steps on the bilinear field, with the Jacobian from one-cell differences (exact for the
    bilinear interpolant along each axis, so steep stretches at the lip seam converge) and each
    step limited to one grid cell, so a wrong first guess cannot jump over the solution.
    """
    s = np.float32(rig.step_px)
    dfx = np.zeros_like(fwd)
    dfy = np.zeros_like(fwd)
    dfx[:, :-1] = (fwd[:, 1:] - fwd[:, :-1]) / s       # d/dx, valid at x + 0.5 cell
    dfx[:, -1] = dfx[:, -2]
    dfy[:-1] = (fwd[1:] - fwd[:-1]) / s                 # d/dy, valid at y + 0.5 cell
    dfy[-1] = dfy[-2]
    back = -fwd.copy()
    jj, ii = np.indices(fwd.shape[:2], dtype=np.float32)
    # each step moves at most one cell: a wide jaw drop needs as many steps as cells it travels
    steps = max(steps, int(math.ceil(float(np.abs(fwd).max()) / float(s))) + 2)
    for _ in range(steps):
        mx, my = ii + back[..., 0] / s, jj + back[..., 1] / s
        f = _sample(fwd, mx, my)
        jx = _sample(dfx, np.floor(mx), my)            # derivative of the cell the point is in
        jy = _sample(dfy, mx, np.floor(my))
        r0, r1 = back[..., 0] + f[..., 0], back[..., 1] + f[..., 1]
        a, b, c, d = 1 + jx[..., 0], jy[..., 0], jx[..., 1], 1 + jy[..., 1]
        det = a * d - b * c
        det = np.where(det < 1e-2, np.float32(1e-2), det)
        d0 = np.clip((d * r0 - b * r1) / det, -s, s)
        d1 = np.clip((-c * r0 + a * r1) / det, -s, s)
        back[..., 0] -= d0
        back[..., 1] -= d1
    return back


class FrameStream:
    """Lazy, re-iterable frames of one clip. Each iteration renders again, identically.

    Attributes:
        num_frames: frames in the clip (== track.num_frames); fps: frames per second.
        width, height: frame size in px; layout: landmark layout of `RenderedFrame.landmarks_xy`.
        rig: the per-reference precomputation; life: the per-frame schedules.
    """

    def __init__(self, rig: FaceRig, mouth: np.ndarray, life: LifeSchedule, fps: float, config: SamplerConfig,
                 progress: Optional[ProgressFn] = None):
        self.rig = rig
        self.mouth = mouth
        self.life = life
        self.fps = float(fps)
        self.config = config
        self.progress = progress
        self.num_frames = int(mouth.shape[0])
        self.height, self.width = rig.frame.shape[:2]
        self.layout = rig.layout
        self._cache: tuple = (None, None)   # (coefficients bytes, expression field) of the last frame

    def __len__(self) -> int:
        return self.num_frames

    def __iter__(self) -> Iterator[RenderedFrame]:
        for i in range(self.num_frames):
            frame = self.render(i)
            if self.progress is not None:
                self.progress(i + 1, self.num_frames)
            yield frame

    def report(self, engine: str = "weight_free") -> str:
        """Plain-text summary for the node's report: engine, output size and why, frames, head-motion cues."""
        cues = ("nods on stressed syllables, brow lifts on pitch accents" if self.life.cues == "prosody"
                else "nods and brow lifts follow the jaw (the track has no loudness or pitch)")
        return "\n".join([f"engine: {engine}", self.framing.note,
                          f"{self.num_frames} frames at {self.fps:g} fps ({self.num_frames / self.fps:.2f} s)",
                          f"head motion: {cues}"])

    def images(self) -> Iterator[np.ndarray]:
        """uint8 [H, W, 3] frames, lazily."""
        for frame in self:
            yield frame.image

    def controls(self, index: int) -> FrameControls:
        return frame_controls(self.rig, self.mouth, self.life, index, self.config)

    def source_map(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 [H, W] x and y: where each output pixel of frame `index` is read in the reference."""
        map_x, map_y = np.meshgrid(np.arange(self.width, dtype=np.float32), np.arange(self.height, dtype=np.float32))
        for band, source_xy in self._band_maps(self.controls(index)):
            x0, y0, x1, y1 = band.box
            map_x[y0:y1, x0:x1], map_y[y0:y1, x0:x1] = source_xy[..., 0], source_xy[..., 1]
        return map_x, map_y

    def _band_maps(self, c: FrameControls) -> list[tuple["MovingBand", np.ndarray]]:
        """(band, float32 [h, w, 2] source x, y in reference px) per moving band; [] for a still frame."""
        rig = self.rig
        moving = bool(np.any(c.coefficients != 0))
        head = c.roll_rad != 0 or c.scale != 0 or bool(np.any(c.shift_px != 0))
        if not moving and not head:
            return []
        s = np.float32(rig.step_px)
        gh, gw = rig.grid_x.shape
        back = np.zeros((gh, gw, 2), np.float32)
        if moving:
            fwd, _ = self._expression(c.coefficients)
            r0, r1, c0, c1 = rig.live
            back[r0:r1, c0:c1] = _invert(rig, fwd, self.config.newton_steps)
        if head:
            m = _head_matrix(rig, c)
            # cv2, not np.linalg.inv: LAPACK would wake the BLAS thread pool, which then spins for
            # milliseconds per frame on the cores the encoder needs
            inverse = cv2.invertAffineTransform(m)
            a_inv, t_inv = inverse[:, :2], inverse[:, 2]
            gx, gy = rig.grid_x, rig.grid_y
            qx = a_inv[0, 0] * gx + a_inv[0, 1] * gy + t_inv[0]
            qy = a_inv[1, 0] * gx + a_inv[1, 1] * gy + t_inv[1]
            w = rig.head_weight_grid
            qx = (gx + w * (qx - gx)).astype(np.float32)
            qy = (gy + w * (qy - gy)).astype(np.float32)
            if moving:
                b = _sample(back, (qx - gx[0, 0]) / s, (qy - gy[0, 0]) / s)
                qx, qy = qx + b[..., 0], qy + b[..., 1]
            disp = np.stack([qx - gx, qy - gy], -1).astype(np.float32)
        else:
            disp = back
        up = cv2.resize(disp, (gw * rig.step_px, gh * rig.step_px), interpolation=cv2.INTER_LINEAR)
        x0u, y0u = rig.grid_origin
        maps = []
        for band in rig.bands:
            x0, y0, x1, y1 = band.box
            maps.append((band, cv2.add(up[y0 - y0u:y1 - y0u, x0 - x0u:x1 - x0u], band.pixel_xy)))
        return maps

    def _expression(self, coef: np.ndarray) -> tuple[np.ndarray, float]:
        """Cached `_expression_field` (render needs it for the map and for the landmarks)."""
        key = coef.tobytes()
        if self._cache[0] != key:
            self._cache = (key, _expression_field(self.rig, coef, self.config))
        return self._cache[1]

    def intended_mouth_opening(self) -> np.ndarray:
        """float32 [num_frames]: the inner-lip gap / inter-ocular distance this stream means to show
        (from its own per-frame landmarks, without rendering), for checks against a re-measurement."""
        from ..face.landmarks import IBUG68_FROM_MEDIAPIPE

        out = np.empty(self.num_frames, np.float32)
        for i in range(self.num_frames):
            p = self.landmarks(i).astype(np.float64)
            if self.layout == "mediapipe_478":
                p = p[IBUG68_FROM_MEDIAPIPE]
            gap = (np.linalg.norm(p[61] - p[67]) + np.linalg.norm(p[62] - p[66]) + np.linalg.norm(p[63] - p[65])) / 3
            iod = np.linalg.norm(p[36:42].mean(0) - p[42:48].mean(0))
            out[i] = gap / max(iod, 1e-6)
        return out

    def landmarks(self, index: int, controls: Optional[FrameControls] = None) -> np.ndarray:
        """float32 [N, 2] landmarks of frame `index`, output px."""
        rig = self.rig
        c = controls or self.controls(index)
        return self._moved(rig.landmarks, rig.basis_landmarks, rig.head_weight_landmarks, c).astype(np.float32)

    def landmarks_68(self, index: int, controls: Optional[FrameControls] = None) -> np.ndarray:
        """float64 [68, 2] iBUG landmarks of frame `index`, output px."""
        rig = self.rig
        return self._moved(rig.landmarks_68, rig.basis_68, rig.head_weight_68, controls or self.controls(index))

    def open_eye_landmarks_68(self, index: int, controls: Optional[FrameControls] = None) -> np.ndarray:
        """float64 [68, 2] iBUG landmarks of frame `index` as if it did not blink (head and mouth as they are):
        where the open eye is in this frame."""
        c = controls or self.controls(index)
        unblinked = c.coefficients.copy()
        unblinked[[BASES.index("blink_left"), BASES.index("blink_right")]] = 0.0
        return self.landmarks_68(index, FrameControls(unblinked, c.roll_rad, c.shift_px, c.scale))

    def _moved(self, points: np.ndarray, basis: np.ndarray, head_weight: np.ndarray, c: FrameControls) -> np.ndarray:
        """Reference points [P, 2] moved by the expression (`basis` [K, P, 2]) and the head motion."""
        coef = c.coefficients
        if np.any(coef != 0):
            coef = coef * self._expression(coef)[1]
        lm = points + np.tensordot(coef, basis, axes=1)
        m = _head_matrix(self.rig, c)
        return lm + head_weight[:, None] * (lm @ m[:, :2].T + m[:, 2] - lm)

    def render(self, index: int) -> RenderedFrame:
        """Renders frame `index` (0 <= index < num_frames)."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} outside 0..{self.num_frames - 1}")
        rig = self.rig
        c = self.controls(index)
        image = rig.frame.copy()
        for band, source_xy in self._band_maps(c):
            x0, y0, x1, y1 = band.box
            # fixed-point maps (1/32 px): faster than float maps, and an unmoved pixel is copied exactly
            fixed_xy, fixed_frac = cv2.convertMaps(source_xy, None, cv2.CV_16SC2)
            cv2.remap(rig.frame, fixed_xy, fixed_frac, cv2.INTER_LINEAR, dst=image[y0:y1, x0:x1],
                      borderMode=cv2.BORDER_REPLICATE)
        lm = self.landmarks(index, c)
        self._paint_interior(image, lm, self.mouth[index])
        blink = float(self.life.blink[index])
        amount = float(_smoothstep(self.config.closed_eye_from, 1.0, np.array(blink)))
        if amount > 0:
            p68 = self.landmarks_68(index, c)
            p68_open = self.open_eye_landmarks_68(index, c)
            for lid, lash, idx in zip(rig.lid_skins, rig.closed_eyes, (slice(36, 42), slice(42, 48))):
                lid.paint(image, p68_open[idx], p68[idx], amount)
                lash.paint(image, p68[idx], amount)
        return RenderedFrame(index=index, image=image, landmarks_xy=lm)

    def _paint_interior(self, image: np.ndarray, lm: np.ndarray, mouth: np.ndarray) -> None:
        rig = self.rig
        upper = lm[list(INNER_LIP_UPPER[rig.layout])]
        lower = lm[list(INNER_LIP_LOWER[rig.layout])]
        ey = rig.mouth_ey
        mid_u, mid_l = len(upper) // 2, len(lower) // 2
        gap_px = float((lower[mid_l] - upper[mid_u]).astype(np.float64) @ ey)
        extra = gap_px - rig.gap0_hw * rig.mouth_hw
        if extra > 0:
            paint_mouth_interior(image, upper, lower, 2 * rig.mouth_hw, extra, rig.colours, self.config.interior)
        closure = _closure_amount(mouth, self.config)
        if closure > 0 and rig.gap0_hw * rig.mouth_hw > 1.0:   # the reference shows an opening to cover
            paint_closed_lips(image, upper, lower, 2 * rig.mouth_hw, closure, rig.colours)


# ---------------------------------------------------------------------------------------- entry point

def _check_number(name: str, value, lo: float, hi: float, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)) or not lo <= float(value) <= hi:
        raise InputError(name, f"must be a number from {lo:g} to {hi:g}, got {value!r}", fix)
    return float(value)


def _check_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 16 <= int(value) <= MAX_SIDE_PX:
        raise InputError(name, f"must be a whole number of pixels from 16 to {MAX_SIDE_PX}, got {value!r}",
                         "Leave it empty (0 in the node) for the default framing, or give e.g. 512")
    return int(value)


def render_frames(reference: Reference, track: VisemeTrack, config: SamplerConfig = SamplerConfig(),
                  progress: Optional[ProgressFn] = None) -> FrameStream:
    """Animates `reference` to `track`: a lazy FrameStream of track.num_frames frames at track.fps.

    Args:
        reference: encoded portrait with its pixels (`frame`) and landmarks.
        track: the VisemeTrack to speak.
        config: size, motion strength, blink rate, seed and tuning.
        progress: progress(done, total), called after each frame while iterating.
    Raises:
        InputError: a reference without pixels or landmarks, an empty track, a bad setting.
    """
    if not isinstance(reference, Reference):
        raise InputError("reference", f"must be a Reference, got {type(reference).__name__}",
                         "Connect the output of the Reference Encoder")
    if reference.frame is None:
        raise InputError("reference", "has no pixels (it was saved or loaded without its image)",
                         "Encode the portrait again with its pixels kept, or load it with its .safetensors file")
    if reference.landmark_layout not in INNER_LIP_UPPER:
        raise InputError("reference", f"has an unknown landmark layout {reference.landmark_layout!r}",
                         "Encode the portrait again with this version")
    if not isinstance(track, VisemeTrack):
        raise InputError("track", f"must be a VisemeTrack, got {type(track).__name__}",
                         "Connect the output of the Viseme Aligner")
    if track.num_frames <= 0 or track.mouth.shape[0] != track.num_frames:
        raise InputError("track", f"has no frames to render (num_frames {track.num_frames}, mouth rows "
                         f"{track.mouth.shape[0]})", "Give speech audio at least one frame long")
    if not (isinstance(track.fps, (int, float)) and track.fps > 0):
        raise InputError("track", f"has a bad frame rate {track.fps!r}", "Build the track with a positive fps")
    motion = _check_number("motion_strength", config.motion_strength, 0.0, 2.0,
                           "Use 0 for a still head, 1 for natural motion, up to 2")
    blink = _check_number("blink_rate", config.blink_rate_per_min, 0.0, 60.0,
                          "Use blinks per minute: 0 for none, 15-20 is natural")
    if isinstance(config.seed, bool) or not isinstance(config.seed, (int, np.integer)) or config.seed < 0:
        raise InputError("seed", f"must be a whole number >= 0, got {config.seed!r}", "Use e.g. 0")
    width = None if config.width is None else _check_size("width", config.width)
    height = None if config.height is None else _check_size("height", config.height)
    max_side = _check_size("max_side_px", config.max_side_px)
    if max_side != config.max_side_px:
        config = replace(config, max_side_px=max_side)
    frame, lm, lm68, framing = _fit_to_output(reference, config, width, height)
    rig = FaceRig(frame, lm, lm68, reference.landmark_layout, config)
    mouth = np.clip(np.nan_to_num(np.asarray(track.mouth, np.float32)), 0.0, 1.0)
    prosody = (track.loudness, track.pitch_hz) if track.has_prosody else (None, None)
    life = life_schedule(mouth[:, 0], float(track.fps), int(config.seed), motion, blink, config.life, *prosody)
    stream = FrameStream(rig, mouth, life, float(track.fps), config, progress)
    stream.framing = framing
    # for the content credentials of whatever is made from these frames (see publish/publish.py)
    from ..core.content_hash import image_sha256

    stream.reference_image_sha256 = image_sha256(reference.frame)
    return stream
