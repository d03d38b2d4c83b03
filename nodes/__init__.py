"""ComfyUI node adapters: unpack ComfyUI types, call one pipeline function, pack the results.

The node classes (which need torch) are listed in `registry`; this package itself imports nothing,
so `talkinghead speak` and the other torch-free commands start without torch.
"""
