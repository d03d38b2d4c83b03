"""Watermark nodes: embed the invisible mark into an IMAGE batch, and detect it in one."""

from __future__ import annotations

import json
import time

import numpy as np

from ..pipeline.publish.publish import GENERATOR_ID
from ..pipeline.publish.watermark import (MAX_STRENGTH, MIN_STRENGTH, WatermarkEmbedder, config_for_strength, detect_frames,
                                          make_payload, parse_payload, psnr_floor_db)
from . import comfy_env


def _frames_u8(images, progress=None):
    count = int(images.shape[0])
    for i in range(count):
        frame = comfy_env.image_batch_to_numpy(images[i:i + 1])[0]
        yield np.clip(frame[..., :3] * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if progress is not None:
            progress(i + 1, count)


class TalkingHeadWatermark:
    CATEGORY = "TalkingHead/provenance"
    DESCRIPTION = (
        "Embeds the invisible watermark (64-bit payload: generator, clip id, time) into frames. Mux already "
        "marks what it encodes; use this node for frames that leave the graph another way."
    )
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "payload_hex")
    OUTPUT_TOOLTIPS = ("The frames with the mark (PSNR >= 40 dB at strength 1.0).", "The 64-bit payload embedded, as hex.")
    FUNCTION = "embed"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Frames to mark (all one size); every frame carries the same payload, invisibly (PSNR >= 40 dB)."}),
                "clip_id": ("INT", {"default": 0, "min": 0, "max": 65535,
                                    "tooltip": "16-bit id carried in the payload, to tell your clips apart."}),
            },
            "optional": {
                "strength": ("FLOAT", {
                    "default": 1.0, "min": MIN_STRENGTH, "max": MAX_STRENGTH, "step": 0.05,
                    "tooltip": "Amplitude of the mark. 1.0: invisible (PSNR >= 40 dB). 1.7: also read after a 50% "
                    "downscale followed by heavy recompression (CRF 28), at PSNR ~36 dB (may show as faint "
                    "grain on flat backgrounds). Below 1.0: fainter and less robust."}),
            },
        }

    def embed(self, images, clip_id, strength=1.0):
        payload = make_payload(GENERATOR_ID, int(clip_id), int(time.time()) & 0xFFFFFFFF)
        embedder = WatermarkEmbedder(payload, config_for_strength(strength, name="strength"))
        count = int(images.shape[0])
        report = comfy_env.progress_callback(count)
        marked = np.empty((count,) + tuple(images.shape[1:3]) + (3,), np.float32)
        for i, frame in enumerate(_frames_u8(images)):
            marked[i] = embedder.embed(frame) / np.float32(255.0)
            report(i + 1, count)
        shown = {"mode": "embed", "payload_hex": payload.hex(), "fields": parse_payload(payload), "frames": count,
                 "strength": float(strength), "psnr_floor_db": round(psnr_floor_db(strength), 2)}
        return {"ui": {"talkinghead_watermark": [shown]},
                "result": (comfy_env.numpy_to_image_batch(marked), payload.hex())}


class TalkingHeadWatermarkDetect:
    CATEGORY = "TalkingHead/provenance"
    DESCRIPTION = "Looks for the invisible watermark in frames and reports the payload, a confidence and coverage."
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report_json",)
    OUTPUT_TOOLTIPS = ("found, payload_hex, fields, confidence (z-score), frames_marked_share, frames_seen.",)
    OUTPUT_NODE = True
    FUNCTION = "detect"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "Frames of one clip (more frames: more confidence)."})}}

    def detect(self, images):
        result = detect_frames(_frames_u8(images, comfy_env.progress_callback(int(images.shape[0]))))
        payload = result.to_dict()
        if result.found:
            text = (f"watermark found: payload {result.payload.hex()} {parse_payload(result.payload)}, "
                    f"confidence z {result.confidence:.1f}, in {result.frames_marked_share:.0%} of "
                    f"{result.frames_seen} frames")
        else:
            text = f"no watermark found (confidence z {result.confidence:.1f}, {result.frames_seen} frames)"
        shown = {"mode": "detect", "found": result.found, "payload_hex": payload.get("payload_hex"),
                 "fields": payload.get("fields"), "confidence": payload.get("confidence"),
                 "frames_marked_share": payload.get("frames_marked_share"), "frames_seen": result.frames_seen}
        return {"ui": {"text": [text], "talkinghead_watermark": [json.loads(json.dumps(shown, default=str))]},
                "result": (json.dumps(payload, default=str),)}
