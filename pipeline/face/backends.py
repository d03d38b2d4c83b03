"""Face detector + landmark backends for landmarks.py; each imported lazily, weights from wheels only.

Two backends, chosen by measurement (docs in landmarks.py's module docstring):

- ``mediapipe`` (``pip install mediapipe==0.10.21``): BlazeFace full-range detector + Face Mesh with
  ``refine_landmarks`` (478 points: 468 mesh + 10 iris). 0.10.21 is the last release whose wheel
  carries these models for the legacy ``mp.solutions`` API; it pins numpy<2 and has no wheel for
  Python 3.13. Detects in-plane rotated faces too. Apache-2.0.
- ``dlib`` (``pip install dlib-bin face_recognition_models``): dlib's HOG frontal detector + the
  68-point iBUG shape predictor shipped in ``face_recognition_models``. Wheels for 3.11-3.13 and
  numpy 2. Note the 68-point model was trained on iBUG 300-W, whose licence excludes commercial use.
  Finds upright faces only (about +-30 degrees of roll).

Neither downloads anything: the model files are read from the installed packages.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import types

import numpy as np

from ..core.errors import InputError

INSTALL_HINT = (
    'Install a face backend: pip install "talkinghead[faces]" (mediapipe==0.10.21 on Python 3.11-3.12; '
    "dlib-bin and face_recognition_models on Python 3.13 or with numpy 2), plus opencv-python-headless "
    "if cv2 is missing."
)

BACKENDS = ("mediapipe", "dlib")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def backend_importable(name: str) -> bool:
    """True when the packages a backend needs are installed (does not import them)."""
    if not _has_module("cv2"):
        return False
    if name == "mediapipe":
        return _has_module("mediapipe")
    if name == "dlib":
        return _has_module("dlib") and _dlib_model_path() is not None
    return False


def _dlib_model_path() -> str | None:
    """Path of shape_predictor_68_face_landmarks.dat inside face_recognition_models, without importing
    that package (its __init__ imports pkg_resources, which new setuptools no longer provides)."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = os.path.join(root, "models", "shape_predictor_68_face_landmarks.dat")
        if os.path.isfile(path):
            return path
    return None


#: Detector score given to a face found only by the face mesh run on the whole image.
MESH_FALLBACK_SCORE = 0.5


class Backend:
    """Detector on a working-size copy, then landmarks on a face crop of `crop_px` pixels."""

    name = ""
    layout = ""
    #: Longest side of the copy the detector runs on (downscale only for mediapipe, both ways for dlib).
    work_side = 1024
    upscale_for_detection = False
    #: Side of the square crop the landmark model sees, and the face box's share of it.
    crop_px = 384
    crop_box_ratio = 2.0

    def detect(self, work: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Returns [(box_xyxy in work pixels, score 0..1)]."""
        raise NotImplementedError

    def landmarks(self, crop: np.ndarray, box_in_crop: np.ndarray) -> np.ndarray | None:
        """Returns (N, 2) float landmarks in crop pixels, or None when the model finds no face."""
        raise NotImplementedError

    def detect_fallback(self, work: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """A second, different look when `detect` finds nothing; [] by default."""
        return []


class _DeferredPyplot(types.ModuleType):
    """Stands in for matplotlib.pyplot inside mediapipe's drawing helpers: loads it on first use."""

    def __getattr__(self, name: str):
        return getattr(importlib.import_module("matplotlib.pyplot"), name)


def _import_mediapipe():
    """`import mediapipe`, without paying for matplotlib.pyplot up front.

    mediapipe's package __init__ imports its drawing helpers, which import matplotlib.pyplot
    (~0.5 s of a ~1.2 s import, on every CLI run); we never draw with them. While mediapipe
    imports, a stand-in that loads the real pyplot on first attribute access sits in
    sys.modules; it is removed afterwards, so any later `import matplotlib.pyplot` is the real one.
    (importlib.util.LazyLoader does not help here: the import system touches the lazy module's
    __spec__, which loads it.)
    """
    if "mediapipe" not in sys.modules and "matplotlib.pyplot" not in sys.modules:
        stand_in = _DeferredPyplot("matplotlib.pyplot")
        sys.modules["matplotlib.pyplot"] = stand_in
        try:
            import mediapipe  # noqa: PLC0415 - optional, heavy
        finally:
            if sys.modules.get("matplotlib.pyplot") is stand_in:
                del sys.modules["matplotlib.pyplot"]
        return mediapipe
    import mediapipe  # noqa: PLC0415 - optional, heavy

    return mediapipe


def _detections(result, shape) -> list[tuple[np.ndarray, float]]:
    """mediapipe FaceDetection results -> [(box_xyxy in pixels of an image of `shape`, score)]."""
    h, w = shape[:2]
    found = []
    for det in result.detections or []:
        box = det.location_data.relative_bounding_box
        found.append((np.array([box.xmin * w, box.ymin * h, (box.xmin + box.width) * w, (box.ymin + box.height) * h],
                               np.float32), float(det.score[0])))
    return found


class MediapipeBackend(Backend):
    name = "mediapipe"
    layout = "mediapipe_478"
    work_side = 1024
    crop_px = 384
    crop_box_ratio = 2.0

    def __init__(self) -> None:
        # mediapipe's C++ logging (absl/glog) otherwise prints TFLite chatter on every first use
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        mp = _import_mediapipe()
        self._lock = threading.Lock()
        self._detector = mp.solutions.face_detection.FaceDetection(model_selection=1, min_detection_confidence=0.5)
        self._short_range = None  # made on first need (detect_fallback)
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=2, refine_landmarks=True, min_detection_confidence=0.4
        )

    def detect(self, work):
        with self._lock:
            result = self._detector.process(np.ascontiguousarray(work))
        return _detections(result, work.shape)

    def detect_fallback(self, work):
        """When the full-range detector finds nothing: the short-range detector, then the face mesh on
        the whole image (it finds some frontal studio portraits, glasses and a pout or a raised chin,
        that BlazeFace misses on the whole picture), kept when a detector confirms it on a crop around
        it. Mesh boxes are the landmarks' extent, scored 0.5."""
        h, w = work.shape[:2]
        with self._lock:
            if self._short_range is None:
                self._short_range = _import_mediapipe().solutions.face_detection.FaceDetection(
                    model_selection=0, min_detection_confidence=0.5)
            result = self._short_range.process(np.ascontiguousarray(work))
        found = _detections(result, work.shape)
        if found:
            return found
        with self._lock:
            mesh = self._mesh.process(np.ascontiguousarray(work))
        for face in mesh.multi_face_landmarks or []:
            pts = np.array([[p.x * w, p.y * h] for p in face.landmark], np.float32)
            box = np.concatenate([pts.min(0), pts.max(0)])
            # the mesh's own detector is more permissive (it also "finds" faces in cats and in
            # upside-down pictures): keep a mesh face only if the detector confirms it on a crop
            # around it, where the face has the size the detector is best at
            if self._confirmed_on_crop(work, box):
                found.append((box, MESH_FALLBACK_SCORE))
        return found

    def _confirmed_on_crop(self, work: np.ndarray, box: np.ndarray) -> bool:
        h, w = work.shape[:2]
        centre = (box[:2] + box[2:]) / 2.0
        half = 1.2 * float(max(box[2:] - box[:2]))
        x0, y0 = int(max(0, centre[0] - half)), int(max(0, centre[1] - half))
        x1, y1 = int(min(w, centre[0] + half)), int(min(h, centre[1] + half))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return False
        crop = np.ascontiguousarray(work[y0:y1, x0:x1])
        for detector in (self._detector, self._short_range):
            with self._lock:
                result = detector.process(crop)
            if result.detections:
                return True
        return False

    def landmarks(self, crop, box_in_crop):
        s = crop.shape[1]
        with self._lock:
            result = self._mesh.process(np.ascontiguousarray(crop))
        best, best_d = None, None
        centre = (box_in_crop[:2] + box_in_crop[2:]) / 2
        for face in result.multi_face_landmarks or []:
            # mediapipe's normalised coordinates put pixel edges at 0 and 1; -0.5 gives pixel-centre (cv2) coordinates
            pts = np.array([[p.x * s - 0.5, p.y * crop.shape[0] - 0.5] for p in face.landmark], np.float64)
            d = float(np.linalg.norm(pts.mean(0) - centre))
            if best_d is None or d < best_d:
                best, best_d = pts, d
        if best is None or best_d > 0.5 * float(box_in_crop[2] - box_in_crop[0]):
            return None
        return best


