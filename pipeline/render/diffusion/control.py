"""Per-frame landmark maps (ControlNet input) and face masks (where the engine may change pixels).

Landmark maps are drawn from each frame's landmarks (68 iBUG points, or MediaPipe's 468/478 points,
reduced to the same 68 with `IBUG68_FROM_MEDIAPIPE`) on black, at the frame's size:

* ``openpose_face``: white dots, as OpenPose's face keypoints are drawn for the OpenPose ControlNets
  for SD 1.5 (control_v11p_sd15_openpose with face keypoints);
* ``mediapipe_face``: coloured contour lines (face oval, brows, eyes, nose, outer and inner lips),
  in the manner of the MediaPipe-face ControlNet for SD 1.5 (drawn from the 68-point subset, so it
  is an approximation of that model's full-mesh drawing).

The face mask is the convex hull of the landmarks, grown by `dilate` times the face width (so hair
line, ears and chin shadow may change with the face) and feathered over a further `feather` face
widths; 1 inside, 0 outside. `latent_mask` shrinks it to the latent grid by area averaging.
"""

from __future__ import annotations

import cv2
import numpy as np

from ...core.errors import InputError

LANDMARK_STYLES = ("openpose_face", "mediapipe_face")
#: iBUG-68 groups as (first, last, closed) and their colour in the mediapipe_face style.
GROUPS_68 = (
    ((0, 16, False), (255, 255, 255)),   # face oval (jaw line)
    ((17, 21, False), (255, 48, 48)),    # image-left brow
    ((22, 26, False), (48, 255, 48)),    # image-right brow
    ((27, 30, False), (255, 255, 255)),  # nose bridge
    ((31, 35, False), (255, 255, 255)),  # nostrils
    ((36, 41, True), (255, 48, 48)),     # image-left eye
    ((42, 47, True), (48, 255, 48)),     # image-right eye
    ((48, 59, True), (255, 48, 255)),    # outer lips
    ((60, 67, True), (255, 48, 255)),    # inner lips
)


def to_68(landmarks: np.ndarray) -> np.ndarray:
    """float32 [68, 2] from 68 or 468/478 MediaPipe points."""
    points = np.asarray(landmarks, np.float32).reshape(-1, 2)
    if points.shape[0] == 68:
        return points
    if points.shape[0] in (468, 478):
        from ...face.landmarks import IBUG68_FROM_MEDIAPIPE

        return points[IBUG68_FROM_MEDIAPIPE]
    raise InputError("landmarks", f"has {points.shape[0]} points per frame", "Give 68 (iBUG) or 468/478 (MediaPipe) points")


def draw_landmark_map(landmarks: np.ndarray, width: int, height: int, style: str = "openpose_face") -> np.ndarray:
    """uint8 [height, width, 3] map of one frame's landmarks (see the module docstring)."""
    if style not in LANDMARK_STYLES:
        raise InputError("landmark_style", f"unknown style {style!r}", f"Use one of {LANDMARK_STYLES}")
    image = np.zeros((height, width, 3), np.uint8)
    p = to_68(landmarks)
    shift = 4  # sub-pixel precision of cv2 drawing
    q = np.round(p * (1 << shift)).astype(np.int32)
    size = max(1, int(round(min(width, height) / 256)))
    if style == "openpose_face":
        for x, y in q:
            cv2.circle(image, (int(x), int(y)), size << shift, (255, 255, 255), -1, cv2.LINE_AA, shift)
    else:
        for (first, last, closed), colour in GROUPS_68:
            cv2.polylines(image, [q[first:last + 1].reshape(-1, 1, 2)], closed, colour, size, cv2.LINE_AA, shift)
    return image


def face_mask(landmarks: np.ndarray, width: int, height: int, dilate: float = 0.25, feather: float = 0.1) -> np.ndarray:
    """float32 [height, width] in 0..1: the dilated, feathered landmark hull (see the module docstring)."""
    p = np.asarray(landmarks, np.float32).reshape(-1, 2)
    face_width = float(np.ptp(p[:, 0])) or 1.0
    mask = np.zeros((height, width), np.uint8)
    hull = cv2.convexHull(np.round(p).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255)
    grow = int(round(max(dilate, 0.0) * face_width))
    if grow > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        mask = cv2.dilate(mask, kernel)
    out = mask.astype(np.float32) / 255.0
    sigma = max(feather, 0.0) * face_width / 2.0
    if sigma > 0.5:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def latent_mask(mask: np.ndarray, latent_height: int, latent_width: int, factor: int) -> np.ndarray:
    """float32 [latent_height, latent_width]: the pixel mask averaged over each latent cell."""
    h, w = mask.shape
    padded = np.zeros((latent_height * factor, latent_width * factor), np.float32)
    padded[:min(h, padded.shape[0]), :min(w, padded.shape[1])] = mask[:padded.shape[0], :padded.shape[1]]
    return cv2.resize(padded, (latent_width, latent_height), interpolation=cv2.INTER_AREA).astype(np.float32)
