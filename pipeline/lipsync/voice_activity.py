"""Where in a clip someone speaks: a voice-activity measure that tells speech from music, noise and tones.

With the `asr` extra this is Silero VAD (the ONNX model faster-whisper ships; ~0.003 CPU s per s
of audio), a neural detector trained to reject music, noise and steady tones. Measured on made-up
clips here: speech (espeak and a real recording) 1.00 of the clip, white and pink noise, a 220 Hz
square wave and silence 0.00, a synthetic piano-and-drum tune 0.18. Without the extra the energy
measure of `acoustic_phones` stands in; it finds silence and steady noise but takes any loud,
changing sound (music) for speech, and says so.

The VisemeAligner keeps the mouth at rest outside the regions found here, so music before, between
or after the words never moves the lips.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..core.audio import AudioClip
from ..core.audio_dsp import mono_at
from ..speech.timing import PhonemeTiming
from .acoustic_phones import AcousticConfig, speech_mask_s
from .track import SILENCE

SAMPLE_RATE = 16000


@dataclass
class VadConfig:
    """Silero VAD settings, and how the regions are used.

    Attributes:
        threshold: speech probability (0..1) above which a 32 ms window is speech.
        min_silence_ms: a pause shorter than this stays inside the speech region.
        pad_ms: each region is widened by this on both sides (onsets and the last syllable's release).
        min_speech_share: a clip with less speech than this share (and less than min_speech_s)
            holds no speech at all.
        min_speech_s: see min_speech_share.
        block_s: the audio is analysed this many seconds at a time (memory stays flat for long clips).
    """

    threshold: float = 0.5
    min_silence_ms: int = 300
    pad_ms: int = 120
    min_speech_share: float = 0.02
    min_speech_s: float = 0.25
    block_s: float = 60.0


@dataclass
class VoiceActivity:
    """Speech regions of a clip.

    Attributes:
        regions_s: [(start_s, end_s)] in order, seconds from the first sample.
        duration_s: length of the clip.
        method: "silero" (tells speech from music and noise) or "energy" (does not).
        notes: what a user should know about the measure.
    """

    regions_s: list[tuple[float, float]] = field(default_factory=list)
    duration_s: float = 0.0
    method: str = "silero"
    notes: list[str] = field(default_factory=list)

    @property
    def speech_s(self) -> float:
        return float(sum(end - start for start, end in self.regions_s))

    @property
    def speech_share(self) -> float:
        return self.speech_s / self.duration_s if self.duration_s > 0 else 0.0

    def has_speech(self, config: Optional[VadConfig] = None) -> bool:
        config = config or VadConfig()
        return self.speech_share >= config.min_speech_share or self.speech_s >= config.min_speech_s


def silero_available() -> bool:
    try:
        from faster_whisper.vad import get_speech_timestamps  # noqa: F401, PLC0415 - the asr extra
    except ImportError:
        return False
    return True


def detect_speech(audio: AudioClip, config: Optional[VadConfig] = None) -> VoiceActivity:
    """Speech regions of `audio` (any rate, mono or stereo): Silero VAD with the asr extra, else energy."""
    config = config or VadConfig()
    audio = AudioClip(audio.samples, audio.sample_rate).validated("audio")
    if not silero_available():
        return _energy_regions(audio)
    from faster_whisper.vad import VadOptions, get_speech_timestamps  # noqa: PLC0415

    samples = mono_at(audio, SAMPLE_RATE).astype(np.float32)
    options = VadOptions(threshold=config.threshold, min_silence_duration_ms=config.min_silence_ms,
                         speech_pad_ms=config.pad_ms, min_speech_duration_ms=0)
    regions: list[tuple[float, float]] = []
    block = int(config.block_s * SAMPLE_RATE)
    # block by block: the detector's working memory grows with its input (+425 MB for 30 minutes at once)
    for offset in range(0, len(samples), block):
        piece = samples[offset:offset + block]
        for stamp in get_speech_timestamps(piece, options, sampling_rate=SAMPLE_RATE):
            start = round((offset + stamp["start"]) / SAMPLE_RATE, 3)
            end = round((offset + min(stamp["end"], len(piece))) / SAMPLE_RATE, 3)
            if regions and start - regions[-1][1] <= config.min_silence_ms / 1000.0:
                regions[-1] = (regions[-1][0], end)          # one region across a block boundary
            else:
                regions.append((start, end))
    return VoiceActivity(regions, audio.duration_s, "silero")


def _energy_regions(audio: AudioClip) -> VoiceActivity:
    config = AcousticConfig()
    mask = speech_mask_s(audio, config=config)
    regions, start = [], None
    for i, speech in enumerate(np.append(mask, False)):
        if speech and start is None:
            start = i
        elif not speech and start is not None:
            regions.append((round(start * config.hop_s, 3), round(i * config.hop_s, 3)))
            start = None
    return VoiceActivity(regions, audio.duration_s, "energy", [
        "voice activity: measured from loudness only (install the asr extra for Silero VAD): music and other "
        "loud sounds are taken for speech."])


def rest_outside(phones: list[PhonemeTiming], activity: VoiceActivity) -> tuple[list[PhonemeTiming], float]:
    """The phones with every one whose middle lies outside the speech regions turned into silence
    (adjacent silences merged); and the seconds of speech phones so silenced."""
    out: list[PhonemeTiming] = []
    silenced = 0.0
    for phone in phones:
        middle = 0.5 * (phone.start_s + phone.end_s)
        label = phone.phoneme
        if label != SILENCE and not any(start <= middle <= end for start, end in activity.regions_s):
            label = SILENCE
            silenced += phone.end_s - phone.start_s
        if out and label == SILENCE and out[-1].phoneme == SILENCE:
            out[-1] = PhonemeTiming(SILENCE, out[-1].start_s, phone.end_s)
        else:
            out.append(PhonemeTiming(label, phone.start_s, phone.end_s))
    return out, silenced
