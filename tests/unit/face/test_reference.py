"""The Reference record: JSON and file round trips (pipeline/face/reference.py)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import pytest

from talkinghead.pipeline.core.errors import InputError
from talkinghead.pipeline.core.image_input import load_image_input
from talkinghead.pipeline.face.quality import QualityCheck, QualityReport
from talkinghead.pipeline.face.reference import ConsentAttestation, Reference, ReferenceLatents


def make_reference(with_arrays=True, with_latents=True) -> Reference:
    rng = np.random.default_rng(0)
    quality = QualityReport(checks=[
        QualityCheck("face size", 301.5, "px", "pass", "The face is 302 px tall, enough detail.", "Input resolution"),
        QualityCheck("evenness of light", float("nan"), "EV", "warn", "Not measured.", "Lighting"),
    ], ok=True)
    latents = None
    if with_latents:
        latents = ReferenceLatents(
            scaling_factor=0.18215, shift_factor=0.0, vae_id="tiny-vae", vae_sha256="ab" * 32,
            frame_pixel_size=(64, 48),
            face_latents=rng.standard_normal((4, 8, 8)).astype(np.float32) if with_arrays else None,
            frame_latents=rng.standard_normal((4, 6, 8)).astype(np.float32) if with_arrays else None,
        )
    return Reference(
        source_width=64, source_height=48, input_kind="8-bit RGB 64x48", face_index=1, face_count=2,
        face_box_xyxy=np.array([10.25, 5.5, 40.125, 44.0], np.float32), face_score=0.97,
        landmarks_xy=(rng.random((478, 2)) * 60).astype(np.float32),
        landmarks_68=(rng.random((68, 2)) * 60).astype(np.float32),
        landmark_layout="mediapipe_478", landmark_confidence=0.91, landmark_backend="mediapipe",
        yaw_deg=3.25, pitch_deg=-7.5, roll_deg=1.0 / 3.0,
        crop_matrix=rng.standard_normal((2, 3)), crop_inverse=rng.standard_normal((2, 3)), crop_size=64,
        quality=quality, warnings=["The head is turned."],
        consent=ConsentAttestation.now(True), latents=latents,
        aligned_crop=rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) if with_arrays else None,
        frame=rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) if with_arrays else None,
    )


def test_json_round_trip_is_exact():
    ref = make_reference()
    text = ref.to_json()
    data = json.loads(text)
    assert "aligned_crop" not in data and "face_latents" not in json.dumps(data["latents"]).replace("face_shape", "")
    assert data["latents"]["face_shape"] == [4, 8, 8]
    again = Reference.from_json(text)
    assert again.to_json() == text
    np.testing.assert_array_equal(again.landmarks_xy, ref.landmarks_xy)   # float32 bit-exact via JSON
    np.testing.assert_array_equal(again.crop_matrix, ref.crop_matrix)     # float64 bit-exact
    assert again.landmarks_xy.dtype == np.float32 and again.crop_matrix.dtype == np.float64
    assert again.aligned_crop is None and again.latents.face_latents is None
    assert again.latents.face_shape == (4, 8, 8)
    assert again.consent.attested and "T" in again.consent.timestamp_utc
    assert np.isnan(again.quality.checks[1].value)


def test_save_load_arrays_bit_exact(tmp_path):
    ref = make_reference()
    json_path, tensors_path = ref.save(str(tmp_path / "refs" / "portrait"))
    assert json_path.endswith("portrait.json") and tensors_path.endswith("portrait.safetensors")
    assert sorted(os.listdir(tmp_path / "refs")) == ["portrait.json", "portrait.safetensors"]  # no temp files left
    loaded = Reference.load(str(tmp_path / "refs" / "portrait.json"))
    assert loaded.to_json() == ref.to_json()
    np.testing.assert_array_equal(loaded.aligned_crop, ref.aligned_crop)
    np.testing.assert_array_equal(loaded.frame, ref.frame)
    np.testing.assert_array_equal(loaded.latents.face_latents, ref.latents.face_latents)
    np.testing.assert_array_equal(loaded.latents.frame_latents, ref.latents.frame_latents)
    assert loaded.frame.dtype == np.uint8 and loaded.latents.face_latents.dtype == np.float32
    light = Reference.load(str(tmp_path / "refs" / "portrait"), load_arrays=False)
    assert light.frame is None


def test_save_without_arrays_writes_only_json(tmp_path):
    ref = make_reference(with_arrays=False, with_latents=False)
    json_path, tensors_path = ref.save(str(tmp_path / "plain.json"))
    assert tensors_path is None and os.listdir(tmp_path) == ["plain.json"]
    assert Reference.load(json_path).to_json() == ref.to_json()


def test_mismatched_or_missing_files_are_refused(tmp_path):
    make_reference().save(str(tmp_path / "a"))
    other = make_reference()
    other.frame = np.zeros((48, 64, 3), np.uint8)
    other.save(str(tmp_path / "b"))
    os.replace(tmp_path / "b.safetensors", tmp_path / "a.safetensors")
    with pytest.raises(InputError, match="SHA-256"):
        Reference.load(str(tmp_path / "a"))
    os.remove(tmp_path / "a.safetensors")
    with pytest.raises(InputError, match="missing"):
        Reference.load(str(tmp_path / "a"))
    with pytest.raises(InputError, match="no reference file"):
        Reference.load(str(tmp_path / "nothing"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        Reference.load(str(tmp_path / "bad"))
    with pytest.raises(InputError, match="not a Talking Head reference"):
        Reference.from_json('{"format": "something else"}')


@dataclass
class FakeDetection:
    box_xyxy: np.ndarray
    score: float
    landmarks_xy: np.ndarray
    layout: str
    landmark_confidence: float
    backend: str

    def landmarks_68(self):
        return self.landmarks_xy[:68]


@dataclass
class FakePose:
    yaw_deg: float
    pitch_deg: float
    roll_deg: float


@dataclass
class FakeCrop:
    image: np.ndarray
    matrix: np.ndarray
    inverse: np.ndarray


def test_from_parts():
    frame = np.zeros((48, 64, 3), np.uint8)
    _, info = load_image_input(frame)
    det = FakeDetection(np.array([1, 2, 30, 40], np.float32), 0.9, np.ones((68, 2), np.float32), "ibug_68", 0.8, "test")
    crop = FakeCrop(np.zeros((32, 32, 3), np.uint8), np.eye(2, 3), np.eye(2, 3))
    ref = Reference.from_parts(image_info=info, detection=det, face_index=0, face_count=1,
                               pose=FakePose(1, 2, 3), crop=crop, quality=QualityReport(), frame=frame)
    assert ref.input_kind == "8-bit RGB 64x48" and ref.crop_size == 32 and ref.roll_deg == 3.0
    assert set(ref.arrays()) == {"aligned_crop", "frame"}
