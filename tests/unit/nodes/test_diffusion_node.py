"""TemporalSampler with engine = diffusion (nodes/sampler.py): inputs, the missing-checkpoint
message, and a whole run on tiny models from $TALKINGHEAD_MODELS_DIR (no ComfyUI, no downloads)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("mediapipe")

from skimage import data  # noqa: E402

from talkinghead.nodes import comfy_env  # noqa: E402
from talkinghead.nodes.registry import NODE_CLASS_MAPPINGS  # noqa: E402
from talkinghead.pipeline.core.errors import InputError  # noqa: E402
from talkinghead.pipeline.face.encoder import encode_reference  # noqa: E402
from talkinghead.pipeline.lipsync.track import MOUTH_PARAMS, VISEMES, VisemeTrack  # noqa: E402
from talkinghead.pipeline.render.diffusion import cache_keys, free_models  # noqa: E402
from talkinghead.pipeline.render.diffusion.convert import save_single_file_checkpoint  # noqa: E402
from talkinghead.pipeline.render.diffusion.random_models import build, save_motion_adapter_file  # noqa: E402

Sampler = NODE_CLASS_MAPPINGS["TalkingHeadTemporalSampler"]
DIFFUSION_INPUTS = ("engine", "checkpoint", "motion_module", "controlnet", "vae", "strength", "steps", "guidance",
                    "scheduler", "context_length", "context_overlap", "device", "precision", "keep_models_loaded")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for kind in ("checkpoints", "animatediff_models", "controlnet", "vae"):
        (root / kind).mkdir()
    m = build("tiny", seed=4)
    save_single_file_checkpoint(str(root / "checkpoints" / "tiny-sd15.safetensors"), m.unet, m.vae, m.text_encoder)
    save_motion_adapter_file(m.motion_adapter, str(root / "animatediff_models" / "tiny_mm.safetensors"))
    m.controlnet.save_pretrained(str(root / "controlnet" / "tiny-openpose"), safe_serialization=True)
    previous = os.environ.get(comfy_env.MODELS_DIR_ENV)
    os.environ[comfy_env.MODELS_DIR_ENV] = str(root)
    yield root
    free_models()
    if previous is None:
        os.environ.pop(comfy_env.MODELS_DIR_ENV, None)
    else:
        os.environ[comfy_env.MODELS_DIR_ENV] = previous


@pytest.fixture(scope="module")
def scene():
    reference = encode_reference(data.astronaut(), consent=True).reference
    n = 6
    mouth = np.zeros((n, len(MOUTH_PARAMS)), np.float32)
    mouth[:, 0] = np.linspace(0, 1, n)
    weights = np.zeros((n, len(VISEMES)), np.float32)
    weights[:, 0] = 1
    return reference, VisemeTrack(fps=25.0, duration_s=n / 25.0, viseme_weights=weights, mouth=mouth)


def base_inputs(reference, track, **extra):
    inputs = dict(reference=reference, viseme_track=track, seed=3, width=64, height=64, motion_strength=1.0,
                  blink_rate_per_min=15.0, image_output="all_frames")
    inputs.update(extra)
    return inputs


def test_inputs_are_optional_and_list_the_model_folders(models_dir):
    types = Sampler.INPUT_TYPES()
    optional = types["optional"]
    for name in DIFFUSION_INPUTS:
        assert name in optional, name
        assert len(optional[name][1]["tooltip"]) >= 40
    assert optional["engine"][1]["default"] == "weight_free"
    assert "tiny-sd15.safetensors" in optional["checkpoint"][0]
    assert "tiny_mm.safetensors" in optional["motion_module"][0]
    assert "tiny-openpose" in optional["controlnet"][0]


def test_diffusion_without_a_checkpoint_says_what_to_put_where(models_dir, scene):
    reference, track = scene
    with pytest.raises(InputError) as error:
        Sampler().sample(**base_inputs(reference, track, engine="diffusion"))
    assert error.value.input_name == "checkpoint"
    text = str(error.value)
    assert "checkpoints" in text and ".safetensors" in text and "1.5" in text and "weight_free" in text


def test_weight_free_output_is_unchanged_by_the_new_inputs(models_dir, scene):
    reference, track = scene
    plain, _, report = Sampler().sample(**base_inputs(reference, track))["result"]
    explicit, _, _ = Sampler().sample(**base_inputs(reference, track, engine="weight_free", strength=0.9,
                                                    steps=3))["result"]
    torch.testing.assert_close(plain, explicit, rtol=0, atol=0)
    # the report says the size chosen and why, and the editor shows it
    assert "engine: weight_free" in report and f"output {plain.shape[2]}x{plain.shape[1]}" in report


def test_diffusion_engine_runs_from_the_models_folders(models_dir, scene):
    reference, track = scene
    steps = []
    context = comfy_env.HeadlessContext(str(models_dir), str(models_dir),
                                        progress_factory=lambda total: comfy_env.ProgressReporter(
                                            total, lambda d, t: steps.append((d, t))))
    weight_free = Sampler().sample(**base_inputs(reference, track))["result"][0]
    with comfy_env.headless(context):
        images, stream, report = Sampler().sample(**base_inputs(
            reference, track, engine="diffusion", checkpoint="tiny-sd15.safetensors",
            motion_module="tiny_mm.safetensors", controlnet="tiny-openpose", strength=0.5, steps=4, guidance=2.0,
            context_length=4, context_overlap=1, device="cpu", keep_models_loaded=False))["result"]
    assert "engine: diffusion" in report
    assert tuple(images.shape) == (6, 64, 64, 3) and images.dtype == torch.float32
    assert len(stream) == 6 and stream.fps == 25.0 and stream.info["steps_run"] == 2
    assert stream.info["reference"] != "off" and stream.info["landmark_control"]
    assert (images - weight_free).abs().max() > 0.01
    assert (5, 5) in steps and any(t == stream.info["steps_run"] * stream.info["windows"] + 1 for _, t in steps)
    assert cache_keys() == []  # keep_models_loaded=False freed them
