"""TemporalSampler node: Reference + VisemeTrack -> frames, lazily or as a batch.

engine = weight_free (default): the embedded weight-free animator (pipeline/render/weight_free.py).
engine = diffusion: the weight-free frames and landmarks refined by a local SD 1.5-family model with
AnimateDiff motion modules, landmark ControlNet and reference attention (pipeline/render/diffusion/).
"""

from __future__ import annotations

import logging

import numpy as np

from ..pipeline.core.errors import InputError
from ..pipeline.render.weight_free import SamplerConfig, render_frames
from . import comfy_env
from .reference import REFERENCE
from .visemes import VISEME_TRACK

logger = logging.getLogger("talkinghead")

FRAME_STREAM = "TH_FRAME_STREAM"
REFINED_PROMPT = "TH_REFINED_PROMPT"
IMAGE_OUTPUTS = ("all_frames", "first_frame")
ENGINES = ("weight_free", "diffusion")
NONE = "(none)"
CHECKPOINT_VAE = "(checkpoint's own)"
#: ComfyUI model folder of each diffusion input.
MODEL_KINDS = {"checkpoint": "checkpoints", "motion_module": "animatediff_models", "controlnet": "controlnet",
               "vae": "vae"}
SCHEDULER_NAMES = ("ddim", "euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_karras")  # == diffusion.SCHEDULERS


def _choices(kind: str, first: str) -> list[str]:
    return [first] + comfy_env.list_models(kind)


def _diffusion_inputs() -> dict:
    return {
        "engine": (list(ENGINES), {
            "default": "weight_free",
            "tooltip": "weight_free: warps the portrait's own pixels, runs anywhere, no weights. diffusion: refines "
            "those frames with a local SD 1.5 model (video-to-video; needs checkpoint, ideally a GPU); motion and lip "
            "sync still come from the weight-free frames."}),
        "checkpoint": (_choices("checkpoints", NONE), {
            "default": NONE,
            "tooltip": "Diffusion engine only: an SD 1.5 checkpoint (.safetensors or diffusers folder) from "
            "models/checkpoints. Required for engine = diffusion; never downloaded."}),
        "motion_module": (_choices("animatediff_models", NONE), {
            "default": NONE,
            "tooltip": "Diffusion engine only: AnimateDiff motion module for SD 1.5 (models/animatediff_models), "
            "so each step attends across frames (less flicker). (none): frames are refined one by one."}),
        "controlnet": (_choices("controlnet", NONE), {
            "default": NONE,
            "tooltip": "Diffusion engine only: SD 1.5 landmark ControlNet (OpenPose face or MediaPipe face, "
            "models/controlnet) fed with per-frame landmark maps, so the face keeps the weight-free geometry."}),
        "vae": (_choices("vae", CHECKPOINT_VAE), {
            "default": CHECKPOINT_VAE,
            "tooltip": "Diffusion engine only: a VAE from models/vae replacing the checkpoint's own (e.g. "
            "vae-ft-mse-840000 for sharper faces)."}),
        "strength": ("FLOAT", {
            "default": 0.45, "min": 0.0, "max": 1.0, "step": 0.05,
            "tooltip": "Diffusion engine: how far to move from the weight-free frames, 0..1. 0 returns them "
            "unchanged; raising it adds model detail but drifts from the reference and the lip shapes."}),
        "steps": ("INT", {
            "default": 20, "min": 1, "max": 150,
            "tooltip": "Diffusion engine: scheduler steps at strength 1 (round(steps x strength) are run). "
            "More steps: finer detail, proportionally slower."}),
        "guidance": ("FLOAT", {
            "default": 6.0, "min": 1.0, "max": 20.0, "step": 0.5,
            "tooltip": "Diffusion engine: classifier-free guidance scale. Higher follows the prompt more "
            "strongly (and saturates); 1 switches guidance off and halves the work."}),
        "scheduler": (list(SCHEDULER_NAMES), {
            "default": "ddim",
            "tooltip": "Diffusion engine: the sampler. ddim (AnimateDiff's), euler, euler_ancestral (adds noise "
            "each step), dpmpp_2m and dpmpp_2m_karras (good at few steps)."}),
        "context_length": ("INT", {
            "default": 16, "min": 1, "max": 64,
            "tooltip": "Diffusion engine: frames per context window. Motion modules were trained on 16; longer "
            "windows use more memory (per window, not per clip)."}),
        "context_overlap": ("INT", {
            "default": 4, "min": 0, "max": 63,
            "tooltip": "Diffusion engine: frames shared by neighbouring windows, cross-faded (below "
            "context_length). More overlap: smoother seams, more windows to compute."}),
        "controlnet_strength": ("FLOAT", {
            "default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
            "tooltip": "Diffusion engine: weight of the landmark ControlNet. Higher holds the face geometry "
            "(mouth shapes) tighter; 0 ignores the ControlNet."}),
        "reference_strength": ("FLOAT", {
            "default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
            "tooltip": "Diffusion engine: reference attention, 0..1: how much every frame attends to the "
            "reference face's features. Higher keeps identity closer; 0 switches it off."}),
        "device": (["auto", "cuda", "mps", "cpu"], {
            "default": "auto",
            "tooltip": "Diffusion engine: where to run. auto picks a CUDA GPU, then Apple MPS, then the CPU "
            "(the CPU works but takes minutes per second of video)."}),
        "precision": (["auto", "fp16", "bf16", "fp32"], {
            "default": "auto",
            "tooltip": "Diffusion engine: number format. auto: fp16 on a GPU, fp32 on the CPU. bf16 suits "
            "recent NVIDIA GPUs; fp32 uses twice the memory. The VAE always runs in fp32."}),
        "keep_models_loaded": ("BOOLEAN", {
            "default": True,
            "tooltip": "Diffusion engine: keep the loaded models cached for the next run (fast re-runs). Off: "
            "free them after this run (frees GPU and RAM)."}),
    }


