"""Face detection, landmarks, head pose and alignment on real portraits shipped in wheels.

Each test runs once per installed backend (mediapipe, dlib); a backend that is not installed is
skipped with the reason. Portraits: skimage.data.astronaut() (512x512) and matplotlib's
grace_hopper.jpg; non-faces: skimage.data.chelsea() (a cat) and skimage.data.coffee().
"""

from __future__ import annotations

import numpy as np
import pytest

from talkinghead.pipeline.core.errors import InputError
from talkinghead.pipeline.face import landmarks as fl
from talkinghead.pipeline.face.backends import BACKENDS, backend_importable

skimage_data = pytest.importorskip("skimage.data")
cv2 = pytest.importorskip("cv2", reason="cv2 comes with the face backends (pip install 'talkinghead[faces]')")


@pytest.fixture(params=BACKENDS)
def backend(request):
    if not backend_importable(request.param):
        pytest.skip(f"face backend {request.param} not installed (pip install 'talkinghead[faces]')")
    return request.param


@pytest.fixture(scope="module")
def astronaut():
    return np.ascontiguousarray(skimage_data.astronaut()[..., :3])


@pytest.fixture(scope="module")
def grace_hopper():
    cbook = pytest.importorskip("matplotlib.cbook")
    image = pytest.importorskip("matplotlib.image")
    return np.ascontiguousarray(image.imread(cbook.get_sample_data("grace_hopper.jpg"))[..., :3])


def assert_sane_face(face, image):
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in face.box_xyxy)
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert (x1 - x0) > 0.1 * w  # the portraits' faces are large
    p = face.landmarks_68()
    assert p.shape == (68, 2) and p.dtype == np.float32
    # the 68 points lie in the face box's region (jaw and brows may reach a little past the box)
    mx, my = 0.3 * (x1 - x0), 0.3 * (y1 - y0)
    assert np.all((p[:, 0] > x0 - mx) & (p[:, 0] < x1 + mx) & (p[:, 1] > y0 - my) & (p[:, 1] < y1 + my))
    left, right = face.eye_centres()
    mouth = face.mouth_centre()
    assert left[0] < right[0]
    assert mouth[1] > max(left[1], right[1]) + 0.3 * (right[0] - left[0])  # eyes above the mouth
    assert p[30, 1] > p[27, 1] and p[8, 1] > mouth[1]  # nose tip below nose bridge, chin below mouth
    assert p[36:42, 0].mean() < p[42:48, 0].mean()  # iBUG right eye (subject's) is on the image left
    assert 0.5 <= face.score <= 1.0 and face.landmark_confidence >= 0.9
    assert not face.cut_by_border
    if face.layout == "mediapipe_478":
        assert face.landmarks_xy.shape == (478, 2)
    else:
        assert face.layout == "ibug_68"


def test_astronaut_one_face(backend, astronaut):
    faces = fl.detect_faces(astronaut, backend)
    assert len(faces) == 1
    assert faces[0].backend == backend
    assert_sane_face(faces[0], astronaut)


def test_grace_hopper_one_face(backend, grace_hopper):
    faces = fl.detect_faces(grace_hopper, backend)
    assert len(faces) == 1
    assert_sane_face(faces[0], grace_hopper)


def test_large_image_maps_back_to_full_resolution(backend, astronaut):
    small = fl.detect_faces(astronaut, backend)[0]
    big_image = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    big = fl.detect_faces(big_image, backend)[0]
    # same face, same landmarks, 4x the coordinates (pixel centres: x_big = 4 x + 1.5)
    expected = small.landmarks_68() * 4 + 1.5
    eye_dist = np.linalg.norm(np.subtract(*big.eye_centres()))
    assert np.median(np.linalg.norm(big.landmarks_68() - expected, axis=1)) < 0.05 * eye_dist


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_cat_and_coffee_have_no_face(backend, name):
    image = getattr(skimage_data, name)()
    assert fl.detect_faces(image, backend) == []
    with pytest.raises(InputError, match="no human face found"):
        fl.find_face(image, backend)


def test_cartoon_face_is_no_face(backend):
    # a drawn smiley: head, two eyes, a smile
    img = np.full((512, 512, 3), 235, np.uint8)
    cv2.circle(img, (256, 256), 170, (255, 205, 60), -1)
    cv2.circle(img, (256, 256), 170, (40, 40, 40), 4)
    for x in (196, 316):
        cv2.ellipse(img, (x, 210), (22, 34), 0, 0, 360, (30, 30, 30), -1)
    cv2.ellipse(img, (256, 300), (90, 60), 0, 10, 170, (30, 30, 30), 8)
    assert fl.detect_faces(img, backend) == []
    with pytest.raises(InputError, match="no human face found.*cartoons"):
        fl.find_face(img, backend)


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_rotated_image_is_detected_and_said(backend, astronaut, turn):
    # rotate clockwise by `turn`; fixing it needs the rest of the full turn
    rotated = fl.rotate_clockwise(astronaut, turn)
    assert fl.detect_rotation(rotated, backend) == (360 - turn) % 360
    with pytest.raises(InputError, match=f"rotated.*{(360 - turn) % 360} degrees clockwise"):
        fl.find_face(rotated, backend)


