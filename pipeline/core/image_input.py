"""Turning any reference image a user gives into plain 8-bit RGB.

Accepted inputs (one frame; ComfyUI IMAGE batches are split by the node, which also does the torch
-> numpy conversion):

* numpy arrays, channels last: [H, W] (grey), [H, W, 1] (grey), [H, W, 2] (grey + alpha),
  [H, W, 3] (RGB), [H, W, 4] (RGBA); a leading batch axis of size 1 ([1, H, W, C], a one-frame
  ComfyUI IMAGE) is dropped.
* dtypes: uint8 (0..255), uint16 (16-bit, 0..65535), bool, other integer types whose values fit
  0..255 (read as 8-bit) or 0..65535 (read as 16-bit), and floats in 0..1 (ComfyUI IMAGE tensors are
  float32 in 0..1; values up to `FLOAT_TOLERANCE` outside that range are clipped, further ones are
  refused because they mean another scale, e.g. 0..255 floats).
* PIL images of modes 1, L, LA, P/PA (palette, with or without transparency), RGB, RGBA, RGBX,
  I;16 (16-bit greyscale; also I;16B/I;16L), I (32-bit integer, read on the 16-bit scale 0..65535
  the way Pillow stores 16-bit PNGs), F (float, read like float arrays) and any other mode Pillow
  can convert to RGB (CMYK, YCbCr, LAB, HSV).

Conversions:

* 16-bit -> 8-bit: round(v / 257), so 65535 -> 255 and 257 * k -> k exactly.
* float -> 8-bit: round(v * 255) (rounding, not ComfyUI's truncation, so 1.0 -> 255 and the mean
  brightness is not biased down by half a code value).
* alpha: composited over `ALPHA_BACKGROUND` (mid-grey 128, chosen over white because it keeps the
  face detector's and the quality report's exposure numbers close to the subject's own and does
  not turn a cut-out portrait into a high-key one); pass `background=255` for white.

Images larger than `MAX_SIDE_PX` on either side are refused (downscale them first): a 8000 x 8000
RGB frame is already 192 MB as uint8 and much more once encoded by a VAE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from .errors import InputError

#: Largest accepted width or height, in pixels.
MAX_SIDE_PX = 8000

#: Grey level (0..255) transparent pixels are composited over by default.
ALPHA_BACKGROUND = 128

#: How far outside 0..1 a float image may stray (from resampling overshoot) before it is refused.
FLOAT_TOLERANCE = 0.05

_COLOR_NAMES = {1: "greyscale", 2: "greyscale+alpha", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True)
class ImageInputInfo:
    """What kind of image was given, for the quality report and error messages.

    Attributes:
        width, height: size in pixels.
        color: "greyscale", "greyscale+alpha", "RGB", "RGBA", "palette", "palette+alpha" or a
            Pillow mode name such as "CMYK".
        bit_depth: "1-bit", "8-bit", "16-bit", "32-bit integer" or "float".
        source: "numpy" or "PIL".
        has_alpha: whether an alpha channel was composited away.
        background: grey level (0..255) the alpha channel was composited over, if any.
    """

    width: int
    height: int
    color: str
    bit_depth: str
    source: str
    has_alpha: bool = False
    background: int = ALPHA_BACKGROUND

    def describe(self) -> str:
        """A short phrase such as "16-bit greyscale 640x480" or "8-bit RGBA 512x512 (alpha over grey 128)"."""
        text = f"{self.bit_depth} {self.color} {self.width}x{self.height}"
        if self.has_alpha:
            text += f" (alpha composited over grey {self.background})"
        return text


def _is_pil_image(image: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is a core dependency
        return False
    return isinstance(image, Image.Image)


def _check_size(width: int, height: int, input_name: str) -> None:
    if width <= 0 or height <= 0:
        raise InputError(
            input_name, f"the image is empty ({width}x{height} pixels)", "Give an image with pixels in it"
        )
    if max(width, height) > MAX_SIDE_PX:
        raise InputError(
            input_name,
            f"the image is {width}x{height} pixels, larger than the {MAX_SIDE_PX} px per side this "
            "node accepts",
            f"Downscale it so that its longer side is at most {MAX_SIDE_PX} px (a portrait needs "
            "far less: 1024-2048 px is plenty)",
        )


def _from_pil(image: Any, input_name: str) -> tuple[np.ndarray, float, ImageInputInfo]:
    """Returns (array [H, W, C], full-scale value, info) for a PIL image."""
    width, height = image.size
    _check_size(width, height, input_name)
    mode = image.mode
    color = None
    if mode == "1":
        array, scale, depth, color = np.asarray(image.convert("L")), 255.0, "1-bit", "greyscale"
    elif mode in ("L", "LA", "RGB", "RGBA"):
        array, scale, depth = np.asarray(image), 255.0, "8-bit"
    elif mode in ("La", "RGBa", "PA"):
        array, scale, depth = np.asarray(image.convert("RGBA")), 255.0, "8-bit"
        color = {"La": "greyscale+alpha", "RGBa": "RGBA", "PA": "palette+alpha"}[mode]
    elif mode == "P":
        has_alpha = "transparency" in image.info or image.palette is not None and image.palette.mode == "RGBA"
        array = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
        scale, depth, color = 255.0, "8-bit", "palette+alpha" if has_alpha else "palette"
    elif mode.startswith("I;16"):
        array, scale, depth = np.asarray(image).astype(np.uint16), 65535.0, "16-bit"
    elif mode == "I":
        # Pillow stores 16-bit greyscale PNGs in mode I: read it on the 16-bit scale.
        array = np.clip(np.asarray(image).astype(np.int64), 0, 65535).astype(np.uint16)
        scale, depth = 65535.0, "32-bit integer"
    elif mode == "F":
        array, scale, depth = np.asarray(image).astype(np.float32), 1.0, "float"
    else:  # CMYK, YCbCr, LAB, HSV, RGBX, ...: Pillow knows how to get RGB
        array, scale, depth, color = np.asarray(image.convert("RGB")), 255.0, "8-bit", mode
    if array.ndim == 2:
        array = array[:, :, None]
    if color is None:
        color = _COLOR_NAMES[array.shape[2]]
    info = ImageInputInfo(width=width, height=height, color=color, bit_depth=depth, source="PIL",
                          has_alpha=array.shape[2] in (2, 4))
    return array, scale, info


def _from_numpy(image: Any, input_name: str) -> tuple[np.ndarray, float, ImageInputInfo]:
    """Returns (array [H, W, C], full-scale value, info) for an array-like image."""
    if hasattr(image, "detach") and hasattr(image, "cpu"):  # a torch tensor slipped through
        image = image.detach().cpu().numpy()
    try:
        array = np.asarray(image)
    except Exception as exc:  # noqa: BLE001 - anything numpy cannot read is a bad input
        raise InputError(
            input_name, f"cannot read a {type(image).__name__} as an image ({exc})",
            "Give a numpy array [H, W, C] or a PIL image",
        ) from exc
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise InputError(
            input_name, f"has element type {array.dtype}, not numbers",
            "Give pixel values as uint8, uint16 or floats in 0..1",
        )
    if array.ndim == 4:
        if array.shape[0] != 1:
            raise InputError(
                input_name,
                f"is a batch of {array.shape[0]} images (shape {tuple(array.shape)}); one reference "
                "image is needed",
                "Pick one frame of the batch (e.g. with an 'Image From Batch' node) before this one",
            )
        array = array[0]
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise InputError(
            input_name, f"has shape {tuple(array.shape)}; an image needs 2 or 3 axes",
            "Give an array [H, W] (grey) or [H, W, C] with C = 1, 2, 3 or 4 (channels last)",
        )
    height, width, channels = array.shape
    if channels not in (1, 2, 3, 4):
        hint = ""
        if array.shape[0] in (1, 3, 4):
            hint = " It looks channels-first: transpose it to [H, W, C] (e.g. array.transpose(1, 2, 0))."
        raise InputError(
            input_name,
            f"has shape {tuple(array.shape)}: {channels} channels on the last axis, expected 1, 2, 3 or 4",
            "Give an image with channels last ([H, W, C])." + hint,
        )
    _check_size(width, height, input_name)

    kind = array.dtype.kind
    if kind == "b":
        array, scale, depth = array.astype(np.uint8) * 255, 255.0, "1-bit"
    elif kind == "f":
        if not np.all(np.isfinite(array)):
            bad = int(np.count_nonzero(~np.isfinite(array)))
            raise InputError(
                input_name, f"contains {bad} NaN or infinite pixel values",
                "Fix the step that produced the image (NaNs often come from a VAE decode in float16)",
            )
        low, high = float(array.min()), float(array.max())
        if low < -FLOAT_TOLERANCE or high > 1.0 + FLOAT_TOLERANCE:
            raise InputError(
                input_name,
                f"is a float image with values from {low:.3g} to {high:.3g}; float images must be in 0..1",
                "Divide by 255 (or 65535) first, or give the image as uint8/uint16",
            )
        scale, depth = 1.0, "float"
    elif array.dtype == np.uint8:
        scale, depth = 255.0, "8-bit"
    elif array.dtype == np.uint16:
        scale, depth = 65535.0, "16-bit"
    else:  # other integer types: use the value range to pick the scale
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 65535:
            raise InputError(
                input_name,
                f"is a {array.dtype} image with values from {low} to {high}, outside 0..65535",
                "Give 8-bit (0..255) or 16-bit (0..65535) pixel values",
            )
        if high <= 255:
            array, scale, depth = array.astype(np.uint8), 255.0, "8-bit"
        else:
            array, scale, depth = array.astype(np.uint16), 65535.0, "16-bit"
    info = ImageInputInfo(width=width, height=height, color=_COLOR_NAMES[channels], bit_depth=depth,
                          source="numpy", has_alpha=channels in (2, 4))
    return array, scale, info


def _read(image: Any, input_name: str) -> tuple[np.ndarray, float, ImageInputInfo]:
    if image is None:
        raise InputError(input_name, "no image was given", "Connect or load a reference image")
    if _is_pil_image(image):
        return _from_pil(image, input_name)
    return _from_numpy(image, input_name)


def _to_uint8(array: np.ndarray, scale: float) -> np.ndarray:
    if array.dtype == np.uint8 and scale == 255.0:
        return array
    if array.dtype == np.uint16 and scale == 65535.0:
        # round(v / 257) in integers: exact and fast.
        return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
    values = np.clip(array.astype(np.float32) * (255.0 / scale), 0.0, 255.0)
    return np.rint(values).astype(np.uint8)


def load_image_input(
    image: Union[np.ndarray, Any], input_name: str = "image", background: int = ALPHA_BACKGROUND
) -> tuple[np.ndarray, ImageInputInfo]:
    """Converts an image to uint8 RGB and says what it was.

    Args:
        image: numpy array or PIL image (see the module docstring for what is accepted).
        input_name: the input to name in errors.
        background: grey level 0..255 that transparent pixels are composited over.
    Returns:
        (rgb, info): rgb is a C-contiguous uint8 array [H, W, 3]; info describes the input.
    Raises:
        InputError: empty, NaN, wrongly shaped, out-of-range or larger than MAX_SIDE_PX images.
    """
    if not 0 <= int(background) <= 255:
        raise InputError("background", f"{background} is outside 0..255", "Use a grey level 0..255")
    array, scale, info = _read(image, input_name)
    channels = array.shape[2]
    alpha = None
    if channels in (2, 4):
        alpha = array[:, :, -1].astype(np.float32) / scale
        array = array[:, :, :-1]
    rgb = _to_uint8(array, scale)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    if alpha is not None:
        a = np.clip(alpha, 0.0, 1.0)[:, :, None]
        rgb = np.rint(rgb.astype(np.float32) * a + float(background) * (1.0 - a)).astype(np.uint8)
    info = ImageInputInfo(width=info.width, height=info.height, color=info.color, bit_depth=info.bit_depth,
                          source=info.source, has_alpha=info.has_alpha, background=int(background))
    return np.ascontiguousarray(rgb), info


def to_rgb_uint8(image: Union[np.ndarray, Any], input_name: str = "image",
                 background: int = ALPHA_BACKGROUND) -> np.ndarray:
    """Converts any accepted image (module docstring) to a uint8 RGB array [H, W, 3].

    Raises:
        InputError: naming `input_name`, for empty, NaN, wrongly shaped, out-of-range images and
            images larger than MAX_SIDE_PX on a side.
    """
    return load_image_input(image, input_name, background)[0]


def describe_image_input(image: Union[np.ndarray, Any], input_name: str = "image") -> str:
    """A short phrase for the report, e.g. "16-bit greyscale 640x480" (width x height).

    Raises:
        InputError: as `to_rgb_uint8`, for inputs that cannot be read.
    """
    return _read(image, input_name)[2].describe()
