"""Single-file Stable Diffusion 1.x/2.x checkpoints <-> diffusers models, offline.

A ComfyUI `models/checkpoints/*.safetensors` file holds the UNet (`model.diffusion_model.*`), the
VAE (`first_stage_model.*`) and the CLIP text encoder (`cond_stage_model.transformer.*`) in the
original LDM layout. diffusers' `from_single_file` needs the original YAML config (or fetches one
from the hub); we never fetch, so the configs come from the file itself:

* the UNet's block channels, layers per block, which levels have attention, transformer depth,
  cross-attention width, linear or conv projections, in/out channels are read from tensor shapes;
  what is not visible in the weights is taken from the SD 1.5 config shipped with the pack
  (`configs/sd15_unet.json`: 8 attention heads per block, 32 GroupNorm groups); a cross-attention
  width of 1024 (SD 2.x) switches to heads of 64 channels (`[c // 64 for c in channels]`) as in
  the SD 2 config;
* the text encoder's width, depth, MLP width, vocabulary and context length are read from shapes;
  heads are width / 64 (CLIP ViT-L/14 and OpenCLIP ViT-H/14 both use 64-channel heads), the rest
  from `configs/sd15_text_encoder.json` (quick_gelu, eps 1e-5);
* the VAE's config is inferred by `vae_latents` (same approach).

The key renaming itself is diffusers' own (`convert_ldm_unet_checkpoint`,
`convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`, `convert_controlnet_checkpoint`,
`convert_animatediff_checkpoint_to_diffusers`). A safetensors header may also carry the configs as
metadata (`talkinghead.unet_config` etc., JSON); when present they are used as given.

`unet_to_ldm` / `save_single_file_checkpoint` go the other way (used by the tests, the benchmarks
and anyone who wants a ComfyUI-loadable file from a diffusers folder).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Optional

from ...core.errors import InputError

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
CONTROL_PREFIX = "control_model."
METADATA_KEYS = {"unet": "talkinghead.unet_config", "text_encoder": "talkinghead.text_encoder_config",
                 "vae": "talkinghead.vae_config", "controlnet": "talkinghead.controlnet_config",
                 "motion_adapter": "talkinghead.motion_adapter_config"}


def shipped_config(name: str) -> dict:
    """A config shipped in configs/ (e.g. "sd15_unet")."""
    with open(os.path.join(CONFIG_DIR, name + ".json"), encoding="utf-8") as handle:
        return json.load(handle)


def _group_count(channels) -> int:
    for groups in (32, 16, 8, 4, 2, 1):
        if all(c % groups == 0 for c in channels):
            return groups
    return 1


# ------------------------------------------------------------------------------ UNet / ControlNet

def infer_unet_config(sd: dict, controlnet: bool = False) -> dict:
    """UNet2DConditionModel (or ControlNetModel) config from LDM-layout tensors (prefix removed).

    Raises:
        KeyError: a tensor every SD UNet has is missing.
    """
    if "label_emb.0.0.weight" in sd or "label_emb.weight" in sd:
        raise ValueError("this is an SDXL-style UNet (it has label embeddings); only SD 1.x/2.x UNets are supported")
    conv_in = sd["input_blocks.0.0.weight"]
    blocks = sorted({int(m.group(1)) for k in sd for m in [re.match(r"input_blocks\.(\d+)\.", k)] if m})
    level, channels, attention, layers, depth = 0, [], [], 0, 1
    per_level: dict[int, int] = {}
    for i in blocks[1:]:
        if f"input_blocks.{i}.0.op.weight" in sd:
            level += 1
            continue
        if f"input_blocks.{i}.0.out_layers.3.weight" in sd:
            out = int(sd[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0])
            if len(channels) <= level:
                channels.append(out)
                attention.append(False)
            per_level[level] = per_level.get(level, 0) + 1
            if f"input_blocks.{i}.1.proj_in.weight" in sd:
                attention[level] = True
                depth = 1 + max(int(m.group(1)) for k in sd
                                for m in [re.match(rf"input_blocks\.{i}\.1\.transformer_blocks\.(\d+)\.", k)] if m)
    layers = per_level.get(0, 1)
    cross = [int(v.shape[1]) for k, v in sd.items() if k.endswith("attn2.to_k.weight")]
    proj = [v for k, v in sd.items() if k.endswith(".proj_in.weight")]
    base = shipped_config("sd15_unet")
    config = dict(base)
    config.update({
        "in_channels": int(conv_in.shape[1]),
        "block_out_channels": channels,
        "layers_per_block": layers,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "cross_attention_dim": cross[0] if cross else base["cross_attention_dim"],
        "use_linear_projection": bool(proj and proj[0].ndim == 2),
        "transformer_layers_per_block": depth,
        "norm_num_groups": _group_count(channels) if _group_count(channels) < 32 else 32,
    })
    if config["cross_attention_dim"] == 1024:  # SD 2.x: 64-channel heads
        config["attention_head_dim"] = [c // 64 for c in channels]
    if controlnet:
        for key in ("up_block_types", "out_channels", "sample_size", "center_input_sample", "flip_sin_to_cos",
                    "mid_block_type", "upcast_attention", "dual_cross_attention"):
            config.pop(key, None)
        hint = sd.get("input_hint_block.0.weight")
        config["conditioning_channels"] = int(hint.shape[1]) if hint is not None else 3
        hint_convs = sorted({int(m.group(1)) for k in sd for m in [re.match(r"input_hint_block\.(\d+)\.weight", k)] if m})
        if hint_convs:
            outs = [int(sd[f"input_hint_block.{j}.weight"].shape[0]) for j in hint_convs[:-1]]
            # conv pairs: (in->c, c->c), (c->c2 stride 2), ...: embedding channels are the distinct stages
            stages = [outs[0]] + [outs[j] for j in range(2, len(outs), 2)]
            config["conditioning_embedding_out_channels"] = stages
    else:
        config["out_channels"] = int(sd["out.2.weight"].shape[0])
        config["up_block_types"] = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)]
        config["mid_block_type"] = ("UNetMidBlock2DCrossAttn" if "middle_block.1.proj_in.weight" in sd
                                    else config.get("mid_block_type", "UNetMidBlock2DCrossAttn"))
    return config


def _unet_pairs(config: dict) -> list[tuple[str, str]]:
    """(ldm_prefix, diffusers_prefix) pairs for a UNet config (the reverse of diffusers' mapping)."""
    n = len(config["block_out_channels"])
    layers = int(config["layers_per_block"])
    down_attn = ["CrossAttn" in t for t in config["down_block_types"]]
    up_attn = ["CrossAttn" in t for t in config.get("up_block_types", [])]
    pairs = [("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
             ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."), ("out.2.", "conv_out."),
             ("middle_block.1.", "mid_block.attentions.0.")]
    for j in range(2):
        pairs.append((f"middle_block.{2 * j}.", f"mid_block.resnets.{j}."))
    for i in range(n):
        for j in range(layers):
            pairs.append((f"input_blocks.{(layers + 1) * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if down_attn[i]:
                pairs.append((f"input_blocks.{(layers + 1) * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        if i < n - 1:
            pairs.append((f"input_blocks.{(layers + 1) * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
        if up_attn:
            for j in range(layers + 1):
                pairs.append((f"output_blocks.{(layers + 1) * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
                if up_attn[i]:
                    pairs.append((f"output_blocks.{(layers + 1) * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
            if i < n - 1:
                sub = 2 if up_attn[i] else 1
                pairs.append((f"output_blocks.{(layers + 1) * i + layers}.{sub}.conv.",
                              f"up_blocks.{i}.upsamplers.0.conv."))
    return pairs


RESNET_PARTS = [("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("out_layers.0.", "norm2."),
                ("out_layers.3.", "conv2."), ("emb_layers.1.", "time_emb_proj."), ("skip_connection.", "conv_shortcut.")]


def unet_to_ldm(state_dict: dict, config: dict) -> dict:
    """diffusers UNet2DConditionModel state dict -> LDM keys (without the `model.diffusion_model.` prefix)."""
    pairs = sorted(_unet_pairs(config), key=lambda p: -len(p[1]))
    out = {}
    for key, value in state_dict.items():
        new = None
        for ldm, hf in pairs:
            if key.startswith(hf):
                rest = key[len(hf):]
                if ".resnets." in hf:
                    for a, b in RESNET_PARTS:
                        if rest.startswith(b):
                            rest = a + rest[len(b):]
                            break
                new = ldm + rest
                break
        if new is None:
            raise KeyError(f"no LDM name for UNet tensor {key!r}")
        out[new] = value
    return out


# ------------------------------------------------------------------------------------ VAE

def vae_to_ldm(state_dict: dict, n_blocks: int) -> dict:
    """diffusers AutoencoderKL state dict -> original SD VAE keys (no prefix)."""
    out = {}
    for key, value in state_dict.items():
        new = key.replace("conv_norm_out", "norm_out")
        m = re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", new)
        if m:
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        m = re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", new)
        if m:
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        m = re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", new)
        if m:
            new = f"decoder.up.{n_blocks - 1 - int(m[1])}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        m = re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", new)
        if m:
            new = f"decoder.up.{n_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"
        m = re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", new)
        if m:
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", new)
        if m:
            rest = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
            part, _, leaf = m[2].rpartition(".")
            new = f"{m[1]}.mid.attn_1.{rest[part]}.{leaf}"
            if value.ndim == 2:
                value = value[:, :, None, None]
        out[new] = value
    return out


# ------------------------------------------------------------------------------ text encoder

def clip_keys_for(model_keys, sd: dict) -> dict:
    """Renames CLIP tensors to the model's naming: with or without the `text_model.` prefix
    (SD checkpoints and transformers 4 have it, transformers 5's CLIPTextModel does not)."""
    prefixed = any(k.startswith("text_model.") for k in model_keys)
    out = {}
    for key, value in sd.items():
        bare = key[len("text_model."):] if key.startswith("text_model.") else key
        out["text_model." + bare if prefixed else bare] = value
    return out


def infer_text_encoder_config(sd: dict) -> dict:
    """CLIPTextConfig kwargs from CLIP tensors (`text_model.*` keys, with or without the prefix)."""
    sd = clip_keys_for(["text_model."], sd)
    token = sd["text_model.embeddings.token_embedding.weight"]
    position = sd["text_model.embeddings.position_embedding.weight"]
    hidden = int(token.shape[1])
    layers = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"text_model\.encoder\.layers\.(\d+)\.", k)] if m)
    config = dict(shipped_config("sd15_text_encoder"))
    config.update({
        "vocab_size": int(token.shape[0]), "hidden_size": hidden,
        "intermediate_size": int(sd["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
        "num_hidden_layers": layers, "num_attention_heads": max(1, hidden // 64),
        "max_position_embeddings": int(position.shape[0]),
    })
    return config


# ------------------------------------------------------------------------------ files

def read_safetensors(path: str, input_name: str) -> tuple[dict, dict]:
    """(tensors, metadata) of a .safetensors file; a clear InputError when it is not one."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise InputError(input_name, f"{path!r} is not a readable .safetensors file ({exc})",
                         "Check that the download finished; re-download or re-export it") from exc
    return tensors, metadata


def metadata_config(metadata: dict, kind: str) -> Optional[dict]:
    text = metadata.get(METADATA_KEYS[kind])
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def save_single_file_checkpoint(path: str, unet: Any, vae: Any, text_encoder: Any,
                                with_config_metadata: bool = False) -> str:
    """Writes an SD-style single-file checkpoint (LDM keys, safetensors) from diffusers models.

    Args:
        with_config_metadata: also store the models' configs in the safetensors header, so loading
            does not have to infer them (the tests leave it off to exercise the inference).
    """
    from safetensors.torch import save_file

    tensors = {}
    for key, value in unet_to_ldm(unet.state_dict(), dict(unet.config)).items():
        tensors[UNET_PREFIX + key] = value.detach().contiguous()
    n_vae = len(vae.config.block_out_channels)
    for key, value in vae_to_ldm(vae.state_dict(), n_vae).items():
        tensors[VAE_PREFIX + key] = value.detach().contiguous()
    for key, value in text_encoder.state_dict().items():
        if key.endswith("position_ids"):
            continue
        # SD checkpoints name the text model's tensors text_model.*; transformers 5 drops the prefix
        key = key if key.startswith("text_model.") else "text_model." + key
        tensors[CLIP_PREFIX + key] = value.detach().contiguous()
    metadata = {"format": "pt"}
    if with_config_metadata:
        metadata[METADATA_KEYS["unet"]] = json.dumps(dict(unet.config), default=list)
        metadata[METADATA_KEYS["text_encoder"]] = text_encoder.config.to_json_string()
    save_file(tensors, path, metadata=metadata)
    return path


# ------------------------------------------------------------------------------------ ControlNet

def controlnet_to_ldm(state_dict: dict, config: dict) -> dict:
    """diffusers ControlNetModel state dict -> the original (lllyasviel) layout, without the
    `control_model.` prefix: the UNet encoder under LDM names, the hint encoder as
    `input_hint_block.{0, 2, 4, ...}`, the zero convolutions as `zero_convs.{i}.0` and
    `middle_block_out.0` (the reverse of diffusers' convert_controlnet_checkpoint)."""
    unet_part, out = {}, {}
    blocks = sorted({int(k.split(".")[2]) for k in state_dict if k.startswith("controlnet_cond_embedding.blocks.")})
    for key, value in state_dict.items():
        if key.startswith("controlnet_cond_embedding."):
            rest = key[len("controlnet_cond_embedding."):]
            if rest.startswith("conv_in."):
                out["input_hint_block.0." + rest[len("conv_in."):]] = value
            elif rest.startswith("conv_out."):
                out[f"input_hint_block.{2 * (len(blocks) + 1)}." + rest[len("conv_out."):]] = value
            else:
                index, leaf = rest[len("blocks."):].split(".", 1)
                out[f"input_hint_block.{2 * (int(index) + 1)}.{leaf}"] = value
        elif key.startswith("controlnet_down_blocks."):
            index, leaf = key[len("controlnet_down_blocks."):].split(".", 1)
            out[f"zero_convs.{index}.0.{leaf}"] = value
        elif key.startswith("controlnet_mid_block."):
            out["middle_block_out.0." + key[len("controlnet_mid_block."):]] = value
        else:
            unet_part[key] = value
    out.update(unet_to_ldm(unet_part, config))
    return out


def save_controlnet_file(path: str, controlnet: Any) -> str:
    """Writes a ControlNet as one .safetensors file in the original layout (`control_model.` keys),
    the way most SD 1.5 ControlNets are shared."""
    from safetensors.torch import save_file

    tensors = {CONTROL_PREFIX + key: value.detach().contiguous()
               for key, value in controlnet_to_ldm(controlnet.state_dict(), dict(controlnet.config)).items()}
    save_file(tensors, path, metadata={"format": "pt"})
    return path
