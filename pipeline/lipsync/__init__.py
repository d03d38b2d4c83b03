"""VisemeAligner: speech -> timed phonemes -> per-frame visemes, mouth parameters and prosody
(`track.VisemeTrack`). Entry point: `aligner.align_speech`; previews in `preview`, Rhubarb export in `rhubarb`."""
