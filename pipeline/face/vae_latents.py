"""Loading a local VAE and encoding the reference into the latents the diffusion engine starts from.

Where the VAE comes from -- always a local path, never a download:

* a diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors), or a whole
  diffusers pipeline folder with such a folder in `vae/`;
* a single `.safetensors` file with diffusers keys (`encoder.down_blocks.0.resnets.0.norm1.weight`)
  or original LDM / Stable Diffusion keys (`encoder.down.0.block.0.norm1.weight`), possibly
  prefixed `first_stage_model.` (a whole SD checkpoint: only its VAE tensors are read) or `vae.`.
  The AutoencoderKL config is inferred from the tensor shapes (block_out_channels,
  layers_per_block, latent_channels, in/out channels, quant convs, mid-block attention) and LDM
  keys are converted with diffusers' own `convert_ldm_vae_checkpoint`. GroupNorm group counts are
  not visible in the weights: 32 (every SD-family VAE) is used when it divides every channel
  count, else the largest of 16, 8, 4, 2, 1 that does; pass `config=` to override anything.

Pickle checkpoints (.ckpt, .pt, .pth, .bin) are refused: loading them can run arbitrary code.

Latent scaling (what the diffusion model expects): z = (posterior_mean - shift_factor) *
scaling_factor. Taken from the folder's config.json when it has `scaling_factor`; otherwise
guessed from the number of latent channels:

* 4 channels -> 0.18215, shift 0 (SD 1.x / 2.x). The SDXL VAE has the same architecture and
  shapes but uses 0.13025: it cannot be told apart from its weights, so pass
  `scaling_factor=0.13025` for SDXL.
* 16 channels -> 1.5305, shift 0.0609 (SD3). The Flux VAE also has 16 channels but uses 0.3611,
  shift 0.1159: pass them explicitly for Flux.
* anything else -> 1.0, shift 0, with a note in `LoadedVAE.notes`.

Encoding is deterministic: it uses the mean of the VAE's posterior, never a sample. Images are
made a multiple of the VAE's downsampling factor f = 2 ** (len(block_out_channels) - 1) (8 for SD
VAEs) by padding the bottom and right edges with repeated edge pixels (default, keeps the pixel
grid: latent cell (i, j) covers pixels [f*i, f*i+f) x [f*j, f*j+f)) or by resizing.

torch, diffusers and safetensors are imported only when a function here is called.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from ..core.content_hash import sha256_file
from ..core.errors import InputError
from ..core.image_input import to_rgb_uint8
from .reference import ReferenceLatents

#: Default scaling (scaling_factor, shift_factor) by latent channel count; see the module docstring.
DEFAULT_SCALING = {4: (0.18215, 0.0), 16: (1.5305, 0.0609)}

PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
LDM_PREFIXES = ("first_stage_model.", "vae.")


@dataclass
class LoadedVAE:
    """A loaded AutoencoderKL and how to scale its latents.

    Attributes:
        model: the diffusers AutoencoderKL, in eval mode on `device`.
        scaling_factor, shift_factor: z = (mean - shift_factor) * scaling_factor.
        latent_channels: C of the latents.
        downsample_factor: f; latents are [C, H/f, W/f].
        source: absolute path of the folder or file.
        source_format: "diffusers_folder", "diffusers_file" or "ldm_file".
        identifier: the folder or file name.
        sha256: SHA-256 of the weights file, or None when hashing was switched off.
        notes: what was guessed (scaling factor, group count), for the report.
    """

    model: Any
    scaling_factor: float
    shift_factor: float
    latent_channels: int
    downsample_factor: int
    source: str
    source_format: str
    identifier: str
    sha256: Optional[str] = None
    notes: list[str] = field(default_factory=list)


def _torch_dtype(dtype: Any):
    import torch

    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.replace("torch.", ""), None)
        if not isinstance(dtype, torch.dtype):
            raise InputError("dtype", "is not a torch dtype", 'Use "float32", "float16" or "bfloat16"')
    return dtype


def _check_device(device: str) -> None:
    import torch

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device", f"{device!r} was asked for but no CUDA GPU is available", 'Use device="cpu"')


def _group_count(channels: list[int]) -> int:
    for groups in (32, 16, 8, 4, 2, 1):
        if all(c % groups == 0 for c in channels):
            return groups
    return 1  # pragma: no cover - 1 always divides


def infer_vae_config(state_dict: dict) -> dict:
    """AutoencoderKL config from a diffusers-key state dict (tensor shapes only).

    Raises:
        KeyError: a tensor an AutoencoderKL always has is missing.
    """
    down = sorted({int(m.group(1)) for k in state_dict for m in [re.match(r"encoder\.down_blocks\.(\d+)\.", k)] if m})
    if not down:
        raise KeyError("encoder.down_blocks.*")
    block_out = [int(state_dict[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"].shape[0]) for i in down]
    layers = len({m.group(1) for k in state_dict
                  for m in [re.match(r"encoder\.down_blocks\.0\.resnets\.(\d+)\.", k)] if m})
    n = len(block_out)
    return {
        "in_channels": int(state_dict["encoder.conv_in.weight"].shape[1]),
        "out_channels": int(state_dict["decoder.conv_out.weight"].shape[0]),
        "down_block_types": ["DownEncoderBlock2D"] * n,
        "up_block_types": ["UpDecoderBlock2D"] * n,
        "block_out_channels": block_out,
        "layers_per_block": layers,
        "latent_channels": int(state_dict["decoder.conv_in.weight"].shape[1]),
        "norm_num_groups": _group_count(block_out),
        "use_quant_conv": "quant_conv.weight" in state_dict,
        "use_post_quant_conv": "post_quant_conv.weight" in state_dict,
        "mid_block_add_attention": any(k.startswith("encoder.mid_block.attentions.0.") for k in state_dict),
        "sample_size": 512,
    }


def _read_vae_tensors(path: str, input_name: str) -> tuple[dict, str]:
    """Reads the VAE tensors of a .safetensors file; returns (diffusers-key state dict, format)."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            keys = list(handle.keys())
            prefix = ""
            for candidate in LDM_PREFIXES:
                if any(k.startswith(candidate + "encoder.") for k in keys):
                    prefix = candidate
                    break
            wanted = [k for k in keys if k.startswith(prefix) and k[len(prefix):].split(".")[0] in
                      ("encoder", "decoder", "quant_conv", "post_quant_conv")]
            tensors = {k[len(prefix):]: handle.get_tensor(k) for k in wanted}
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises several error types
        raise InputError(input_name, f"{path!r} is not a readable .safetensors file ({exc})",
                         "Check that the download finished; re-download or re-export the VAE") from exc
    if "encoder.conv_in.weight" not in tensors:
        raise InputError(
            input_name,
            f"{path!r} holds no VAE weights (no 'encoder.conv_in.weight'{', ' if keys else ''}"
            f"{'first keys: ' + ', '.join(keys[:3]) if keys else 'the file is empty'})",
            "Give a VAE file (e.g. sd-vae-ft-mse, sdxl_vae) or a full Stable Diffusion checkpoint that contains one",
        )
    if any(k.startswith("encoder.down_blocks.") for k in tensors):
        return tensors, "diffusers_file"
    if not any(k.startswith("encoder.down.") for k in tensors):
        raise InputError(input_name, f"{path!r} has VAE-like keys in an unknown layout",
                         "Give an AutoencoderKL in diffusers or original Stable Diffusion layout")
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    n_down = 1 + max(int(m.group(1)) for k in tensors for m in [re.match(r"encoder\.down\.(\d+)\.", k)] if m)
    shapes = {"down_block_types": ["DownEncoderBlock2D"] * n_down, "up_block_types": ["UpDecoderBlock2D"] * n_down}
    return convert_ldm_vae_checkpoint(tensors, shapes), "ldm_file"


