"""Face detection, dense landmarks, head pose and the canonical aligned crop (and back).

Backends (backends.py), both offline, weights from the pip wheels only:

=============  ==============================  =============================  ============================
backend        detector / landmarks            installs on                    measured (2 CPU cores)
=============  ==============================  =============================  ============================
``mediapipe``  BlazeFace full range / Face     mediapipe==0.10.21: Python     ~22 ms/image at 512 and at
               Mesh + iris: 478 points         3.11-3.12 only, pins numpy<2   2048 px; 1-px-shift jitter
                                                                              median 0.2-0.8 px
``dlib``       HOG frontal / iBUG 68-point     dlib-bin + face_recognition_   ~105 ms at 512, ~160 ms at
               shape predictor                 models: 3.11-3.13, numpy 2     2048 px; jitter 0.4-1.2 px
=============  ==============================  =============================  ============================

``backend="auto"`` uses mediapipe when installed (denser, 5x faster, steadier, finds rotated faces),
else dlib. Both find no face on skimage's cat and coffee images or a drawn cartoon face. The dlib
68-point model was trained on iBUG 300-W, whose licence excludes commercial use.
docs/benchmarks.md (tests/bench/bench_faces.py) has the current timings and landmark jitter.

Coordinates: landmarks are in input-image pixels with pixel (col, row)'s centre at (col, row), as in
cv2; ``box_xyxy`` is clipped to [0, W] x [0, H]. Landmark layouts: ``mediapipe_478`` (Face Mesh
indices; 468-477 are the irises) and ``ibug_68`` (iBUG 300-W / dlib order). ``landmarks_68()`` gives
iBUG-68 for both; for mediapipe through ``IBUG68_FROM_MEDIAPIPE``, a map checked against dlib's
predictor on the sample portraits (mean distance 0.035 of the eye distance; the jaw points differ most
because dlib's jaw follows the visible outline).

Order of faces: largest first; faces whose box areas are within 10% of the largest remaining one count
as equal and go left to right (so of two equal faces, the left one is used; ``choice_note`` says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError
from .backends import BACKENDS, INSTALL_HINT, backend_importable, get_backend

#: iBUG-68 index -> Face Mesh index. Jaw 0-16, brows 17-26 (subject's right first, i.e. image left),
#: nose bridge 27-30, nostrils 31-35, eyes 36-47 (corner, top, top, corner, bottom, bottom), outer lips
#: 48-59, inner lips 60-67.
IBUG68_FROM_MEDIAPIPE = np.array([
    127, 93, 177, 58, 172, 150, 149, 148, 152, 377, 378, 379, 397, 288, 401, 323, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
], dtype=np.int64)

#: iBUG-68 index of each point's mirror image (left <-> right), for flipping landmark sets.
IBUG68_MIRROR = np.array(
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40] + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65], dtype=np.int64)

IBUG68_GROUPS = {
    "jaw": range(0, 17), "right_brow": range(17, 22), "left_brow": range(22, 27), "nose": range(27, 36),
    "right_eye": range(36, 42), "left_eye": range(42, 48), "outer_lips": range(48, 60),
    "inner_lips": range(60, 68),
}

#: Generic 3D face in the iBUG-68 layout, about mm (eye centres 63 apart), x toward image right when
#: frontal (the subject's left), y down, z away from the camera; origin between the eyes. Derived from
#: mediapipe Face Mesh depth on the two sample portraits, put in this frame, averaged and mirrored to be
#: symmetric. Used for head_pose().
MODEL_68_MM = np.array([
    [-67.1, 7.7, 53.0], [-65.8, 33.7, 57.5], [-64.2, 44.3, 35.5], [-60.7, 62.4, 49.0],
    [-55.4, 74.2, 39.0], [-40.5, 91.4, 19.3], [-32.6, 97.3, 12.0], [-13.6, 106.3, -0.8],
    [0.0, 107.6, -2.6], [13.6, 106.3, -0.8], [32.6, 97.3, 12.0], [40.5, 91.4, 19.3],
    [55.4, 74.2, 39.0], [60.7, 62.4, 49.0], [64.2, 44.3, 35.5], [65.8, 33.7, 57.5],
    [67.1, 7.7, 53.0], [-55.6, -11.8, 6.1], [-49.7, -17.3, -1.7], [-40.5, -20.5, -8.0],
    [-28.5, -20.4, -13.7], [-14.7, -19.0, -16.5], [14.7, -19.0, -16.5], [28.5, -20.4, -13.7],
    [40.5, -20.5, -8.0], [49.7, -17.3, -1.7], [55.6, -11.8, 6.1], [0.0, -3.8, -16.0],
    [0.0, 9.9, -25.7], [0.0, 22.8, -37.0], [0.0, 31.0, -39.6], [-14.7, 38.9, -18.5],
    [-8.8, 42.1, -20.5], [0.0, 42.9, -22.2], [8.8, 42.1, -20.5], [14.7, 38.9, -18.5],
    [-44.0, 0.6, 5.3], [-38.2, -4.2, -1.0], [-27.8, -5.1, -2.6], [-16.9, 2.1, 0.2],
    [-26.0, 3.1, -1.9], [-36.0, 3.5, -0.1], [16.9, 2.1, 0.2], [27.8, -5.1, -2.6],
    [38.2, -4.2, -1.0], [44.0, 0.6, 5.3], [36.0, 3.5, -0.1], [26.0, 3.1, -1.9],
    [-28.7, 60.5, -0.0], [-16.8, 55.9, -16.5], [-8.7, 54.8, -20.4], [0.0, 56.2, -21.1],
    [8.7, 54.8, -20.4], [16.8, 55.9, -16.5], [28.7, 60.5, -0.0], [16.1, 71.4, -13.2],
    [8.6, 73.6, -16.8], [0.0, 74.2, -17.6], [-8.6, 73.6, -16.8], [-16.1, 71.4, -13.2],
    [-26.4, 60.7, -1.9], [-7.4, 60.7, -14.7], [0.0, 61.2, -15.6], [7.4, 60.7, -14.7],
    [26.4, 60.7, -1.9], [7.2, 65.9, -14.4], [0.0, 66.4, -15.4], [-7.2, 65.9, -14.4],
], dtype=np.float64)

#: Points that move little with expression (eye corners, nose, mouth corners): the pose fit uses these.
POSE_POINTS = np.array([36, 39, 42, 45, 27, 28, 29, 30, 31, 32, 33, 34, 35, 48, 54], dtype=np.int64)

#: Canonical aligned crop (FFHQ-like), as fractions of the crop side at face_scale=1: eye centres a
#: quarter of the side apart, a little above the middle; mouth centre below. Hair and chin stay in frame.
CANONICAL_LEFT_EYE = (0.375, 0.45)   # image-left eye (the subject's right eye)
CANONICAL_RIGHT_EYE = (0.625, 0.45)  # image-right eye (the subject's left eye)
CANONICAL_MOUTH = (0.5, 0.675)       # midpoint of the mouth corners (for a typical frontal face)

#: Largest roll (degrees) a face may have and still count as upright.
UPRIGHT_ROLL_DEG = 45.0


@dataclass
class FaceDetection:
    """One face. `landmarks_xy` may extend past the image when the face is cut by its border."""

    box_xyxy: np.ndarray            # float32 (4,), pixels, clipped to the image
    score: float                    # detector confidence 0..1
    landmarks_xy: np.ndarray        # float32 (N, 2), pixels
    layout: str                     # "mediapipe_478" | "ibug_68"
    landmark_confidence: float      # 0..1: share of landmarks inside the image x geometric plausibility
    backend: str
    image_size: tuple[int, int] = (0, 0)  # (width, height) of the image the coordinates refer to
    second_look: bool = False       # found by the backend's fallback, not its main detector

    def landmarks_68(self) -> np.ndarray:
        """(68, 2) float32 in iBUG-68 order."""
        if self.layout == "ibug_68":
            return self.landmarks_xy
        return self.landmarks_xy[IBUG68_FROM_MEDIAPIPE]

    def eye_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(image-left eye, image-right eye) centres: iris centres for mediapipe, eye-contour means for dlib."""
        if self.layout == "mediapipe_478" and len(self.landmarks_xy) >= 478:
            a, b = self.landmarks_xy[468].astype(np.float64), self.landmarks_xy[473].astype(np.float64)
        else:
            p = self.landmarks_68().astype(np.float64)
            a, b = p[36:42].mean(0), p[42:48].mean(0)
        return (a, b) if a[0] <= b[0] else (b, a)

    def mouth_centre(self) -> np.ndarray:
        p = self.landmarks_68().astype(np.float64)
        return (p[48] + p[54]) / 2

    @property
    def area(self) -> float:
        b = self.box_xyxy
        return float(max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]))

    @property
    def cut_by_border(self) -> bool:
        """True when part of the face (its 68 landmarks, or its box) reaches the image border."""
        w, h = self.image_size
        p = self.landmarks_68()
        b = self.box_xyxy
        outside = bool(np.any(p[:, 0] < 0) or np.any(p[:, 1] < 0) or np.any(p[:, 0] > w - 1)
                       or np.any(p[:, 1] > h - 1))
        return outside or bool(b[0] <= 0.5 or b[1] <= 0.5 or b[2] >= w - 0.5 or b[3] >= h - 0.5)


