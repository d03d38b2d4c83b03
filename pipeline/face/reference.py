"""The encoded reference portrait: everything later stages need to know about the face to animate.

A `Reference` is made once per portrait by the reference encoder and read by the animation and
diffusion stages. It stores:

* the source image (size, what kind of input it was),
* the chosen face (index among `face_count` faces, box, dense and 68-point landmarks, backend),
* the head pose in degrees,
* the similarity transform of the aligned face crop (2 x 3 image->crop matrix and its inverse),
* the quality report and any warnings,
* the consent attestation the user gave,
* optionally the VAE latents of the aligned crop and of the full frame (`ReferenceLatents`),
* optionally the pixels: the aligned crop [S, S, 3] and the full frame [H, W, 3], uint8.

Files: `save("out/ref")` writes `out/ref.json` (everything but the big arrays; landmarks and
matrices as JSON lists, exact: float32 values survive the trip bit for bit) and, when there are
pixel or latent arrays, `out/ref.safetensors` beside it (keys `aligned_crop`, `frame`,
`face_latents`, `frame_latents`). The JSON records the safetensors file's name and SHA-256, so a
JSON paired with another save's arrays is detected on `load`. Both files are written to a
temporary name first and renamed into place (`output_paths.atomic_write_path`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..core.content_hash import sha256_file
from ..core.errors import InputError
from ..core.output_paths import atomic_write_path
from .quality import QualityReport

FORMAT_NAME = "talkinghead.reference"
FORMAT_VERSION = 1

#: The statement a user attests to before a portrait is animated.
CONSENT_STATEMENT = (
    "I am the person in this image, or I have their permission to make a video of them speaking, "
    "and I will not use the result to deceive or harm anyone."
)

#: Keys of the pixel and latent arrays in the .safetensors file.
ARRAY_KEYS = ("aligned_crop", "frame", "face_latents", "frame_latents")


def _utc_now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass
class ConsentAttestation:
    """The user's statement that they may animate this face.

    Attributes:
        attested: whether the user confirmed `statement`.
        statement: the exact text that was confirmed.
        timestamp_utc: when, ISO 8601 with offset (e.g. "2026-11-30T19:30:00+00:00").
    """

    attested: bool
    statement: str = CONSENT_STATEMENT
    timestamp_utc: str = ""

    @classmethod
    def now(cls, attested: bool, statement: str = CONSENT_STATEMENT) -> "ConsentAttestation":
        return cls(attested=bool(attested), statement=statement, timestamp_utc=_utc_now_iso())

    def to_dict(self) -> dict:
        return {"attested": bool(self.attested), "statement": self.statement, "timestamp_utc": self.timestamp_utc}


@dataclass
class ReferenceLatents:
    """VAE latents of the reference for the diffusion engine (see vae_latents.encode_latents).

    Latents are already scaled: (posterior mean - shift_factor) * scaling_factor, float32.

    Attributes:
        scaling_factor, shift_factor: the scaling applied (shift 0.0 for SD1.x/SDXL VAEs).
        vae_id: the VAE's file or folder name.
        vae_sha256: SHA-256 of the VAE weights file, or None if it was not computed.
        downsample_factor: pixels per latent cell along each axis (8 for SD VAEs).
        fit: how sizes were made multiples of downsample_factor: "pad" (edge pixels repeated at the
            bottom/right, so latent cell (i, j) covers pixels [f*i, f*i+f) x [f*j, f*j+f) of the
            encoded image) or "resize".
        frame_pixel_size: (width, height) of the frame as encoded, after any downscaling and
            before padding; relates frame latents to source pixels.
        face_latents: [C, S/f, S/f] latents of the aligned crop, or None (not loaded).
        frame_latents: [C, ceil(h/f), ceil(w/f)] latents of the full frame, or None.
        face_shape, frame_shape: the arrays' shapes, kept in the JSON when arrays are not.
    """

    scaling_factor: float
    shift_factor: float
    vae_id: str
    vae_sha256: Optional[str] = None
    downsample_factor: int = 8
    fit: str = "pad"
    frame_pixel_size: Optional[tuple[int, int]] = None
    face_latents: Optional[np.ndarray] = None
    frame_latents: Optional[np.ndarray] = None
    face_shape: Optional[tuple[int, ...]] = None
    frame_shape: Optional[tuple[int, ...]] = None

    def __post_init__(self):
        if self.face_latents is not None:
            self.face_latents = np.ascontiguousarray(self.face_latents, dtype=np.float32)
            self.face_shape = tuple(int(v) for v in self.face_latents.shape)
        if self.frame_latents is not None:
            self.frame_latents = np.ascontiguousarray(self.frame_latents, dtype=np.float32)
            self.frame_shape = tuple(int(v) for v in self.frame_latents.shape)
        if self.face_shape is not None:
            self.face_shape = tuple(int(v) for v in self.face_shape)
        if self.frame_shape is not None:
            self.frame_shape = tuple(int(v) for v in self.frame_shape)
        if self.frame_pixel_size is not None:
            self.frame_pixel_size = tuple(int(v) for v in self.frame_pixel_size)

    def to_dict(self) -> dict:
        return {
            "scaling_factor": float(self.scaling_factor), "shift_factor": float(self.shift_factor),
            "vae_id": self.vae_id, "vae_sha256": self.vae_sha256,
            "downsample_factor": int(self.downsample_factor), "fit": self.fit,
            "frame_pixel_size": None if self.frame_pixel_size is None else list(self.frame_pixel_size),
            "face_shape": None if self.face_shape is None else list(self.face_shape),
            "frame_shape": None if self.frame_shape is None else list(self.frame_shape),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ReferenceLatents":
        return cls(
            scaling_factor=float(data["scaling_factor"]), shift_factor=float(data["shift_factor"]),
            vae_id=data["vae_id"], vae_sha256=data.get("vae_sha256"),
            downsample_factor=int(data.get("downsample_factor", 8)), fit=data.get("fit", "pad"),
            frame_pixel_size=data.get("frame_pixel_size"),
            face_shape=data.get("face_shape"), frame_shape=data.get("frame_shape"),
        )


def _array(value: Any, dtype, shape_tail: tuple = ()) -> np.ndarray:
    array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
    if shape_tail and array.shape[-len(shape_tail):] != shape_tail:
        raise ValueError(f"expected an array [..., {', '.join(map(str, shape_tail))}], got {array.shape}")
    return array


@dataclass(eq=False)
class Reference:
    """One encoded reference portrait. Coordinates are source-image pixels (x right, y down).

    Attributes:
        source_width, source_height: size of the source image in px.
        input_kind: what the input was, e.g. "16-bit greyscale 640x480" (image_input).
        face_index: which detected face was chosen (0 = first in the detector's order).
        face_count: how many faces were detected.
        face_box_xyxy: float32 (4,) box of the chosen face, px.
        face_score: detector score of the chosen face, 0..1.
        landmarks_xy: float32 [N, 2] dense landmarks in `landmark_layout` order, px.
        landmarks_68: float32 [68, 2] iBUG-68 landmarks, px.
        landmark_layout: "mediapipe_478" or "ibug_68".
        landmark_confidence: 0..1.
        landmark_backend: the backend that found the landmarks.
        yaw_deg, pitch_deg, roll_deg: head pose in degrees.
        crop_matrix: float64 [2, 3] source image -> aligned crop.
        crop_inverse: float64 [2, 3] aligned crop -> source image.
        crop_size: side S of the square aligned crop, px.
        quality: the quality report.
        warnings: human-readable warnings collected while encoding.
        consent: the consent attestation, if one was given.
        latents: VAE latents, if a VAE was given.
        aligned_crop: uint8 [S, S, 3] aligned face crop, optional.
        frame: uint8 [H, W, 3] full source frame as RGB, optional.
    """

    source_width: int
    source_height: int
    input_kind: str
    face_index: int
    face_count: int
    face_box_xyxy: np.ndarray
    face_score: float
    landmarks_xy: np.ndarray
    landmarks_68: np.ndarray
    landmark_layout: str
    landmark_confidence: float
    landmark_backend: str
    yaw_deg: float
    pitch_deg: float
    roll_deg: float
    crop_matrix: np.ndarray
    crop_inverse: np.ndarray
    crop_size: int
    quality: QualityReport
    warnings: list[str] = field(default_factory=list)
    consent: Optional[ConsentAttestation] = None
    latents: Optional[ReferenceLatents] = None
    aligned_crop: Optional[np.ndarray] = None
    frame: Optional[np.ndarray] = None

    def __post_init__(self):
        self.face_box_xyxy = _array(self.face_box_xyxy, np.float32).reshape(4)
        self.landmarks_xy = _array(self.landmarks_xy, np.float32).reshape(-1, 2)
        self.landmarks_68 = _array(self.landmarks_68, np.float32).reshape(68, 2)
        self.crop_matrix = _array(self.crop_matrix, np.float64).reshape(2, 3)
        self.crop_inverse = _array(self.crop_inverse, np.float64).reshape(2, 3)
        if self.aligned_crop is not None:
            self.aligned_crop = _array(self.aligned_crop, np.uint8, (3,))
        if self.frame is not None:
            self.frame = _array(self.frame, np.uint8, (3,))

    # ------------------------------------------------------------------ building

    @classmethod
    def from_parts(cls, *, image_info: Any, detection: Any, face_index: int, face_count: int, pose: Any,
                   crop: Any, quality: QualityReport, warnings: Optional[list[str]] = None,
                   consent: Optional[ConsentAttestation] = None, latents: Optional[ReferenceLatents] = None,
                   keep_pixels: bool = True, frame: Optional[np.ndarray] = None) -> "Reference":
        """Builds a Reference from face_landmarks' FaceDetection / HeadPose / AlignedCrop objects.

        Args:
            image_info: image_input.ImageInputInfo of the source.
            detection: FaceDetection (box_xyxy, score, landmarks_xy, layout, landmark_confidence,
                backend, landmarks_68()).
            pose: HeadPose (yaw_deg, pitch_deg, roll_deg).
            crop: AlignedCrop (image [S, S, 3], matrix, inverse).
            keep_pixels: store crop.image and `frame` in the Reference (saved to .safetensors).
        """
        return cls(
            source_width=image_info.width, source_height=image_info.height, input_kind=image_info.describe(),
            face_index=int(face_index), face_count=int(face_count),
            face_box_xyxy=detection.box_xyxy, face_score=float(detection.score),
            landmarks_xy=detection.landmarks_xy, landmarks_68=detection.landmarks_68(),
            landmark_layout=detection.layout, landmark_confidence=float(detection.landmark_confidence),
            landmark_backend=detection.backend,
            yaw_deg=float(pose.yaw_deg), pitch_deg=float(pose.pitch_deg), roll_deg=float(pose.roll_deg),
            crop_matrix=crop.matrix, crop_inverse=crop.inverse, crop_size=int(crop.image.shape[0]),
            quality=quality, warnings=list(warnings or []), consent=consent, latents=latents,
            aligned_crop=crop.image if keep_pixels else None, frame=frame if keep_pixels else None,
        )

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict:
        """Everything but the pixel and latent arrays, as JSON-ready Python values."""
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "source_width": int(self.source_width),
            "source_height": int(self.source_height),
            "input_kind": self.input_kind,
            "face_index": int(self.face_index),
            "face_count": int(self.face_count),
            "face_box_xyxy": self.face_box_xyxy.astype(np.float64).tolist(),
            "face_score": float(self.face_score),
            "landmarks_xy": self.landmarks_xy.astype(np.float64).tolist(),
            "landmarks_68": self.landmarks_68.astype(np.float64).tolist(),
            "landmark_layout": self.landmark_layout,
            "landmark_confidence": float(self.landmark_confidence),
            "landmark_backend": self.landmark_backend,
            "yaw_deg": float(self.yaw_deg),
            "pitch_deg": float(self.pitch_deg),
            "roll_deg": float(self.roll_deg),
            "crop_matrix": self.crop_matrix.tolist(),
            "crop_inverse": self.crop_inverse.tolist(),
            "crop_size": int(self.crop_size),
            "quality": self.quality.to_dict(),
            "warnings": list(self.warnings),
            "consent": None if self.consent is None else self.consent.to_dict(),
            "latents": None if self.latents is None else self.latents.to_dict(),
        }

    def to_json(self, indent: Optional[int] = None) -> str:
        """JSON text without the pixel/latent arrays (landmarks and matrices as lists)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict, input_name: str = "reference") -> "Reference":
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise InputError(input_name, "is not a Talking Head reference (no 'format': "
                             f"{FORMAT_NAME!r} field)", "Give a file written by Reference.save / to_json")
        if int(data.get("version", 0)) > FORMAT_VERSION:
            raise InputError(input_name, f"was written by a newer version (format {data.get('version')}, "
                             f"this one reads up to {FORMAT_VERSION})", "Update Talking Head, or re-encode "
                             "the reference with this version")
        try:
            return cls(
                source_width=int(data["source_width"]), source_height=int(data["source_height"]),
                input_kind=data["input_kind"], face_index=int(data["face_index"]),
                face_count=int(data["face_count"]), face_box_xyxy=data["face_box_xyxy"],
                face_score=float(data["face_score"]),
                landmarks_xy=np.asarray(data["landmarks_xy"], dtype=np.float32).reshape(-1, 2),
                landmarks_68=data["landmarks_68"], landmark_layout=data["landmark_layout"],
                landmark_confidence=float(data["landmark_confidence"]),
                landmark_backend=data["landmark_backend"], yaw_deg=float(data["yaw_deg"]),
                pitch_deg=float(data["pitch_deg"]), roll_deg=float(data["roll_deg"]),
                crop_matrix=data["crop_matrix"], crop_inverse=data["crop_inverse"],
                crop_size=int(data["crop_size"]), quality=QualityReport.from_dict(data["quality"]),
                warnings=list(data.get("warnings", [])),
                consent=None if data.get("consent") is None else ConsentAttestation(**data["consent"]),
                latents=None if data.get("latents") is None else ReferenceLatents.from_dict(data["latents"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(input_name, f"is a damaged reference ({type(exc).__name__}: {exc})",
                             "Encode the reference again") from exc

    @classmethod
    def from_json(cls, text: str, input_name: str = "reference") -> "Reference":
        """Inverse of to_json (the arrays stay None). Raises InputError for malformed text."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as exc:
            raise InputError(input_name, f"is not valid JSON ({exc})", "Give a file written by Reference.save") from exc
        return cls.from_dict(data, input_name)

    # ------------------------------------------------------------------ files

    def arrays(self) -> dict[str, np.ndarray]:
        """The pixel and latent arrays that are set, by their safetensors key."""
        out = {}
        if self.aligned_crop is not None:
            out["aligned_crop"] = self.aligned_crop
        if self.frame is not None:
            out["frame"] = self.frame
        if self.latents is not None:
            if self.latents.face_latents is not None:
                out["face_latents"] = self.latents.face_latents
            if self.latents.frame_latents is not None:
                out["frame_latents"] = self.latents.frame_latents
        return {k: np.ascontiguousarray(v) for k, v in out.items()}

    def save(self, path: str) -> tuple[str, Optional[str]]:
        """Writes PATH.json and, if there are arrays, PATH.safetensors, each atomically.

        Args:
            path: "folder/name", "folder/name.json" or "folder/name.safetensors".
        Returns:
            (json_path, safetensors_path or None).
        Raises:
            InputError: the folder is not writable.
        """
        from safetensors.numpy import save_file

        stem = _stem(path)
        json_path = stem + ".json"
        arrays = self.arrays()
        data = self.to_dict()
        tensors_path = None
        if arrays:
            tensors_path = stem + ".safetensors"
            with atomic_write_path(tensors_path, "path") as temp_path:
                save_file(arrays, temp_path, metadata={"format": FORMAT_NAME, "version": str(FORMAT_VERSION)})
                digest = sha256_file(temp_path)
            data["arrays"] = {
                "file": os.path.basename(tensors_path), "sha256": digest,
                "keys": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
            }
        else:
            data["arrays"] = None
        with atomic_write_path(json_path, "path") as temp_path:
            with open(temp_path, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=1)
        return json_path, tensors_path

    @classmethod
    def load(cls, path: str, input_name: str = "reference", load_arrays: bool = True) -> "Reference":
        """Reads what `save` wrote; the arrays are checked against the JSON's SHA-256 and shapes.

        Raises:
            InputError: missing, malformed or mismatched files.
        """
        stem = _stem(path)
        json_path = stem + ".json"
        if not os.path.isfile(json_path):
            raise InputError(input_name, f"no reference file at {json_path!r}", "Check the path, or encode the "
                             "reference first")
        try:
            with open(json_path, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(input_name, f"cannot read {json_path!r} ({exc})", "Check the file") from exc
        reference = cls.from_json(text, input_name)
        info = json.loads(text).get("arrays")
        if not load_arrays or not info:
            return reference
        # Only a file name beside the JSON: a crafted JSON cannot point elsewhere.
        tensors_path = os.path.join(os.path.dirname(os.path.abspath(json_path)), os.path.basename(info["file"]))
        if not os.path.isfile(tensors_path):
            raise InputError(input_name, f"its arrays file {tensors_path!r} is missing", "Keep the .json and "
                             ".safetensors files of a reference together, or encode it again")
        if sha256_file(tensors_path) != info.get("sha256"):
            raise InputError(input_name, f"{tensors_path!r} does not belong to {json_path!r} (SHA-256 differs)",
                             "Keep files from the same save together, or encode the reference again")
        from safetensors.numpy import load_file

        try:
            arrays = load_file(tensors_path)
        except Exception as exc:  # noqa: BLE001 - safetensors raises several types
            raise InputError(input_name, f"cannot read {tensors_path!r} ({exc})", "Encode the reference again") from exc
        for key, meta in info.get("keys", {}).items():
            if key not in arrays or list(arrays[key].shape) != list(meta["shape"]):
                raise InputError(input_name, f"array {key!r} in {tensors_path!r} is missing or has the wrong shape",
                                 "Encode the reference again")
        reference.aligned_crop = arrays.get("aligned_crop")
        reference.frame = arrays.get("frame")
        if reference.latents is not None:
            reference.latents.face_latents = arrays.get("face_latents")
            reference.latents.frame_latents = arrays.get("frame_latents")
        return reference


def _stem(path: str) -> str:
    path = os.fspath(path)
    for ext in (".json", ".safetensors"):
        if path.endswith(ext):
            return path[: -len(ext)]
    return path