def _resolve_scaling(latent_channels: int, config_scaling: Optional[float], config_shift: Optional[float],
                     scaling_factor: Optional[float], shift_factor: Optional[float], notes: list[str]):
    if scaling_factor is not None:
        scale = float(scaling_factor)
    elif config_scaling is not None:
        scale = float(config_scaling)
    else:
        scale, _ = DEFAULT_SCALING.get(latent_channels, (1.0, 0.0))
        if latent_channels == 4:
            notes.append("scaling factor 0.18215 assumed (SD 1.x/2.x); an SDXL VAE needs 0.13025")
        elif latent_channels == 16:
            notes.append("scaling 1.5305 / shift 0.0609 assumed (SD3); a Flux VAE needs 0.3611 / 0.1159")
        else:
            notes.append(f"no known scaling for {latent_channels} latent channels: 1.0 used")
    if shift_factor is not None:
        shift = float(shift_factor)
    elif config_shift is not None:
        shift = float(config_shift)
    elif config_scaling is not None:
        shift = 0.0  # a config that sets a scaling factor but no shift means no shift
    else:
        shift = DEFAULT_SCALING.get(latent_channels, (1.0, 0.0))[1]
    return scale, shift


def load_vae(
    path: str,
    device: str = "cpu",
    dtype: Any = None,
    scaling_factor: Optional[float] = None,
    shift_factor: Optional[float] = None,
    config: Optional[Union[dict, str]] = None,
    compute_sha256: bool = True,
    input_name: str = "vae",
) -> LoadedVAE:
    """Loads an AutoencoderKL from a local folder or single .safetensors file (never downloads).

    Args:
        path: diffusers folder (or pipeline folder with vae/), or a .safetensors file.
        device: torch device for the model.
        dtype: torch dtype (default torch.float32; float16 is for GPUs).
        scaling_factor, shift_factor: override the scaling (see the module docstring).
        config: for single files, a dict or a config.json path whose entries override the
            inferred AutoencoderKL config.
        compute_sha256: hash the weights file for `LoadedVAE.sha256` (a few seconds for a 7 GB
            checkpoint).
        input_name: the input to name in errors.
    Returns:
        LoadedVAE with the model in eval mode.
    Raises:
        InputError: missing path, pickle or unknown file type, unreadable or non-VAE weights.
    """
    import torch

    dtype = torch.float32 if dtype is None else _torch_dtype(dtype)
    _check_device(device)
    if not path or not isinstance(path, (str, os.PathLike)):
        raise InputError(input_name, "no VAE path was given", "Give a VAE folder or .safetensors file")
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.exists(path):
        raise InputError(input_name, f"nothing at {path!r}", "Check the path; VAEs are never downloaded, put the "
                         "file or folder on this machine first")
    notes: list[str] = []
    if os.path.isdir(path):
        model, fmt, weights, file_config = _load_folder(path, input_name)
        config_scaling = file_config.get("scaling_factor")
        config_shift = file_config.get("shift_factor")
    else:
        lower = path.lower()
        if lower.endswith(PICKLE_EXTENSIONS):
            raise InputError(
                input_name,
                f"{os.path.basename(path)!r} is a pickle checkpoint, which can run arbitrary code when loaded",
                "Convert it to .safetensors once, in a trusted environment (e.g. torch.load then "
                "safetensors.torch.save_file), or download the .safetensors release of the VAE",
            )
        if not lower.endswith(".safetensors"):
            raise InputError(input_name, f"{os.path.basename(path)!r} is not a .safetensors file or a folder",
                             "Give a diffusers VAE folder or a .safetensors VAE file")
        model, fmt, notes_cfg = _load_single_file(path, config, input_name)
        notes += notes_cfg
        weights = path
        config_scaling = config_shift = None
        if isinstance(config, dict):
            config_scaling, config_shift = config.get("scaling_factor"), config.get("shift_factor")
    latent_channels = int(model.config.latent_channels)
    scale, shift = _resolve_scaling(latent_channels, config_scaling, config_shift, scaling_factor, shift_factor, notes)
    model.register_to_config(scaling_factor=scale, shift_factor=shift)
    model = model.to(device=device, dtype=dtype).eval()
    model.requires_grad_(False)
    return LoadedVAE(
        model=model, scaling_factor=scale, shift_factor=shift, latent_channels=latent_channels,
        downsample_factor=2 ** (len(model.config.block_out_channels) - 1), source=path, source_format=fmt,
        identifier=os.path.basename(path.rstrip(os.sep)), sha256=sha256_file(weights) if compute_sha256 else None,
        notes=notes,
    )


