"""Publishing a clip: optional visible label, invisible watermark, MP4 mux, C2PA content credentials.

    publish(frames, audio, fps, path) -> PublishResult

Order, each step on the output of the one before: the label is drawn into the frames, the
watermark is embedded on top (so it marks the final pixels), the frames and audio are muxed, then
the finished MP4 is signed (signing must be the last write: any later remux drops the manifest).
The watermark and the credentials are on by default; turning either off is an explicit argument
and is said in the notes.

Watermark payload (pipeline/watermark.make_payload): GENERATOR_ID | clip id | creation time. The
clip id is 16 bits of the SHA-256 of the audio samples and the reference image, so a detected mark
can be matched back to its inputs; the manifest carries the full hashes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..core.audio import AudioClip
from ..core.content_hash import audio_sha256
from .mux import MuxResult, mux
from .visible_label import LabelConfig, LabelPainter

#: The watermark's generator id for this pack ("tH").
GENERATOR_ID = 0x7448

#: Clips with at most this many pixels x frames (the watermark benchmark's 5 s, 512x512 clip) are
#: read back after writing: the mark's evidence grows with pixels x frames, and small, short clips
#: are where it can fall short (256 px, 43 frames: about 1 in 200 unreadable straight from our
#: encoder, 6 in 24 after another CRF 28 encode). Larger clips were never unreadable in the tests,
#: and skipping them keeps long renders from paying for a second decode.
READBACK_MAX_PIXEL_FRAMES = 512 * 512 * 125
GENERATOR_NAME = "Talking Head"


def generator_version() -> str:
    try:
        from importlib.metadata import version

        return version("talkinghead")
    except Exception:  # not installed as a distribution (e.g. a bare custom_nodes checkout)
        return "0.1.0"


@dataclass
class PublishResult:
    """What publish made.

    mux: the MuxResult (path, sync figures, frames_sha256 of the frames before label/watermark).
    watermark_payload_hex: the 64-bit payload embedded, or None with the watermark off.
    watermark_readable: for clips up to READBACK_MAX_PIXEL_FRAMES, whether the detector read the
        payload back from the written MP4; None when not checked (larger clips, or the mark off).
    credentials_state: "signed (untrusted local certificate)", "signed", or "off".
    notes: everything a user should know (what was turned off, signing notes, mux notes).
    """

    mux: MuxResult
    watermark_payload_hex: Optional[str]
    credentials_state: str
    notes: list[str] = field(default_factory=list)
    watermark_readable: Optional[bool] = None

    def to_dict(self) -> dict:
        out = self.mux.to_dict()
        out.update(watermark_payload_hex=self.watermark_payload_hex, credentials=self.credentials_state,
                   watermark_readable=self.watermark_readable, notes=list(self.notes))
        return out


def publish(frames: Any, audio: AudioClip, fps: float, output_path: str, *, watermark: bool = True,
            watermark_strength: float = 1.0, content_credentials: bool = True, label: Optional[LabelConfig] = None,
            reference_image_sha256: Optional[str] = None, identity: Any = None,
            unix_time_s: Optional[int] = None, **mux_kwargs) -> PublishResult:
    """Label, watermark, mux and sign one clip (see the module docstring).

    Args:
        frames, audio, fps, output_path, **mux_kwargs: as pipeline.publish.mux.mux.
        watermark: embed the invisible mark (default on).
        watermark_strength: the mark's amplitude factor, 0.5-2.0 (watermark.config_for_strength):
            1.0 invisible (PSNR >= 40 dB); 1.7 also survives a 50% downscale plus CRF 28.
        content_credentials: sign the MP4 with a C2PA manifest (default on).
        label: draw a visible label (default None: off).
        reference_image_sha256: hash of the portrait the clip animates, for the manifest.
        identity: provenance.SigningIdentity; None uses the local default identity.
        unix_time_s: creation time in the payload; None: now.
    """
    notes: list[str] = []
    filters = []
    if label is not None:
        filters.append(LabelPainter(label).paint)
    payload_hex = None
    clip_hash = hashlib.sha256((audio_sha256(audio) + (reference_image_sha256 or "")).encode()).digest()
    if watermark:
        from .watermark import WatermarkEmbedder, config_for_strength, make_payload, psnr_floor_db

        config = config_for_strength(watermark_strength)
        payload = make_payload(GENERATOR_ID, int.from_bytes(clip_hash[:2], "big"),
                               int(time.time() if unix_time_s is None else unix_time_s) & 0xFFFFFFFF)
        filters.append(WatermarkEmbedder(payload, config).embed_next)
        payload_hex = payload.hex()
        if float(watermark_strength) != 1.0:
            notes.append(f"watermark: strength {float(watermark_strength):g} (PSNR >= "
                         f"{psnr_floor_db(watermark_strength):.1f} dB; "
                         + ("may show as faint grain on flat areas)" if watermark_strength > 1.0
                            else "survives less re-encoding and resizing)"))
    else:
        notes.append("watermark: off (turned off by the user): nothing in the pictures says they were generated")

    def frame_filter(frame: np.ndarray) -> np.ndarray:
        for apply in filters:
            frame = apply(frame)
        return frame

    result = mux(frames, audio, fps, output_path, frame_filter=frame_filter if filters else None, **mux_kwargs)
    notes.extend(result.notes)
    readable = None
    if payload_hex is not None and result.width * result.height * result.frame_count <= READBACK_MAX_PIXEL_FRAMES:
        readable = _mark_reads_back(result, payload_hex, notes)
    state = "off"
    if content_credentials:
        from .provenance import ProvenanceInfo, sign_mp4

        info = ProvenanceInfo(GENERATOR_NAME, generator_version(), reference_image_sha256, audio_sha256(audio),
                              payload_hex)
        signed = sign_mp4(result.path, info, identity, input_name="output_path")
        notes.extend(signed.notes)
        state = "signed" if getattr(signed, "signer_source", "") == "user" else "signed (untrusted local certificate)"
    else:
        notes.append("content credentials: off (turned off by the user): the MP4 carries no C2PA manifest")
    return PublishResult(result, payload_hex, state, notes, readable)


def _mark_reads_back(result: MuxResult, payload_hex: str, notes: list[str]) -> bool:
    """Reads the mark back from the written MP4 (before signing, which does not touch the
    pictures); adds a note saying what a user can do when it cannot be read."""
    from .watermark import detect_file

    found = detect_file(result.path)
    if found.found and found.payload is not None and found.payload.hex() == payload_hex:
        return True
    notes.append(
        f"watermark: embedded, but it could not be read back from the written MP4 ({result.width}x"
        f"{result.height}, {result.frame_count} frames; sync confidence {found.confidence:.1f}): a small, short "
        "clip carries too little of the mark. Render at 384 px or more, or a longer clip, for a mark that "
        "detectors can find; the content credentials still say the clip was generated.")
    return False
