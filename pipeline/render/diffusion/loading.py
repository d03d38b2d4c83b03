"""Loading the diffusion engine's models from local files, offline, with a cache.

What can be given (always local paths; nothing is ever looked up on a hub):

* checkpoint: a Stable Diffusion 1.x/2.x single-file `.safetensors` checkpoint (what ComfyUI keeps
  in models/checkpoints: UNet, VAE and CLIP text encoder in the original LDM layout; configs come
  from the file itself, see `convert`), or a diffusers pipeline folder (model_index.json with
  unet/, vae/, text_encoder/ and optionally tokenizer/ and scheduler/);
* motion_module: an AnimateDiff motion module (models/animatediff_models): a `.safetensors` file in
  the original AnimateDiff layout or in diffusers keys, or a diffusers MotionAdapter folder;
* controlnet: an SD 1.x ControlNet (models/controlnet): a diffusers folder, or a `.safetensors`
  file in the original layout (`control_model.` prefix or none), e.g. control_v11p_sd15_openpose;
* vae: optional VAE replacing the checkpoint's (models/vae), anything `vae_latents.load_vae` reads.

Pickle files (.ckpt, .pt, .pth, .bin) are refused: loading them can run code. The tokenizer is the
CLIP BPE tokenizer shipped with the pack (`clip_tokens`, the one SD 1.x/2.x use) unless a diffusers
folder has its own tokenizer/.

Cache: every model is kept in a module-level cache keyed by (kind, real path, modification time,
size, device, dtype), so a second run with the same files loads nothing; `free_models()` empties
it (and the CUDA cache). A changed file (new mtime) is loaded again.

Device and precision: "auto" picks CUDA, then Apple MPS, then the CPU; precision "auto" is float16
on a GPU and float32 on the CPU ("bf16" and "fp32" may be forced). The VAE always runs in float32
(SD VAEs overflow in float16).
"""

from __future__ import annotations

import gc
import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ...core.errors import InputError
from . import convert

PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEVICES = ("auto", "cuda", "mps", "cpu")

#: What each kind of file is, where it goes, and which weights work (for error messages).
KINDS = {
    "checkpoint": ("checkpoints", "a Stable Diffusion 1.5 (or 2.x) checkpoint: a single .safetensors file such as "
                   "v1-5-pruned-emaonly.safetensors or any SD 1.5 fine-tune, or a diffusers pipeline folder"),
    "motion_module": ("animatediff_models", "an AnimateDiff motion module for SD 1.5 as .safetensors (e.g. "
                      "mm_sd_v15_v2 converted to safetensors) or a diffusers MotionAdapter folder"),
    "controlnet": ("controlnet", "an SD 1.5 ControlNet for face landmarks (e.g. control_v11p_sd15_openpose or a "
                   "MediaPipe-face ControlNet) as .safetensors or a diffusers folder"),
    "vae": ("vae", "an SD VAE (.safetensors file or diffusers AutoencoderKL folder, e.g. vae-ft-mse-840000)"),
}

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.Lock()
ProgressFn = Callable[[int, int], None]


def resolve_device(device: str = "auto") -> str:
    import torch

    device = str(device or "auto").lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device", f"{device!r} was asked for but no CUDA GPU is available", 'Use "auto" or "cpu"')
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("device", "'mps' was asked for but Apple MPS is not available", 'Use "auto" or "cpu"')
    if device != "cpu" and not device.startswith(("cuda", "mps")):
        raise InputError("device", f"unknown device {device!r}", f"Use one of {DEVICES}")
    return device


def resolve_dtype(precision: str, device: str):
    import torch

    precision = str(precision or "auto").lower()
    if precision not in PRECISIONS:
        raise InputError("precision", f"unknown precision {precision!r}", f"Use one of {PRECISIONS}")
    if precision == "auto":
        return torch.float32 if device == "cpu" else torch.float16
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


