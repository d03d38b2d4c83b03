"""ReferenceEncoder: one portrait -> face, landmarks, pose, quality report and (optionally) latents.

    encode_reference(image, consent=True) -> EncodedReference(reference, preview, report_text)

Order of work, so that a run stops as early as it can and says why:
1. consent: the user must attest to having the consent of the person shown (`consent=True`);
   nothing is read or detected before that.
2. the image, of any kind image_input accepts (RGB, RGBA, greyscale, 16-bit, float), at most
   image_input.MAX_SIDE_PX on its longest side.
3. faces (face_landmarks.detect_faces), upright ones only; none -> an error that says whether the
   image looks rotated, or that no human face was found (cartoons and animals end here).
   `face_index` picks among them, largest first (equal sizes left to right; the choice is said).
4. head pose, the canonical aligned crop, the quality report (face_quality). A "fail" verdict
   (face smaller than ~64 px) stops the run; warnings are collected.
5. latents of the aligned crop and of the frame, when a VAE is given (vae_latents).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from ..core.errors import InputError
from .landmarks import (UPRIGHT_ROLL_DEG, align_face, choice_note, detect_faces, detect_rotation,
                        eye_line_roll, head_pose, resolve_backend)
from ..core.image_input import load_image_input
from .quality import FAIL, GROUP_POSE, WARN, QualityConfig, assess_quality
from .reference import ConsentAttestation, Reference

ProgressFn = Callable[[int, int], None]

#: Steps reported to `progress` (detection, pose/crop, quality, latents, preview).
PROGRESS_STEPS = 5


@dataclass(frozen=True)
class EncoderConfig:
    """ReferenceEncoder settings.

    crop_size: side of the aligned face crop, px (a multiple of 8 so a VAE can encode it).
    face_scale: scale of the face inside the crop (1.0: eyes at 25% of the crop width apart).
    keep_pixels: keep the aligned crop and the frame in the Reference (saved to .safetensors).
    frame_latent_max_side_px: the frame is downscaled to this before VAE encoding (memory).
    """

    crop_size: int = 512
    face_scale: float = 1.0
    keep_pixels: bool = True
    frame_latent_max_side_px: int = 1024
    quality: QualityConfig = field(default_factory=QualityConfig)


@dataclass
class EncodedReference:
    """What the encoder returns.

    reference: the Reference (geometry, report, latents, optionally pixels).
    preview: uint8 [h, w, 3] source image with box, landmarks and pose axes drawn.
    report_text: the quality report and notes as plain text, for a text box or a terminal.
    """

    reference: Reference
    preview: np.ndarray
    report_text: str


def _check_consent(consent: Any) -> ConsentAttestation:
    if consent is not True:
        raise InputError(
            "consent", "not confirmed: animating a real person's face needs their consent",
            "Confirm that you have the consent of the person shown (set consent to true), or use a "
            "portrait you have the rights to.")
    return ConsentAttestation.now(True)


def _upright(faces):
    return [f for f in faces if abs(eye_line_roll(f)) <= UPRIGHT_ROLL_DEG]


def encode_reference(image: Any, *, consent: bool, face_index: int = 0, backend: str = "auto",
                     vae: Any = None, config: Optional[EncoderConfig] = None,
                     progress: Optional[ProgressFn] = None, input_name: str = "image") -> EncodedReference:
    """Encodes one reference portrait.

    Args:
        image: numpy array [H, W], [H, W, C] (C 1, 3 or 4; uint8, uint16 or float 0..1) or a PIL image.
        consent: True when the user attests to having the consent of the person shown.
        face_index: which face, 0 = the largest (ties left to right).
        backend: "auto", "mediapipe" or "dlib" (face_landmarks).
        vae: None, a vae_latents.LoadedVAE, or a path to a local AutoencoderKL folder or .safetensors file.
        progress: progress(done, total) over PROGRESS_STEPS.

    Raises:
        InputError: no consent, a bad image, no face, a rotated image, a face index out of range,
            a face too small to work with, a bad VAE.
    """
    attestation = _check_consent(consent)
    config = config or EncoderConfig()
    if isinstance(face_index, bool) or not isinstance(face_index, (int, np.integer)) or face_index < 0:
        raise InputError("face_index", f"must be a whole number >= 0, got {face_index!r}",
                         "Use 0 for the largest face, 1 for the next, and so on.")
    rgb, info = load_image_input(image, input_name)
    name = resolve_backend(backend)

    def step(done: int) -> None:
        if progress is not None:
            progress(done, PROGRESS_STEPS)

    faces = _upright(detect_faces(rgb, name))
    step(1)
    if faces and all(f.second_look for f in faces) and detect_rotation(rgb, name):
        faces = []  # only the permissive second look saw a face, and the picture reads better turned
    if not faces:
        turn = detect_rotation(rgb, name)
        if turn:
            raise InputError(input_name, f"the image appears rotated: its face is upright after turning it "
                             f"{turn} degrees clockwise",
                             f"Rotate the image {turn} degrees clockwise (or fix its EXIF orientation) and try again.")
        raise InputError(
            input_name, f"no human face found ({name} detector; cartoons, drawings, animals and very small "
            "faces are not detected)",
            "Use a photograph of a person facing the camera, the face at least 64 px and ideally 1/6 of the "
            "image height.")
    if face_index >= len(faces):
        raise InputError("face_index", f"is {face_index} but the image has {len(faces)} face(s) "
                         f"(indices 0-{len(faces) - 1}, largest first)", "Pick an index in that range.")
    face = faces[face_index]
    warnings: list[str] = []
    if face_index == 0 and len(faces) > 1:
        warnings.append(choice_note(faces))
    elif face_index > 0:
        x0, y0, x1, y1 = (int(round(float(v))) for v in face.box_xyxy)
        warnings.append(f"{len(faces)} faces found; using face {face_index} (box {x0},{y0}-{x1},{y1}) as asked")
    if face.cut_by_border:
        warnings.append("the face is cut by the image border; landmarks outside the image are estimated")

    pose = head_pose(face, (rgb.shape[1], rgb.shape[0]))
    crop = align_face(rgb, face, config.crop_size, config.face_scale)
    step(2)
    quality = assess_quality(rgb, face.box_xyxy, face.landmarks_68(), face.landmark_confidence, pose,
                             config.quality)
    step(3)
    failures = [c for c in quality.checks if c.verdict == FAIL]
    if failures:
        worst = failures[0]
        problem = "too far from facing the camera to animate" if worst.group == GROUP_POSE else "too little to animate"
        raise InputError(input_name, f"{worst.factor} is {worst.value_text()}, {problem}", worst.advice)
    warnings.extend(f"{c.factor} ({c.value_text()}): {c.advice}" for c in quality.checks if c.verdict == WARN)

    latents = None
    if vae is not None:
        from .vae_latents import LoadedVAE, encode_reference_latents, load_vae  # torch only when asked

        loaded = vae if isinstance(vae, LoadedVAE) else load_vae(str(vae))
        latents = encode_reference_latents(loaded, crop.image, rgb,
                                           frame_max_side_px=config.frame_latent_max_side_px)
    step(4)
    reference = Reference.from_parts(image_info=info, detection=face, face_index=face_index, face_count=len(faces),
                                     pose=pose, crop=crop, quality=quality, warnings=warnings,
                                     consent=attestation, latents=latents, keep_pixels=config.keep_pixels,
                                     frame=rgb)
    from .preview import render_reference_preview_from

    preview = render_reference_preview_from(reference, rgb)
    step(5)
    return EncodedReference(reference, preview, report_text(reference))


def report_text(reference: Reference) -> str:
    """The quality table, the pose, and every note, as plain text."""
    lines = [
        f"Reference: {reference.input_kind}; face {reference.face_index + 1} of {reference.face_count} "
        f"({reference.landmark_backend}, {len(reference.landmarks_xy)} landmarks)",
        f"Head pose: yaw {reference.yaw_deg:+.1f} deg, pitch {reference.pitch_deg:+.1f} deg, "
        f"roll {reference.roll_deg:+.1f} deg",
        "",
        reference.quality.to_text(),
    ]
    if reference.latents is not None:
        lat = reference.latents
        lines += ["", f"Latents: face {tuple(lat.face_shape)} frame {tuple(lat.frame_shape)}, "
                      f"scaling {lat.scaling_factor:g}, shift {lat.shift_factor:g} ({lat.vae_id})"]
    in_table = tuple(f"{c.factor} (" for c in reference.quality.checks)
    notes = [w for w in reference.warnings if not w.startswith(in_table)]
    if notes:
        lines += ["", "Notes:"] + [f"- {w}" for w in notes]
    return "\n".join(lines)


def reference_from_image_path(path: str, **kwargs) -> EncodedReference:
    """encode_reference on an image file (16-bit PNG/TIFF keep their depth)."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return encode_reference(img, **kwargs)


__all__ = ["EncoderConfig", "EncodedReference", "encode_reference", "report_text", "reference_from_image_path",
           "PROGRESS_STEPS"]
