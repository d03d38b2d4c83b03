"""Renders the template browser's thumbnails: one real picture per shipped workflow.

    python -m talkinghead.nodes.headless.workflow_thumbnails            # rewrite workflows/*.jpg
    python -m talkinghead.nodes.headless.workflow_thumbnails --only talking_head

Each workflow in workflows/api/ runs through the headless executor exactly as shipped (consent
attested for the built-in sample portrait, a public-domain NASA photograph); the thumbnail is what it
made: for a workflow with Mux, the frame of the MP4 where the mouth is widest open, over a strip of
the Viseme Aligner's timeline; otherwise the Reference Encoder's landmark preview. Written as
512 px wide (square for the Mux workflows) JPEG next to the template (workflows/<Title>.jpg), the name the frontend asks for.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from .executor import run_graph
from .workflow_format import api_stem, api_workflows, thumbnail_path_for

THUMBNAIL_WIDTH_PX = 512
TIMELINE_STRIP_PX = 96


def _to_uint8(image) -> np.ndarray:
    """ComfyUI IMAGE (torch [B,H,W,3] 0..1) or numpy -> uint8 [H,W,3] of the first image."""
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if array.ndim == 4:
        array = array[0]
    if array.dtype != np.uint8:
        array = np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return array[..., :3]


def _widest_mouth_frame(video_path: str, jaw_open: np.ndarray) -> np.ndarray:
    import av

    wanted = int(np.argmax(jaw_open)) if len(jaw_open) else 0
    with av.open(video_path) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= wanted:
                return frame.to_ndarray(format="rgb24")
    raise RuntimeError(f"{video_path}: no frame {wanted}")


def _resize(image: np.ndarray, width: int) -> np.ndarray:
    from PIL import Image

    height = max(1, round(image.shape[0] * width / image.shape[1]))
    return np.asarray(Image.fromarray(image).resize((width, height), Image.LANCZOS))


def render_thumbnail(api_path: Path) -> np.ndarray:
    graph = json.loads(api_path.read_text(encoding="utf-8"))
    for node in graph.values():
        if node["class_type"] == "TalkingHeadReferenceEncoder":
            node["inputs"]["consent"] = True  # the built-in sample portrait only
    with tempfile.TemporaryDirectory(prefix="talkinghead-thumbs-") as folder:
        result = run_graph(graph, input_dir=folder, output_dir=folder, progress=False)
        by_type = {node["class_type"]: node_id for node_id, node in graph.items()}
        mux_id, aligner_id = by_type.get("TalkingHeadMux"), by_type.get("TalkingHeadVisemeAligner")
        if mux_id is not None and aligner_id is not None:
            track = result.results[aligner_id][0]
            frame = _resize(_widest_mouth_frame(result.results[mux_id][0], track.mouth_param("jaw_open")),
                            THUMBNAIL_WIDTH_PX)
            timeline = _resize(_to_uint8(result.results[aligner_id][1]), THUMBNAIL_WIDTH_PX)
            # square, as the browser's cards are: the top of the frame (the face) over the strip
            frame = frame[:THUMBNAIL_WIDTH_PX - TIMELINE_STRIP_PX]
            return np.concatenate([frame, timeline[:TIMELINE_STRIP_PX]], axis=0)
        encoder_id = by_type.get("TalkingHeadReferenceEncoder")
        if encoder_id is not None:
            return _resize(_to_uint8(result.results[encoder_id][1]), THUMBNAIL_WIDTH_PX)
    raise RuntimeError(f"{api_path.name}: no Mux or Reference Encoder to take a thumbnail from")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", default=[], help="API workflow stem(s) to render")
    args = parser.parse_args(argv)
    from PIL import Image

    for api_path in api_workflows():
        if args.only and api_stem(api_path) not in args.only:
            continue
        image = render_thumbnail(api_path)
        target = thumbnail_path_for(api_path)
        partial = target.with_name(target.name + ".partial")
        Image.fromarray(image).save(partial, format="JPEG", quality=85, optimize=True)
        partial.replace(target)
        print(f"wrote {target} ({image.shape[1]}x{image.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