@dataclass
class HeadPose:
    """Head rotation relative to the line of sight from the camera to the face, degrees: (0, 0, 0) is
    looking straight into the lens, wherever the face sits in the frame.

    yaw_deg: positive when the subject turns to their left (nose toward image right).
    pitch_deg: positive when the subject looks up (chin up).
    roll_deg: positive when the eye line is rotated clockwise in the image (head tilted toward the
        subject's left shoulder); an upright image of an upright head is ~0.
    """

    yaw_deg: float
    pitch_deg: float
    roll_deg: float


@dataclass
class AlignedCrop:
    """A similarity-aligned square crop. `matrix` maps image pixels to crop pixels, `inverse` back."""

    image: np.ndarray        # (S, S, 3) uint8
    matrix: np.ndarray       # (2, 3) float64, image -> crop
    inverse: np.ndarray      # (2, 3) float64, crop -> image
    crop_size: int = 0
    scale: float = 1.0       # crop pixels per image pixel

    def to_crop(self, points_image) -> np.ndarray:
        p = np.asarray(points_image, np.float64).reshape(-1, 2)
        return p @ self.matrix[:, :2].T + self.matrix[:, 2]

    def to_image(self, points_crop) -> np.ndarray:
        p = np.asarray(points_crop, np.float64).reshape(-1, 2)
        return p @ self.inverse[:, :2].T + self.inverse[:, 2]


