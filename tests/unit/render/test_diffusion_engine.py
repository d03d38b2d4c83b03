"""The diffusion engine's sampling loop (pipeline/render/diffusion/sampler.py) on tiny random models.

The models are built in code (random_models.build("tiny"): a 2-level UNet with cross-attention
width 32, a motion adapter and a ControlNet of the same shape, a 4-level VAE, a 2-layer CLIP text
encoder); nothing is downloaded. Zero-initialised layers are given random values so every part
changes the output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytest.importorskip("cv2")

from talkinghead.pipeline.render.diffusion import DiffusionSettings, diffuse_frames, models_from_objects  # noqa: E402
from talkinghead.pipeline.render.diffusion.control import draw_landmark_map, face_mask  # noqa: E402
from talkinghead.pipeline.render.diffusion.random_models import build  # noqa: E402
from talkinghead.pipeline.render.diffusion.windows import border_frames  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tiny():
    return build("tiny", seed=0)


def engine(tiny, motion=True, controlnet=False):
    return models_from_objects(tiny.unet, tiny.vae, tiny.text_encoder,
                               tiny.motion_adapter if motion else None, tiny.controlnet if controlnet else None)


@pytest.fixture(scope="module")
def motion_models(tiny):
    return engine(tiny, motion=True)


@pytest.fixture(scope="module")
def still_models(tiny):
    return engine(tiny, motion=False)


def video(n: int, size: int = SIZE, seed: int = 0):
    """A smooth clip (a texture drifting one pixel every 4 frames, a moving face-like blob) and
    per-frame 68-point landmarks around the blob."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(40, 215, size=(size, size + n, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    frames, marks = [], []
    angle = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    for i in range(n):
        shift = i // 4
        cx, cy = size / 2 + 3 * np.sin(i / 7), size / 2
        blob = 80 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (size / 6) ** 2))
        frame = texture[:, shift:shift + size] * 0.6 + blob[..., None]
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        marks.append(np.stack([cx + size / 5 * np.cos(angle), cy + size / 4 * np.sin(angle)], 1).astype(np.float32))
    return np.stack(frames), marks


class FakeReference:
    """What reference attention reads from a Reference: an aligned face crop (no latents)."""

    latents = None
    frame = None

    def __init__(self, seed=5):
        self.aligned_crop = np.random.default_rng(seed).integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)


def run(models, frames, marks, reference=None, hook=None, **settings):
    base = dict(strength=0.6, steps=4, guidance=1.0, context_length=8, context_overlap=2, mask_face=False,
                keep_background_pixels=False)
    base.update(settings)
    stream = diffuse_frames(models, frames, marks, reference=reference, prompt="a portrait",
                            settings=DiffusionSettings(**base), start_latents_hook=hook)
    return stream


def pixels(stream):
    return np.stack(list(stream.images()))


def test_shapes_dtype_and_determinism(motion_models):
    frames, marks = video(10, size=60)  # not a multiple of 64: padded inside, cropped on output
    a = run(motion_models, frames[:, :52], marks, guidance=3.0)
    out = pixels(a)
    assert out.shape == (10, 52, 60, 3) and out.dtype == np.uint8
    assert a.latents.shape == (10, 4, 8, 8) and a.latents.dtype == torch.float32
    assert a.info["guidance_on"] and a.info["steps_run"] == 2
    np.testing.assert_array_equal(pixels(a), out)  # the lazy stream decodes the same frames again
    np.testing.assert_array_equal(pixels(run(motion_models, frames[:, :52], marks, guidance=3.0)), out)
    other = pixels(run(motion_models, frames[:, :52], marks, guidance=3.0, seed=1))
    assert np.abs(other.astype(int) - out).max() > 0
    assert np.abs(out.astype(int) - frames[:, :52]).mean() > 1  # it did change the frames


@pytest.mark.parametrize("strength", [0.0, 0.1])
def test_strength_zero_returns_the_input_frames(motion_models, strength):
    frames, marks = video(6)
    stream = run(motion_models, frames, marks, strength=strength, steps=4)  # 0.1 * 4 rounds down to no step
    assert stream.info["steps_run"] == 0 and stream.latents is None
    np.testing.assert_array_equal(pixels(stream), frames)


def test_temporal_attention_couples_frames(motion_models, still_models):
    frames, marks = video(8)
    k = 3

    def perturb(latents):
        latents = latents.clone()
        latents[k] += 1.5 * torch.randn(latents[k].shape, generator=torch.Generator().manual_seed(9))
        return latents

    for models, coupled in ((motion_models, True), (still_models, False)):
        plain = run(models, frames, marks).latents
        moved = run(models, frames, marks, hook=perturb).latents
        change = (moved - plain).abs().flatten(1).amax(1)
        assert change[k] > 0.1
        neighbours = change[[k - 1, k + 1]]
        if coupled:
            assert torch.all(neighbours > 1e-3), change
        else:
            assert torch.all(neighbours == 0), change
            assert torch.all(change[[i for i in range(8) if i != k]] == 0)


def test_window_borders_show_no_seams(motion_models):
    n, length, overlap = 100, 16, 4
    frames, marks = video(n)
    stream = run(motion_models, frames, marks, strength=1.0, steps=2, context_length=length, context_overlap=overlap)
    assert stream.info["windows"] == 8 and stream.info["max_unet_batch"] == length
    z = stream.latents
    step = (z[1:] - z[:-1]).abs().flatten(1).mean(1).numpy()  # change from frame t to t+1
    borders = border_frames(n, length, overlap)
    within = np.setdiff1d(np.arange(n - 1), borders)
    assert step[borders].mean() <= step[within].mean() * 1.05, (step[borders].mean(), step[within].mean())
    assert step[borders].max() <= step[within].max()


