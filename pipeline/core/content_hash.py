"""SHA-256 of files and of the media a clip is made from (audio samples, reference pixels), for provenance."""

from __future__ import annotations

import hashlib

import numpy as np

from .audio import AudioClip


def sha256_file(path: str, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def audio_sha256(audio: AudioClip) -> str:
    """SHA-256 of the samples (float32, little-endian, channel-major) followed by the rate."""
    digest = hashlib.sha256(np.ascontiguousarray(audio.samples, "<f4").tobytes())
    digest.update(int(audio.sample_rate).to_bytes(4, "little"))
    return digest.hexdigest()


def image_sha256(image: np.ndarray) -> str:
    """SHA-256 of uint8 RGB pixels [H, W, 3] followed by the height and width."""
    array = np.ascontiguousarray(image, np.uint8)
    digest = hashlib.sha256(array.tobytes())
    digest.update(int(array.shape[0]).to_bytes(4, "little") + int(array.shape[1]).to_bytes(4, "little"))
    return digest.hexdigest()
