"""VisemeAligner node: AUDIO (+ transcript or Speak's timings) -> VisemeTrack + timeline preview."""

from __future__ import annotations

import json
import logging

from ..pipeline import rhubarb, viseme_aligner, viseme_preview
from ..pipeline.audio_dsp import to_mono
from ..pipeline.output_paths import save_json
from . import comfy_env
from .speak import SPEECH_TIMINGS

logger = logging.getLogger("talkinghead")

VISEME_TRACK = "TH_VISEME_TRACK"
EXPORTS = ("none", "track_json", "rhubarb_json", "both")


def _save_json(payload: dict, prefix: str) -> dict:
    target = save_json(comfy_env.output_directory(), prefix, payload)
    return {"filename": target.filename, "subfolder": target.subfolder, "type": "output"}


class TalkingHeadVisemeAligner:
    CATEGORY = "TalkingHead/speech"
    DESCRIPTION = (
        "Turns speech into mouth motion: timed words and phonemes, then per video frame the weights of the "
        "15 visemes and the mouth parameters (jaw open, lip width, rounding, closure, lip tuck). Uses Speak's "
        "exact timings when connected, else forced alignment with the transcript, else speech recognition."
    )
    RETURN_TYPES = (VISEME_TRACK, "IMAGE", "STRING")
    RETURN_NAMES = ("viseme_track", "timeline", "rhubarb_json")
    OUTPUT_TOOLTIPS = (
        "The VisemeTrack for TemporalSampler engines (JSON-serialisable).",
        "The timeline drawn: waveform, words, phonemes, viseme strip, jaw-open curve.",
        "Rhubarb Lip Sync compatible JSON (mouthCues A-H, X) for Blender, Spine, Adobe Animate scripts.",
    )
    OUTPUT_NODE = True
    FUNCTION = "align"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "audio": ("AUDIO", {"tooltip": "The speech. Any sample rate, mono or stereo, 0.2 s to an hour."}),
                "fps": (
                    "FLOAT",
                    {"default": 25.0, "min": 1.0, "max": 240.0, "step": 0.001, "round": False,
                     "tooltip": "Frame rate of the video the track drives; use the same value as the Mux node."},
                ),
                "transcript": (
                    "STRING",
                    {"multiline": True, "default": "",
                     "tooltip": "What is said (optional). With it, phonemes are placed by forced alignment, "
                     "which is far more exact than recognition. A transcript that does not match the audio is "
                     "detected and ignored, with a warning."},
                ),
                "language": (
                    "STRING",
                    {"default": "en-us",
                     "tooltip": "Language code of the speech. English uses the speech models; other languages "
                     "get mouth motion estimated from the sound (with a warning)."},
                ),
                "export": (
                    list(EXPORTS),
                    {"default": "none",
                     "tooltip": "Also save the track to the output folder: our JSON, Rhubarb JSON, or both."},
                ),
                "filename_prefix": (
                    "STRING",
                    {"default": "TalkingHead/visemes", "tooltip": "Name of exported files in the output folder."},
                ),
            },
            "optional": {
                "speech_timings": (
                    SPEECH_TIMINGS,
                    {"tooltip": "Connect Speak's speech_timings when the audio comes from Speak: its exact "
                     "phoneme times are then used as they are."},
                ),
            },
        }

    def align(self, audio, fps, transcript, language, export, filename_prefix, speech_timings=None):
        clip = comfy_env.audio_to_clip(audio, "audio")
        track = viseme_aligner.align_speech(
            clip, fps=fps, transcript=transcript, language=language, speech_timings=speech_timings,
            progress=comfy_env.progress_callback(3),
        )
        for warning in track.warnings:
            logger.warning("VisemeAligner: %s", warning)
        rhubarb_payload = rhubarb.track_to_rhubarb(track)
        timeline = viseme_preview.render_timeline(track, to_mono(clip), clip.sample_rate)
        saved = []
        if export in ("track_json", "both"):
            saved.append(_save_json(track.to_dict(), filename_prefix))
        if export in ("rhubarb_json", "both"):
            saved.append(_save_json(rhubarb_payload, filename_prefix + "_rhubarb"))
        ui = {
            "images": comfy_env.preview_ui(timeline, "TalkingHead/visemes"),
            "text": [f"{track.method}: {len(track.words)} words, {len(track.phones)} phones, "
                     f"{track.num_frames} frames" + "".join(f"\n{w}" for w in track.warnings)],
            "talkinghead_visemes": [{"method": track.method, "warnings": track.warnings,
                                     "num_frames": track.num_frames, "alignment_score": track.alignment_score}],
        }
        if saved:
            ui["files"] = saved
        return {
            "ui": ui,
            "result": (track, comfy_env.numpy_to_image_batch(timeline), json.dumps(rhubarb_payload)),
        }
