"""Running ComfyUI graphs without the editor: in-process, or against a running server."""
