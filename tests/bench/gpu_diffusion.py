"""Diffusion engine on a GPU with SD 1.5-sized models (random weights): frames/s per step and memory.

Not part of `make bench` (it needs a CUDA GPU; the name does not start with bench_). Builds
random_models.build("sd15") -- the UNet, VAE and CLIP text encoder of Stable Diffusion 1.5, an
AnimateDiff v2-sized motion adapter and an SD 1.5 ControlNet, random weights, nothing downloaded --
and runs pipeline/diffusion's sampling loop at 512x512 in fp16 for several configurations:

  A  motion modules, guidance 7.5 (two branches), windows 16/4          (the default setup)
  B  A + landmark ControlNet
  C  B + reference attention (one extra UNet pass on the reference per step)
  D  A without guidance (guidance 1: one branch)
  E  A with windows 24/6

For each: frames, windows, steps run, sampling seconds, frames/s per step (frames x steps /
sampling s), decode ms/frame, and peak GPU memory (torch.cuda.max_memory_allocated). A length
sweep of configuration A (16, 48, 96 frames) shows memory staying flat with clip length.

Run: python tests/bench/gpu_diffusion.py [--frames 48] [--steps 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np


def clip(n: int, size: int = 512):
    rng = np.random.default_rng(0)
    texture = rng.integers(40, 215, size=(size, size + n, 3)).astype(np.uint8)
    angle = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    frames = np.stack([texture[:, i // 4:i // 4 + size] for i in range(n)])
    marks = [np.stack([size / 2 + size / 5 * np.cos(angle + i / 20), size / 2 + size / 4 * np.sin(angle)], 1)
             .astype(np.float32) for i in range(n)]
    return frames, marks


class Ref:
    latents = None
    frame = None

    def __init__(self):
        self.aligned_crop = np.random.default_rng(1).integers(0, 256, size=(512, 512, 3), dtype=np.uint8)


def main() -> None:
    import torch

    from talkinghead.pipeline.diffusion import DiffusionSettings, diffuse_frames, models_from_objects
    from talkinghead.pipeline.diffusion.random_models import build

    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--steps", type=int, default=8, help="steps run (strength 1)")
    parser.add_argument("--precision", default="fp16")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_diffusion.py needs a CUDA GPU")
    t0 = time.perf_counter()
    m = build("sd15", seed=0)
    print(f"built SD 1.5-sized random models in {time.perf_counter() - t0:.1f} s on the CPU "
          f"({torch.cuda.get_device_name(0)}, torch {torch.__version__})", flush=True)
    with_motion = models_from_objects(m.unet, m.vae, m.text_encoder, m.motion_adapter, m.controlnet, device="cuda",
                                      precision=args.precision)
    no_cn = models_from_objects(m.unet, m.vae, m.text_encoder, m.motion_adapter, None, device="cuda",
                                precision=args.precision)
    reference = Ref()
    configs = [
        ("A motion, cfg 7.5, 16/4", no_cn, {}, None),
        ("B A + ControlNet", with_motion, {}, None),
        ("C B + reference attention", with_motion, {}, reference),
        ("D A, no guidance", no_cn, {"guidance": 1.0}, None),
        ("E A, windows 24/6", no_cn, {"context_length": 24, "context_overlap": 6}, None),
    ]
    rows = []

    def run(name, models, extra, ref, n):
        frames, marks = clip(n)
        settings = dict(strength=1.0, steps=args.steps, guidance=7.5, context_length=16, context_overlap=4,
                        mask_face=True, keep_background_pixels=True, decode_batch=8)
        settings.update(extra)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t_start = time.perf_counter()
        stream = diffuse_frames(models, frames, marks, reference=ref, prompt="a portrait photo of a person talking",
                                settings=DiffusionSettings(**settings))
        torch.cuda.synchronize()
        t_sampled = time.perf_counter()
        for _ in stream.images():
            pass
        torch.cuda.synchronize()
        t_done = time.perf_counter()
        info = stream.info
        row = {"config": name, "frames": n, "windows": info["windows"], "steps": info["steps_run"],
               "sample_s": round(info["sample_s"], 3), "frames_per_s_per_step":
               round(n * info["steps_run"] / info["sample_s"], 2),
               "encode_ms_per_frame": round(info["encode_s"] * 1000 / n, 2),
               "decode_ms_per_frame": round((t_done - t_sampled) * 1000 / n, 2),
               "total_s": round(t_done - t_start, 2),
               "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)

    run("warm-up", no_cn, {"guidance": 1.0}, None, 16)
    rows.clear()
    for name, models, extra, ref in configs:
        run(name, models, extra, ref, args.frames)
    for n in (16, 48, 96):
        run("A length sweep", no_cn, {}, None, n)
    print()
    print("| config | frames | windows | steps | frames/s per step | encode ms/frame | decode ms/frame | peak GPU GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['frames']} | {r['windows']} | {r['steps']} | {r['frames_per_s_per_step']} | "
              f"{r['encode_ms_per_frame']} | {r['decode_ms_per_frame']} | {r['peak_gpu_mem_gib']} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=1)


if __name__ == "__main__":
    main()
