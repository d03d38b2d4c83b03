"""How good a portrait is as a talking-head reference: a report with one row per measured factor.

The rows follow the checklist portrait users already know -- input resolution, lighting, face
visibility and occlusion, frontal pose -- and each one is measured, not guessed:

=====================  =============================================  =========================
Group                  Factor (value, unit)                           Default thresholds
=====================  =============================================  =========================
Input resolution       image size (short side, px)                    warn < 512
                       face size (face box height, px)                fail < 64, warn < 192
                       eye distance (inter-ocular, px)                warn < 48
Lighting               exposure (mean face luma, 0..255)              warn < 60 or > 200
                       clipping (face pixels with luma <=2 or >=253)  warn > 5 %
                       evenness of light (left vs right half, EV)     warn > 1.0 EV
Face visibility        landmark confidence (0..1)                     warn < 0.5
 and occlusion         eyes visible (eye aspect ratio, smaller eye)   warn < 0.15 or cut off
                       mouth visible (luma std. dev. around mouth)    warn < 5 or cut off
                       mouth open (inner-lip gap / mouth width)       warn > 0.35
                       face inside frame (share of box outside)       warn > 2 %
Frontal pose           yaw, pitch (|degrees|)                         warn > 25 / > 20
=====================  =============================================  =========================

Only two things fail (stop the run), because only they make the output unusable: no face at all,
and a face smaller than `QualityConfig.face_size_fail_px`. Everything else warns: the video can
still be made, it just looks worse, and the advice says what would help.

Measurements:

* Luma is Rec. 709 Y' = 0.2126 R + 0.7152 G + 0.0722 B on the 8-bit values (0..255).
* The face region is the polygon of the 68-point jaw line and eyebrows (so background inside the
  box does not count), or the ellipse inscribed in the central part of the face box when no
  landmarks are given.
* Evenness compares the mean *linear* light (sRGB decoded) of the two halves of the face region,
  split at the nose bridge (landmarks 27-30): |log2(left / right)|, in stops (EV). 1 EV means one
  side receives twice the light of the other.
* Eye aspect ratio (Soukupova and Cech 2016): (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|) over the six
  iBUG points of an eye; ~0.25-0.35 open, < 0.15 closed.

Rows whose inputs are missing (no landmarks, no pose) are left out rather than guessed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

PASS, WARN, FAIL = "pass", "warn", "fail"
VERDICTS = (PASS, WARN, FAIL)

GROUP_RESOLUTION = "Input resolution"
GROUP_LIGHTING = "Lighting"
GROUP_VISIBILITY = "Face visibility and occlusion"
GROUP_POSE = "Frontal pose"
GROUPS = (GROUP_RESOLUTION, GROUP_LIGHTING, GROUP_VISIBILITY, GROUP_POSE)

# iBUG-68 index ranges.
JAW = list(range(0, 17))
BROWS = list(range(17, 27))
NOSE_BRIDGE = list(range(27, 31))
RIGHT_EYE = list(range(36, 42))  # the subject's right eye, on the image's left
LEFT_EYE = list(range(42, 48))
MOUTH = list(range(48, 68))


@dataclass
class QualityConfig:
    """Thresholds of the quality report. Units are in the names or comments.

    Attributes:
        min_short_side_px: warn when the image's shorter side is below this (px).
        face_size_fail_px: fail when the face box is less tall than this (px): too few pixels to
            rebuild a face from.
        face_size_warn_px: warn below this face box height (px); the aligned crop will be upscaled.
        interocular_warn_px: warn when the eye centres are closer than this (px).
        exposure_dark_warn: warn when the mean face luma (0..255) is below this.
        exposure_bright_warn: warn when the mean face luma (0..255) is above this.
        clip_low, clip_high: luma values (0..255) at or beyond which a pixel counts as clipped.
        clipping_warn_fraction: warn when more than this share (0..1) of face pixels is clipped.
        evenness_warn_ev: warn when the halves of the face differ by more than this many stops.
        landmark_confidence_warn: warn below this landmark confidence (0..1).
        eye_aspect_warn: warn when the smaller eye aspect ratio is below this (eyes closed).
        mouth_contrast_warn: warn when the luma standard deviation (0..255) around the mouth is
            below this (mouth covered, blurred or in deep shadow).
        mouth_open_warn: warn when the inner-lip gap exceeds this share of the mouth width.
        outside_warn_fraction: warn when more than this share (0..1) of the face box lies outside
            the image.
        yaw_warn_deg, pitch_warn_deg: warn when |yaw| / |pitch| exceed these (degrees).
        yaw_fail_deg, pitch_fail_deg: refuse beyond these: the weight-free engine warps the picture in
            2D, and a head turned further than this distorts visibly when it talks.
    """

    min_short_side_px: int = 512
    face_size_fail_px: float = 64.0
    face_size_warn_px: float = 192.0
    interocular_warn_px: float = 48.0
    exposure_dark_warn: float = 60.0
    exposure_bright_warn: float = 200.0
    clip_low: int = 2
    clip_high: int = 253
    clipping_warn_fraction: float = 0.05
    evenness_warn_ev: float = 1.0
    landmark_confidence_warn: float = 0.5
    eye_aspect_warn: float = 0.15
    mouth_contrast_warn: float = 5.0
    mouth_open_warn: float = 0.35
    outside_warn_fraction: float = 0.02
    yaw_warn_deg: float = 25.0
    pitch_warn_deg: float = 20.0
    yaw_fail_deg: float = 45.0
    pitch_fail_deg: float = 35.0


@dataclass
class QualityCheck:
    """One measured factor.

    Attributes:
        factor: what was measured, e.g. "face size".
        value: the measurement (NaN if it could not be computed).
        unit: "px", "%", "EV", "deg", "0..255", "" (a ratio) ...
        verdict: "pass", "warn" or "fail".
        advice: one sentence saying what the value means and what would help.
        group: the row group of the report (one of GROUPS).
    """

    factor: str
    value: float
    unit: str
    verdict: str
    advice: str
    group: str = ""

    def value_text(self) -> str:
        v = self.value
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "n/a"
        if self.unit == "px":
            return f"{v:.0f} px"
        if self.unit == "%":
            return f"{v:.1f} %"
        if self.unit == "EV":
            return f"{v:.2f} EV"
        if self.unit == "deg":
            return f"{v:+.1f} deg"
        if self.unit == "0..255":
            return f"{v:.0f}/255"
        if self.unit == "faces":
            return f"{v:.0f} faces"
        return f"{v:.2f}" + (f" {self.unit}" if self.unit else "")


@dataclass
class QualityReport:
    """All checks of one reference image.

    Attributes:
        checks: the rows, grouped in GROUPS order.
        ok: False when any check failed (the run should stop).
    """

    checks: list[QualityCheck] = field(default_factory=list)
    ok: bool = True

    def by_factor(self, factor: str) -> Optional[QualityCheck]:
        for check in self.checks:
            if check.factor == factor:
                return check
        return None

    @property
    def warnings(self) -> list[str]:
        """The advice of every warn row."""
        return [c.advice for c in self.checks if c.verdict == WARN]

    @property
    def failures(self) -> list[str]:
        """The advice of every fail row."""
        return [c.advice for c in self.checks if c.verdict == FAIL]

    def counts(self) -> dict[str, int]:
        return {v: sum(c.verdict == v for c in self.checks) for v in VERDICTS}

    def to_text(self) -> str:
        """A fixed-width table: a summary line, then the rows under their group headings."""
        counts = self.counts()
        status = "OK" if self.ok else "FAIL"
        lines = [f"Reference quality: {status} ({counts[FAIL]} fail, {counts[WARN]} warn, {counts[PASS]} pass)"]
        width_factor = max([len("Factor")] + [len(c.factor) for c in self.checks])
        width_value = max([len("Measured")] + [len(c.value_text()) for c in self.checks])
        header = f"{'Factor':<{width_factor}}  {'Measured':<{width_value}}  Verdict  Advice"
        lines += [header, "-" * len(header)]
        groups = [g for g in GROUPS if any(c.group == g for c in self.checks)]
        groups += sorted({c.group for c in self.checks} - set(groups))
        for group in groups:
            lines.append(f"[{group or 'Other'}]")
            for c in self.checks:
                if c.group == group:
                    lines.append(f"{c.factor:<{width_factor}}  {c.value_text():<{width_value}}  "
                                 f"{c.verdict.upper():<7}  {c.advice}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        checks = []
        for c in self.checks:
            row = asdict(c)
            row["value"] = None if isinstance(c.value, float) and math.isnan(c.value) else float(c.value)
            checks.append(row)
        return {"ok": bool(self.ok), "checks": checks}

    @classmethod
    def from_dict(cls, data: dict) -> "QualityReport":
        checks = []
        for row in data.get("checks", []):
            row = dict(row)
            row["value"] = float("nan") if row.get("value") is None else float(row["value"])
            checks.append(QualityCheck(**row))
        return cls(checks=checks, ok=bool(data.get("ok", True)))


# ----------------------------------------------------------------------------------- measuring

def luma(image_rgb: np.ndarray) -> np.ndarray:
    """Rec. 709 luma of a uint8 RGB image, float32 [H, W] in 0..255."""
    rgb = image_rgb.astype(np.float32)
    return 0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]


def srgb_to_linear(values_0_255: np.ndarray) -> np.ndarray:
    """sRGB-encoded values (0..255) to linear light (0..1)."""
    v = np.asarray(values_0_255, dtype=np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def eye_aspect_ratio(eye: np.ndarray) -> float:
    """EAR of the six iBUG points of one eye, [6, 2] px (unitless; ~0.3 open, < 0.15 closed)."""
    p = np.asarray(eye, dtype=np.float64)
    width = np.linalg.norm(p[0] - p[3])
    if width <= 1e-6:
        return 0.0
    return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2.0 * width))


def _pose_tuple(pose: Any) -> Optional[tuple[float, float, float]]:
    if pose is None:
        return None
    if hasattr(pose, "yaw_deg"):
        return float(pose.yaw_deg), float(pose.pitch_deg), float(getattr(pose, "roll_deg", 0.0))
    values = [float(v) for v in pose]
    while len(values) < 3:
        values.append(0.0)
    return values[0], values[1], values[2]


def _face_mask(height: int, width: int, box: np.ndarray, landmarks_68: Optional[np.ndarray],
               region: tuple[int, int, int, int]) -> np.ndarray:
    """Boolean mask of the face region inside `region` (x0, y0, x1, y1), shape [y1-y0, x1-x0]."""
    from PIL import Image, ImageDraw

    x0, y0, x1, y1 = region
    canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
    draw = ImageDraw.Draw(canvas)
    if landmarks_68 is not None:
        outline = np.concatenate([landmarks_68[JAW], landmarks_68[BROWS][::-1]], axis=0)
        draw.polygon([(float(x) - x0, float(y) - y0) for x, y in outline], fill=255)
    if landmarks_68 is None or not np.asarray(canvas).any():
        bx0, by0, bx1, by1 = [float(v) for v in box]
        cx, cy = (bx0 + bx1) / 2 - x0, (by0 + by1) / 2 - y0
        rx, ry = 0.4 * (bx1 - bx0), 0.45 * (by1 - by0)
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=255)
    return np.asarray(canvas) > 0


def _inside(points: np.ndarray, height: int, width: int) -> bool:
    p = np.asarray(points)
    return bool(np.all((p[:, 0] >= 0) & (p[:, 0] <= width - 1) & (p[:, 1] >= 0) & (p[:, 1] <= height - 1)))


def assess_quality(
    image_rgb: np.ndarray,
    face_box: Optional[Sequence[float]],
    landmarks_68: Optional[np.ndarray] = None,
    landmark_confidence: Optional[float] = None,
    pose: Any = None,
    config: Optional[QualityConfig] = None,
) -> QualityReport:
    """Measures the reference image and the chosen face; see the module docstring for the factors.

    Args:
        image_rgb: uint8 RGB [H, W, 3] (as returned by image_input.to_rgb_uint8).
        face_box: (x0, y0, x1, y1) of the chosen face in pixels, or None when no face was found
            (the report then fails with advice).
        landmarks_68: [68, 2] iBUG-68 points in pixels (x, y), or None.
        landmark_confidence: 0..1 from the landmark backend, or None.
        pose: (yaw, pitch, roll) in degrees, or an object with yaw_deg / pitch_deg / roll_deg, or None.
        config: thresholds; QualityConfig() by default.
    Returns:
        QualityReport; `ok` is False when a check failed.
    """
    from ..core.image_input import to_rgb_uint8

    cfg = config or QualityConfig()
    image = to_rgb_uint8(image_rgb)  # a no-op for uint8 RGB
    height, width = image.shape[:2]
    checks: list[QualityCheck] = []

    def add(group, factor, value, unit, verdict, advice):
        checks.append(QualityCheck(factor=factor, value=float(value), unit=unit, verdict=verdict,
                                   advice=advice, group=group))

    # --- input resolution
    short = min(height, width)
    if short < cfg.min_short_side_px:
        add(GROUP_RESOLUTION, "image size", short, "px", WARN,
            f"The image is only {width}x{height}; a larger original (short side {cfg.min_short_side_px} px "
            "or more) gives a sharper face.")
    else:
        add(GROUP_RESOLUTION, "image size", short, "px", PASS,
            f"The image ({width}x{height}) has enough pixels.")

    if face_box is None:
        add(GROUP_RESOLUTION, "face found", 0, "faces", FAIL,
            "No face was found: use a photo where one face is clearly visible, facing the camera.")
        return QualityReport(checks=checks, ok=False)

    box = np.asarray(face_box, dtype=np.float64).reshape(4)
    bx0, by0, bx1, by1 = box
    box_h = max(0.0, by1 - by0)
    lm = None if landmarks_68 is None else np.asarray(landmarks_68, dtype=np.float64).reshape(68, 2)

    if box_h < cfg.face_size_fail_px:
        add(GROUP_RESOLUTION, "face size", box_h, "px", FAIL,
            f"The face is only {box_h:.0f} px tall, too small to animate: use a closer or larger photo "
            f"where the face is at least {cfg.face_size_warn_px:.0f} px tall.")
    elif box_h < cfg.face_size_warn_px:
        add(GROUP_RESOLUTION, "face size", box_h, "px", WARN,
            f"The face is {box_h:.0f} px tall and will be upscaled, so details will be soft: a photo with "
            f"the face at least {cfg.face_size_warn_px:.0f} px tall looks sharper.")
    else:
        add(GROUP_RESOLUTION, "face size", box_h, "px", PASS, f"The face is {box_h:.0f} px tall, enough detail.")

    if lm is not None:
        iod = float(np.linalg.norm(lm[LEFT_EYE].mean(0) - lm[RIGHT_EYE].mean(0)))
        if iod < cfg.interocular_warn_px:
            add(GROUP_RESOLUTION, "eye distance", iod, "px", WARN,
                f"The eyes are only {iod:.0f} px apart (small face or head turned away): a closer, frontal "
                "photo gives better eyes and mouth.")
        else:
            add(GROUP_RESOLUTION, "eye distance", iod, "px", PASS, f"The eyes are {iod:.0f} px apart, enough detail.")

    # --- lighting, measured on the face region inside the image
    rx0, ry0 = max(0, int(math.floor(bx0))), max(0, int(math.floor(by0)))
    rx1, ry1 = min(width, int(math.ceil(bx1))), min(height, int(math.ceil(by1)))
    if lm is not None:
        rx0 = max(0, min(rx0, int(math.floor(lm[:, 0].min()))))
        ry0 = max(0, min(ry0, int(math.floor(lm[:, 1].min()))))
        rx1 = min(width, max(rx1, int(math.ceil(lm[:, 0].max())) + 1))
        ry1 = min(height, max(ry1, int(math.ceil(lm[:, 1].max())) + 1))
    if rx1 > rx0 and ry1 > ry0:
        mask = _face_mask(height, width, box, lm, (rx0, ry0, rx1, ry1))
        y = luma(image[ry0:ry1, rx0:rx1])
        face_y = y[mask]
    else:
        mask, y, face_y = None, None, np.zeros(0, np.float32)

    if face_y.size:
        mean_y = float(face_y.mean())
        if mean_y < cfg.exposure_dark_warn:
            add(GROUP_LIGHTING, "exposure", mean_y, "0..255", WARN,
                f"The face is dark (mean {mean_y:.0f}/255): brighten the photo or use one taken in better light.")
        elif mean_y > cfg.exposure_bright_warn:
            add(GROUP_LIGHTING, "exposure", mean_y, "0..255", WARN,
                f"The face is very bright (mean {mean_y:.0f}/255): lower the exposure or use a photo "
                "without strong flash or sun.")
        else:
            add(GROUP_LIGHTING, "exposure", mean_y, "0..255", PASS,
                f"The face is well exposed (mean {mean_y:.0f}/255).")

        clipped = float(np.mean((face_y <= cfg.clip_low) | (face_y >= cfg.clip_high)))
        if clipped > cfg.clipping_warn_fraction:
            add(GROUP_LIGHTING, "clipping", 100 * clipped, "%", WARN,
                f"{100 * clipped:.0f} % of the face is pure black or white, where detail is lost: use a "
                "photo with softer light or less contrast.")
        else:
            add(GROUP_LIGHTING, "clipping", 100 * clipped, "%", PASS,
                "Highlights and shadows on the face keep their detail.")

        mid_x = float(lm[NOSE_BRIDGE, 0].mean()) if lm is not None else (bx0 + bx1) / 2
        columns = np.arange(rx0, rx1)[None, :] + 0.5
        left = mask & (columns < mid_x)
        right = mask & (columns >= mid_x)
        if left.sum() >= 16 and right.sum() >= 16:
            lin = srgb_to_linear(y)
            ev = float(math.log2((lin[left].mean() + 1e-4) / (lin[right].mean() + 1e-4)))
            darker = "right" if ev > 0 else "left"
            if abs(ev) > cfg.evenness_warn_ev:
                add(GROUP_LIGHTING, "evenness of light", abs(ev), "EV", WARN,
                    f"The {darker} side of the face (as seen in the image) gets {abs(ev):.1f} stops less light: "
                    "use a photo with even, frontal light, or the shadow will stay baked into the video.")
            else:
                add(GROUP_LIGHTING, "evenness of light", abs(ev), "EV", PASS,
                    "Both sides of the face are lit about evenly.")

    # --- visibility and occlusion
    if landmark_confidence is not None:
        conf = float(landmark_confidence)
        if conf < cfg.landmark_confidence_warn:
            add(GROUP_VISIBILITY, "landmark confidence", conf, "", WARN,
                f"The face landmarks are uncertain ({conf:.2f}), often from occlusion, blur or an unusual "
                "angle: a clear, unobstructed, frontal photo gives a more reliable result.")
        else:
            add(GROUP_VISIBILITY, "landmark confidence", conf, "", PASS,
                f"The face landmarks were found confidently ({conf:.2f}).")

    if lm is not None:
        ear = min(eye_aspect_ratio(lm[RIGHT_EYE]), eye_aspect_ratio(lm[LEFT_EYE]))
        eyes_in = _inside(lm[RIGHT_EYE + LEFT_EYE], height, width)
        if not eyes_in:
            add(GROUP_VISIBILITY, "eyes visible", ear, "", WARN,
                "An eye lies outside the image: use a photo that shows the whole face.")
        elif ear < cfg.eye_aspect_warn:
            add(GROUP_VISIBILITY, "eyes visible", ear, "", WARN,
                f"The eyes look closed or covered (eye aspect ratio {ear:.2f}): use a photo with both eyes "
                "open and visible.")
        else:
            add(GROUP_VISIBILITY, "eyes visible", ear, "", PASS, "Both eyes are open and visible.")

        mouth = lm[MOUTH]
        mouth_in = _inside(mouth, height, width)
        mx0, my0 = mouth.min(0)
        mx1, my1 = mouth.max(0)
        pad_x, pad_y = 0.25 * (mx1 - mx0), 0.5 * (my1 - my0) + 2
        cx0, cy0 = max(0, int(mx0 - pad_x)), max(0, int(my0 - pad_y))
        cx1, cy1 = min(width, int(math.ceil(mx1 + pad_x)) + 1), min(height, int(math.ceil(my1 + pad_y)) + 1)
        contrast = float(luma(image[cy0:cy1, cx0:cx1]).std()) if cx1 > cx0 and cy1 > cy0 else 0.0
        if not mouth_in:
            add(GROUP_VISIBILITY, "mouth visible", contrast, "0..255", WARN,
                "The mouth lies partly outside the image: use a photo that shows the whole face.")
        elif contrast < cfg.mouth_contrast_warn:
            add(GROUP_VISIBILITY, "mouth visible", contrast, "0..255", WARN,
                "The mouth area is flat and featureless (covered, blurred or in shadow): use a photo where "
                "the lips are clearly visible.")
        else:
            add(GROUP_VISIBILITY, "mouth visible", contrast, "0..255", PASS, "The mouth is clearly visible.")

        mouth_width = float(np.linalg.norm(lm[54] - lm[48]))
        gap = float(np.linalg.norm(lm[66] - lm[62]))
        opening = gap / mouth_width if mouth_width > 1e-6 else 0.0
        if opening > cfg.mouth_open_warn:
            add(GROUP_VISIBILITY, "mouth open", opening, "", WARN,
                "The mouth is wide open: a closed or slightly open mouth gives cleaner lip shapes.")
        else:
            add(GROUP_VISIBILITY, "mouth open", opening, "", PASS, "The mouth is closed or slightly open.")

    box_area = max(0.0, bx1 - bx0) * max(0.0, by1 - by0)
    inside_w = max(0.0, min(bx1, width) - max(bx0, 0.0))
    inside_h = max(0.0, min(by1, height) - max(by0, 0.0))
    outside = 1.0 - (inside_w * inside_h) / box_area if box_area > 0 else 1.0
    if outside > cfg.outside_warn_fraction:
        add(GROUP_VISIBILITY, "face inside frame", 100 * outside, "%", WARN,
            f"{100 * outside:.0f} % of the face is cut off by the image border: use a photo with some space "
            "around the head.")
    else:
        add(GROUP_VISIBILITY, "face inside frame", 100 * outside, "%", PASS, "The whole face is inside the image.")

    # --- pose
    angles = _pose_tuple(pose)
    if angles is not None:
        yaw, pitch, _roll = angles
        if abs(yaw) > cfg.yaw_fail_deg:
            add(GROUP_POSE, "yaw", yaw, "deg", FAIL,
                f"The head is turned {abs(yaw):.0f} degrees sideways (at most {cfg.yaw_fail_deg:.0f} can be animated): "
                f"use a photo facing the camera, within {cfg.yaw_warn_deg:.0f} degrees for the best result.")
        elif abs(yaw) > cfg.yaw_warn_deg:
            add(GROUP_POSE, "yaw", yaw, "deg", WARN,
                f"The head is turned {abs(yaw):.0f} degrees sideways: a photo facing the camera (within "
                f"{cfg.yaw_warn_deg:.0f} degrees) animates better.")
        else:
            add(GROUP_POSE, "yaw", yaw, "deg", PASS, "The head faces the camera.")
        if abs(pitch) > cfg.pitch_fail_deg:
            add(GROUP_POSE, "pitch", pitch, "deg", FAIL,
                f"The head is tilted {abs(pitch):.0f} degrees up or down (at most {cfg.pitch_fail_deg:.0f} can be "
                f"animated): use a photo taken at eye level, within {cfg.pitch_warn_deg:.0f} degrees for the best result.")
        elif abs(pitch) > cfg.pitch_warn_deg:
            add(GROUP_POSE, "pitch", pitch, "deg", WARN,
                f"The head is tilted {abs(pitch):.0f} degrees up or down: a photo at eye level animates better.")
        else:
            add(GROUP_POSE, "pitch", pitch, "deg", PASS, "The head is level with the camera.")

    return QualityReport(checks=checks, ok=not any(c.verdict == FAIL for c in checks))
