"""ComfyUI node adapters: unpack ComfyUI types, call one pipeline function, pack the results.

Node type ids are global across every ComfyUI pack, so all of ours start with "TalkingHead".
"""

from .artifacts import TalkingHeadArtifactReport
from .loaders import TalkingHeadLoadAudio, TalkingHeadLoadImage
from .mux import TalkingHeadMux
from .prompt import TalkingHeadPromptRefiner
from .reference import TalkingHeadReferenceEncoder
from .sampler import TalkingHeadTemporalSampler
from .speak import TalkingHeadSpeak
from .visemes import TalkingHeadVisemeAligner
from .watermark import TalkingHeadWatermark, TalkingHeadWatermarkDetect

NODE_CLASS_MAPPINGS = {
    "TalkingHeadLoadImage": TalkingHeadLoadImage,
    "TalkingHeadLoadAudio": TalkingHeadLoadAudio,
    "TalkingHeadSpeak": TalkingHeadSpeak,
    "TalkingHeadPromptRefiner": TalkingHeadPromptRefiner,
    "TalkingHeadVisemeAligner": TalkingHeadVisemeAligner,
    "TalkingHeadReferenceEncoder": TalkingHeadReferenceEncoder,
    "TalkingHeadTemporalSampler": TalkingHeadTemporalSampler,
    "TalkingHeadMux": TalkingHeadMux,
    "TalkingHeadArtifactReport": TalkingHeadArtifactReport,
    "TalkingHeadWatermark": TalkingHeadWatermark,
    "TalkingHeadWatermarkDetect": TalkingHeadWatermarkDetect,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "TalkingHeadLoadImage": "Load Portrait (Talking Head)",
    "TalkingHeadLoadAudio": "Load Speech (Talking Head)",
    "TalkingHeadSpeak": "Speak (Talking Head)",
    "TalkingHeadPromptRefiner": "Prompt Refiner (Talking Head)",
    "TalkingHeadVisemeAligner": "Viseme Aligner (Talking Head)",
    "TalkingHeadReferenceEncoder": "Reference Encoder (Talking Head)",
    "TalkingHeadTemporalSampler": "Temporal Sampler (Talking Head)",
    "TalkingHeadMux": "Mux MP4 (Talking Head)",
    "TalkingHeadArtifactReport": "Artifact Report (Talking Head)",
    "TalkingHeadWatermark": "Watermark (Talking Head)",
    "TalkingHeadWatermarkDetect": "Detect Watermark (Talking Head)",
}


def _range_text(options: dict) -> str:
    """"Range 0 to 51, default 18." for a numeric input (what the editor's tooltip should say)."""
    def fmt(value):
        return f"{value:g}" if isinstance(value, float) else str(value)

    parts = []
    if "min" in options and "max" in options:
        parts.append(f"Range {fmt(options['min'])} to {fmt(options['max'])}")
    if "default" in options:
        parts.append(f"default {fmt(options['default'])}")
    return (", ".join(parts) + ".") if parts else ""


def _with_ranges(input_types):
    """Wraps a node's INPUT_TYPES so every INT/FLOAT tooltip ends with its range and default."""
    def wrapped(cls):
        spec = input_types()
        for section in spec.values():
            for name, entry in section.items():
                if (isinstance(entry, tuple) and len(entry) > 1 and entry[0] in ("INT", "FLOAT")
                        and isinstance(entry[1], dict) and entry[1].get("tooltip")):
                    options = entry[1]
                    extra = _range_text(options)
                    if extra and "Range " not in options["tooltip"]:
                        tip = options["tooltip"].rstrip()
                        section[name] = (entry[0], dict(options, tooltip=f"{tip} {extra}"), *entry[2:])
        return spec

    return classmethod(wrapped)


for _node_class in NODE_CLASS_MAPPINGS.values():
    if not getattr(_node_class, "_talkinghead_ranges", False):
        _node_class.INPUT_TYPES = _with_ranges(_node_class.INPUT_TYPES)
        _node_class._talkinghead_ranges = True
