"""Where a node runs: inside ComfyUI, or in the pack's own headless executor.

Nodes ask this module for the input/output folders and for a progress bar, so the same node code
runs unchanged in both places. Inside ComfyUI the answers come from `folder_paths` and
`comfy.utils.ProgressBar`; the headless executor installs a `HeadlessContext` instead.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from ..pipeline.core.audio import AudioClip

try:  # Present only inside a ComfyUI process.
    import folder_paths as _folder_paths
except ImportError:
    _folder_paths = None


@dataclass
class HeadlessContext:
    """What the headless executor provides in place of ComfyUI.

    Attributes:
        input_dir: folder that loader nodes read from.
        output_dir: folder that output nodes write into.
        progress_factory: called with (total) to make a progress reporter with `update_absolute`.
    """

    input_dir: str
    output_dir: str
    progress_factory: Optional[Callable[[int], "ProgressReporter"]] = None


class ProgressReporter:
    """The subset of `comfy.utils.ProgressBar` our nodes use."""

    def __init__(self, total: int, on_update: Optional[Callable[[int, int], None]] = None):
        self.total = max(int(total), 1)
        self.current = 0
        self._on_update = on_update

    def update_absolute(self, value: int, total: Optional[int] = None, preview=None) -> None:
        if total is not None:
            self.total = max(int(total), 1)
        self.current = min(int(value), self.total)
        if self._on_update is not None:
            self._on_update(self.current, self.total)


_headless: Optional[HeadlessContext] = None


@contextlib.contextmanager
def headless(context: HeadlessContext) -> Iterator[HeadlessContext]:
    """Makes nodes use `context` instead of ComfyUI for the duration of the block."""
    global _headless
    previous, _headless = _headless, context
    try:
        yield context
    finally:
        _headless = previous


def in_comfyui() -> bool:
    return _headless is None and _folder_paths is not None


def input_directory_if_known() -> Optional[str]:
    """The input folder, or None outside ComfyUI and the executor (e.g. generating workflow files)."""
    if _headless is not None:
        return _headless.input_dir
    if _folder_paths is not None:
        return _folder_paths.get_input_directory()
    return None


def input_directory() -> str:
    folder = input_directory_if_known()
    if folder is not None:
        return folder
    raise RuntimeError("Not running inside ComfyUI or the talkinghead executor: no input folder is known.")


def output_directory() -> str:
    if _headless is not None:
        return _headless.output_dir
    if _folder_paths is not None:
        return _folder_paths.get_output_directory()
    raise RuntimeError("Not running inside ComfyUI or the talkinghead executor: no output folder is known.")


def temp_directory() -> Optional[str]:
    """ComfyUI's temp folder (node previews), or None when running headless (no previews)."""
    if _headless is None and _folder_paths is not None:
        return _folder_paths.get_temp_directory()
    return None


def preview_ui(image: np.ndarray, prefix: str) -> list[dict]:
    """Writes a uint8 RGB preview [H, W, 3] as PNG to ComfyUI's temp folder and returns the ui
    "images" entry that makes the node show it; [] when running headless (no previews there)."""
    temp_dir = temp_directory()
    if temp_dir is None:
        return []
    from PIL import Image

    from ..pipeline.core.output_paths import atomic_write_path, next_output_path

    target = next_output_path(temp_dir, prefix, "png")
    with atomic_write_path(target.path) as temp_path:
        Image.fromarray(image).save(temp_path, format="PNG", compress_level=1)
    return [{"filename": target.filename, "subfolder": target.subfolder, "type": "temp"}]


def temp_audio_ui(clip: AudioClip, prefix: str) -> Optional[dict]:
    """Writes `clip` as a 16-bit WAV to ComfyUI's temp folder (what the editor plays through its own
    /view route) and returns {"filename", "subfolder", "type": "temp"}; None when running headless."""
    temp_dir = temp_directory()
    if temp_dir is None:
        return None
    import wave

    from ..pipeline.core.output_paths import atomic_write_path, next_output_path

    samples = np.asarray(clip.samples, dtype=np.float32)
    samples = samples[None] if samples.ndim == 1 else samples  # [C, T]
    pcm = (np.clip(samples.T, -1.0, 1.0) * 32767.0).round().astype("<i2")
    target = next_output_path(temp_dir, prefix, "wav")
    with atomic_write_path(target.path) as temp_path:
        with wave.open(temp_path, "wb") as out:
            out.setnchannels(pcm.shape[1])
            out.setsampwidth(2)
            out.setframerate(int(clip.sample_rate))
            out.writeframes(pcm.tobytes())
    return {"filename": target.filename, "subfolder": target.subfolder, "type": "temp"}


#: Outside ComfyUI, model folders live under this environment variable's folder ($DIR/vae/...).
MODELS_DIR_ENV = "TALKINGHEAD_MODELS_DIR"