class TalkingHeadTemporalSampler:
    CATEGORY = "TalkingHead/render"
    DESCRIPTION = (
        "Weight-free engine: animates the reference portrait's own pixels with its own landmark geometry, "
        "driven by the VisemeTrack (jaw, lip width, rounding, closure on P/B/M, lip tuck on F/V), with a "
        "synthesised mouth interior, seeded blinks and small head motion. Runs on any CPU, no weights."
    )
    RETURN_TYPES = ("IMAGE", FRAME_STREAM, "STRING")
    RETURN_NAMES = ("frames", "frame_stream", "report")
    OUTPUT_TOOLTIPS = (
        "The frames as an IMAGE batch (float32: width x height x 12 bytes per frame, e.g. 512x512 -> 3 MB "
        "per frame, 10 s at 25 fps -> 0.8 GB). With image_output = first_frame only the first frame.",
        "The frames as a lazy stream for Mux: rendered while encoding, so memory stays flat for any length.",
        "What was rendered: the output size and why (the portrait's size up to 1024 px, or cropped around the "
        "face, or as set), the frames, and what drives nods and brow lifts.",
    )
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "reference": (REFERENCE, {"tooltip": "The encoded portrait from Reference Encoder."}),
                "viseme_track": (VISEME_TRACK, {"tooltip": "Mouth motion per frame from Viseme Aligner; the "
                                                "video gets its fps and exactly its duration."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFF,
                                 "tooltip": "Seed of blinks and head motion: the same seed gives the same frames."}),
                "width": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 2,
                                  "tooltip": "Output width in px. 0 (with height 0): the portrait's own size, up to "
                                  "1024 px on the long side and even; a large portrait is cropped around the head "
                                  "before it is shrunk, so the face keeps its detail. With only one of width/height "
                                  "set, the other follows the portrait's shape."}),
                "height": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 2,
                                   "tooltip": "Output height in px. 0 (with width 0): the default framing (see "
                                   "width). Both set: the portrait is scaled to cover that size and cropped "
                                   "around the face, never stretched."}),
                "motion_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.05,
                                              "tooltip": "Head motion and brow lifts: 0 keeps the head still "
                                              "(only mouth and blinks move), 1 natural, 2 lively."}),
                "blink_rate_per_min": ("FLOAT", {"default": 15.0, "min": 0.0, "max": 60.0, "step": 0.5,
                                                 "tooltip": "Average blinks per minute (people: about 10-20); "
                                                 "intervals are random, from the seed. 0: no blinks."}),
                "image_output": (list(IMAGE_OUTPUTS), {
                    "default": "all_frames",
                    "tooltip": "all_frames: render every frame into the IMAGE batch now (memory grows with "
                    "length). first_frame: only the first frame as IMAGE; connect frame_stream to Mux for "
                    "the video, which then renders while encoding (long clips)."}),
            },
            "optional": {
                "refined_prompt": (REFINED_PROMPT, {
                    "tooltip": "Accepted for the same interface as the diffusion engine; this weight-free "
                    "engine ignores it; the diffusion engine encodes its positive and negative prompts."}),
                **_diffusion_inputs(),
            },
        }

    def sample(self, reference, viseme_track, seed, width, height, motion_strength, blink_rate_per_min,
               image_output, refined_prompt=None, engine="weight_free", **diffusion):
        if image_output not in IMAGE_OUTPUTS:
            raise InputError("image_output", f"unknown value {image_output!r}", f"Use one of {IMAGE_OUTPUTS}.")
        config = SamplerConfig(width=int(width) or None, height=int(height) or None,
                               motion_strength=float(motion_strength), blink_rate_per_min=float(blink_rate_per_min),
                               seed=int(seed))
        stream = render_frames(reference, viseme_track, config)
        report_text = stream.report(engine)
        logger.info("TemporalSampler: %s", stream.framing.note)
        if stream.life.cues != "prosody":
            logger.warning("TemporalSampler: the viseme track has no loudness or pitch (made without audio, or "
                           "saved by an older version): nods and brow lifts follow the jaw instead of stress and "
                           "pitch. Re-run the Viseme Aligner on the audio for them.")
        if engine not in ENGINES:
            raise InputError("engine", f"unknown engine {engine!r}", f"Use one of {ENGINES}.")
        if engine == "diffusion":
            stream = _diffuse(stream, reference, refined_prompt, int(seed), diffusion)
        elif refined_prompt is not None:
            logger.info("TemporalSampler (weight-free): the refined prompt is not used by this engine")
        if image_output == "all_frames":
            report = comfy_env.progress_callback(len(stream))
            batch = np.empty((len(stream), stream.height, stream.width, 3), np.float32)
            for frame in stream:
                np.multiply(frame.image, 1.0 / 255.0, out=batch[frame.index], casting="unsafe")
                report(frame.index + 1, len(stream))
            images = comfy_env.numpy_to_image_batch(batch)
        else:
            first = next(iter(stream.images()))
            images = comfy_env.numpy_to_image_batch(first)
        # Mux renders the stream while it encodes, and its progress bar counts those frames.
        return {"ui": {"text": [report_text]}, "result": (images, stream, report_text)}


