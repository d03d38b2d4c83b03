"""ArtifactReport node: IMAGE batch + AUDIO (+ reference, viseme track) -> report JSON + plot."""

from __future__ import annotations

import logging

from ..pipeline.report.artifact_report import score_clip
from ..pipeline.report.plot import render_artifact_plot
from . import comfy_env
from .reference import REFERENCE
from .visemes import VISEME_TRACK

logger = logging.getLogger("talkinghead")


class TalkingHeadArtifactReport:
    CATEGORY = "TalkingHead/checks"
    DESCRIPTION = (
        "Scores a talking-head clip, ours or anyone's, from its frames and audio: lip-sync lag (ms), mouth "
        "opening vs the intended track, eye aperture and blinks, identity drift against the reference, flicker "
        "in still regions, and frames where the face is lost or jumps."
    )
    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("report_json", "plot")
    OUTPUT_TOOLTIPS = (
        "The report as JSON: summary numbers, broken frames and the per-frame measurements.",
        "The measurements over time (1280x480): mouth vs speech, eyes, identity, flicker, broken frames in red.",
    )
    OUTPUT_NODE = True
    FUNCTION = "score"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The clip's frames, in order (e.g. the animation's output)."}),
                "audio": ("AUDIO", {"tooltip": "The clip's soundtrack; its first sample plays with the first frame."}),
                "fps": (
                    "FLOAT",
                    {"default": 25.0, "min": 1.0, "max": 240.0, "step": 0.001, "round": False,
                     "tooltip": "Frame rate of the clip, frames per second; the same value as the Mux node."},
                ),
            },
            "optional": {
                "reference": (
                    REFERENCE,
                    {"tooltip": "The reference portrait the clip should look like. Without it, identity drift "
                     "is measured against the first frame with a face."},
                ),
                "viseme_track": (
                    VISEME_TRACK,
                    {"tooltip": "The track the clip was animated from: its intended lip gap (jaw open, less closure and tuck) is correlated with the "
                     "re-measured mouth opening."},
                ),
            },
        }

    def score(self, images, audio, fps, reference=None, viseme_track=None):
        clip = comfy_env.audio_to_clip(audio, "audio")
        count = int(images.shape[0]) if hasattr(images, "shape") and len(images.shape) == 4 else 0
        # one frame at a time: the whole batch is never converted at once
        frames = (comfy_env.image_batch_to_numpy(images[i:i + 1])[0] for i in range(count))
        intended = None
        if viseme_track is not None and getattr(viseme_track, "mouth", None) is not None:
            intended = viseme_track.lip_gap()
        report = score_clip(frames, clip, fps, reference=reference, intended_mouth=intended,
                            progress=comfy_env.progress_callback(max(count, 1)), frames_name="images")
        for note in report.notes:
            logger.info("ArtifactReport: %s", note)
        plot = render_artifact_plot(report)
        text = report.summary_text()
        return {
            "ui": {
                "images": comfy_env.preview_ui(plot, "TalkingHead/artifacts"),
                "text": [text],
                "talkinghead_artifacts": [report.to_dict()["summary"]],
            },
            "result": (report.to_json(), comfy_env.numpy_to_image_batch(plot)),
        }