# ---------------------------------------------------------------------------------------------------
# detection


def available_backends() -> list[str]:
    """Backends whose packages are installed, in the order "auto" tries them."""
    return [name for name in BACKENDS if backend_importable(name)]


def resolve_backend(backend: str = "auto") -> str:
    if backend == "auto":
        names = available_backends()
        if not names:
            raise InputError("backend", "no face detection backend is installed", INSTALL_HINT)
        return names[0]
    if backend not in BACKENDS:
        raise InputError("backend", f"unknown face backend {backend!r}", f"Choose one of {('auto',) + BACKENDS}.")
    return backend


def _check_image(image_rgb, input_name: str = "image") -> np.ndarray:
    image = np.asarray(image_rgb)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(input_name, f"expected an RGB uint8 array (H, W, 3), got {image.dtype} {image.shape}",
                         "Pass the image as uint8 RGB (e.g. numpy.asarray(PIL.Image.open(path).convert('RGB'))).")
    if min(image.shape[:2]) < 16:
        raise InputError(input_name, f"image of {image.shape[1]}x{image.shape[0]} pixels is too small to hold a face",
                         "Use a portrait at least 128 pixels on each side.")
    return np.ascontiguousarray(image)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2  # noqa: PLC0415

    shrink = width < image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _square_crop(image: np.ndarray, centre, side: float, out_px: int):
    """Square of `side` image pixels around `centre`, resampled to out_px (zero padding outside the image).

    Returns (crop, forward) with forward = (sx, sy, tx, ty): crop = (x * sx + tx, y * sy + ty)."""
    import cv2  # noqa: PLC0415

    h, w = image.shape[:2]
    x0 = int(math.floor(centre[0] - side / 2))
    y0 = int(math.floor(centre[1] - side / 2))
    n = max(2, int(math.ceil(side)))
    x1, y1 = x0 + n, y0 + n
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx1 <= cx0 or cy1 <= cy0:
        return np.zeros((out_px, out_px, 3), np.uint8), (out_px / n, out_px / n, 0.0, 0.0)
    patch = image[cy0:cy1, cx0:cx1]
    if (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1):
        patch = cv2.copyMakeBorder(patch, cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1, cv2.BORDER_CONSTANT, value=0)
    crop = _resize(patch, out_px, out_px)
    s = out_px / n
    # cv2.resize: destination pixel centre x' samples source (x' + 0.5) / s - 0.5 (pixel-centre coordinates)
    tx = (0.5 - x0) * s - 0.5
    ty = (0.5 - y0) * s - 0.5
    return crop, (s, s, tx, ty)


