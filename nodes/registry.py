"""ComfyUI node adapters: unpack ComfyUI types, call one pipeline function, pack the results.

Node type ids are global across every ComfyUI pack, so all of ours start with "TalkingHead".
"""

from .artifacts import TalkingHeadArtifactReport
from .loaders import TalkingHeadLoadAudio, TalkingHeadLoadImage
from .mux import TalkingHeadMux
from .reference import TalkingHeadReferenceEncoder
from .sampler import TalkingHeadTemporalSampler
from .speak import TalkingHeadSpeak
from .visemes import TalkingHeadVisemeAligner
from .watermark import TalkingHeadWatermark, TalkingHeadWatermarkDetect

NODE_CLASS_MAPPINGS = {
    "TalkingHeadLoadImage": TalkingHeadLoadImage,
    "TalkingHeadLoadAudio": TalkingHeadLoadAudio,
    "TalkingHeadSpeak": TalkingHeadSpeak,
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
    "TalkingHeadVisemeAligner": "Viseme Aligner (Talking Head)",
    "TalkingHeadReferenceEncoder": "Reference Encoder (Talking Head)",
    "TalkingHeadTemporalSampler": "Temporal Sampler, weight-free (Talking Head)",
    "TalkingHeadMux": "Mux MP4 (Talking Head)",
    "TalkingHeadArtifactReport": "Artifact Report (Talking Head)",
    "TalkingHeadWatermark": "Watermark (Talking Head)",
    "TalkingHeadWatermarkDetect": "Detect Watermark (Talking Head)",
}
