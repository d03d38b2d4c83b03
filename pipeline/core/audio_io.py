"""Reading audio files into an AudioClip, with PyAV (FFmpeg's libraries)."""

from __future__ import annotations

import os

import numpy as np

from .audio import AudioClip
from .errors import InputError

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm", ".mp4")


def load_audio(path: str, input_name: str = "audio") -> AudioClip:
    """Decodes every audio sample of the first audio stream of `path`.

    Returns:
        AudioClip with float32 samples [channels, num_samples] at the file's own sample rate.
    """
    import av

    if not os.path.isfile(path):
        raise InputError(input_name, f"no audio file at {path!r}", "Check the file name and folder.")
    try:
        with av.open(path) as container:
            if not container.streams.audio:
                raise InputError(
                    input_name, f"{os.path.basename(path)!r} holds no audio stream", "Choose a file with sound in it."
                )
            stream = container.streams.audio[0]
            chunks = []
            sample_rate = None
            for frame in container.decode(stream):
                sample_rate = frame.sample_rate
                # to_ndarray gives [channels, n] for planar formats and [1, n*channels] for packed.
                array = frame.to_ndarray()
                if not frame.format.is_planar:
                    array = array.reshape(-1, len(frame.layout.channels)).T
                if np.issubdtype(array.dtype, np.integer):
                    array = array.astype(np.float32) / float(np.iinfo(array.dtype).max + 1)
                chunks.append(array.astype(np.float32, copy=False))
    except av.error.FFmpegError as exc:
        raise InputError(
            input_name,
            f"{os.path.basename(path)!r} could not be decoded ({exc})",
            f"Use a readable audio file ({', '.join(AUDIO_EXTENSIONS)}).",
        ) from exc
    if not chunks:
        raise InputError(input_name, f"{os.path.basename(path)!r} holds no audio samples", "Choose a file with sound in it.")
    return AudioClip(np.concatenate(chunks, axis=1), int(sample_rate)).validated(input_name)
