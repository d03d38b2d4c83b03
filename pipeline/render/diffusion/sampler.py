"""The diffusion engine's sampling loop: video-to-video over VAE latents, in context windows.

Input: the weight-free engine's frames and per-frame landmarks (motion and lip sync come from
there), the Reference, the prompt. Output: a lazy `DiffusedFrameStream` of the refined frames.

Per run:

1. Input frames are padded (edge pixels, bottom/right) to a multiple of the VAE factor times the
   UNet's downsampling, and encoded with the VAE in small batches (posterior mean) into x0
   [N, C, h, w]; N frames' latents, the noise and the working latents live on the CPU in float32
   (16 KB per frame per tensor at 256x256, 64 KB at 512x512), only the current window goes to the GPU.
2. The scheduler (DDIM, Euler, Euler ancestral, DPM++ 2M, DPM++ 2M Karras; by name) is set to
   `steps`; `strength` keeps the last round(steps * strength) of them (as diffusers' img2img does)
   and x0 is noised to the first kept timestep with seeded noise. strength 0 (or fewer than one
   step kept) returns the input frames unchanged, without a VAE round trip.
3. Every step, for each context window (`windows`): the window's latents [F, C, h, w] go through
   the UNet, with motion modules as [B, C, F, h, w] so temporal attention spans the window; with
   classifier-free guidance the negative and positive prompts are one batch of two;
   ControlNet residuals from the window's landmark maps are added when a ControlNet is loaded;
   reference-only attention (`reference_attention`) injects the reference's tokens. Window
   predictions are fused with trapezoid weights (`windows`), then one scheduler step is taken on
   the whole clip (so multistep and ancestral schedulers see one consistent state and one seed).
4. Face masking: outside the dilated face hull (`control.face_mask`, at latent resolution) the
   latents are replaced each step by x0 noised to the next timestep with the same noise (the
   standard inpainting blend), and by x0 itself after the last step; so the reference's pixels
   outside the face are kept. With `keep_background_pixels` the decoded frame is also composited
   over the input frame with the feathered pixel mask, so the background is exactly the input's.
5. Decoding is lazy: the stream decodes `decode_batch` frames at a time while it is read.

Determinism: all noise comes from CPU generators seeded with `seed` (the initial noise for frame n
is the same whatever the clip length), so a seed gives the same frames on any device up to float
rounding, and bit-identical frames on the same device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

from ...core.errors import InputError
from . import control as control_maps
from .windows import check_window, window_weights, windows

ProgressFn = Callable[[int, int], None]
SCHEDULERS = ("ddim", "euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_karras")


@dataclass(frozen=True)
class DiffusionSettings:
    """Settings of one diffusion run.

    Attributes:
        strength: 0..1, how far to move from the input frames (0: unchanged; 1: from pure noise).
        steps: scheduler steps for strength 1 (round(steps * strength) are run).
        guidance: classifier-free guidance scale; <= 1 switches guidance off (half the UNet work).
        scheduler: one of SCHEDULERS.
        seed: seed of all noise.
        context_length, context_overlap: window length and overlap in frames (see windows).
        controlnet_scale: multiplier of the ControlNet residuals (0: ControlNet off).
        landmark_style: "openpose_face" or "mediapipe_face" (control.LANDMARK_STYLES).
        reference_weight: 0..1 blend of reference-only attention (0: off).
        mask_face: keep everything outside the dilated face hull from the input (latent blend).
        mask_dilate, mask_feather: growth and feathering of the face hull, in face widths.
        keep_background_pixels: composite the decoded frame over the input frame with the mask.
        beta_schedule: "auto" (linear with a motion module, as AnimateDiff was trained; the
            checkpoint's otherwise), "linear" or "scaled_linear".
        encode_batch, decode_batch: frames per VAE call.
    """

    strength: float = 0.5
    steps: int = 20
    guidance: float = 6.0
    scheduler: str = "ddim"
    seed: int = 0
    context_length: int = 16
    context_overlap: int = 4
    controlnet_scale: float = 1.0
    landmark_style: str = "openpose_face"
    reference_weight: float = 1.0
    mask_face: bool = True
    mask_dilate: float = 0.25
    mask_feather: float = 0.1
    keep_background_pixels: bool = True
    beta_schedule: str = "auto"
    encode_batch: int = 8
    decode_batch: int = 8


def _number(name: str, value, lo: float, hi: float, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(value)) or not lo <= float(value) <= hi:
        raise InputError(name, f"must be a number from {lo:g} to {hi:g}, got {value!r}", fix)
    return float(value)


def check_settings(s: DiffusionSettings) -> DiffusionSettings:
    _number("strength", s.strength, 0.0, 1.0, "Use 0.3-0.6 to refine the weight-free frames")
    _number("steps", s.steps, 1, 1000, "Use 20-30")
    _number("guidance", s.guidance, 0.0, 30.0, "Use 5-8; 1 switches guidance off")
    _number("controlnet_scale", s.controlnet_scale, 0.0, 4.0, "Use 0.5-1.0")
    _number("reference_weight", s.reference_weight, 0.0, 1.0, "Use 1 for full reference attention, 0 for none")
    _number("mask_dilate", s.mask_dilate, 0.0, 4.0, "Use about 0.25 face widths")
    if s.scheduler not in SCHEDULERS:
        raise InputError("scheduler", f"unknown scheduler {s.scheduler!r}", f"Use one of {SCHEDULERS}")
    if s.beta_schedule not in ("auto", "linear", "scaled_linear"):
        raise InputError("beta_schedule", f"unknown value {s.beta_schedule!r}", 'Use "auto", "linear" or "scaled_linear"')
    if isinstance(s.seed, bool) or not isinstance(s.seed, (int, np.integer)) or not 0 <= int(s.seed) < 2 ** 63:
        raise InputError("seed", f"must be a whole number >= 0, got {s.seed!r}", "Use e.g. 0")
    if s.landmark_style not in control_maps.LANDMARK_STYLES:
        raise InputError("landmark_style", f"unknown style {s.landmark_style!r}",
                         f"Use one of {control_maps.LANDMARK_STYLES}")
    check_window(s.context_length, s.context_overlap)
    return replace(s, steps=int(s.steps), seed=int(s.seed))


def make_scheduler(name: str, config: dict, beta_schedule: Optional[str] = None):
    """A diffusers scheduler by name, from a config dict (never from the hub)."""
    from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
                           EulerDiscreteScheduler)

    config = {k: v for k, v in config.items() if not k.startswith("_")}
    if beta_schedule:
        config["beta_schedule"] = beta_schedule
    if name == "ddim":
        return DDIMScheduler.from_config(config)
    if name == "euler":
        return EulerDiscreteScheduler.from_config(config)
    if name == "euler_ancestral":
        return EulerAncestralDiscreteScheduler.from_config(config)
    if name in ("dpmpp_2m", "dpmpp_2m_karras"):
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2,
                                                       use_karras_sigmas=name.endswith("karras"))
    raise InputError("scheduler", f"unknown scheduler {name!r}", f"Use one of {SCHEDULERS}")


# ---------------------------------------------------------------------------------- frame sources

class FrameSource:
    """Random access to the input frames and their landmarks.

    Accepts a weight-free FrameStream (frames re-rendered on demand, landmarks from `landmarks(i)`)
    or a sequence/array of uint8 [H, W, 3] frames with a sequence of per-frame landmarks.
    """

    def __init__(self, frames: Any, landmarks: Optional[Sequence] = None, fps: Optional[float] = None):
        self.stream = frames if hasattr(frames, "render") and hasattr(frames, "landmarks") else None
        if self.stream is not None:
            self.num_frames = len(frames)
            self.width, self.height = int(frames.width), int(frames.height)
            self.fps = float(frames.fps)
            self.layout = getattr(frames, "layout", None)
            self._landmarks = [np.asarray(frames.landmarks(i), np.float32) for i in range(self.num_frames)] \
                if landmarks is None else [np.asarray(p, np.float32) for p in landmarks]
            self._frames = None
        else:
            array = frames if isinstance(frames, np.ndarray) else None
            self._frames = array if array is not None else list(frames)
            self.num_frames = len(self._frames)
            if self.num_frames == 0:
                raise InputError("frames", "no frames were given", "Give the weight-free engine's frames")
            first = np.asarray(self._frames[0])
            if first.ndim != 3 or first.shape[2] != 3:
                raise InputError("frames", f"frames must be [H, W, 3] RGB, got {first.shape}", "Give RGB frames")
            self.height, self.width = first.shape[:2]
            self.fps = float(fps or 25.0)
            self.layout = None
            self._landmarks = None if landmarks is None else [np.asarray(p, np.float32) for p in landmarks]
            if self._landmarks is not None and len(self._landmarks) != self.num_frames:
                raise InputError("landmarks", f"has {len(self._landmarks)} entries for {self.num_frames} frames",
                                 "Give one landmark array per frame")

    def image(self, index: int) -> np.ndarray:
        if self.stream is not None:
            return self.stream.render(index).image
        frame = np.asarray(self._frames[index])
        if frame.dtype != np.uint8:
            frame = np.clip(np.round(frame.astype(np.float32) * (255.0 if frame.max() <= 1.0 else 1.0)), 0, 255)
            frame = frame.astype(np.uint8)
        return frame

    def landmarks(self, index: int) -> Optional[np.ndarray]:
        return None if self._landmarks is None else self._landmarks[index]


# ---------------------------------------------------------------------------------- output stream

@dataclass
class DiffusedFrame:
    """One output frame: index, uint8 [H, W, 3] image, float32 [N, 2] landmarks (or None)."""

    index: int
    image: np.ndarray
    landmarks_xy: Optional[np.ndarray]


class DiffusedFrameStream:
    """Lazy, re-iterable refined frames (decoded while read); the FrameStream interface Mux uses.

    Attributes:
        num_frames, fps, width, height, layout: as the input stream.
        latents: float32 [N, C, h, w] final latents on the CPU (None when strength was 0: the input
            frames are returned as they are).
        info: what was run (steps, windows, scheduler, timings).
    """

    def __init__(self, source: FrameSource, vae: Any, latents: Optional[Any], pixel_masks: Optional[Callable],
                 pad: tuple[int, int], decode_batch: int, info: dict, progress: Optional[ProgressFn] = None):
        self.source = source
        self.vae = vae
        self.latents = latents
        self.pixel_mask = pixel_masks
        self.pad = pad
        self.decode_batch = max(1, int(decode_batch))
        self.info = info
        self.progress = progress
        self.num_frames = source.num_frames
        self.fps = source.fps
        self.width, self.height = source.width, source.height
        self.layout = source.layout
        self.reference_image_sha256 = getattr(source.stream, "reference_image_sha256", None)

    def __len__(self) -> int:
        return self.num_frames

    def landmarks(self, index: int) -> Optional[np.ndarray]:
        return self.source.landmarks(index)

    def _decode(self, start: int, stop: int) -> np.ndarray:
        import torch

        vae = self.vae
        model = vae.model
        z = self.latents[start:stop].to(device=next(model.parameters()).device, dtype=torch.float32)
        with torch.inference_mode():
            pixels = model.decode(z / vae.scaling_factor + vae.shift_factor).sample
        pixels = ((pixels.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
        out = pixels.permute(0, 2, 3, 1).cpu().numpy()
        return out[:, :self.height, :self.width]

    def __iter__(self) -> Iterator[DiffusedFrame]:
        for start in range(0, self.num_frames, self.decode_batch):
            stop = min(self.num_frames, start + self.decode_batch)
            decoded = self._decode(start, stop) if self.latents is not None else None
            for i in range(start, stop):
                if decoded is None:
                    image = self.source.image(i).copy()
                else:
                    image = decoded[i - start]
                    if self.pixel_mask is not None:
                        m = self.pixel_mask(i)
                        if m is not None:
                            src = self.source.image(i).astype(np.float32)
                            image = np.round(src + m[..., None] * (image.astype(np.float32) - src)).astype(np.uint8)
                if self.progress is not None:
                    self.progress(i + 1, self.num_frames)
                yield DiffusedFrame(index=i, image=np.ascontiguousarray(image), landmarks_xy=self.landmarks(i))

    def images(self) -> Iterator[np.ndarray]:
        for frame in self:
            yield frame.image


# ---------------------------------------------------------------------------------- helpers

def _prompt_texts(prompt: Any, negative: Optional[str]) -> tuple[str, str]:
    if prompt is None:
        return "", negative or ""
    if isinstance(prompt, str):
        return prompt, negative or ""
    if hasattr(prompt, "positive"):
        return str(prompt.positive or ""), negative if negative is not None else str(getattr(prompt, "negative", "") or "")
    raise InputError("refined_prompt", f"must be a RefinedPrompt or text, got {type(prompt).__name__}",
                     "Connect the Prompt Refiner's output")


def _encode_text(models: Any, text: str):
    import torch

    ids = models.tokenize(text).to(models.device)
    with torch.inference_mode():
        return models.text_encoder(ids)[0].to(models.dtype)


def _multiple(models: Any) -> int:
    levels = len(models.unet.config.block_out_channels)
    return int(models.vae.downsample_factor) * 2 ** (levels - 1)


def _encode_pixels(vae: Any, frames: np.ndarray):
    """uint8 [B, H, W, 3] -> scaled latents float32 [B, C, h, w] on the CPU."""
    import torch

    model = vae.model
    param = next(model.parameters())
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).to(param.device, torch.float32)
    x = x / 127.5 - 1.0
    with torch.inference_mode():
        mean = model.encode(x.to(param.dtype)).latent_dist.mean
    return ((mean.float() - vae.shift_factor) * vae.scaling_factor).cpu()


def _pad_frame(frame: np.ndarray, pad: tuple[int, int]) -> np.ndarray:
    ph, pw = pad
    if ph or pw:
        frame = np.pad(frame, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return frame


def reference_latents(models: Any, reference: Any, multiple: int) -> tuple[Optional[Any], str]:
    """float32 [1, C, h, w] latents of the reference face for reference attention, and where from.

    The Reference's own face latents are used when they were made with a VAE of the same scaling
    and latent channels (and the same weights, when both hashes are known); otherwise its aligned
    crop (or frame) is encoded with the engine's VAE. h, w are padded to the UNet's multiple."""
    import torch

    if reference is None:
        return None, "none"
    vae = models.vae
    lat = getattr(reference, "latents", None)
    tensor, origin = None, ""
    if lat is not None and getattr(lat, "face_latents", None) is not None:
        same = (lat.face_latents.shape[0] == vae.latent_channels
                and abs(float(lat.scaling_factor) - float(vae.scaling_factor)) < 1e-6
                and abs(float(lat.shift_factor) - float(vae.shift_factor)) < 1e-6
                and (lat.vae_sha256 is None or vae.sha256 is None or lat.vae_sha256 == vae.sha256))
        if same:
            tensor, origin = torch.from_numpy(np.asarray(lat.face_latents, np.float32))[None], "reference.latents"
    if tensor is None:
        pixels = getattr(reference, "aligned_crop", None)
        origin = "aligned_crop encoded"
        if pixels is None:
            pixels, origin = getattr(reference, "frame", None), "frame encoded"
        if pixels is None:
            return None, "none (the reference has neither latents nor pixels)"
        f = int(vae.downsample_factor)
        pixels = np.asarray(pixels, np.uint8)
        h, w = pixels.shape[:2]
        tensor = _encode_pixels(vae, _pad_frame(pixels, ((-h) % f, (-w) % f))[None])
    step = max(1, multiple // int(vae.downsample_factor))
    h, w = tensor.shape[-2:]
    ph, pw = (-h) % step, (-w) % step
    if ph or pw:
        tensor = torch.nn.functional.pad(tensor, (0, pw, 0, ph), mode="replicate")
    return tensor.float(), origin


# ---------------------------------------------------------------------------------- main entry

def diffuse_frames(models: Any, frames: Any, landmarks: Optional[Sequence] = None, reference: Any = None,
                   prompt: Any = None, negative_prompt: Optional[str] = None,
                   settings: DiffusionSettings = DiffusionSettings(), progress: Optional[ProgressFn] = None,
                   fps: Optional[float] = None, start_latents_hook: Optional[Callable[[Any], Any]] = None
                   ) -> DiffusedFrameStream:
    """Refines `frames` with the diffusion models (see the module docstring).

    Args:
        models: loading.DiffusionModels.
        frames: the weight-free FrameStream, or a sequence/array of uint8 [H, W, 3] frames.
        landmarks: per-frame landmark arrays (taken from the stream when not given).
        reference: the Reference (identity anchor), or None.
        prompt: a RefinedPrompt (its positive and negative prompts) or a string; negative_prompt
            overrides the negative.
        settings: DiffusionSettings.
        progress: progress(done, total) after each VAE encode batch and each window of each step.
        fps: frame rate when frames is a plain sequence.
        start_latents_hook: called with the noised start latents [N, C, h, w] (a tensor it may
            modify or replace): for tests that perturb one frame.
    Returns:
        DiffusedFrameStream (lazy decoding).
    """
    import time

    import torch

    settings = check_settings(settings)
    source = FrameSource(frames, landmarks, fps)
    n = source.num_frames
    info: dict = {"frames": n, "scheduler": settings.scheduler, "device": models.device, "dtype": str(models.dtype),
                  "motion": bool(models.motion), "controlnet": models.controlnet is not None}
    if models.motion and models.max_frames and settings.context_length > models.max_frames:
        raise InputError("context_length", f"is {settings.context_length} but the motion module handles at most "
                         f"{models.max_frames} frames", f"Use at most {models.max_frames} (16 is what it was trained on)")
    multiple = _multiple(models)
    pad = ((-source.height) % multiple, (-source.width) % multiple)
    f = int(models.vae.downsample_factor)
    lh, lw = (source.height + pad[0]) // f, (source.width + pad[1]) // f

    scheduler = make_scheduler(settings.scheduler, models.scheduler_config,
                               "linear" if settings.beta_schedule == "auto" and models.motion else
                               (None if settings.beta_schedule == "auto" else settings.beta_schedule))
    scheduler.set_timesteps(settings.steps, device="cpu")
    init = min(int(settings.steps * settings.strength), settings.steps)
    t_start = max(settings.steps - init, 0)
    timesteps = scheduler.timesteps[t_start * scheduler.order:]
    if init == 0 or len(timesteps) == 0:
        info.update(steps_run=0, windows=0, note="strength 0: the input frames are returned unchanged")
        return DiffusedFrameStream(source, models.vae, None, None, (0, 0), settings.decode_batch, info)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)

    wins = windows(n, settings.context_length, settings.context_overlap)
    n_batches = math.ceil(n / settings.encode_batch)
    total = n_batches + len(timesteps) * len(wins)
    done = 0

    def tick():
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    t0 = time.perf_counter()
    x0 = torch.empty((n, models.vae.latent_channels, lh, lw), dtype=torch.float32)
    for b in range(n_batches):
        idx = range(b * settings.encode_batch, min(n, (b + 1) * settings.encode_batch))
        batch = np.stack([_pad_frame(source.image(i), pad) for i in idx])
        x0[idx.start:idx.stop] = _encode_pixels(models.vae, batch)
        tick()
    info["encode_s"] = time.perf_counter() - t0

    # masks at latent resolution (and a pixel mask function for the final composite)
    have_landmarks = source.landmarks(0) is not None
    latent_masks = None
    pixel_mask_fn = None
    if settings.mask_face and have_landmarks:
        latent_masks = torch.empty((n, 1, lh, lw), dtype=torch.float32)
        for i in range(n):
            m = control_maps.face_mask(source.landmarks(i), source.width, source.height, settings.mask_dilate,
                                       settings.mask_feather)
            latent_masks[i, 0] = torch.from_numpy(control_maps.latent_mask(m, lh, lw, f))
        if settings.keep_background_pixels:
            def pixel_mask_fn(i):  # noqa: E306
                return control_maps.face_mask(source.landmarks(i), source.width, source.height, settings.mask_dilate,
                                              settings.mask_feather)
    use_control = models.controlnet is not None and settings.controlnet_scale > 0 and have_landmarks
    if models.controlnet is not None and not have_landmarks:
        info["control_note"] = "no landmarks: ControlNet not used"

    positive, negative = _prompt_texts(prompt, negative_prompt)
    cfg = settings.guidance > 1.0
    with torch.inference_mode():
        cond = _encode_text(models, positive)
        embeds = torch.cat([_encode_text(models, negative), cond]) if cfg else cond
    branches = embeds.shape[0]

    gen = torch.Generator("cpu").manual_seed(settings.seed)
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float32)
    latents = scheduler.add_noise(x0, noise, timesteps[:1])
    if start_latents_hook is not None:
        hooked = start_latents_hook(latents)
        latents = latents if hooked is None else hooked

    ref_lat, ref_origin = (None, "off")
    if settings.reference_weight > 0 and reference is not None:
        ref_lat, ref_origin = reference_latents(models, reference, multiple)
    info["reference"] = ref_origin
    ref_noise = None
    if ref_lat is not None:
        ref_noise = torch.randn(ref_lat.shape, generator=torch.Generator("cpu").manual_seed(settings.seed + 1))

    unet, device, dtype = models.unet, models.device, models.dtype
    motion = bool(models.motion)
    weights_full = {len(w): torch.from_numpy(window_weights(len(w), settings.context_overlap if len(w) ==
                                                             settings.context_length else 0)) for w in wins}
    max_batch = 0

    def run_unet(x, t, ctx, residuals=None):
        """x: [B*F, C, h, w] with B branches (negative first); returns [B*F, C, h, w]."""
        nonlocal max_batch
        max_batch = max(max_batch, x.shape[0])
        down, mid = (residuals or (None, None))
        if motion:
            frames_ = x.shape[0] // ctx.shape[0]
            x5 = x.reshape(ctx.shape[0], frames_, *x.shape[1:]).permute(0, 2, 1, 3, 4)
            # diffusers' UNetMotionModel wants the prompt once per frame ([(B F), L, D], frames inner)
            out = unet(x5, t, encoder_hidden_states=ctx.repeat_interleave(frames_, dim=0),
                       down_block_additional_residuals=down,
                       mid_block_additional_residual=mid).sample
            return out.permute(0, 2, 1, 3, 4).reshape(x.shape)
        per = x.shape[0] // ctx.shape[0]
        return unet(x, t, encoder_hidden_states=ctx.repeat_interleave(per, dim=0),
                    down_block_additional_residuals=down, mid_block_additional_residual=mid).sample

    from contextlib import nullcontext

    from .reference_attention import ReferenceAttention

    attention = ReferenceAttention(unet, settings.reference_weight) if ref_lat is not None else nullcontext()
    t1 = time.perf_counter()
    with attention as ref_state, torch.inference_mode():
        for step_i, t in enumerate(timesteps):
            scaled = scheduler.scale_model_input(latents, t)
            if ref_state is not None:
                ref_in = scheduler.scale_model_input(scheduler.add_noise(ref_lat, ref_noise, t.reshape(1)), t)
                ref_in = ref_in.to(device, dtype).repeat(branches, 1, 1, 1)
                ref_state.bank.clear()
                ref_state.mode = "write"
                run_unet(ref_in, t.to(device), embeds)
                ref_state.mode = "read"
            eps = torch.zeros_like(latents)
            wsum = torch.zeros((n, 1, 1, 1), dtype=torch.float32)
            for idx in wins:
                sel = torch.from_numpy(idx)
                x = scaled[sel].to(device, dtype)
                xin = torch.cat([x] * branches) if branches > 1 else x
                residuals = None
                if use_control:
                    maps = np.stack([control_maps.draw_landmark_map(source.landmarks(int(i)), source.width + pad[1],
                                                                    source.height + pad[0], settings.landmark_style)
                                     for i in idx])
                    cond_img = torch.from_numpy(maps).permute(0, 3, 1, 2).to(device, dtype) / 255.0
                    cond_img = torch.cat([cond_img] * branches) if branches > 1 else cond_img
                    per = xin.shape[0] // branches
                    down, mid = models.controlnet(xin, t.to(device), encoder_hidden_states=embeds.repeat_interleave(
                        per, dim=0), controlnet_cond=cond_img, conditioning_scale=float(settings.controlnet_scale),
                        return_dict=False)
                    residuals = (down, mid)
                pred = run_unet(xin, t.to(device), embeds, residuals).float()
                if branches > 1:
                    uncond, condp = pred.chunk(2)
                    pred = uncond + settings.guidance * (condp - uncond)
                w = weights_full[len(idx)].view(-1, 1, 1, 1)
                eps[sel] += w * pred.cpu()
                wsum[sel] += w
                tick()
            eps /= wsum
            latents = scheduler.step(eps, t, latents, generator=gen).prev_sample
            if latent_masks is not None:
                if step_i + 1 < len(timesteps):
                    keep = scheduler.add_noise(x0, noise, timesteps[step_i + 1:step_i + 2])
                else:
                    keep = x0
                latents = latent_masks * latents + (1.0 - latent_masks) * keep
    info.update(steps_run=len(timesteps), windows=len(wins), window_starts=[int(w[0]) for w in wins],
                sample_s=time.perf_counter() - t1, max_unet_batch=int(max_batch), guidance_on=cfg,
                landmark_control=bool(use_control))
    return DiffusedFrameStream(source, models.vae, latents.float(), pixel_mask_fn, pad, settings.decode_batch, info)
