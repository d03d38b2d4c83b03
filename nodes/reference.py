"""ReferenceEncoder node: IMAGE (+ consent, optional VAE) -> Reference, preview, aligned face, report."""

from __future__ import annotations

import logging

from ..pipeline.core.output_paths import next_output_path
from ..pipeline.face.encoder import EncoderConfig, encode_reference
from . import comfy_env

logger = logging.getLogger("talkinghead")

REFERENCE = "TH_REFERENCE"
BACKENDS = ("auto", "mediapipe", "dlib")
NO_VAE = "none"


class TalkingHeadReferenceEncoder:
    CATEGORY = "TalkingHead/reference"
    DESCRIPTION = (
        "Finds the face in the reference portrait: box, dense landmarks (478 with mediapipe, 68 with dlib), "
        "head pose, the canonical aligned face crop, and a quality report (resolution, lighting, visibility, "
        "pose) with advice. With a VAE, also encodes the face and the frame to latents for the diffusion "
        "engine. Requires your attestation that you have the consent of the person shown."
    )
    RETURN_TYPES = (REFERENCE, "IMAGE", "IMAGE", "STRING")
    RETURN_NAMES = ("reference", "preview", "aligned_face", "report")
    OUTPUT_TOOLTIPS = (
        "The encoded reference (face geometry, pose, quality, latents) for TemporalSampler engines.",
        "The portrait with the face box, landmarks and pose axes drawn.",
        "The face warped to the canonical crop (eyes level, fixed positions).",
        "The quality report and notes as text.",
    )
    OUTPUT_NODE = True
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The reference portrait: any size up to 8000 px, colour or "
                                    "greyscale. Only the first image of a batch is used."}),
                "consent": ("BOOLEAN", {
                    "default": False, "label_on": "I have their consent", "label_off": "not confirmed",
                    "tooltip": "Attest that you have the consent of the person shown to animate their face. "
                    "The node refuses to run without it; the attestation is recorded in the reference."}),
                "face_index": ("INT", {"default": 0, "min": 0, "max": 32, "step": 1,
                                       "tooltip": "Which face to use when there are several: 0 is the largest "
                                       "(faces of about equal size count left to right)."}),
                "backend": (list(BACKENDS), {
                    "default": "auto",
                    "tooltip": "Face detector and landmarks. auto: mediapipe (478 points, fast) when installed, "
                    "else dlib (68 points)."}),
                "crop_size": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 64,
                                      "tooltip": "Side of the aligned face crop in pixels (a multiple of 64)."}),
                "vae_name": ([NO_VAE] + comfy_env.list_models("vae"), {
                    "default": NO_VAE,
                    "tooltip": "Optional VAE (models/vae: a .safetensors file or a diffusers AutoencoderKL "
                    "folder) to encode the face and frame to latents for the diffusion engine. Never downloaded."}),
                "save_reference": ("BOOLEAN", {
                    "default": False,
                    "tooltip": "Also save the reference to the output folder: a .json file plus a .safetensors "
                    "file with the crop, frame and latents."}),
                "filename_prefix": ("STRING", {"default": "TalkingHead/reference",
                                               "tooltip": "Name of saved files in the output folder."}),
            },
        }

    def encode(self, image, consent, face_index, backend, crop_size, vae_name, save_reference, filename_prefix):
        frames = comfy_env.image_batch_to_numpy(image)
        vae_path = None if vae_name in (None, "", NO_VAE) else comfy_env.resolve_model("vae", vae_name, "vae_name")
        encoded = encode_reference(frames[0], consent=consent, face_index=int(face_index), backend=backend,
                                   vae=vae_path, config=EncoderConfig(crop_size=int(crop_size)),
                                   progress=comfy_env.progress_callback(5))
        reference = encoded.reference
        if len(frames) > 1:
            reference.warnings.append(f"the image input held {len(frames)} images; the first was used")
        for warning in reference.warnings:
            logger.warning("ReferenceEncoder: %s", warning)
        ui = {
            "images": comfy_env.preview_ui(encoded.preview, "TalkingHead/reference"),
            "text": [encoded.report_text],
            "talkinghead_reference": [{"face_count": reference.face_count, "quality_ok": reference.quality.ok,
                                       "warnings": reference.warnings,
                                       "checks": [{"factor": c.factor, "group": c.group, "verdict": c.verdict,
                                                   "value": c.value_text(), "advice": c.advice}
                                                  for c in reference.quality.checks]}],
        }
        if save_reference:
            target = next_output_path(comfy_env.output_directory(), filename_prefix, "json")
            reference.save(target.path)
            ui["files"] = [{"filename": target.filename, "subfolder": target.subfolder, "type": "output"}]
        return {
            "ui": ui,
            "result": (reference, comfy_env.numpy_to_image_batch(encoded.preview),
                       comfy_env.numpy_to_image_batch(reference.aligned_crop), encoded.report_text),
        }
