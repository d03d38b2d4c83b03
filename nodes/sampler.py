"""TemporalSampler node (weight-free engine): Reference + VisemeTrack -> frames, lazily or as a batch."""

from __future__ import annotations

import logging

import numpy as np

from ..pipeline.errors import InputError
from ..pipeline.face_animator import SamplerConfig, render_frames
from . import comfy_env
from .reference import REFERENCE
from .visemes import VISEME_TRACK

logger = logging.getLogger("talkinghead")

FRAME_STREAM = "TH_FRAME_STREAM"
REFINED_PROMPT = "TH_REFINED_PROMPT"
IMAGE_OUTPUTS = ("all_frames", "first_frame")


class TalkingHeadTemporalSampler:
    CATEGORY = "TalkingHead/render"
    DESCRIPTION = (
        "Weight-free engine: animates the reference portrait's own pixels with its own landmark geometry, "
        "driven by the VisemeTrack (jaw, lip width, rounding, closure on P/B/M, lip tuck on F/V), with a "
        "synthesised mouth interior, seeded blinks and small head motion. Runs on any CPU, no weights."
    )
    RETURN_TYPES = ("IMAGE", FRAME_STREAM)
    RETURN_NAMES = ("frames", "frame_stream")
    OUTPUT_TOOLTIPS = (
        "The frames as an IMAGE batch (float32: width x height x 12 bytes per frame, e.g. 512x512 -> 3 MB "
        "per frame, 10 s at 25 fps -> 0.8 GB). With image_output = first_frame only the first frame.",
        "The frames as a lazy stream for Mux: rendered while encoding, so memory stays flat for any length.",
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
                                  "tooltip": "Output width in px; 0 keeps the reference's size."}),
                "height": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 2,
                                   "tooltip": "Output height in px; 0 keeps the reference's size."}),
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
                    "engine ignores the prompt (it only moves the reference's pixels)."}),
            },
        }

    def sample(self, reference, viseme_track, seed, width, height, motion_strength, blink_rate_per_min,
               image_output, refined_prompt=None):
        if image_output not in IMAGE_OUTPUTS:
            raise InputError("image_output", f"unknown value {image_output!r}", f"Use one of {IMAGE_OUTPUTS}.")
        config = SamplerConfig(width=int(width) or None, height=int(height) or None,
                               motion_strength=float(motion_strength), blink_rate_per_min=float(blink_rate_per_min),
                               seed=int(seed))
        stream = render_frames(reference, viseme_track, config)
        if stream.life.cues != "prosody":
            logger.warning("TemporalSampler: the viseme track has no loudness or pitch (made without audio, or "
                           "saved by an older version): nods and brow lifts follow the jaw instead of stress and "
                           "pitch. Re-run the Viseme Aligner on the audio for them.")
        if refined_prompt is not None:
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
        return (images, stream)
