"""Face backends: ms per image at 512 and 2048 px, and landmark jitter (1-px shift, JPEG q90), per backend.

Baseline: the backend's bare detector on the same working-size copy (no landmarks, no crops, no
mapping back), measured in the same run; the ratio full/baseline shows what landmarks and our side
cost. Jitter: the 68 iBUG landmarks of an image against those of (a) the image shifted right by one
pixel (minus the shift) and (b) the image re-compressed as JPEG quality 90; median and max over the 68
points, in pixels of the 512-px-class portrait. Portraits: skimage astronaut (512x512), matplotlib
grace_hopper.jpg (512x600); the 2048 px case is the astronaut upscaled (bicubic).

Run: python tests/bench/bench_faces.py  (prints the section; run_all.py collects it)
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from talkinghead.pipeline.face import landmarks as fl
from talkinghead.pipeline.face.backends import BACKENDS, backend_importable, get_backend


def portraits() -> dict:
    from skimage import data  # noqa: PLC0415

    images = {"astronaut": np.ascontiguousarray(data.astronaut()[..., :3])}
    try:
        from matplotlib import cbook  # noqa: PLC0415
        from matplotlib import image as mpimage  # noqa: PLC0415

        images["grace_hopper"] = np.ascontiguousarray(mpimage.imread(cbook.get_sample_data("grace_hopper.jpg"))[..., :3])
    except ImportError:
        pass
    return images


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up (model load, first-call allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _work_copy(impl, image):
    h, w = image.shape[:2]
    scale = impl.work_side / max(h, w)
    if scale > 1 and not impl.upscale_for_detection:
        return image
    return fl._resize(image, max(1, round(w * scale)), max(1, round(h * scale)))


def _jpeg(image: np.ndarray, quality: int = 90) -> np.ndarray:
    import cv2  # noqa: PLC0415

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _points(image, backend):
    faces = fl.detect_faces(image, backend, max_faces=1)
    return faces[0].landmarks_68().astype(np.float64) if faces else None


def jitter(image: np.ndarray, backend: str) -> dict:
    """{'shift': (median, max), 'jpeg90': (median, max)} pixel distances over the 68 points."""
    base = _points(image, backend)
    shifted = np.ascontiguousarray(np.concatenate([image[:, :1], image[:, :-1]], axis=1))  # content moves +1 px
    out = {}
    for name, variant, offset in (("shift", shifted, np.array([1.0, 0.0])), ("jpeg90", _jpeg(image), 0.0)):
        pts = _points(variant, backend)
        if base is None or pts is None:
            out[name] = (float("nan"), float("nan"))
            continue
        d = np.linalg.norm(pts - offset - base, axis=1)
        out[name] = (float(np.median(d)), float(d.max()))
    return out


def run(repeats: int = 10) -> str:
    import cv2  # noqa: PLC0415

    images = portraits()
    astronaut = images["astronaut"]
    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    lines = []
    for name in BACKENDS:
        if not backend_importable(name):
            lines.append(f"{name}: not installed, skipped")
            continue
        impl = get_backend(name)
        lines.append(f"{name} ({impl.layout}):")
        for label, image, n in (("512 px (astronaut 512x512)", astronaut, repeats),
                                ("2048 px (astronaut upscaled)", big, max(3, repeats // 2))):
            full = _median_ms(lambda image=image: fl.detect_faces(image, name), n)
            work = _work_copy(impl, image)
            bare = _median_ms(lambda work=work: impl.detect(work), n)
            lines.append(f"  {label:30s} detect_faces {full:7.1f} ms/image   bare detector {bare:7.1f} ms "
                         f"(ratio {full / bare:.1f}x)")
        if "grace_hopper" in images:
            full = _median_ms(lambda: fl.detect_faces(images["grace_hopper"], name), repeats)
            lines.append(f"  {'512x600 (grace hopper)':30s} detect_faces {full:7.1f} ms/image")
        for portrait, image in images.items():
            j = jitter(image, name)
            eye = np.linalg.norm(np.subtract(*fl.detect_faces(image, name)[0].eye_centres()))
            lines.append(f"  jitter {portrait:13s} (eye distance {eye:5.1f} px): 1-px shift median "
                         f"{j['shift'][0]:.2f} max {j['shift'][1]:.2f} px;  JPEG q90 median {j['jpeg90'][0]:.2f} "
                         f"max {j['jpeg90'][1]:.2f} px")
        nonfaces = [k for k in ("chelsea", "coffee") if fl.detect_faces(getattr(__import__("skimage.data").data, k)(),
                                                                         name)]
        lines.append(f"  non-faces (cat, coffee) wrongly detected: {nonfaces or 'none'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    print(run(args.repeats))


if __name__ == "__main__":
    main()