def test_upright_image_reports_no_rotation(backend, astronaut):
    assert fl.detect_rotation(astronaut, backend) == 0


def test_two_equal_faces_leftmost_first(backend, astronaut):
    pair = np.ascontiguousarray(np.hstack([astronaut, astronaut]))
    faces = fl.detect_faces(pair, backend)
    assert len(faces) == 2
    a, b = faces
    assert abs(a.area - b.area) < 0.1 * a.area
    assert a.box_xyxy[2] <= 512 + 4 and b.box_xyxy[0] >= 512 - 4  # one face per copy, left one first
    assert np.allclose(b.landmarks_68() - [512, 0], a.landmarks_68(), atol=0.05 * (a.box_xyxy[2] - a.box_xyxy[0]))
    face, notes = fl.find_face(pair, backend)
    assert np.allclose(face.box_xyxy, a.box_xyxy)
    assert any("about equal size" in n and "leftmost" in n for n in notes)


def test_face_cut_by_border(backend, astronaut):
    # cut through the face at about a third of its width from the image-left side
    box = fl.detect_faces(astronaut, backend)[0].box_xyxy
    cut_x = int(box[0] + 0.33 * (box[2] - box[0]))
    cut = np.ascontiguousarray(astronaut[:, cut_x:])
    faces = fl.detect_faces(cut, backend)
    assert len(faces) == 1
    face = faces[0]
    assert face.box_xyxy[0] <= 1.0  # the box reaches the left border
    assert face.cut_by_border
    assert face.landmarks_68()[:, 0].min() < 0  # the hidden jaw side is estimated beyond the border
    _, notes = fl.find_face(cut, backend)
    assert any("cut by the image border" in n for n in notes)


