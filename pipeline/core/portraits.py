"""Reference portraits: loading a user's image, and real sample portraits that need no download.

The sample portrait ships inside the scikit-image wheel (`skimage.data.astronaut()`, a public-domain
NASA photograph of Eileen Collins, 512x512), so the demo and the tests run offline.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import InputError

SAMPLE_PREFIX = "(sample) "
SAMPLE_PORTRAITS = ("astronaut",)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def sample_portrait(name: str = "astronaut") -> np.ndarray:
    """Returns a sample portrait as uint8 RGB [H, W, 3]."""
    if name != "astronaut":
        raise InputError(
            "image", f"there is no sample portrait named {name!r}", f"Choose one of {list(SAMPLE_PORTRAITS)}."
        )
    try:
        from skimage import data as skimage_data
    except ImportError as exc:  # pragma: no cover - scikit-image is a core dependency
        raise InputError(
            "image",
            "the sample portrait comes from scikit-image, which is not installed",
            "Install it (pip install scikit-image) or choose an image file.",
        ) from exc
    return np.ascontiguousarray(skimage_data.astronaut()[..., :3])


def load_portrait(path: str, input_name: str = "image") -> np.ndarray:
    """Reads an image file as uint8 RGB [H, W, 3] (EXIF orientation applied, alpha dropped)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not os.path.isfile(path):
        raise InputError(input_name, f"no image file at {path!r}", "Check the file name and folder.")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            rgb = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(
            input_name,
            f"{os.path.basename(path)!r} is not an image Pillow can read ({exc})",
            f"Use one of {', '.join(IMAGE_EXTENSIONS)}.",
        ) from exc
    return np.ascontiguousarray(rgb)


def resolve_portrait(choice: str, input_dir: str, input_name: str = "image") -> np.ndarray:
    """Resolves a loader choice: "(sample) NAME" or a file name relative to `input_dir`."""
    if choice.startswith(SAMPLE_PREFIX):
        return sample_portrait(choice[len(SAMPLE_PREFIX):])
    return load_portrait(safe_input_path(input_dir, choice, input_name), input_name)


def safe_input_path(input_dir: str, relative_name: str, input_name: str) -> str:
    """Joins a user-given file name to the input folder, refusing names that escape it."""
    base = os.path.realpath(input_dir)
    candidate = os.path.realpath(os.path.join(base, relative_name))
    if os.path.isabs(relative_name) or os.path.commonpath([base, candidate]) != base:
        raise InputError(
            input_name,
            f"{relative_name!r} points outside the input folder {base}",
            "Put the file in the input folder and give its name relative to it.",
        )
    return candidate


def list_input_files(input_dir: str, extensions: tuple[str, ...]) -> list[str]:
    """File names (relative, sorted, subfolders included) under `input_dir` with these extensions."""
    found = []
    if not os.path.isdir(input_dir):
        return found
    for folder, _dirs, files in os.walk(input_dir):
        for file_name in files:
            if file_name.lower().endswith(extensions):
                found.append(os.path.relpath(os.path.join(folder, file_name), input_dir).replace(os.sep, "/"))
    return sorted(found)