def _landmark_confidence(points68: np.ndarray, box: np.ndarray, width: int, height: int) -> float:
    inside = np.mean((points68[:, 0] >= 0) & (points68[:, 0] <= width - 1)
                     & (points68[:, 1] >= 0) & (points68[:, 1] <= height - 1))
    left, right = points68[36:42].mean(0), points68[42:48].mean(0)
    mouth = (points68[48] + points68[54]) / 2
    eye_dist = float(np.linalg.norm(right - left))
    box_w = float(max(box[2] - box[0], box[3] - box[1], 1.0))
    # In the face's own frame the mouth lies below the eyes, eye distance 0.15-0.7 of the box.
    axis = (right - left) / max(eye_dist, 1e-6)
    down = np.array([-axis[1], axis[0]])
    mouth_below = float((mouth - (left + right) / 2) @ down) > 0.3 * eye_dist
    plausible = (0.15 <= eye_dist / box_w <= 0.7) and mouth_below
    return float(inside * (1.0 if plausible else 0.3))


def _order_faces(faces: list[FaceDetection]) -> list[FaceDetection]:
    """Largest first; faces within 10% of the largest remaining area count as equal: left to right."""
    remaining = sorted(faces, key=lambda f: -f.area)
    ordered = []
    while remaining:
        top = remaining[0].area
        group = [f for f in remaining if f.area >= 0.9 * top]
        group.sort(key=lambda f: float(f.box_xyxy[0] + f.box_xyxy[2]))
        ordered += group
        remaining = [f for f in remaining if f.area < 0.9 * top]
    return ordered


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def detect_faces(image_rgb: np.ndarray, backend: str = "auto", max_faces: int = 8,
                 second_look: bool = True) -> list[FaceDetection]:
    """Faces in an RGB uint8 image, largest first (see the module docstring for ties); [] when none.

    The detector runs on a copy of at most ~1000 px; landmarks are fitted on a crop around each face at
    the landmark model's resolution and mapped back to full-resolution pixels. Only upright-ish faces
    are found by dlib; mediapipe also finds rotated ones (see detect_rotation)."""
    image = _check_image(image_rgb)
    if int(max_faces) < 1:
        raise InputError("max_faces", f"must be at least 1, got {max_faces}", "Use e.g. max_faces=8.")
    impl = get_backend(resolve_backend(backend))
    h, w = image.shape[:2]
    scale = impl.work_side / max(h, w)
    if scale > 1 and not impl.upscale_for_detection:
        scale = 1.0
    if abs(scale - 1.0) > 1e-3:
        work_w, work_h = max(1, round(w * scale)), max(1, round(h * scale))
        work = _resize(image, work_w, work_h)
        sx, sy = work_w / w, work_h / h
    else:
        work, sx, sy = image, 1.0, 1.0
    raw = impl.detect(work)
    fallback = not raw and second_look
    if fallback:
        raw = impl.detect_fallback(work)
    raw.sort(key=lambda item: -item[1])
    faces: list[FaceDetection] = []
    for box_work, score in raw:
        # work pixel-edge coordinates -> image pixel-edge coordinates
        box = np.array([box_work[0] / sx, box_work[1] / sy, box_work[2] / sx, box_work[3] / sy], np.float64)
        centre = ((box[0] + box[2]) / 2 - 0.5, (box[1] + box[3]) / 2 - 0.5)
        side = impl.crop_box_ratio * max(box[2] - box[0], box[3] - box[1])
        crop, (cs, _, tx, ty) = _square_crop(image, centre, side, impl.crop_px)
        # pixel-edge box -> pixel-centre coordinates -> crop centre coordinates -> crop edge coordinates
        box_in_crop = np.array([(box[0] - 0.5) * cs + tx + 0.5, (box[1] - 0.5) * cs + ty + 0.5,
                                (box[2] - 0.5) * cs + tx + 0.5, (box[3] - 0.5) * cs + ty + 0.5])
        pts = impl.landmarks(crop, box_in_crop)
        if pts is None:
            continue
        pts = np.stack([(pts[:, 0] - tx) / cs, (pts[:, 1] - ty) / cs], 1).astype(np.float32)
        clipped = np.array([np.clip(box[0], 0, w), np.clip(box[1], 0, h), np.clip(box[2], 0, w),
                            np.clip(box[3], 0, h)], np.float32)
        face = FaceDetection(box_xyxy=clipped, score=float(score), landmarks_xy=pts, layout=impl.layout,
                             landmark_confidence=0.0, backend=impl.name, image_size=(w, h), second_look=fallback)
        face.landmark_confidence = _landmark_confidence(face.landmarks_68().astype(np.float64), box, w, h)
        if any(_iou(face.box_xyxy, other.box_xyxy) > 0.5 for other in faces):
            continue
        faces.append(face)
    return _order_faces(faces)[:max_faces]