@dataclass
class DiffusionModels:
    """Everything the sampler needs, loaded and on one device.

    Attributes:
        unet: UNet2DConditionModel, or UNetMotionModel when a motion module was given.
        vae: vae_latents.LoadedVAE (float32).
        text_encoder: transformers CLIPTextModel; tokenize: text -> int64 [1, L] token ids.
        controlnet: ControlNetModel or None.
        scheduler_config: the noise schedule (dict for diffusers' schedulers' from_config).
        motion: whether the UNet has motion modules; max_frames: their longest sequence (or None).
        device, dtype: where and in which precision the UNet, ControlNet and text encoder run.
        sources: kind -> path of what was loaded; notes: what was assumed.
    """

    unet: Any
    vae: Any
    text_encoder: Any
    tokenize: Callable[[str], Any]
    controlnet: Optional[Any]
    scheduler_config: dict
    motion: bool
    max_frames: Optional[int]
    device: str
    dtype: Any
    sources: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def _check_path(path: Optional[str], kind: str, input_name: str) -> str:
    folder, works = KINDS[kind]
    if not path:
        raise InputError(input_name, f"no {kind.replace('_', ' ')} was given",
                         f"Put {works} into ComfyUI's models/{folder} folder (or $TALKINGHEAD_MODELS_DIR/{folder}) "
                         "and select it, or give its path")
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.exists(path):
        raise InputError(input_name, f"nothing at {path!r}",
                         f"Put {works} there (ComfyUI: models/{folder}); weights are never downloaded")
    if os.path.isfile(path):
        lower = path.lower()
        if lower.endswith(PICKLE_EXTENSIONS):
            raise InputError(input_name, f"{os.path.basename(path)!r} is a pickle file, which can run arbitrary "
                             "code when loaded", "Use the .safetensors release, or convert it once in a trusted "
                             "environment (torch.load, then safetensors.torch.save_file)")
        if not lower.endswith(".safetensors"):
            raise InputError(input_name, f"{os.path.basename(path)!r} is not a .safetensors file or a folder",
                             f"Give {works}")
    return path


def _stamp(path: str) -> tuple:
    """(mtime_ns, size) of a file, or the newest of the files in a folder (two levels deep)."""
    if os.path.isfile(path):
        st = os.stat(path)
        return (st.st_mtime_ns, st.st_size)
    newest, total = 0, 0
    for root, dirs, files in os.walk(path):
        if root[len(path):].count(os.sep) >= 2:
            dirs[:] = []
        for name in files:
            st = os.stat(os.path.join(root, name))
            newest, total = max(newest, st.st_mtime_ns), total + st.st_size
    return (newest, total)


def _cached(key: tuple, make: Callable[[], Any]) -> tuple[Any, bool]:
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key], True
    value = make()
    with _LOCK:
        _CACHE[key] = value
    return value, False


def free_models() -> int:
    """Drops every cached model and empties the CUDA cache; returns how many entries were freed."""
    with _LOCK:
        count = len(_CACHE)
        _CACHE.clear()
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass
    return count


def cache_keys() -> list[tuple]:
    with _LOCK:
        return list(_CACHE)


def _place(model: Any, device: str, dtype: Any) -> Any:
    """Moves a model to device and dtype (casting only when the dtype differs), eval, no grads."""
    model = model.to(device=device)
    if next(model.parameters()).dtype != dtype:
        model = model.to(dtype=dtype)
    return model.eval().requires_grad_(False)


# ------------------------------------------------------------------------------ components

def _is_pipeline_folder(path: str) -> bool:
    return os.path.isdir(path) and (os.path.isfile(os.path.join(path, "model_index.json"))
                                    or os.path.isdir(os.path.join(path, "unet")))


