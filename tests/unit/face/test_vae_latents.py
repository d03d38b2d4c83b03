"""Local VAE loading in three formats and deterministic latents (pipeline/face/vae_latents.py).

A tiny random AutoencoderKL is built in code (4 blocks, so the downsampling factor is 8 like SD
VAEs, but 8-16 channels): no weights are downloaded.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
from diffusers import AutoencoderKL  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from talkinghead.pipeline.core.errors import InputError  # noqa: E402
from talkinghead.pipeline.face.vae_latents import (  # noqa: E402
                                                   LoadedVAE, encode_latents, encode_reference_latents, infer_vae_config, load_vae,
                                                   )

BLOCKS = (8, 8, 16, 16)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_vae(latent_channels=4) -> AutoencoderKL:
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * len(BLOCKS),
        up_block_types=["UpDecoderBlock2D"] * len(BLOCKS), block_out_channels=BLOCKS, layers_per_block=1,
        latent_channels=latent_channels, norm_num_groups=8, sample_size=64,
    )
    # Random but not degenerate: nudge the norms so the output depends on every layer.
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.add_(0.1 * torch.randn_like(p))
    return vae.eval()


def diffusers_to_ldm(state_dict: dict, n_blocks: int) -> dict:
    """The reverse of diffusers' convert_ldm_vae_checkpoint, for the test file in original SD layout
    (the diffusion engine's exporter, pipeline/render/diffusion/convert.py)."""
    from talkinghead.pipeline.render.diffusion.convert import vae_to_ldm

    return {key: value.contiguous() for key, value in vae_to_ldm(state_dict, n_blocks).items()}


@pytest.fixture(scope="module")
def vae_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("vae")
    vae = tiny_vae()
    folder = root / "tiny-vae"
    vae.save_pretrained(folder, safe_serialization=True)
    state = {k: v.contiguous() for k, v in vae.state_dict().items()}
    save_file(state, str(root / "tiny_vae_diffusers.safetensors"))
    ldm = diffusers_to_ldm(state, len(BLOCKS))
    assert any(k.startswith("encoder.down.0.block.0.") for k in ldm)
    full_checkpoint = {"first_stage_model." + k: v for k, v in ldm.items()}
    full_checkpoint["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(2, 2)  # a UNet tensor to ignore
    save_file(full_checkpoint, str(root / "tiny_sd_checkpoint.safetensors"))
    save_file(ldm, str(root / "tiny_vae_ldm.safetensors"))
    return {"root": root, "folder": folder, "model": vae,
            "diffusers": root / "tiny_vae_diffusers.safetensors",
            "ldm": root / "tiny_vae_ldm.safetensors",
            "checkpoint": root / "tiny_sd_checkpoint.safetensors"}


def test_infer_config_from_shapes(vae_files):
    config = infer_vae_config(vae_files["model"].state_dict())
    assert config["block_out_channels"] == list(BLOCKS)
    assert config["layers_per_block"] == 1 and config["latent_channels"] == 4
    assert config["norm_num_groups"] == 8 and config["mid_block_add_attention"]


def test_all_formats_give_identical_latents(vae_files):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(64, 48, 3), dtype=np.uint8)
    loaded = {name: load_vae(str(vae_files[name])) for name in ("folder", "diffusers", "ldm", "checkpoint")}
    assert loaded["folder"].source_format == "diffusers_folder"
    assert loaded["diffusers"].source_format == "diffusers_file"
    assert loaded["ldm"].source_format == loaded["checkpoint"].source_format == "ldm_file"
    latents = {name: encode_latents(vae, image) for name, vae in loaded.items()}
    reference = latents["folder"]
    assert reference.shape == (4, 8, 6) and reference.dtype == np.float32
    assert np.abs(reference).max() > 0
    for name, value in latents.items():
        np.testing.assert_array_equal(value, reference, err_msg=name)
    for vae in loaded.values():
        assert vae.scaling_factor == pytest.approx(0.18215) and vae.shift_factor == 0.0
        assert vae.downsample_factor == 8 and vae.latent_channels == 4
        assert vae.sha256 and len(vae.sha256) == 64
    assert any("SDXL" in note for note in loaded["ldm"].notes)  # the guessed scaling is reported
    # The scaling is the documented one: posterior mean * 0.18215.
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        mean = vae_files["model"].encode(x).latent_dist.mean[0].numpy()
    np.testing.assert_allclose(reference, mean * 0.18215, rtol=1e-5, atol=1e-6)


def test_deterministic_pad_resize_and_overrides(vae_files):
    vae = load_vae(str(vae_files["diffusers"]), scaling_factor=0.13025, shift_factor=0.5, compute_sha256=False)
    assert vae.sha256 is None and vae.scaling_factor == 0.13025 and vae.shift_factor == 0.5
    image = np.random.default_rng(1).integers(0, 256, size=(60, 50, 3), dtype=np.uint8)
    a, b = encode_latents(vae, image), encode_latents(vae, image)
    np.testing.assert_array_equal(a, b)  # posterior mean, no sampling
    assert a.shape == (4, 8, 7)                                  # ceil(60/8), ceil(50/8)
    assert encode_latents(vae, image, fit="resize").shape == (4, 8, 6)   # 64 x 48
    assert encode_latents(vae, image, max_side_px=32).shape == (4, 4, 4)  # 32 x 27 -> pad to 32 x 32
    bare = encode_latents(vae_files["model"], image)  # a bare AutoencoderKL: its config's scaling
    assert bare.shape == (4, 8, 7)
    with pytest.raises(InputError, match="fit"):
        encode_latents(vae, image, fit="stretch")


def test_reference_latents(vae_files):
    vae = load_vae(str(vae_files["folder"]))
    crop = np.full((64, 64, 3), 120, np.uint8)
    frame = np.random.default_rng(2).integers(0, 256, size=(100, 200, 3), dtype=np.uint8)
    latents = encode_reference_latents(vae, crop, frame, frame_max_side_px=80)
    assert latents.face_shape == (4, 8, 8)
    assert latents.frame_pixel_size == (80, 40) and latents.frame_shape == (4, 5, 10)
    assert latents.vae_id == "tiny-vae" and latents.vae_sha256 == vae.sha256


def test_16_channel_default_scaling(tmp_path):
    vae = tiny_vae(latent_channels=16)
    state = {k: v.contiguous() for k, v in vae.state_dict().items() if not k.startswith(("quant_conv", "post_quant"))}
    # An SD3-style VAE has no quant convs.
    save_file(state, str(tmp_path / "sd3ish.safetensors"))
    loaded = load_vae(str(tmp_path / "sd3ish.safetensors"))
    assert loaded.latent_channels == 16 and not loaded.model.config.use_quant_conv
    assert loaded.scaling_factor == pytest.approx(1.5305) and loaded.shift_factor == pytest.approx(0.0609)
    assert isinstance(loaded, LoadedVAE)


def test_bad_paths_error_clearly(vae_files, tmp_path):
    cases = {
        str(tmp_path / "missing.safetensors"): "nothing at",
        str(tmp_path / "model.ckpt"): "pickle",
        str(tmp_path / "notes.txt"): "not a .safetensors",
        str(tmp_path / "broken.safetensors"): "not a readable",
        str(tmp_path / "unet.safetensors"): "no VAE weights",
        str(tmp_path / "empty_folder"): "without config.json",
    }
    (tmp_path / "model.ckpt").write_bytes(b"\x80\x04pickle")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "broken.safetensors").write_bytes(b"\x00" * 7)
    save_file({"model.diffusion_model.out.weight": torch.zeros(2)}, str(tmp_path / "unet.safetensors"))
    (tmp_path / "empty_folder").mkdir()
    for path, words in cases.items():
        with pytest.raises(InputError) as info:
            load_vae(path)
        assert info.value.input_name == "vae"
        assert words in str(info.value), (path, str(info.value))
    with pytest.raises(InputError, match="convert|Convert"):
        load_vae(str(tmp_path / "model.ckpt"))
