"""Watermark and Mux: frames + audio -> a watermarked, C2PA-signed H.264/AAC MP4 with its A/V offset
measured. Entry point: `publish.publish`; the parts are `watermark`, `provenance`, `visible_label`, `mux`."""