def model_folders(kind: str) -> list[str]:
    """Folders holding user-supplied models of `kind` ("vae", ...): ComfyUI's models/<kind> folders,
    or $TALKINGHEAD_MODELS_DIR/<kind> when running headless. Existing folders only."""
    import os

    folders: list[str] = []
    if _headless is None and _folder_paths is not None:
        try:
            folders = list(_folder_paths.get_folder_paths(kind))
        except (KeyError, AttributeError):
            folders = []
    elif os.environ.get(MODELS_DIR_ENV):
        folders = [os.path.join(os.environ[MODELS_DIR_ENV], kind)]
    return [f for f in folders if os.path.isdir(f)]


def register_model_folder(kind: str) -> None:
    """Makes ComfyUI know models/<kind> (so `list_models(kind)` finds it); nothing outside ComfyUI."""
    import os

    if _folder_paths is None or kind in getattr(_folder_paths, "folder_names_and_paths", {}):
        return
    try:
        _folder_paths.add_model_folder_path(kind, os.path.join(_folder_paths.models_dir, kind))
    except Exception:  # noqa: BLE001 - an unexpected folder_paths: the listing just stays empty
        pass


def list_models(kind: str, extensions: tuple[str, ...] = (".safetensors",)) -> list[str]:
    """Names (relative to their model folder, "/"-separated) of model files with `extensions`, and of
    diffusers model folders (a folder holding config.json), sorted."""
    import os

    names: set[str] = set()
    for root in model_folders(kind):
        for folder, dirs, files in os.walk(root, followlinks=True):
            rel = os.path.relpath(folder, root)
            if "config.json" in files and rel != ".":
                names.add(rel.replace(os.sep, "/"))
                dirs[:] = []
                continue
            for name in files:
                if name.lower().endswith(extensions):
                    names.add(os.path.normpath(os.path.join(rel, name)).replace(os.sep, "/"))
    return sorted(names)


def resolve_model(kind: str, name: str, input_name: str) -> str:
    """The path of model `name` inside one of the `kind` model folders; never a path outside them."""
    import os

    from ..pipeline.core.errors import InputError

    for root in model_folders(kind):
        real_root = os.path.realpath(root)
        candidate = os.path.realpath(os.path.join(real_root, name))
        if os.path.commonpath([real_root, candidate]) != real_root:
            raise InputError(input_name, f"{name!r} points outside the {kind} model folder",
                             f"Pick one of the names listed for {input_name}.")
        if os.path.exists(candidate):
            return candidate
    where = ", ".join(model_folders(kind)) or f"ComfyUI's models/{kind} folder (or ${MODELS_DIR_ENV}/{kind})"
    raise InputError(input_name, f"{name!r} was not found in {where}",
                     "Put the file or diffusers folder there and refresh, or choose another.")


def progress_callback(total: int) -> Callable[[int, int], None]:
    """Returns progress(done, total) that drives ComfyUI's bar, or the headless one."""
    if _headless is not None:
        reporter = _headless.progress_factory(total) if _headless.progress_factory else ProgressReporter(total)
    else:
        try:
            from comfy.utils import ProgressBar

            reporter = ProgressBar(total)
        except ImportError:
            reporter = ProgressReporter(total)

    def report(done: int, new_total: int) -> None:
        reporter.update_absolute(done, new_total)

    return report


# ---- ComfyUI types <-> pipeline types -------------------------------------------------------


def image_batch_to_numpy(images: torch.Tensor) -> np.ndarray:
    """ComfyUI IMAGE (float32 [B, H, W, C], 0..1) -> float32 numpy [B, H, W, C]."""
    return images.detach().to("cpu", torch.float32).numpy()


def numpy_to_image_batch(frames: np.ndarray) -> torch.Tensor:
    """uint8 or float numpy [H, W, 3] / [B, H, W, 3] -> ComfyUI IMAGE float32 [B, H, W, 3] in 0..1."""
    array = np.asarray(frames)
    if array.ndim == 3:
        array = array[None]
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def audio_to_clip(audio: dict, input_name: str = "audio") -> AudioClip:
    """ComfyUI AUDIO ({"waveform": [B, C, T], "sample_rate"}) -> AudioClip of the first batch item."""
    from ..pipeline.core.errors import InputError

    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise InputError(
            input_name,
            f"expected ComfyUI AUDIO (a dict with 'waveform' and 'sample_rate'), got {type(audio).__name__}",
            "Connect an AUDIO output such as Load Audio or Speak.",
        )
    waveform = audio["waveform"]
    if isinstance(waveform, torch.Tensor):
        waveform = waveform.detach().to("cpu", torch.float32).numpy()
    waveform = np.asarray(waveform, dtype=np.float32)
    if waveform.ndim == 3:
        waveform = waveform[0]
    return AudioClip(waveform, int(audio["sample_rate"])).validated(input_name)


def clip_to_audio(clip: AudioClip) -> dict:
    """AudioClip -> ComfyUI AUDIO ({"waveform": float32 [1, C, T], "sample_rate": int})."""
    return {"waveform": torch.from_numpy(np.ascontiguousarray(clip.samples))[None], "sample_rate": int(clip.sample_rate)}