def choice_note(faces: list[FaceDetection]) -> str:
    """One line saying which face is used when there are several; "" for zero or one face."""
    if len(faces) < 2:
        return ""
    first, second = faces[0], faces[1]
    x0, y0, x1, y1 = (int(round(float(v))) for v in first.box_xyxy)
    where = f"box {x0},{y0}-{x1},{y1}"
    if second.area >= 0.9 * first.area:
        return f"{len(faces)} faces of about equal size found; using the leftmost ({where})"
    return f"{len(faces)} faces found; using the largest ({where})"


# ---------------------------------------------------------------------------------------------------
# rotation and pose


def rotate_clockwise(image: np.ndarray, degrees: int) -> np.ndarray:
    """The image turned clockwise by 0/90/180/270 degrees."""
    k = (int(degrees) // 90) % 4
    return np.ascontiguousarray(np.rot90(image, -k))


def eye_line_roll(face: FaceDetection) -> float:
    """Angle of the eye line in the image, degrees clockwise (0 for an upright face), -180..180."""
    p = face.landmarks_68().astype(np.float64)
    # anatomical order (subject's right eye = iBUG 36-41), not image order, so upside down reads 180
    right_eye, left_eye = p[36:42].mean(0), p[42:48].mean(0)
    d = left_eye - right_eye
    return float(math.degrees(math.atan2(d[1], d[0])))


def detect_rotation(image_rgb: np.ndarray, backend: str = "auto") -> int:
    """Degrees (0, 90, 180 or 270) the image must be turned clockwise for its face to be upright.

    Returns 0 when the image holds an upright face, or no face in any orientation. Tries the four
    orientations and keeps the one whose best face is upright with the highest detector score."""
    image = _check_image(image_rgb)
    name = resolve_backend(backend)
    best_k, best_q = 0, 0.0
    for k in (0, 90, 180, 270):
        # the main detector only: the more permissive second look also takes some turned pictures
        # (and animals) for upright faces
        faces = detect_faces(rotate_clockwise(image, k), name, max_faces=1, second_look=False)
        if not faces:
            continue
        face = faces[0]
        roll = eye_line_roll(face)
        if abs(roll) > UPRIGHT_ROLL_DEG:
            # mediapipe finds rotated faces: the roll itself says how far off the image is
            if name == "mediapipe" and k == 0:
                return int((-round(roll / 90.0) * 90) % 360)
            continue
        q = face.score * max(face.landmark_confidence, 1e-3)
        if k == 0 and q > 0.3:
            return 0
        if q > best_q:
            best_k, best_q = k, q
    return best_k


def find_face(image_rgb: np.ndarray, backend: str = "auto", input_name: str = "image"):
    """The face to use, or an InputError a user can act on. Returns (face, notes: list[str]).

    Errors: no face at all (cartoons, animals, faces too small) and a sideways / upside-down image.
    Notes: which of several faces is used; a face cut by the border."""
    image = _check_image(image_rgb, input_name)
    name = resolve_backend(backend)
    faces = detect_faces(image, name)
    upright = [f for f in faces if abs(eye_line_roll(f)) <= UPRIGHT_ROLL_DEG]
    if not upright or all(f.second_look for f in upright):
        turn = detect_rotation(image, name)
        if turn == 0 and upright:
            turn = None  # a face only the second look found, and no better reading turned
    else:
        turn = None
    if turn is not None:
        if turn:
            raise InputError(input_name, f"the image appears rotated: its face is upright after turning it "
                             f"{turn} degrees clockwise", f"Rotate the image {turn} degrees clockwise and try again.")
        raise InputError(
            input_name, f"no human face found ({name} detector; cartoons, drawings, animals and faces smaller "
            f"than about 10% of the image are not detected)",
            "Use a photograph of one person facing the camera, face at least 1/6 of the image height.")
    notes = []
    if len(upright) > 1:
        notes.append(choice_note(upright))
    if upright[0].cut_by_border:
        notes.append("the face is cut by the image border; landmarks outside the image are estimated")
    return upright[0], notes


def head_pose(face: FaceDetection, image_size: tuple[int, int] | None = None) -> HeadPose:
    """Yaw, pitch and roll (HeadPose's docstring has the signs) from a PnP fit of the generic 3D face
    MODEL_68_MM to the 68 landmarks; pinhole camera, focal length = image width, centre = image centre.
    Accuracy is a few degrees: good for 'frontal or not', not for measurement."""
    import cv2  # noqa: PLC0415

    w, h = image_size if image_size is not None else face.image_size
    if not w or not h:
        raise InputError("image_size", "unknown image size", "Pass image_size=(width, height).")
    pts = face.landmarks_68().astype(np.float64)[POSE_POINTS]
    obj = MODEL_68_MM[POSE_POINTS]
    f = float(w)
    camera = np.array([[f, 0, (w - 1) / 2], [0, f, (h - 1) / 2], [0, 0, 1]], np.float64)
    # start from a frontal head at the distance the eye spacing implies
    eye_px = float(np.linalg.norm(pts[3] - pts[0])) or 1.0
    eye_mm = float(np.linalg.norm(obj[3] - obj[0]))
    z0 = f * eye_mm / eye_px
    centre = pts.mean(0)
    t0 = np.array([(centre[0] - camera[0, 2]) * z0 / f, (centre[1] - camera[1, 2]) * z0 / f, z0])
    t0 -= obj.mean(0)
    roll0 = math.atan2(pts[3, 1] - pts[0, 1], pts[3, 0] - pts[0, 0])
    rvec0 = np.array([0.0, 0.0, roll0])
    ok, rvec, tvec = cv2.solvePnP(obj, pts, camera, None, rvec0.reshape(3, 1).copy(), t0.reshape(3, 1).copy(),
                                  useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        raise InputError("face", "head pose fit failed", "Use a clearer, more frontal photograph.")
    rot, _ = cv2.Rodrigues(rvec)
    nose = rot @ np.array([0.0, 0.0, -1.0])   # direction the face points, camera coords (x right, y down, z in)
    x_axis = rot @ np.array([1.0, 0.0, 0.0])  # subject's right-to-left, camera coords
    ray = (rot @ MODEL_68_MM[POSE_POINTS].mean(0) + tvec.ravel())
    ray /= np.linalg.norm(ray)                # camera -> face; a face looking into the lens points along -ray
    yaw = math.degrees(math.atan2(nose[0], -nose[2]) - math.atan2(-ray[0], ray[2]))
    pitch = math.degrees(math.atan2(-nose[1], math.hypot(nose[0], nose[2]))
                         - math.atan2(ray[1], math.hypot(ray[0], ray[2])))
    roll = math.degrees(math.atan2(x_axis[1], x_axis[0]))
    return HeadPose(yaw_deg=yaw, pitch_deg=pitch, roll_deg=roll)


# ---------------------------------------------------------------------------------------------------
# alignment


def canonical_points(crop_size: int, face_scale: float = 1.0) -> np.ndarray:
    """(3, 2) canonical image-left eye, image-right eye and mouth centre in crop pixels."""
    base = np.array([CANONICAL_LEFT_EYE, CANONICAL_RIGHT_EYE, CANONICAL_MOUTH], np.float64)
    return ((base - 0.5) * face_scale + 0.5) * crop_size - 0.5


def alignment_matrix(face: FaceDetection, crop_size: int = 512, face_scale: float = 1.0) -> np.ndarray:
    """2x3 similarity (rotation, uniform scale, translation) image -> crop.

    Rotation levels the eye line; scale puts the eyes at the canonical distance, unless the eye-to-mouth
    distance says the face is turned (eyes look closer together), in which case that sets the scale;
    translation puts the eye midpoint at the canonical one. A frontal face's eyes therefore land on
    CANONICAL_*_EYE and its mouth near CANONICAL_MOUTH."""
    if face_scale <= 0:
        raise InputError("face_scale", f"must be positive, got {face_scale}", "Use e.g. 1.0 (0.8 = more margin).")
    left, right = face.eye_centres()
    mouth = face.mouth_centre()
    canon = canonical_points(crop_size, face_scale)
    src_eye_vec = right - left
    dst_eye_vec = canon[1] - canon[0]
    src_mid, dst_mid = (left + right) / 2, (canon[0] + canon[1]) / 2
    src_eye, dst_eye = float(np.linalg.norm(src_eye_vec)), float(np.linalg.norm(dst_eye_vec))
    src_em, dst_em = float(np.linalg.norm(mouth - src_mid)), float(np.linalg.norm(canon[2] - dst_mid))
    scale = dst_eye / max(src_eye, 1e-6)
    if src_em > 1e-6:
        scale = min(scale, dst_em / src_em * 1.25)  # eyes foreshortened by yaw: let eye-mouth bound the size
    angle = math.atan2(dst_eye_vec[1], dst_eye_vec[0]) - math.atan2(src_eye_vec[1], src_eye_vec[0])
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    lin = np.array([[c, -s], [s, c]])
    trans = dst_mid - lin @ src_mid
    return np.hstack([lin, trans[:, None]])


def _invert(matrix: np.ndarray) -> np.ndarray:
    lin = matrix[:, :2]
    inv = np.linalg.inv(lin)
    return np.hstack([inv, (-inv @ matrix[:, 2])[:, None]])


def align_face(image_rgb: np.ndarray, face: FaceDetection, crop_size: int = 512, face_scale: float = 1.0,
               border: str = "reflect") -> AlignedCrop:
    """The face warped to the canonical square crop (see alignment_matrix), with the matrices both ways.

    border: "reflect" (mirror the image past its edge, as FFHQ) or "constant" (black)."""
    import cv2  # noqa: PLC0415

    image = _check_image(image_rgb)
    matrix = alignment_matrix(face, crop_size, face_scale)
    scale = float(math.hypot(matrix[0, 0], matrix[1, 0]))
    source, to_source = image, np.eye(3)
    if scale < 0.6:  # shrinking a lot: pre-filter (area resize) so the warp does not alias
        f = min(1.0, scale * 1.5)
        sw, sh = max(1, round(image.shape[1] * f)), max(1, round(image.shape[0] * f))
        source = _resize(image, sw, sh)
        fx, fy = sw / image.shape[1], sh / image.shape[0]
        to_source = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]])
    full = np.vstack([matrix, [0, 0, 1]]) @ np.linalg.inv(to_source)
    mode = cv2.BORDER_REFLECT_101 if border == "reflect" else cv2.BORDER_CONSTANT
    crop = cv2.warpAffine(source, full[:2], (crop_size, crop_size), flags=cv2.INTER_CUBIC, borderMode=mode)
    return AlignedCrop(image=crop, matrix=matrix, inverse=_invert(matrix), crop_size=crop_size, scale=scale)


__all__ = [
    "AlignedCrop", "FaceDetection", "HeadPose", "IBUG68_FROM_MEDIAPIPE", "IBUG68_GROUPS", "IBUG68_MIRROR",
    "MODEL_68_MM", "align_face", "alignment_matrix", "available_backends", "canonical_points", "choice_note",
    "detect_faces", "detect_rotation", "eye_line_roll", "find_face", "head_pose", "resolve_backend",
    "rotate_clockwise",
]
