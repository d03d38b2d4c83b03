"""TemporalSampler: a Reference and a VisemeTrack -> frames over time. Entry points:
`weight_free.render_frames` (the default, no weights) and `diffusion.diffuse_frames` (local weights)."""
