"""Speak node: script text -> AUDIO + the synthesiser's exact phoneme and word timings."""

from __future__ import annotations

import logging

from ..pipeline.speech import speak as speak_stage
from . import comfy_env

logger = logging.getLogger("talkinghead")

SPEECH_TIMINGS = "TH_SPEECH_TIMINGS"


class TalkingHeadSpeak:
    CATEGORY = "TalkingHead/inputs"
    DESCRIPTION = (
        "Speaks a script offline with espeak-ng. Besides the audio it gives the exact time of every "
        "phoneme and word, which the VisemeAligner uses as they are."
    )
    RETURN_TYPES = ("AUDIO", SPEECH_TIMINGS)
    RETURN_NAMES = ("audio", "speech_timings")
    OUTPUT_TOOLTIPS = (
        "The speech, mono, at espeak-ng's sample rate (22050 Hz).",
        "Phoneme and word timings in seconds from the first sample (JSON-serialisable).",
    )
    FUNCTION = "speak"

    @classmethod
    def INPUT_TYPES(cls):
        # One entry per voice, by its own language code ("en-us", "de"): what users type elsewhere too.
        voices = sorted({voice.languages[0] for voice in speak_stage.list_voices() if voice.languages})
        default = speak_stage.SpeakConfig().voice
        return {
            "required": {
                "text": (
                    "STRING",
                    {
                        "multiline": True,
                        "default": "Hello! I am a talking head, and every word I say moves my lips.",
                        "tooltip": "What the head says. Any length: long scripts are synthesised sentence by sentence.",
                    },
                ),
                "voice": (
                    voices,
                    {"default": default if default in voices else voices[0], "tooltip": "espeak-ng voice, by language code (en-us, de, fr...): sets pronunciation and accent. Use the same language on the Viseme Aligner."},
                ),
                "rate_wpm": (
                    "INT",
                    {"default": 175, "min": 80, "max": 450, "step": 5, "tooltip": "Speaking rate in words per minute."},
                ),
                "pitch": (
                    "INT",
                    {"default": 50, "min": 0, "max": 99, "tooltip": "Voice pitch, 0 (low) to 99 (high); 50 is the voice's normal."},
                ),
            }
        }

    def speak(self, text, voice, rate_wpm, pitch):
        config = speak_stage.SpeakConfig(voice=voice, rate_wpm=rate_wpm, pitch=pitch)
        spoken = speak_stage.speak(text, config, progress=comfy_env.progress_callback(max(len(text), 1)))
        for note in spoken.notes:
            logger.warning("Speak: %s", note)
        return (comfy_env.clip_to_audio(spoken.audio), spoken.timings)