def _dlib_score(raw: float) -> float:
    """Maps the HOG detector's SVM margin (about -0.5..2.5; 0 is dlib's default threshold) to 0..1."""
    return float(1.0 / (1.0 + np.exp(-2.0 * raw)))


class DlibBackend(Backend):
    name = "dlib"
    layout = "ibug_68"
    #: The HOG window is 80 px: faces smaller than ~10% of the longest side are missed.
    work_side = 800
    upscale_for_detection = True
    crop_px = 400
    crop_box_ratio = 2.5
    #: SVM margin a detection must reach (dlib's own default is 0; that admits false positives).
    min_margin = 0.3

    def __init__(self) -> None:
        import dlib  # noqa: PLC0415 - optional

        path = _dlib_model_path()
        if path is None:
            raise InputError("backend", "dlib is installed but face_recognition_models is not",
                             "pip install face_recognition_models")
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(path)
        self._lock = threading.Lock()

    def detect(self, work):
        with self._lock:
            rects, scores, _ = self._detector.run(np.ascontiguousarray(work), 0, self.min_margin)
        return [(np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float32), _dlib_score(s))
                for r, s in zip(rects, scores)]

    def landmarks(self, crop, box_in_crop):
        x0, y0, x1, y1 = (int(round(float(v))) for v in box_in_crop)
        rect = self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1)
        with self._lock:
            shape = self._predictor(np.ascontiguousarray(crop), rect)
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64)


_CACHE: dict[str, Backend] = {}
_CACHE_LOCK = threading.Lock()


def get_backend(name: str) -> Backend:
    """Returns the (cached) backend `name`; raises InputError naming the package to install."""
    if name not in BACKENDS:
        raise InputError("backend", f"unknown face backend {name!r}", f"Choose one of {('auto',) + BACKENDS}.")
    with _CACHE_LOCK:
        if name in _CACHE:
            return _CACHE[name]
        if not backend_importable(name):
            need = {"mediapipe": "mediapipe==0.10.21 (Python 3.11-3.12)",
                    "dlib": "dlib-bin and face_recognition_models"}[name]
            raise InputError("backend", f"face backend {name!r} is not installed (needs {need} and cv2)",
                             INSTALL_HINT)
        backend = MediapipeBackend() if name == "mediapipe" else DlibBackend()
        _CACHE[name] = backend
        return backend
