"""VisemeAligner node: AUDIO (+ transcript or Speak's timings) -> VisemeTrack + timeline preview."""

from __future__ import annotations

import json
import logging

from ..pipeline.core.audio_dsp import to_mono
from ..pipeline.core.output_paths import save_json
from ..pipeline.lipsync import rhubarb, aligner as viseme_aligner, preview as viseme_preview
from . import comfy_env
from .speak import SPEECH_TIMINGS

logger = logging.getLogger("talkinghead")

VISEME_TRACK = "TH_VISEME_TRACK"
EXPORTS = ("none", "track_json", "rhubarb_json", "both")
NO_PHONEME_MODEL = "(none)"
PHONEME_KIND = "phoneme_ctc"  # models/phoneme_ctc (pipeline/lipsync/phoneme_ctc.py)
comfy_env.register_model_folder(PHONEME_KIND)
WHISPER_KIND = "whisper"  # models/whisper: faster-whisper (CTranslate2) folders (pipeline/lipsync/whisper_asr.py)
comfy_env.register_model_folder(WHISPER_KIND)
BUNDLED_WHISPER = "tiny.en (asr extra)"
#: track methods whose words came from recognition, shown on the node as "heard: ..."
RECOGNISED_METHODS = ("whisper", "recognition", "acoustic")


def _save_json(payload: dict, prefix: str) -> dict:
    target = save_json(comfy_env.output_directory(), prefix, payload)
    return {"filename": target.filename, "subfolder": target.subfolder, "type": "output"}


def timeline_ui(track, audio_ref) -> dict:
    """What the editor's timeline widget draws: words, phones, the dominant viseme and the jaw opening
    per frame (times in seconds, values 0..1, rounded for a small message), and the audio to play."""
    from ..pipeline.lipsync.track import VISEMES

    weights = getattr(track, "viseme_weights", None)
    dominant = weights.argmax(axis=1).tolist() if weights is not None and len(weights) else []
    jaw = track.mouth_param("jaw_open").astype("float64").round(3).tolist() if track.num_frames else []
    return {
        "fps": float(track.fps), "duration_s": float(track.duration_s), "method": track.method,
        "words": [[w.word, round(w.start_s, 3), round(w.end_s, 3)] for w in track.words],
        "phones": [[p.phoneme, round(p.start_s, 3), round(p.end_s, 3)] for p in track.phones],
        "viseme_names": list(VISEMES), "visemes": dominant, "jaw_open": jaw, "audio": audio_ref,
        # the words recognition heard (none when they were given: transcript or Speak's timings)
        "heard": track.transcript if track.method in RECOGNISED_METHODS else "",
        "audio_quality": track.audio_quality,
    }


class TalkingHeadVisemeAligner:
    CATEGORY = "TalkingHead/speech"
    DESCRIPTION = (
        "Turns speech into mouth motion: timed words and phonemes, then per video frame the weights of the "
        "15 visemes and the mouth parameters (jaw open, lip width, rounding, closure, lip tuck). Uses Speak's "
        "exact timings when connected, else forced alignment with the transcript, else speech recognition "
        "(Whisper with the asr extra) whose words are then aligned; the words recognised come out as `transcript`."
    )
    RETURN_TYPES = (VISEME_TRACK, "IMAGE", "STRING", "STRING")
    RETURN_NAMES = ("viseme_track", "timeline", "rhubarb_json", "transcript")
    OUTPUT_TOOLTIPS = (
        "The VisemeTrack for TemporalSampler engines (JSON-serialisable).",
        "The timeline drawn: waveform, words, phonemes, viseme strip, jaw-open curve.",
        "Rhubarb Lip Sync compatible JSON (mouthCues A-H, X) for Blender, Spine, Adobe Animate scripts.",
        "The words the track was made from: your transcript, Speak's words, or what recognition heard. Correct "
        "it and give it back as the transcript to align exactly.",
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
                "phoneme_model": (
                    [NO_PHONEME_MODEL] + comfy_env.list_models(PHONEME_KIND),
                    {"default": NO_PHONEME_MODEL,
                     "tooltip": "Optional phoneme recogniser used when there is no usable transcript, in place "
                     "of the built-in one: a wav2vec2 phoneme CTC folder (e.g. facebook/wav2vec2-lv-60-espeak-cv-ft "
                     "or wav2vec2-xlsr-53-espeak-cv-ft, safetensors) in models/phoneme_ctc. Aims at more exact mouth "
                     "shapes without a transcript, also for other languages; slower. Never downloaded."},
                ),
                "recogniser": (
                    list(viseme_aligner.RECOGNISERS),
                    {"default": "auto",
                     "tooltip": "Speech recognition when there is no transcript. auto: Whisper where it is installed "
                     "(the asr extra: pip install \"talkinghead[asr]\"), else pocketsphinx. whisper: stop with an error "
                     "when it is missing. pocketsphinx: the built-in word search (about half the phones right)."},
                ),
                "whisper_model": (
                    [BUNDLED_WHISPER] + comfy_env.list_models(WHISPER_KIND, extensions=()),
                    {"default": BUNDLED_WHISPER,
                     "tooltip": "Which Whisper model recognises the words: the English tiny.en that the asr extra "
                     "installs, or a faster-whisper (CTranslate2) folder in models/whisper, e.g. a larger or "
                     "multilingual Whisper converted with ct2-transformers-converter. Never downloaded."},
                ),
            },
        }

    def align(self, audio, fps, transcript, language, export, filename_prefix, speech_timings=None,
              phoneme_model=NO_PHONEME_MODEL, recogniser="auto", whisper_model=BUNDLED_WHISPER):
        clip = comfy_env.audio_to_clip(audio, "audio")
        model_path = None
        if phoneme_model not in (None, "", NO_PHONEME_MODEL):
            model_path = comfy_env.resolve_model(PHONEME_KIND, phoneme_model, "phoneme_model")
        asr_model = None
        if whisper_model not in (None, "", BUNDLED_WHISPER):
            asr_model = comfy_env.resolve_model(WHISPER_KIND, whisper_model, "whisper_model")
        track = viseme_aligner.align_speech(
            clip, fps=fps, transcript=transcript, language=language, speech_timings=speech_timings,
            progress=comfy_env.progress_callback(3), phoneme_model=model_path, recogniser=recogniser,
            asr_model=asr_model,
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
        # The editor draws the timeline itself from talkinghead_timeline (web/talkinghead.js), playable;
        # the picture of it is the `timeline` output.
        ui = {
            "talkinghead_timeline": [timeline_ui(track, comfy_env.temp_audio_ui(clip, "TalkingHead/visemes_audio"))],
            "text": [f"{track.method}: {len(track.words)} words, {len(track.phones)} phones, "
                     f"{track.num_frames} frames"
                     + (f"\nheard: {track.transcript}" if track.method in RECOGNISED_METHODS and track.transcript else "")
                     + "".join(f"\n{w}" for w in track.warnings)
                     + "".join(f"\naudio {c['factor']} {c['value_text']}: {c['advice']}"
                               for c in track.audio_quality.get("checks", []) if c["verdict"] != "pass")],
            "talkinghead_visemes": [{"method": track.method, "warnings": track.warnings,
                                     "num_frames": track.num_frames, "alignment_score": track.alignment_score,
                                     "transcript": track.transcript}],
        }
        if saved:
            ui["files"] = saved
        return {
            "ui": ui,
            "result": (track, comfy_env.numpy_to_image_batch(timeline), json.dumps(rhubarb_payload), track.transcript),
        }