def _load_folder(path: str, input_name: str):
    from diffusers import AutoencoderKL

    folder = path
    if not os.path.isfile(os.path.join(folder, "config.json")) and os.path.isfile(os.path.join(folder, "vae", "config.json")):
        folder = os.path.join(folder, "vae")
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise InputError(input_name, f"{path!r} is a folder without config.json",
                         "Give a diffusers AutoencoderKL folder (config.json + diffusion_pytorch_model.safetensors) "
                         "or a .safetensors file")
    try:
        with open(config_path, encoding="utf-8") as handle:
            file_config = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(input_name, f"{config_path!r} is not valid JSON ({exc})", "Re-download the VAE folder") from exc
    class_name = file_config.get("_class_name", "AutoencoderKL")
    if class_name != "AutoencoderKL":
        raise InputError(input_name, f"{folder!r} holds a {class_name}, not an AutoencoderKL",
                         "Give a Stable Diffusion-style AutoencoderKL VAE")
    weights = os.path.join(folder, WEIGHTS_NAME)
    if not os.path.isfile(weights):
        pickles = [f for f in os.listdir(folder) if f.endswith(PICKLE_EXTENSIONS)]
        problem = f"{folder!r} has no {WEIGHTS_NAME}"
        if pickles:
            problem += f" (only the pickle file {pickles[0]!r}, which is not loaded because it can run code)"
        raise InputError(input_name, problem, "Use the .safetensors version of the VAE (convert the pickle once in "
                         "a trusted environment)")
    try:
        model = AutoencoderKL.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    except Exception as exc:  # noqa: BLE001 - diffusers raises many types
        raise InputError(input_name, f"cannot load the VAE in {folder!r} ({type(exc).__name__}: {exc})",
                         "Check that config.json and the weights belong together") from exc
    return model, "diffusers_folder", weights, file_config


