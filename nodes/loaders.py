"""Loader nodes that read the portrait and the speech from the input folder (or a built-in sample).

Core LoadImage / LoadAudio work with our nodes too; these exist so shipped workflows run headless
(`talkinghead run`) without ComfyUI, and offer real samples that need no download.
"""

from __future__ import annotations

import os

from ..pipeline.core import audio_io, portraits
from ..pipeline.core.content_hash import sha256_file
from . import comfy_env

SAMPLE_SPEECH = "(sample) speech, synthesised by espeak-ng"
SAMPLE_SPEECH_TEXT = (
    "Hello! I am a talking head. My lips follow every word you give me, "
    "and my picture carries a mark that says it was made by a machine."
)


def _input_files(extensions: tuple[str, ...]) -> list[str]:
    folder = comfy_env.input_directory_if_known()
    return portraits.list_input_files(folder, extensions) if folder else []


class TalkingHeadLoadImage:
    """Loads the reference portrait."""

    CATEGORY = "TalkingHead/inputs"
    DESCRIPTION = "Loads the reference portrait: an image from ComfyUI's input folder, or a built-in sample photo."
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("portrait",)
    OUTPUT_TOOLTIPS = ("The portrait as an IMAGE batch of one (float32 [1, H, W, 3]).",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        choices = [portraits.SAMPLE_PREFIX + name for name in portraits.SAMPLE_PORTRAITS]
        choices += _input_files(portraits.IMAGE_EXTENSIONS)
        return {
            "required": {
                "image": (
                    choices,
                    {
                        "default": choices[0],
                        "image_upload": True,
                        "tooltip": "A clear, front-facing photo of one face. '(sample) astronaut' ships with "
                        "scikit-image and needs no download. Upload your own with the button below.",
                    },
                ),
            }
        }

    @classmethod
    def IS_CHANGED(cls, image):
        if image.startswith(portraits.SAMPLE_PREFIX):
            return image
        path = portraits.safe_input_path(comfy_env.input_directory(), image, "image")
        return sha256_file(path) if os.path.isfile(path) else image

    def load(self, image):
        rgb = portraits.resolve_portrait(image, comfy_env.input_directory(), "image")
        return (comfy_env.numpy_to_image_batch(rgb),)


class TalkingHeadLoadAudio:
    """Loads the speech the head will say."""

    CATEGORY = "TalkingHead/inputs"
    DESCRIPTION = "Loads speech audio from ComfyUI's input folder, or a built-in sample sentence."
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    OUTPUT_TOOLTIPS = ("The speech as ComfyUI AUDIO, at the file's own sample rate.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        choices = [SAMPLE_SPEECH]
        choices += _input_files(audio_io.AUDIO_EXTENSIONS)
        return {
            "required": {
                "audio": (
                    choices,
                    {
                        "default": SAMPLE_SPEECH,
                        "tooltip": "Speech to lip-sync: wav, flac, mp3, ogg, m4a... in ComfyUI's input folder (to "
                        "upload a file, use core Load Audio: it connects here too). The sample is one sentence "
                        "spoken by espeak-ng, made on the spot (no download).",
                    },
                ),
            }
        }

    @classmethod
    def IS_CHANGED(cls, audio):
        if audio == SAMPLE_SPEECH:
            return audio
        path = portraits.safe_input_path(comfy_env.input_directory(), audio, "audio")
        return sha256_file(path) if os.path.isfile(path) else audio

    def load(self, audio):
        if audio == SAMPLE_SPEECH:
            from ..pipeline.speech.speak import SpeakConfig, speak

            clip = speak(SAMPLE_SPEECH_TEXT, SpeakConfig()).audio
        else:
            path = portraits.safe_input_path(comfy_env.input_directory(), audio, "audio")
            clip = audio_io.load_audio(path, "audio")
        return (comfy_env.clip_to_audio(clip),)
