"""ReferenceEncoder: a portrait -> face box, landmarks, pose, quality report and (with a VAE) latents
(`reference.Reference`). Entry point: `encoder.encode_reference`."""