def _model_path(kind_input: str, name, none_value: str):
    if name in (None, "", none_value):
        return None
    return comfy_env.resolve_model(MODEL_KINDS[kind_input], str(name), kind_input)


def _diffuse(stream, reference, refined_prompt, seed: int, options: dict):
    """Runs the diffusion engine on the weight-free stream; returns its lazy DiffusedFrameStream."""
    from ..pipeline.render.diffusion import DiffusionSettings, diffuse_frames, free_models, load_models

    unknown = sorted(set(options) - set(_diffusion_inputs()))
    if unknown:
        raise InputError(unknown[0], "is not an input of Temporal Sampler", "Remove it from the workflow.")
    checkpoint = options.get("checkpoint", NONE)
    if checkpoint in (None, "", NONE):
        folders = ", ".join(comfy_env.model_folders("checkpoints")) or \
            f"ComfyUI's models/checkpoints folder (or ${comfy_env.MODELS_DIR_ENV}/checkpoints outside ComfyUI)"
        raise InputError(
            "checkpoint", "no checkpoint is selected, and engine = diffusion needs one",
            f"Put a Stable Diffusion 1.5 checkpoint (a .safetensors file such as v1-5-pruned-emaonly.safetensors, "
            f"or a diffusers folder) into {folders}, refresh and select it. Optional: an AnimateDiff motion module "
            "(.safetensors) in models/animatediff_models, a face-landmark ControlNet in models/controlnet. "
            "Or set engine = weight_free, which needs no weights.")
    paths = {
        "checkpoint": _model_path("checkpoint", checkpoint, NONE),
        "motion_module": _model_path("motion_module", options.get("motion_module"), NONE),
        "controlnet": _model_path("controlnet", options.get("controlnet"), NONE),
        "vae": _model_path("vae", options.get("vae"), CHECKPOINT_VAE),
    }
    load_report = comfy_env.progress_callback(5)
    models = load_models(**paths, device=options.get("device", "auto"), precision=options.get("precision", "auto"),
                         progress=load_report)
    settings = DiffusionSettings(
        strength=float(options.get("strength", 0.45)), steps=int(options.get("steps", 20)),
        guidance=float(options.get("guidance", 6.0)), scheduler=options.get("scheduler", "ddim"), seed=seed,
        context_length=int(options.get("context_length", 16)), context_overlap=int(options.get("context_overlap", 4)),
        controlnet_scale=float(options.get("controlnet_strength", 1.0)),
        reference_weight=float(options.get("reference_strength", 1.0)))
    report = comfy_env.progress_callback(1)
    try:
        diffused = diffuse_frames(models, stream, reference=reference, prompt=refined_prompt, settings=settings,
                                  progress=report)
    finally:
        if not options.get("keep_models_loaded", True):
            free_models()
    diffused.life = stream.life
    for note in models.notes:
        logger.info("TemporalSampler (diffusion): %s", note)
    return diffused
