"""ReferenceEncoder end to end on the real sample portraits and made-up bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("cv2")
pytest.importorskip("mediapipe")

from skimage import data  # noqa: E402

from talkinghead.pipeline.core.errors import InputError  # noqa: E402
from talkinghead.pipeline.face.encoder import EncoderConfig, encode_reference  # noqa: E402
from talkinghead.pipeline.face.reference import Reference  # noqa: E402


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


def test_consent_is_required_before_anything_else(astronaut):
    for consent in (False, None, "yes", 1):
        with pytest.raises(InputError) as err:
            encode_reference(astronaut, consent=consent)
        assert err.value.input_name == "consent" and "consent of the person" in str(err.value)
    # even a broken image is not looked at without consent
    with pytest.raises(InputError) as err:
        encode_reference(np.zeros((0, 0, 3), np.uint8), consent=False)
    assert err.value.input_name == "consent"


def test_astronaut_end_to_end(astronaut, tmp_path):
    steps = []
    out = encode_reference(astronaut, consent=True, progress=lambda d, t: steps.append((d, t)))
    ref = out.reference
    assert steps[-1] == (5, 5)
    assert ref.face_count == 1 and ref.face_index == 0
    assert ref.landmarks_xy.shape == (478, 2) and ref.landmarks_68.shape == (68, 2)
    x0, y0, x1, y1 = ref.face_box_xyxy
    assert 150 < (x0 + x1) / 2 < 300 and 50 < (y0 + y1) / 2 < 250  # her face, upper middle-left
    assert abs(ref.yaw_deg) < 30 and abs(ref.roll_deg) < 20
    assert ref.consent is not None and ref.consent.attested and ref.consent.timestamp_utc
    assert ref.aligned_crop.shape == (512, 512, 3)
    assert ref.quality.ok and "Reference quality: OK" in out.report_text
    assert "Head pose: yaw" in out.report_text
    assert out.preview.ndim == 3 and out.preview.shape[2] == 3
    # the preview differs from the plain image where the landmarks are drawn
    assert out.preview.shape[:2] == (512, 512)
    assert np.abs(out.preview.astype(int) - astronaut.astype(int)).sum() > 0
    # round trips: JSON without arrays, files with them
    again = Reference.from_json(ref.to_json())
    assert again.to_dict() == ref.to_dict()
    ref.save(str(tmp_path / "ref"))
    loaded = Reference.load(str(tmp_path / "ref"))
    assert np.array_equal(loaded.aligned_crop, ref.aligned_crop)
    assert np.array_equal(loaded.landmarks_xy, ref.landmarks_xy)


def test_greyscale_16bit_and_rgba_inputs(astronaut):
    grey16 = (astronaut.astype(np.float32).mean(2) * 257).astype(np.uint16)
    out = encode_reference(Image.fromarray(grey16), consent=True)
    assert "16-bit" in out.reference.input_kind and "grey" in out.reference.input_kind
    rgba = np.concatenate([astronaut, np.full(astronaut.shape[:2] + (1,), 255, np.uint8)], 2)
    out_rgba = encode_reference(rgba, consent=True)
    assert np.allclose(out_rgba.reference.face_box_xyxy, encode_reference(astronaut, consent=True).reference.face_box_xyxy,
                       atol=1.0)


def test_oversized_image_is_refused_with_its_size():
    with pytest.raises(InputError) as err:
        encode_reference(np.zeros((10, 8001, 3), np.uint8), consent=True)
    assert "8001" in str(err.value) and err.value.input_name == "image"


def test_animal_and_cartoon_are_no_face():
    with pytest.raises(InputError, match="no human face"):
        encode_reference(data.chelsea(), consent=True)


def test_rotated_portrait_is_said(astronaut):
    with pytest.raises(InputError, match="rotated") as err:
        encode_reference(np.rot90(astronaut), consent=True)  # turned 90 degrees counter-clockwise
    assert "90 degrees clockwise" in str(err.value)


def test_two_equal_faces_choice_is_said_and_index_picks(astronaut):
    pair = np.concatenate([astronaut, astronaut], axis=1)
    first = encode_reference(pair, consent=True)
    assert first.reference.face_count == 2
    assert any("leftmost" in w for w in first.reference.warnings)
    second = encode_reference(pair, consent=True, face_index=1)
    assert second.reference.face_box_xyxy[0] > first.reference.face_box_xyxy[0] + 400
    with pytest.raises(InputError) as err:
        encode_reference(pair, consent=True, face_index=2)
    assert err.value.input_name == "face_index" and "2 face(s)" in str(err.value)


def test_face_cut_by_border_is_said(astronaut):
    box = encode_reference(astronaut, consent=True).reference.face_box_xyxy
    cut_x = int(box[0] + 0.33 * (box[2] - box[0]))  # through the face, a third of its width in
    out = encode_reference(np.ascontiguousarray(astronaut[:, cut_x:]), consent=True)
    assert any("cut by the image border" in w for w in out.reference.warnings)


def test_tiny_face_stops_the_run(astronaut):
    small = np.asarray(Image.fromarray(astronaut).resize((96, 96), Image.LANCZOS))
    canvas = np.full((400, 400, 3), 120, np.uint8)
    canvas[150:246, 150:246] = small  # a face of about 40 px
    with pytest.raises(InputError) as err:
        encode_reference(canvas, consent=True)
    assert err.value.input_name == "image"
    assert "too little" in str(err.value) or "no human face" in str(err.value)


def test_latents_with_a_tiny_vae(astronaut, tmp_path):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                                  layers_per_block=1, latent_channels=4, norm_num_groups=8, sample_size=64)
    vae.save_pretrained(str(tmp_path / "vae"), safe_serialization=True)
    out = encode_reference(astronaut, consent=True, vae=str(tmp_path / "vae"),
                           config=EncoderConfig(crop_size=128))
    lat = out.reference.latents
    assert lat.face_latents.shape == (4, 64, 64)  # 128 px crop, 2 blocks: 2x downsampling
    assert lat.frame_latents.shape == (4, 256, 256)
    assert np.isfinite(lat.face_latents).all()
    assert "Latents: face (4, 64, 64)" in out.report_text
