"""Mux node: frames + AUDIO -> an H.264/AAC MP4 in the output folder, with measured A/V sync."""

from __future__ import annotations

import logging

import os

from ..pipeline.core.errors import InputError
from ..pipeline.core.output_paths import next_output_path
from ..pipeline.publish import mux as mux_stage
from ..pipeline.publish.provenance import configured_identity
from ..pipeline.publish.publish import publish
from ..pipeline.publish.visible_label import POSITIONS, LabelConfig
from ..pipeline.publish.watermark import MAX_STRENGTH, MIN_STRENGTH
from . import comfy_env

logger = logging.getLogger("talkinghead")

try:  # ComfyUI versions with the VIDEO type (0.3.4x and later).
    from comfy_api.input_impl import VideoFromFile
except ImportError:
    VideoFromFile = None


class MuxedVideo:
    """Stands in for ComfyUI's VideoFromFile when running headless: just the file."""

    def __init__(self, path: str):
        self.path = path

    def __repr__(self) -> str:
        return f"MuxedVideo({self.path!r})"


class TalkingHeadMux:
    CATEGORY = "TalkingHead/output"
    DESCRIPTION = (
        "Encodes frames and speech into an MP4 (H.264 yuv420p + AAC) in the output folder, then decodes it "
        "to measure the audio/video offset and durations."
    )
    RETURN_TYPES = ("STRING", "VIDEO")
    RETURN_NAMES = ("path", "video")
    OUTPUT_TOOLTIPS = ("Absolute path of the MP4 written.", "The MP4 as a VIDEO for core video nodes.")
    OUTPUT_NODE = True
    FUNCTION = "mux"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "audio": ("AUDIO", {"tooltip": "The speech to put under the picture (encoded as AAC). Any sample rate, mono or stereo."}),
                "fps": (
                    "FLOAT",
                    {"default": 25.0, "min": 1.0, "max": 240.0, "step": 0.001, "round": False,
                     "tooltip": "Frames per second. 23.976 and 29.97 are encoded as exact NTSC rates."},
                ),
                "duration_policy": (
                    list(mux_stage.DURATION_POLICIES),
                    {"default": "match_audio",
                     "tooltip": "match_audio: the video follows the audio (hold the last frame or trim frames). "
                     "match_video: the audio follows the video (pad with silence or trim)."},
                ),
                "audio_offset_ms": (
                    "FLOAT",
                    {"default": 0.0, "min": -5000.0, "max": 5000.0, "step": 1.0,
                     "tooltip": "Delay (+) or advance (-) the audio against the picture, made by padding or "
                     "dropping samples."},
                ),
                "filename_prefix": (
                    "STRING",
                    {"default": "TalkingHead/talkinghead",
                     "tooltip": "Name of the file in the output folder; may start with a subfolder. A counter is added."},
                ),
                "crf": (
                    "INT",
                    {"default": 18, "min": 0, "max": 51,
                     "tooltip": "H.264 quality: lower is better and larger. 18 looks lossless to most eyes."},
                ),
                "watermark": ("BOOLEAN", {
                    "default": True, "label_on": "on", "label_off": "OFF",
                    "tooltip": "Invisible watermark with a 64-bit payload (generator, clip id, time) that survives "
                    "re-encoding, resizing and cropping; `talkinghead verify` reads it. On by default."}),
                "content_credentials": ("BOOLEAN", {
                    "default": True, "label_on": "on", "label_off": "OFF",
                    "tooltip": "Sign the MP4 with C2PA content credentials (made by an AI model, by this pack, "
                    "from which inputs). Uses your certificate from the config folder if present, else a local "
                    "one made once (reported as untrusted). On by default."}),
                "visible_label": ("BOOLEAN", {"default": False,
                                              "tooltip": "Also draw a visible label such as 'AI-generated'."}),
                "label_text": ("STRING", {"default": "AI-generated", "tooltip": "Text of the visible label, drawn in a corner of every frame when visible_label is on."}),
                "label_position": (list(POSITIONS), {"default": "bottom_right",
                                                     "tooltip": "Which corner of the frame the visible label is drawn in (only with visible_label on)."}),
            },
            "optional": {
                "watermark_strength": ("FLOAT", {
                    "default": 1.0, "min": MIN_STRENGTH, "max": MAX_STRENGTH, "step": 0.05,
                    "tooltip": "Amplitude of the invisible watermark. 1.0: invisible (PSNR >= 40 dB), read after "
                    "re-encoding, 50% downscale, crops, VP9, brightness/contrast, fps changes. 1.7: also read "
                    "after a 50% downscale followed by heavy recompression (CRF 28), at PSNR ~36 dB, which may "
                    "show as faint grain on flat backgrounds. Below 1.0: fainter and less robust."}),
                "images": ("IMAGE", {"tooltip": "Video frames, in order. One image is held for the whole audio. "
                                     "Connect this or frame_stream."}),
                "frame_stream": ("TH_FRAME_STREAM", {
                    "tooltip": "Frames from Temporal Sampler's frame_stream: rendered while encoding, so long "
                    "clips never sit in memory. Used instead of images when both are connected."}),
            },
        }

    def mux(self, audio, fps, duration_policy, audio_offset_ms, filename_prefix, crf, watermark=True,
            content_credentials=True, visible_label=False, label_text="AI-generated", label_position="bottom_right",
            watermark_strength=1.0, images=None, frame_stream=None):
        if frame_stream is not None:
            if abs(float(frame_stream.fps) - float(fps)) > 1e-6:
                raise InputError("fps", f"is {fps:g} but the frame stream was made at {float(frame_stream.fps):g} fps "
                                 "(the Viseme Aligner's fps)", "Set the same fps on the Viseme Aligner and on Mux.")
            frames, frame_count = frame_stream.images(), len(frame_stream)
        elif images is not None:
            frames = comfy_env.image_batch_to_numpy(images)
            frame_count = len(frames)
        else:
            raise InputError("images", "nothing is connected, and neither is frame_stream",
                             "Connect the frames: an IMAGE batch to images, or Temporal Sampler's frame_stream.")
        clip = comfy_env.audio_to_clip(audio, "audio")
        output_dir = comfy_env.output_directory()
        target = next_output_path(output_dir, filename_prefix, "mp4")
        published = publish(
            frames,
            clip,
            fps,
            target.path,
            watermark=bool(watermark),
            watermark_strength=float(watermark_strength),
            content_credentials=bool(content_credentials),
            label=LabelConfig(text=label_text, position=label_position) if visible_label else None,
            reference_image_sha256=getattr(frame_stream, "reference_image_sha256", None),
            identity=configured_identity(),
            duration_policy=duration_policy,
            audio_offset_ms=audio_offset_ms,
            crf=crf,
            progress=comfy_env.progress_callback(frame_count),
        )
        result = published.mux
        for note in published.notes:
            logger.info("Mux: %s", note)
        video = VideoFromFile(result.path) if VideoFromFile is not None else MuxedVideo(result.path)
        preview = {"filename": os.path.basename(result.path), "subfolder": target.subfolder, "type": "output"}
        return {
            "ui": {"images": [preview], "animated": (True,), "talkinghead_mux": [published.to_dict()]},
            "result": (result.path, video),
        }