def turned_head(image, face, shift_eye_fraction):
    """A crude yaw: slides the middle of the face (nose, mouth) sideways while the face outline stays."""
    left, right = face.eye_centres()
    eye = float(right[0] - left[0])
    nose = face.landmarks_68()[30]
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    bump = np.exp(-((xs - nose[0]) / (0.45 * eye)) ** 2 - ((ys - nose[1]) / (1.2 * eye)) ** 2)
    map_x = (xs - np.float32(shift_eye_fraction * eye) * bump).astype(np.float32)
    return cv2.remap(image, map_x, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def test_yaw_sign_flips_with_mirror(backend, astronaut):
    face = fl.detect_faces(astronaut, backend)[0]
    turned = turned_head(astronaut, face, 0.25)  # nose moved toward image right: subject turned to their left
    yaw = fl.head_pose(fl.detect_faces(turned, backend)[0]).yaw_deg
    yaw_mirror = fl.head_pose(fl.detect_faces(np.ascontiguousarray(turned[:, ::-1]), backend)[0]).yaw_deg
    assert yaw > 8, yaw
    assert yaw_mirror < -8, yaw_mirror
    assert abs(yaw + yaw_mirror) < 6
    # the untouched portrait is near frontal
    pose = fl.head_pose(face)
    assert abs(pose.yaw_deg) < 10 and abs(pose.pitch_deg) < 20 and abs(pose.roll_deg) < 10


def test_roll_follows_image_rotation(backend, astronaut):
    base = fl.head_pose(fl.detect_faces(astronaut, backend)[0]).roll_deg
    # cv2: a positive angle turns the image counter-clockwise; -10 turns it 10 degrees clockwise
    m = cv2.getRotationMatrix2D((255.5, 255.5), -10.0, 1.0)
    turned = cv2.warpAffine(astronaut, m, (512, 512), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    roll = fl.head_pose(fl.detect_faces(turned, backend)[0]).roll_deg
    assert roll - base == pytest.approx(10.0, abs=2.0)
    mirrored = fl.head_pose(fl.detect_faces(np.ascontiguousarray(astronaut[:, ::-1]), backend)[0]).roll_deg
    assert mirrored == pytest.approx(-base, abs=2.0)


def test_align_round_trip_and_canonical_eyes(backend, astronaut, grace_hopper):
    for image in (astronaut, grace_hopper):
        face = fl.detect_faces(image, backend)[0]
        crop = fl.align_face(image, face, crop_size=512)
        assert crop.image.shape == (512, 512, 3) and crop.image.dtype == np.uint8
        pts = np.random.default_rng(0).uniform(-100, 600, (100, 2))
        assert np.abs(crop.to_image(crop.to_crop(pts)) - pts).max() < 0.01
        assert np.abs(crop.to_crop(crop.to_image(pts)) - pts).max() < 0.01
        canon = fl.canonical_points(512)
        eyes = crop.to_crop(np.array(face.eye_centres()))
        assert np.abs(eyes - canon[:2]).max() < 2.0
        assert np.linalg.norm(crop.to_crop(face.mouth_centre())[0] - canon[2]) < 0.08 * 512
        # the crop really shows the face there: detecting again finds the eyes where they were put
        again = fl.detect_faces(crop.image, backend)
        assert len(again) == 1
        assert np.abs(np.array(again[0].eye_centres()) - canon[:2]).max() < 6.0


def test_align_face_scale_keeps_eyes_level_and_centred(backend, astronaut):
    face = fl.detect_faces(astronaut, backend)[0]
    crop = fl.align_face(astronaut, face, crop_size=256, face_scale=0.5)
    eyes = crop.to_crop(np.array(face.eye_centres()))
    assert abs(eyes[0, 1] - eyes[1, 1]) < 0.5
    assert np.linalg.norm(eyes[1] - eyes[0]) == pytest.approx(0.25 * 0.5 * 256, abs=0.5)
    assert (eyes[0, 0] + eyes[1, 0]) / 2 == pytest.approx(127.5, abs=0.5)


def test_mediapipe_478_maps_to_68(astronaut):
    if not backend_importable("mediapipe"):
        pytest.skip("mediapipe not installed")
    face = fl.detect_faces(astronaut, "mediapipe")[0]
    assert face.landmarks_68().shape == (68, 2)
    if backend_importable("dlib"):
        other = fl.detect_faces(astronaut, "dlib")[0].landmarks_68()
        eye = np.linalg.norm(np.subtract(*face.eye_centres()))
        err = np.linalg.norm(face.landmarks_68() - other, axis=1) / eye
        assert np.median(err) < 0.06 and err[17:].max() < 0.2  # jaw excepted: dlib follows the outline


def test_bad_input_errors():
    with pytest.raises(InputError, match="RGB uint8"):
        fl.detect_faces(np.zeros((64, 64), np.uint8))
    with pytest.raises(InputError, match="unknown face backend"):
        fl.detect_faces(np.zeros((64, 64, 3), np.uint8), backend="nope")


def test_no_backend_installed_says_what_to_install(monkeypatch):
    monkeypatch.setattr(fl, "backend_importable", lambda name: False)
    assert fl.available_backends() == []
    with pytest.raises(InputError, match=r'pip install "talkinghead\[faces\]"'):
        fl.detect_faces(np.zeros((64, 64, 3), np.uint8))


def test_auto_prefers_mediapipe():
    names = fl.available_backends()
    if not names:
        with pytest.raises(InputError, match="talkinghead\\[faces\\]"):
            fl.resolve_backend("auto")
    else:
        assert fl.resolve_backend("auto") == names[0]
        assert names == [n for n in ("mediapipe", "dlib") if n in names]


def test_face_the_full_range_detector_misses_is_found_by_the_fallbacks(monkeypatch, astronaut):
    """Some real studio portraits (glasses and a pout, a raised chin) are missed by BlazeFace full range:
    the short-range detector, then the mesh on the whole image, get a look before 'no face'."""
    if not backend_importable("mediapipe"):
        pytest.skip("mediapipe not installed")
    from talkinghead.pipeline.face import backends

    impl = backends.get_backend("mediapipe")
    monkeypatch.setattr(impl, "detect", lambda work: [])
    faces = fl.detect_faces(astronaut, "mediapipe")
    assert len(faces) == 1 and faces[0].score >= 0.5
    assert_sane_face(faces[0], astronaut)
    # with the short-range detector missing it too, the mesh on the whole image still finds it
    monkeypatch.setattr(impl, "_short_range", type("Blind", (), {"process": lambda self, image: type(
        "Nothing", (), {"detections": None})()})())
    faces = fl.detect_faces(astronaut, "mediapipe")
    assert len(faces) == 1 and faces[0].score == backends.MESH_FALLBACK_SCORE
    assert_sane_face(faces[0], astronaut)
    monkeypatch.setattr(impl, "detect_fallback", lambda work: [])
    assert fl.detect_faces(astronaut, "mediapipe") == []