def _load_checkpoint_file(path: str, input_name: str, notes: list) -> tuple[Any, Any]:
    """UNet2DConditionModel and CLIPTextModel from an SD single file (float32, CPU)."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    tensors, metadata = convert.read_safetensors(path, input_name)
    if not any(k.startswith(convert.UNET_PREFIX) for k in tensors):
        raise InputError(input_name, f"{os.path.basename(path)!r} holds no Stable Diffusion UNet (no "
                         f"'{convert.UNET_PREFIX}*' tensors; first keys: {', '.join(list(tensors)[:3]) or 'none'})",
                         f"Give {KINDS['checkpoint'][1]}")
    unet_sd = {k[len(convert.UNET_PREFIX):]: v for k, v in tensors.items() if k.startswith(convert.UNET_PREFIX)}
    config = convert.metadata_config(metadata, "unet")
    try:
        if config is None:
            config = convert.infer_unet_config(unet_sd)
            notes.append("UNet config read from the checkpoint's tensor shapes (heads and GroupNorm groups: SD 1.5 "
                         "defaults)")
        config = {k: v for k, v in config.items() if not k.startswith("_")}
        converted = convert_ldm_unet_checkpoint(tensors, config)
        unet = UNet2DConditionModel(**config)
        unet.load_state_dict(converted, strict=True)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise InputError(input_name, f"the UNet in {os.path.basename(path)!r} is not an SD 1.x/2.x UNet this loader "
                         f"understands ({type(exc).__name__}: {str(exc).splitlines()[0][:240]})",
                         f"Give {KINDS['checkpoint'][1]}; SDXL, SD3 and Flux checkpoints are not supported") from exc
    clip_sd = convert.clip_keys_for(["text_model."], convert_ldm_clip_checkpoint(tensors))
    if "text_model.embeddings.token_embedding.weight" not in clip_sd:
        raise InputError(input_name, f"{os.path.basename(path)!r} has no CLIP text encoder "
                         f"('{convert.CLIP_PREFIX}*' tensors)", "Give a full SD 1.5 checkpoint (UNet, VAE and CLIP)")
    text_config = convert.metadata_config(metadata, "text_encoder") or convert.infer_text_encoder_config(clip_sd)
    text_config = {k: v for k, v in text_config.items() if not k.startswith("_")}
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    clip_sd = convert.clip_keys_for(text_encoder.state_dict().keys(), clip_sd)
    missing, unexpected = text_encoder.load_state_dict(clip_sd, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    unexpected = [k for k in unexpected if not k.endswith("position_ids")]
    if missing or unexpected:
        raise InputError(input_name, f"the text encoder in {os.path.basename(path)!r} does not fit a CLIP text model "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})", "Give an SD 1.x/2.x checkpoint")
    del tensors
    return unet, text_encoder


def _load_pipeline_folder(path: str, input_name: str) -> tuple[Any, Any, Optional[dict]]:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    for part in ("unet", "text_encoder"):
        if not os.path.isdir(os.path.join(path, part)):
            raise InputError(input_name, f"the diffusers folder {path!r} has no {part}/ folder",
                             "Give a whole Stable Diffusion pipeline folder (unet/, vae/, text_encoder/)")
    try:
        unet = UNet2DConditionModel.from_pretrained(os.path.join(path, "unet"), local_files_only=True,
                                                    use_safetensors=True)
        text_encoder = CLIPTextModel.from_pretrained(os.path.join(path, "text_encoder"), local_files_only=True,
                                                     use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputError(input_name, f"cannot load {path!r} ({type(exc).__name__}: {str(exc).splitlines()[0][:240]})",
                         "The folder needs .safetensors weights (pickle .bin weights are not loaded) and matching "
                         "config.json files") from exc
    scheduler_config = None
    sched = os.path.join(path, "scheduler", "scheduler_config.json")
    if os.path.isfile(sched):
        with open(sched, encoding="utf-8") as handle:
            scheduler_config = {k: v for k, v in json.load(handle).items() if not k.startswith("_")}
    return unet, text_encoder, scheduler_config


def infer_motion_adapter_config(sd: dict) -> dict:
    import re

    down = sorted({int(m.group(1)) for k in sd for m in [re.match(r"down_blocks\.(\d+)\.motion_modules\.", k)] if m})
    if not down:
        raise KeyError("down_blocks.*.motion_modules")
    channels = [int(sd[f"down_blocks.{i}.motion_modules.0.norm.weight"].shape[0]) for i in down]
    layers = len({m.group(1) for k in sd for m in [re.match(r"down_blocks\.0\.motion_modules\.(\d+)\.", k)] if m})
    depth = len({m.group(1) for k in sd
                 for m in [re.match(r"down_blocks\.0\.motion_modules\.0\.transformer_blocks\.(\d+)\.", k)] if m})
    groups = 32 if all(c % 32 == 0 for c in channels) else next(g for g in (16, 8, 4, 2, 1) if all(c % g == 0 for c in channels))
    return {"block_out_channels": channels, "motion_layers_per_block": layers,
            "motion_transformer_layers_per_block": depth, "motion_num_attention_heads": 8,
            "motion_norm_num_groups": groups, "motion_max_seq_length": 32,
            "use_motion_mid_block": any(k.startswith("mid_block.motion_modules.") for k in sd)}


def _load_motion_adapter(path: str, input_name: str, notes: list) -> Any:
    from diffusers import MotionAdapter

    if os.path.isdir(path):
        try:
            return MotionAdapter.from_pretrained(path, local_files_only=True, use_safetensors=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(input_name, f"cannot load the motion adapter folder {path!r} ({exc})",
                             f"Give {KINDS['motion_module'][1]}") from exc
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    tensors, metadata = convert.read_safetensors(path, input_name)
    pe = [v for k, v in tensors.items() if k.endswith("pos_encoder.pe")]
    sd = convert_animatediff_checkpoint_to_diffusers(tensors)
    try:
        config = convert.metadata_config(metadata, "motion_adapter") or infer_motion_adapter_config(sd)
        if pe:
            config["motion_max_seq_length"] = int(pe[0].shape[1])
        adapter = MotionAdapter(**{k: v for k, v in config.items() if not k.startswith("_")})
        adapter.load_state_dict(sd, strict=True)
    except (KeyError, RuntimeError, TypeError, ValueError, StopIteration) as exc:
        raise InputError(input_name, f"{os.path.basename(path)!r} is not an AnimateDiff motion module this loader "
                         f"understands ({type(exc).__name__}: {str(exc).splitlines()[0][:240]})",
                         f"Give {KINDS['motion_module'][1]}") from exc
    notes.append("motion module config read from its tensor shapes (8 heads, AnimateDiff default)")
    return adapter


def _load_controlnet(path: str, input_name: str, notes: list) -> Any:
    from diffusers import ControlNetModel

    if os.path.isdir(path):
        try:
            return ControlNetModel.from_pretrained(path, local_files_only=True, use_safetensors=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise InputError(input_name, f"cannot load the ControlNet folder {path!r} ({exc})",
                             f"Give {KINDS['controlnet'][1]}") from exc
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    tensors, metadata = convert.read_safetensors(path, input_name)
    sd = {k[len(convert.CONTROL_PREFIX):] if k.startswith(convert.CONTROL_PREFIX) else k: v for k, v in tensors.items()}
    try:
        if "controlnet_cond_embedding.conv_in.weight" in sd:
            config = convert.metadata_config(metadata, "controlnet")
            if config is None:
                raise KeyError("a diffusers-layout ControlNet file needs its config: give the diffusers folder instead")
            converted = sd
        else:
            config = convert.metadata_config(metadata, "controlnet") or convert.infer_unet_config(sd, controlnet=True)
            converted = convert_controlnet_checkpoint(sd, config)
        model = ControlNetModel(**{k: v for k, v in config.items() if not k.startswith("_")})
        model.load_state_dict(converted, strict=True)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise InputError(input_name, f"{os.path.basename(path)!r} is not an SD 1.x ControlNet this loader understands "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0][:240]})",
                         f"Give {KINDS['controlnet'][1]}") from exc
    notes.append("ControlNet config read from its tensor shapes")
    return model


def _tokenizer_for(folder: Optional[str], max_length: int) -> Callable[[str], Any]:
    import torch

    if folder and os.path.isdir(os.path.join(folder, "tokenizer")):
        from transformers import CLIPTokenizer

        tok = CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer"), local_files_only=True)

        def tokenize(text: str):
            return tok([text], padding="max_length", max_length=max_length, truncation=True,
                       return_tensors="pt").input_ids
        return tokenize
    from ...prompt.clip_tokens import get_tokenizer

    bpe = get_tokenizer()
    start, end = 49406, 49407

    def tokenize(text: str):
        ids = [start] + bpe.encode(text or "")[: max_length - 2] + [end]
        ids += [end] * (max_length - len(ids))
        return torch.tensor([ids], dtype=torch.int64)
    return tokenize


def load_models(checkpoint: str, motion_module: Optional[str] = None, controlnet: Optional[str] = None,
                vae: Optional[str] = None, device: str = "auto", precision: str = "auto",
                progress: Optional[ProgressFn] = None) -> DiffusionModels:
    """Loads (or takes from the cache) the engine's models; see the module docstring.

    Args:
        checkpoint: SD single-file .safetensors or diffusers pipeline folder.
        motion_module: AnimateDiff motion module (file or folder), or None for frame-by-frame.
        controlnet: landmark ControlNet (file or folder), or None.
        vae: a VAE replacing the checkpoint's, or None.
        device, precision: see resolve_device / resolve_dtype.
        progress: progress(done, total) after each component.
    Raises:
        InputError: a missing, pickled or unsupported file, naming the input and what to put where.
    """
    import torch
    from diffusers import UNetMotionModel

    from ...face.vae_latents import load_vae

    checkpoint = _check_path(checkpoint, "checkpoint", "checkpoint")
    motion_module = _check_path(motion_module, "motion_module", "motion_module") if motion_module else None
    controlnet = _check_path(controlnet, "controlnet", "controlnet") if controlnet else None
    vae = _check_path(vae, "vae", "vae") if vae else None
    device = resolve_device(device)
    dtype = resolve_dtype(precision, device)
    total = 3 + bool(motion_module) + bool(controlnet)
    done = 0
    notes: list[str] = []

    def step():
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    def place(model, model_dtype=dtype):
        return _place(model, device, model_dtype)

    ck_key = ("checkpoint", checkpoint, _stamp(checkpoint), device, str(dtype))

    def make_checkpoint():
        local_notes: list[str] = []
        if os.path.isdir(checkpoint):
            if not _is_pipeline_folder(checkpoint):
                raise InputError("checkpoint", f"{checkpoint!r} is a folder but not a diffusers pipeline folder "
                                 "(no model_index.json or unet/)", f"Give {KINDS['checkpoint'][1]}")
            unet, text_encoder, sched = _load_pipeline_folder(checkpoint, "checkpoint")
        else:
            unet, text_encoder = _load_checkpoint_file(checkpoint, "checkpoint", local_notes)
            sched = None
        return place(unet), place(text_encoder), sched, local_notes

    (unet, text_encoder, scheduler_config, ck_notes), _ = _cached(ck_key, make_checkpoint)
    notes += ck_notes
    step()
    vae_path = vae or checkpoint
    vae_key = ("vae", vae_path, _stamp(vae_path), device)

    def make_vae():
        return load_vae(vae_path, device=device, dtype=torch.float32, input_name="vae" if vae else "checkpoint")

    loaded_vae, _ = _cached(vae_key, make_vae)
    notes += loaded_vae.notes
    step()
    max_frames = None
    if motion_module:
        mm_key = ("motion_module", motion_module, _stamp(motion_module))
        adapter, _ = _cached(mm_key, lambda: _load_motion_adapter(motion_module, "motion_module", notes))
        step()
        combined_key = ("unet_motion", ck_key, mm_key)

        def make_motion():
            if len(unet.config.block_out_channels) != len(adapter.config.block_out_channels) or \
                    list(unet.config.block_out_channels) != list(adapter.config.block_out_channels):
                raise InputError("motion_module", f"the motion module's blocks {list(adapter.config.block_out_channels)} "
                                 f"do not fit the checkpoint's UNet {list(unet.config.block_out_channels)}",
                                 "Use a motion module made for this model family (SD 1.5 modules for SD 1.5)")
            base = unet.to(device="cpu", dtype=torch.float32)
            model = UNetMotionModel.from_unet2d(base, adapter.to(torch.float32))
            unet.to(device=device, dtype=dtype)
            return place(model)

        unet_used, _ = _cached(combined_key, make_motion)
        max_frames = int(adapter.config.motion_max_seq_length)
    else:
        unet_used = unet
    control = None
    if controlnet:
        cn_key = ("controlnet", controlnet, _stamp(controlnet), device, str(dtype))
        control, _ = _cached(cn_key, lambda: place(_load_controlnet(controlnet, "controlnet", notes)))
        step()
    tokenize = _tokenizer_for(checkpoint if os.path.isdir(checkpoint) else None,
                              int(text_encoder.config.max_position_embeddings))
    step()
    sched = dict(scheduler_config or {k: v for k, v in convert.shipped_config("sd15_scheduler").items()
                                      if not k.startswith("_")})
    return DiffusionModels(
        unet=unet_used, vae=loaded_vae, text_encoder=text_encoder, tokenize=tokenize, controlnet=control,
        scheduler_config=sched, motion=motion_module is not None, max_frames=max_frames, device=device, dtype=dtype,
        sources={"checkpoint": checkpoint, "motion_module": motion_module, "controlnet": controlnet, "vae": vae},
        notes=notes,
    )


def models_from_objects(unet: Any, vae: Any, text_encoder: Any, motion_adapter: Any = None, controlnet: Any = None,
                        device: str = "cpu", precision: str = "auto", scheduler_config: Optional[dict] = None,
                        tokenizer_folder: Optional[str] = None) -> DiffusionModels:
    """DiffusionModels from models already in memory (tests, benchmarks, scripts); nothing is cached."""
    import torch
    from diffusers import UNetMotionModel

    from ...face.vae_latents import LoadedVAE

    device = resolve_device(device)
    dtype = resolve_dtype(precision, device)
    if not isinstance(vae, LoadedVAE):
        from ...face.vae_latents import _resolve_scaling

        scale, shift = _resolve_scaling(int(vae.config.latent_channels), None, None, None, None, [])
        vae.register_to_config(scaling_factor=scale, shift_factor=shift)
        vae = LoadedVAE(model=_place(vae, device, torch.float32), scaling_factor=scale, shift_factor=shift,
                        latent_channels=int(vae.config.latent_channels),
                        downsample_factor=2 ** (len(vae.config.block_out_channels) - 1), source="<memory>",
                        source_format="object", identifier="<memory>")
    if motion_adapter is not None:
        unet = UNetMotionModel.from_unet2d(unet, motion_adapter)
    place = lambda m: None if m is None else _place(m, device, dtype)  # noqa: E731
    text_encoder = place(text_encoder)
    sched = dict(scheduler_config or {k: v for k, v in convert.shipped_config("sd15_scheduler").items()
                                      if not k.startswith("_")})
    return DiffusionModels(
        unet=place(unet), vae=vae, text_encoder=text_encoder,
        tokenize=_tokenizer_for(tokenizer_folder, int(text_encoder.config.max_position_embeddings)),
        controlnet=place(controlnet), scheduler_config=sched, motion=motion_adapter is not None,
        max_frames=None if motion_adapter is None else int(motion_adapter.config.motion_max_seq_length),
        device=device, dtype=dtype,
    )
