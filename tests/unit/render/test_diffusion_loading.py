"""Loading the diffusion engine's models offline (pipeline/render/diffusion/loading.py, convert.py).

Tiny random models are saved in the layouts users have (an SD single-file checkpoint in the
original LDM layout, a diffusers pipeline folder, an AnimateDiff motion module in its original
layout and as a diffusers folder, a ControlNet folder) and loaded back with the network switched
off (HF_HUB_OFFLINE=1 and sockets refused): the same weights must give the same frames.
"""

from __future__ import annotations

import os
import socket

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from talkinghead.pipeline.render.diffusion import (  # noqa: E402
                                                   DiffusionSettings, cache_keys, diffuse_frames, free_models, load_models,
                                                   )
from talkinghead.pipeline.render.diffusion.convert import save_controlnet_file, save_single_file_checkpoint  # noqa: E402
from talkinghead.pipeline.render.diffusion.random_models import (  # noqa: E402
                                                                 build, save_diffusers_folder, save_motion_adapter_file,
                                                                 )
from talkinghead.pipeline.core.errors import InputError  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def offline():
    torch.set_num_threads(1)
    real_connect = socket.socket.connect

    def refuse(self, address, *args, **kwargs):
        if isinstance(address, tuple) and address and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"network access attempted in an offline test: {address!r}")
        return real_connect(self, address, *args, **kwargs)

    socket.socket.connect = refuse
    yield
    socket.socket.connect = real_connect
    free_models()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    m = build("tiny", seed=3)
    save_diffusers_folder(m, str(root / "tiny-sd-diffusers"))
    save_single_file_checkpoint(str(root / "tiny-sd.safetensors"), m.unet, m.vae, m.text_encoder)
    m.motion_adapter.save_pretrained(str(root / "tiny-motion"), safe_serialization=True)
    save_motion_adapter_file(m.motion_adapter, str(root / "tiny_mm_original.safetensors"), original_keys=True)
    m.controlnet.save_pretrained(str(root / "tiny-controlnet"), safe_serialization=True)
    save_controlnet_file(str(root / "tiny_controlnet_original.safetensors"), m.controlnet)
    (root / "mm_sd_v15.ckpt").write_bytes(b"not really a pickle")
    return root


FRAMES = np.random.default_rng(1).integers(0, 256, size=(6, 64, 64, 3), dtype=np.uint8)
MARKS = [np.stack([32 + 12 * np.cos(a), 32 + 16 * np.sin(a)], 1).astype(np.float32)
         for a in [np.linspace(0, 2 * np.pi, 68, endpoint=False)] * 6]
SETTINGS = DiffusionSettings(strength=0.75, steps=4, guidance=2.0, context_length=4, context_overlap=1,
                             mask_face=False, keep_background_pixels=False)


def latents_of(models):
    return diffuse_frames(models, FRAMES, MARKS, prompt="a face", settings=SETTINGS).latents


def test_single_file_and_diffusers_folder_give_the_same_result(files):
    progress = []
    single = load_models(str(files / "tiny-sd.safetensors"), motion_module=str(files / "tiny_mm_original.safetensors"),
                         controlnet=str(files / "tiny-controlnet"), device="cpu", progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (5, 5) and [d for d, _ in progress] == [1, 2, 3, 4, 5]
    assert single.motion and single.controlnet is not None and single.max_frames == 32
    assert any("tensor shapes" in note for note in single.notes)
    folder = load_models(str(files / "tiny-sd-diffusers"), motion_module=str(files / "tiny-motion"),
                         controlnet=str(files / "tiny-controlnet"), device="cpu")
    a, b = latents_of(single), latents_of(folder)
    assert a.abs().max() > 0
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    free_models()


def test_original_layout_controlnet_file_loads_the_same_weights_as_the_folder(files):
    """The way SD 1.5 ControlNets are usually shared: one .safetensors with `control_model.` keys and no config."""
    import torch

    from_file = load_models(str(files / "tiny-sd.safetensors"), controlnet=str(files / "tiny_controlnet_original.safetensors"),
                            device="cpu")
    from_folder = load_models(str(files / "tiny-sd.safetensors"), controlnet=str(files / "tiny-controlnet"),
                              device="cpu")
    a, b = from_file.controlnet.state_dict(), from_folder.controlnet.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert dict(from_file.controlnet.config)["block_out_channels"] == dict(from_folder.controlnet.config)["block_out_channels"]
    free_models()


def test_models_are_cached_reloaded_when_changed_and_freed(files):
    free_models()
    path = files / "tiny-sd.safetensors"
    first = load_models(str(path), device="cpu")
    keys = cache_keys()
    assert {k[0] for k in keys} == {"checkpoint", "vae"}
    again = load_models(str(path), device="cpu")
    assert again.unet is first.unet and again.vae is first.vae  # nothing loaded twice
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed = load_models(str(path), device="cpu")
    assert changed.unet is not first.unet
    assert free_models() >= 2 and cache_keys() == []


def test_missing_pickled_and_wrong_files_are_explained(files):
    with pytest.raises(InputError) as missing:
        load_models(str(files / "nope.safetensors"), device="cpu")
    text = str(missing.value)
    assert "nope.safetensors" in text and "models/checkpoints" in text and "SD" in text and "1.5" in text
    with pytest.raises(InputError, match="no checkpoint"):
        load_models("", device="cpu")
    with pytest.raises(InputError, match="pickle") as pickled:
        load_models(str(files / "tiny-sd.safetensors"), motion_module=str(files / "mm_sd_v15.ckpt"), device="cpu")
    assert pickled.value.input_name == "motion_module"
    with pytest.raises(InputError, match="no Stable Diffusion UNet"):
        load_models(str(files / "tiny_mm_original.safetensors"), device="cpu")
    with pytest.raises(InputError, match="motion_module|motion module"):
        load_models(str(files / "tiny-sd.safetensors"), motion_module=str(files / "tiny-sd.safetensors"), device="cpu")
    with pytest.raises(InputError, match="precision"):
        load_models(str(files / "tiny-sd.safetensors"), device="cpu", precision="fp8")
    free_models()
