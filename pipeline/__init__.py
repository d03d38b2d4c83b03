"""Talking Head pipeline: the standalone stages behind the ComfyUI nodes. Never imports ComfyUI."""
