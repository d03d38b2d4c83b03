"""Talking Head: ComfyUI entry point and the `talkinghead` package root.

ComfyUI imports this file from `custom_nodes/<folder>/` and reads NODE_CLASS_MAPPINGS,
NODE_DISPLAY_NAME_MAPPINGS and WEB_DIRECTORY. The node modules need torch, so they load lazily
(PEP 562 module __getattr__): `import talkinghead.pipeline` after `pip install .` works without
torch or ComfyUI.
"""

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]


def __getattr__(name):
    if name in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"):
        from .nodes import registry as nodes

        return getattr(nodes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
