"""The TemporalSampler's diffusion engine: video-to-video refinement of the weight-free engine's frames.

The weight-free engine supplies motion and lip sync (its frames and per-frame landmarks); this
engine adds realism with a Stable Diffusion 1.5 family model the user provides, so sync and
identity do not depend on the diffusion model:

* temporal attention: AnimateDiff motion modules (diffusers MotionAdapter / UNetMotionModel);
* long clips: uniform sliding context windows with trapezoid-weighted fusion (`windows`);
* structure: landmark maps into a ControlNet (`control`);
* identity: reference-only attention on the Reference's latents (`reference_attention`), and the
  reference's pixels kept outside the face by latent masking (`sampler`);
* loading: offline, single-file checkpoints and diffusers folders, cached (`loading`, `convert`).

torch, diffusers and transformers are imported only when these functions are called.
"""

from .loading import DiffusionModels, cache_keys, free_models, load_models, models_from_objects  # noqa: F401
from .sampler import SCHEDULERS, DiffusedFrameStream, DiffusionSettings, diffuse_frames  # noqa: F401
from .windows import window_starts, window_weights, windows  # noqa: F401

__all__ = ["DiffusionModels", "cache_keys", "free_models", "load_models", "models_from_objects", "SCHEDULERS",
           "DiffusedFrameStream", "DiffusionSettings", "diffuse_frames", "window_starts", "window_weights", "windows"]