def _load_single_file(path: str, config: Optional[Union[dict, str]], input_name: str):
    from diffusers import AutoencoderKL

    state_dict, fmt = _read_vae_tensors(path, input_name)
    try:
        inferred = infer_vae_config(state_dict)
    except KeyError as exc:
        raise InputError(input_name, f"{path!r} lacks the VAE tensor {exc}", "Give a complete AutoencoderKL file") from exc
    notes = []
    if inferred["norm_num_groups"] != 32:
        notes.append(f"GroupNorm groups set to {inferred['norm_num_groups']} (32 does not divide the channels)")
    if config is not None:
        if isinstance(config, (str, os.PathLike)):
            try:
                with open(config, encoding="utf-8") as handle:
                    config = json.load(handle)
            except (OSError, json.JSONDecodeError) as exc:
                raise InputError("config", f"cannot read {config!r} ({exc})", "Give a valid config.json") from exc
        inferred.update({k: v for k, v in config.items() if not k.startswith("_")})
    inferred.pop("scaling_factor", None)
    inferred.pop("shift_factor", None)
    try:
        model = AutoencoderKL(**inferred)
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(input_name, f"the weights in {path!r} do not fit the AutoencoderKL inferred from them "
                         f"({str(exc).splitlines()[0][:300]})",
                         "Give a Stable Diffusion-style AutoencoderKL, or pass its config.json as config=") from exc
    return model, fmt, notes