def test_controlnet_changes_the_output_and_removing_it_restores_it(tiny, motion_models):
    frames, marks = video(8)
    with_cn = engine(tiny, motion=True, controlnet=True)
    base = run(motion_models, frames, marks).latents
    controlled = run(with_cn, frames, marks)
    assert controlled.info["landmark_control"]
    assert (controlled.latents - base).abs().max() > 1e-3
    torch.testing.assert_close(run(with_cn, frames, marks, controlnet_scale=0.0).latents, base, rtol=0, atol=0)
    torch.testing.assert_close(run(motion_models, frames, marks).latents, base, rtol=0, atol=0)
    other = run(with_cn, frames, marks, landmark_style="mediapipe_face").latents
    assert (other - controlled.latents).abs().max() > 0  # the map style reaches the model


def test_reference_attention_changes_the_output_and_removing_it_restores_it(motion_models):
    frames, marks = video(8)
    base = run(motion_models, frames, marks, guidance=2.0).latents
    processors = dict(motion_models.unet.attn_processors)
    anchored = run(motion_models, frames, marks, reference=FakeReference(), guidance=2.0)
    assert anchored.info["reference"] == "aligned_crop encoded"
    assert (anchored.latents - base).abs().max() > 1e-3
    other = run(motion_models, frames, marks, reference=FakeReference(seed=6), guidance=2.0).latents
    assert (other - anchored.latents).abs().max() > 1e-4  # a different face, a different result
    assert {k: type(v) for k, v in motion_models.unet.attn_processors.items()} == \
        {k: type(v) for k, v in processors.items()}
    torch.testing.assert_close(run(motion_models, frames, marks, guidance=2.0).latents, base, rtol=0, atol=0)
    torch.testing.assert_close(run(motion_models, frames, marks, reference=FakeReference(), guidance=2.0,
                                   reference_weight=0.0).latents, base, rtol=0, atol=0)


def test_face_mask_keeps_the_pixels_outside_the_face(motion_models):
    frames, marks = video(6)
    stream = run(motion_models, frames, marks, mask_face=True, keep_background_pixels=True, strength=0.8)
    out = pixels(stream)
    outside = np.stack([face_mask(m, SIZE, SIZE, 0.25, 0.1) for m in marks]) == 0
    assert outside.mean() > 0.2
    np.testing.assert_array_equal(out[outside], frames[outside])
    inside = ~outside
    assert np.abs(out[inside].astype(int) - frames[inside]).mean() > 1
    # the latent blend alone: outside-the-mask latents are the input's latents after the last step
    latent_only = run(motion_models, frames, marks, mask_face=True, keep_background_pixels=False, strength=0.8)
    masked = run(motion_models, frames, marks, mask_face=False, strength=0.8)
    assert (latent_only.latents - masked.latents).abs().max() > 1e-3


def test_landmark_maps():
    _, marks = video(1)
    dots = draw_landmark_map(marks[0], 64, 48, "openpose_face")
    lines = draw_landmark_map(marks[0], 64, 48, "mediapipe_face")
    assert dots.shape == lines.shape == (48, 64, 3) and dots.dtype == np.uint8
    assert dots.max() == 255 and (lines > 0).sum() > (dots > 0).sum() / 2
    mp = np.zeros((478, 2), np.float32)
    mp[:, 0], mp[:, 1] = 32, 24
    assert draw_landmark_map(mp, 64, 48).any()


MEMORY_SCRIPT = textwrap.dedent("""
    import os, sys, threading, time
    import numpy as np, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from unit.render.test_diffusion_engine import video
    from talkinghead.pipeline.render.diffusion import DiffusionSettings, diffuse_frames, models_from_objects
    from talkinghead.pipeline.render.diffusion.random_models import build
    n = int(sys.argv[1])
    m = build("tiny", seed=0)
    models = models_from_objects(m.unet, m.vae, m.text_encoder, m.motion_adapter, None)
    settings = DiffusionSettings(strength=0.5, steps=2, guidance=1.0, context_length=16, context_overlap=4,
                                 mask_face=True, keep_background_pixels=False)
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    warm, marks = video(16, size=64)
    for _ in diffuse_frames(models, warm, marks, settings=settings).images():  # first-use allocations
        pass
    frames, marks = video(n, size=64)
    base = rss(); peak = [base]; stop = [False]
    def poll():
        while not stop[0]:
            peak[0] = max(peak[0], rss()); time.sleep(0.002)
    thread = threading.Thread(target=poll); thread.start()
    stream = diffuse_frames(models, frames, marks, settings=settings)
    for image in stream.images() if n <= 64 else ():  # decoding is per batch of 8 frames: checked at 32
        pass
    stop[0] = True; thread.join()
    print(peak[0] - base, stream.info["max_unet_batch"])
""")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc for RSS")
def test_peak_memory_is_flat_in_clip_length(tmp_path):
    tests = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = tmp_path / "memory.py"
    script.write_text(MEMORY_SCRIPT.format(tests=tests))
    results = {}
    for n in (32, 256):
        done = subprocess.run([sys.executable, str(script), str(n)], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
        assert done.returncode == 0, done.stderr[-2000:]
        growth, batch = done.stdout.split()[-2:]
        results[n] = (int(growth), int(batch))
    (small, batch_small), (large, batch_large) = results[32], results[256]
    assert batch_small == batch_large == 16  # one window of 16 frames at a time, whatever the length
    # 8x the frames: the extra is the latents kept on the CPU (about 1 KB per frame per tensor at
    # 64x64), not the per-window activations; docs/benchmarks.md has the same check at larger sizes
    assert large <= small * 1.3 + 8 * 2 ** 20, (small, large)
