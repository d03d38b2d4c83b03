"""Random-initialised models in two sizes, built in code: for tests, benchmarks and GPU checks.

* "tiny": ~4 M parameters; a UNet with blocks (32, 64), one layer per block, cross-attention width
  32; a VAE with 4 levels (8, 8, 16, 16 channels; downsampling 8 like SD VAEs); a 2-layer CLIP text
  encoder of width 32 with the real CLIP vocabulary size (so the shipped BPE tokenizer works);
  a motion adapter and a ControlNet of the same UNet shape.
* "sd15": the architecture and sizes of Stable Diffusion 1.5 (UNet 860 M parameters, VAE 84 M,
  CLIP ViT-L/14 text encoder 123 M), an AnimateDiff v2 motion adapter (453 M) and an SD 1.5
  ControlNet (361 M); weights are random, so the pictures are noise, but the compute and memory are
  those of the real models.

Zero-initialised layers (motion modules' output projections, ControlNet zero convolutions) are
given small random values with `perturb_zero_init`, so every part changes the output in tests.
Nothing is downloaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .convert import shipped_config

TINY_UNET = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4, "block_out_channels": [32, 64], "layers_per_block": 1,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 32, "attention_head_dim": 8, "norm_num_groups": 32,
}
TINY_VAE = {"block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 8,
            "sample_size": 64}
TINY_TEXT = {"vocab_size": 49408, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 1, "max_position_embeddings": 77}
SD15_VAE = {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "latent_channels": 4,
            "norm_num_groups": 32, "sample_size": 512}


@dataclass
class RandomModels:
    unet: Any
    vae: Any
    text_encoder: Any
    motion_adapter: Any
    controlnet: Any


def perturb_zero_init(model: Any, scale: float = 0.05, seed: int = 0) -> Any:
    """Adds N(0, scale) to every parameter that is all zeros (zero-initialised layers)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() and not torch.any(p != 0):
                p.add_(scale * torch.randn(p.shape, generator=gen).to(p.dtype))
    return model


def build(size: str = "tiny", seed: int = 0, controlnet: bool = True, motion: bool = True) -> RandomModels:
    """Builds the models of `size` ("tiny" or "sd15") from `seed`, float32 on the CPU, eval mode."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if size not in ("tiny", "sd15"):
        raise ValueError(f"size must be 'tiny' or 'sd15', got {size!r}")
    torch.manual_seed(seed)
    if size == "tiny":
        unet_config = dict(TINY_UNET)
        vae_config, text = dict(TINY_VAE), dict(TINY_TEXT)
    else:
        unet_config = {k: v for k, v in shipped_config("sd15_unet").items() if not k.startswith("_")}
        vae_config = dict(SD15_VAE)
        text = {k: v for k, v in shipped_config("sd15_text_encoder").items() if not k.startswith("_")}
    unet = UNet2DConditionModel(**unet_config)
    n = len(vae_config["block_out_channels"])
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * n,
                        up_block_types=["UpDecoderBlock2D"] * n, **vae_config)
    text_encoder = CLIPTextModel(CLIPTextConfig(**{**{k: v for k, v in shipped_config("sd15_text_encoder").items()
                                                     if not k.startswith("_")}, **text}))
    adapter = None
    if motion:
        adapter = MotionAdapter(block_out_channels=tuple(unet_config["block_out_channels"]),
                                motion_layers_per_block=unet_config["layers_per_block"],
                                motion_num_attention_heads=8, motion_norm_num_groups=unet_config["norm_num_groups"],
                                motion_max_seq_length=32, use_motion_mid_block=True)
        perturb_zero_init(adapter, seed=seed + 1)
    control = None
    if controlnet:
        control = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 96, 256)
                                            if size == "sd15" else (8, 8, 16, 16))
        perturb_zero_init(control, scale=0.2 if size == "tiny" else 0.02, seed=seed + 2)
    for model in (unet, vae, text_encoder, adapter, control):
        if model is not None:
            model.eval().requires_grad_(False)
    return RandomModels(unet=unet, vae=vae, text_encoder=text_encoder, motion_adapter=adapter, controlnet=control)


def save_diffusers_folder(models: RandomModels, folder: str) -> str:
    """Writes a diffusers pipeline folder (unet/, vae/, text_encoder/, model_index.json), safetensors only."""
    import json
    import os

    os.makedirs(folder, exist_ok=True)
    models.unet.save_pretrained(os.path.join(folder, "unet"), safe_serialization=True)
    models.vae.save_pretrained(os.path.join(folder, "vae"), safe_serialization=True)
    models.text_encoder.save_pretrained(os.path.join(folder, "text_encoder"), safe_serialization=True)
    with open(os.path.join(folder, "model_index.json"), "w", encoding="utf-8") as handle:
        json.dump({"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
                   "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"]}, handle)
    return folder


def save_motion_adapter_file(adapter: Any, path: str, original_keys: bool = True) -> str:
    """Writes a motion adapter as one .safetensors file, in the original AnimateDiff key layout
    (`...motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0...`) or in
    diffusers keys."""
    from safetensors.torch import save_file

    tensors = {}
    for key, value in adapter.state_dict().items():
        m = re.match(r"(.*motion_modules\.\d+\.)(.*)", key)
        if original_keys and m:
            # the reverse of diffusers' convert_animatediff_checkpoint_to_diffusers
            rest = m.group(2)
            for ours, theirs in ((".norm1.", ".norms.0."), (".norm2.", ".norms.1."), (".norm3.", ".ff_norm."),
                                 (".attn1.", ".attention_blocks.0."), (".attn2.", ".attention_blocks.1.")):
                rest = rest.replace(ours, theirs)
            key = m.group(1) + "temporal_transformer." + rest
        tensors[key] = value.detach().contiguous()
    save_file(tensors, path, metadata={"format": "pt"})
    return path