def _prepare_pixels(image: np.ndarray, factor: int, fit: str, max_side_px: Optional[int]) -> tuple[np.ndarray, tuple[int, int]]:
    """Returns (uint8 [H', W', 3] with H', W' multiples of factor, (w, h) before padding)."""
    from PIL import Image

    h, w = image.shape[:2]
    if max_side_px is not None and max(h, w) > max_side_px:
        scale = max_side_px / max(h, w)
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.LANCZOS))
    if fit == "pad":
        ph, pw = (-h) % factor, (-w) % factor
        if ph or pw:
            image = np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")
        return image, (w, h)
    if fit == "resize":
        tw, th = max(factor, round(w / factor) * factor), max(factor, round(h / factor) * factor)
        if (tw, th) != (w, h):
            image = np.asarray(Image.fromarray(image).resize((tw, th), Image.LANCZOS))
        return image, (tw, th)
    raise InputError("fit", f"{fit!r} is not a fit mode", 'Use "pad" or "resize"')


def encode_latents(
    vae: Union[LoadedVAE, Any],
    image_rgb: np.ndarray,
    fit: str = "pad",
    max_side_px: Optional[int] = None,
    input_name: str = "image",
) -> np.ndarray:
    """Encodes an image to scaled VAE latents, deterministically (posterior mean).

    Args:
        vae: LoadedVAE, or a bare diffusers AutoencoderKL (scaling from its config).
        image_rgb: uint8 RGB [H, W, 3] (anything image_input accepts).
        fit: "pad" (edge-repeat bottom/right to a multiple of f) or "resize" (to the nearest multiple).
        max_side_px: downscale first (Lanczos) so the longer side is at most this, or None.
            Encoder memory grows with the square of the pixel count in the mid-block attention.
    Returns:
        float32 [C, ceil(H/f), ceil(W/f)] for "pad" (H, W after any downscaling), scaled
        (mean - shift_factor) * scaling_factor.
    """
    return _encode(vae, image_rgb, fit, max_side_px, input_name)[0]


def _encode(vae, image_rgb, fit, max_side_px, input_name) -> tuple[np.ndarray, tuple[int, int]]:
    """encode_latents, also returning the (width, height) encoded before padding."""
    import torch

    if isinstance(vae, LoadedVAE):
        model, scale, shift, factor = vae.model, vae.scaling_factor, vae.shift_factor, vae.downsample_factor
    else:
        model = vae
        scale = float(model.config.scaling_factor)
        shift = float(model.config.shift_factor or 0.0)
        factor = 2 ** (len(model.config.block_out_channels) - 1)
    rgb = to_rgb_uint8(image_rgb, input_name)
    pixels, size = _prepare_pixels(rgb, factor, fit, max_side_px)
    param = next(model.parameters())
    x = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1)[None]  # a writable copy
    x = x.to(device=param.device, dtype=torch.float32) / 127.5 - 1.0
    with torch.inference_mode():
        mean = model.encode(x.to(param.dtype)).latent_dist.mean
        latents = (mean.float() - shift) * scale
    return latents[0].cpu().numpy().astype(np.float32), size


def encode_reference_latents(
    vae: LoadedVAE,
    aligned_crop: np.ndarray,
    frame: Optional[np.ndarray] = None,
    frame_max_side_px: Optional[int] = 1024,
    fit: str = "pad",
) -> ReferenceLatents:
    """Latents of the aligned face crop and (optionally) the full frame, for a Reference.

    Args:
        vae: from load_vae.
        aligned_crop: uint8 [S, S, 3]; S should be a multiple of vae.downsample_factor.
        frame: uint8 [H, W, 3] full source frame, or None.
        frame_max_side_px: the frame is downscaled to at most this long side before encoding.
        fit: see encode_latents.
    """
    face = encode_latents(vae, aligned_crop, fit=fit, input_name="aligned_crop")
    frame_latents, frame_size = None, None
    if frame is not None:
        frame_latents, frame_size = _encode(vae, frame, fit, frame_max_side_px, "frame")
    return ReferenceLatents(
        scaling_factor=vae.scaling_factor, shift_factor=vae.shift_factor, vae_id=vae.identifier,
        vae_sha256=vae.sha256, downsample_factor=vae.downsample_factor, fit=fit, frame_pixel_size=frame_size,
        face_latents=face, frame_latents=frame_latents,
    )
