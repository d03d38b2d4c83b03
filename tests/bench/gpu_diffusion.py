"""Diffusion engine on a GPU with SD 1.5-sized models (random weights): frames/s per step and memory.

Not part of `make bench` (it needs a CUDA GPU; the name does not start with bench_). Builds
random_models.build("sd15") -- the UNet, VAE and CLIP text encoder of Stable Diffusion 1.5, an
AnimateDiff v2-sized motion adapter and an SD 1.5 ControlNet, random weights, nothing downloaded --
and runs pipeline/render/diffusion's sampling loop at 512x512 in fp16 for several configurations:

  A  motion modules, guidance 7.5 (two branches), windows 16/4          (the default setup)
  B  A + landmark ControlNet
  C  B + reference attention (one extra UNet pass on the reference per step)
  D  A without guidance (guidance 1: one branch)
  E  A with windows 24/6

For each: frames, windows, steps run, sampling seconds, frames/s per step (frames x steps /
sampling s), encode and decode ms/frame, whether the final latents are finite, and peak GPU memory
(torch.cuda.max_memory_allocated, which includes the resident model weights; the weights alone are
printed after loading). A length sweep of configuration A (16, 48, 96 frames) shows memory staying
flat with clip length. All configurations share one copy of the models on the device.

Run (GPU, the measurement): python tests/bench/gpu_diffusion.py [--frames 48] [--steps 8] [--json out.json]

CPU smoke run (checks that the script and the SD 1.5-sized models work end to end, without a GPU;
fp32, peak RSS per run instead of GPU memory, the timings say nothing about a GPU):

    python tests/bench/gpu_diffusion.py --device cpu --size 128 --frames 16 --steps 1 --sweep-frames 16,32

`--model-size tiny` uses random_models' tiny models instead (seconds; what the unit test runs).
Without a CUDA GPU and without `--device cpu` the script stops with a message.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

CONFIGS = "ABCDE"


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

    def __init__(self, size: int = 512):
        self.aligned_crop = np.random.default_rng(1).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------- memory

class CpuMemory:
    """Peak resident memory of this process per run: the kernel's high-water mark (VmHWM), reset
    before each run through /proc/self/clear_refs; where that cannot be reset, the process's
    lifetime peak (getrusage), which only ever grows."""

    label = "peak RSS GiB"

    def __init__(self):
        self.resettable = os.access("/proc/self/clear_refs", os.W_OK) and self.hwm() is not None
        self._set_kind()

    def _set_kind(self):
        self.kind = "per run (VmHWM reset via /proc/self/clear_refs)" if self.resettable else \
            "process lifetime peak (getrusage ru_maxrss)"

    @staticmethod
    def hwm():
        """The process's peak RSS so far (VmHWM) in bytes, or None where /proc has no such line."""
        try:
            with open("/proc/self/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    @staticmethod
    def current() -> int:
        try:
            with open("/proc/self/statm") as handle:
                return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            return 0

    def sync(self):
        pass

    def reset(self):
        if self.resettable:
            try:
                with open("/proc/self/clear_refs", "w") as handle:
                    handle.write("5")
            except OSError:
                self.resettable = False
                self._set_kind()

    def peak(self) -> int:
        if self.resettable:
            return self.hwm()
        import resource  # Unix only

        scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class GpuMemory:
    label = "peak GPU GiB"
    kind = "torch.cuda.max_memory_allocated per run (includes the resident weights)"

    def __init__(self, torch):
        self.torch = torch

    def current(self) -> int:
        return self.torch.cuda.memory_allocated()

    def sync(self):
        self.torch.cuda.synchronize()

    def reset(self):
        self.torch.cuda.reset_peak_memory_stats()

    def peak(self) -> int:
        return self.torch.cuda.max_memory_allocated()


def gib(n: int) -> float:
    return round(n / 2 ** 30, 3)


# ------------------------------------------------------------------------------------- main

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--device", default="auto", help='"auto" (CUDA, else stop), "cuda", "cuda:N" or "cpu"')
    parser.add_argument("--precision", default=None, help="fp16 (default on CUDA), fp32 (default on the CPU), bf16")
    parser.add_argument("--size", type=int, default=512, help="frame width and height in px (default 512)")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--steps", type=int, default=8, help="steps run (strength 1)")
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help="which of A,B,C,D,E to run (default all), e.g. A,C")
    parser.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=True,
                        help="the length sweep of configuration A (default on)")
    parser.add_argument("--sweep-frames", default="16,48,96", help="frame counts of the length sweep")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=True,
                        help="one untimed 16-frame run first (default on)")
    parser.add_argument("--model-size", default="sd15", choices=("sd15", "tiny"),
                        help="sd15 (the measurement) or tiny (random_models' test models; smoke tests only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", help="also write the setup and rows as JSON here")
    args = parser.parse_args(argv)
    picked = [c for c in args.configs.upper() if c not in ", "]  # "A,C", "A C" or "AC"
    bad = [c for c in picked if c not in CONFIGS]
    if bad:
        parser.error(f"--configs: unknown {bad}; use letters of {','.join(CONFIGS)}")
    args.configs = [c for c in CONFIGS if c in picked]
    try:
        args.sweep_frames = [int(v) for v in args.sweep_frames.split(",") if v.strip()] if args.sweep else []
    except ValueError:
        parser.error(f"--sweep-frames must be comma-separated whole numbers, got {args.sweep_frames!r}")
    if args.size < 64 or args.size % 8:
        parser.error("--size must be a multiple of 8, at least 64")
    if args.frames < 1 or args.steps < 1:
        parser.error("--frames and --steps must be at least 1")
    return args


def pick_device(requested: str, torch) -> str:
    requested = (requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        raise SystemExit("gpu_diffusion.py: no CUDA GPU found (torch.cuda.is_available() is False). This script "
                         "measures the diffusion engine on a GPU; for a CPU smoke run of the same code pass "
                         "--device cpu (e.g. --device cpu --size 128 --frames 16 --steps 1).")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"gpu_diffusion.py: --device {requested} but no CUDA GPU is available; use --device cpu "
                         "for a CPU smoke run")
    if requested != "cpu" and not requested.startswith("cuda"):
        raise SystemExit(f"gpu_diffusion.py: unknown --device {requested!r}; use auto, cuda, cuda:N or cpu")
    return requested


def main(argv=None) -> list:
    args = parse_args(argv)
    import torch

    from talkinghead.pipeline.render.diffusion import DiffusionSettings, diffuse_frames, models_from_objects
    from talkinghead.pipeline.render.diffusion.random_models import build

    device = pick_device(args.device, torch)
    precision = args.precision or ("fp32" if device == "cpu" else "fp16")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device == "cpu":
        memory = CpuMemory()
        machine = f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, " \
                  f"{torch.get_num_threads()} torch threads)"
    else:
        if ":" in device:
            torch.cuda.set_device(device)
        memory = GpuMemory(torch)
        machine = torch.cuda.get_device_name(torch.cuda.current_device())
    setup = {"model_size": args.model_size, "device": device, "precision": precision, "size": args.size,
             "steps": args.steps, "machine": machine, "torch": torch.__version__, "memory": memory.kind}

    t0 = time.perf_counter()
    m = build(args.model_size, seed=0)
    setup["build_s"] = round(time.perf_counter() - t0, 2)
    setup["parameters_m"] = {k: round(sum(p.numel() for p in getattr(m, k).parameters()) / 1e6, 1)
                             for k in ("unet", "motion_adapter", "controlnet", "text_encoder", "vae")}
    setup["rss_after_build_gib"] = gib(CpuMemory.current())
    print(f"built {args.model_size} random models in {setup['build_s']:.1f} s on the CPU "
          f"({setup['parameters_m']} M parameters); running on {machine}, {precision}, torch {torch.__version__}",
          flush=True)
    t0 = time.perf_counter()
    # One copy of the models on the device, shared by every configuration: models_from_objects makes
    # a new UNetMotionModel (UNet + motion modules) per call, so building "with" and "without
    # ControlNet" separately would hold two UNets and count both in every memory figure.
    with_cn = models_from_objects(m.unet, m.vae, m.text_encoder, m.motion_adapter, m.controlnet, device=device,
                                  precision=precision)
    no_cn = dataclasses.replace(with_cn, controlnet=None)
    m.unet = m.motion_adapter = None  # the plain UNet and the adapter were copied into the motion UNet
    gc.collect()
    setup["place_s"] = round(time.perf_counter() - t0, 2)
    memory.sync()
    setup["weights_gib"] = gib(memory.current())
    # host RAM needed to build the random models and place them (before any per-run reset of VmHWM)
    setup["peak_rss_build_gib"] = gib(CpuMemory.hwm() or 0)
    print(f"models on {device} in {setup['place_s']:.1f} s; {'RSS' if device == 'cpu' else 'GPU memory'} "
          f"after loading {setup['weights_gib']} GiB; peak RSS while building and placing "
          f"{setup['peak_rss_build_gib']} GiB; memory: {memory.kind}", flush=True)

    reference = Ref(args.size)
    configs = {
        "A": ("A motion, cfg 7.5, 16/4", no_cn, {}, None),
        "B": ("B A + ControlNet", with_cn, {}, None),
        "C": ("C B + reference attention", with_cn, {}, reference),
        "D": ("D A, no guidance", no_cn, {"guidance": 1.0}, None),
        "E": ("E A, windows 24/6", no_cn, {"context_length": 24, "context_overlap": 6}, None),
    }
    rows = []

    def run(name, models, extra, ref, n):
        frames, marks = clip(n, args.size)
        settings = dict(strength=1.0, steps=args.steps, guidance=7.5, context_length=16, context_overlap=4,
                        mask_face=True, keep_background_pixels=True, decode_batch=8)
        settings.update(extra)
        gc.collect()
        memory.sync()
        memory.reset()
        t_start = time.perf_counter()
        stream = diffuse_frames(models, frames, marks, reference=ref, prompt="a portrait photo of a person talking",
                                settings=DiffusionSettings(**settings))
        memory.sync()
        t_sampled = time.perf_counter()
        for _ in stream.images():
            pass
        memory.sync()
        t_done = time.perf_counter()
        info = stream.info
        row = {"config": name, "frames": n, "windows": info["windows"], "steps": info["steps_run"],
               "sample_s": round(info["sample_s"], 3), "frames_per_s_per_step":
               round(n * info["steps_run"] / info["sample_s"], 3),
               "encode_ms_per_frame": round(info["encode_s"] * 1000 / n, 2),
               "decode_ms_per_frame": round((t_done - t_sampled) * 1000 / n, 2),
               "total_s": round(t_done - t_start, 2), "reference": info.get("reference"),
               "controlnet": info.get("landmark_control"), "max_unet_batch": info.get("max_unet_batch"),
               "finite": bool(torch.isfinite(stream.latents).all()),
               "peak_mem_gib": gib(memory.peak())}
        rows.append(row)
        print(json.dumps(row), flush=True)

    if args.warmup:
        run("warm-up", no_cn, {"guidance": 1.0}, None, 16)
        rows.clear()
    for key in args.configs:
        name, models, extra, ref = configs[key]
        run(name, models, extra, ref, args.frames)
    for n in args.sweep_frames:
        run("A length sweep", no_cn, {}, None, n)
    print()
    print(f"{args.model_size} random models, {args.size}x{args.size} px, {precision}, {args.steps} steps, "
          f"{machine}, torch {torch.__version__}; models built in {setup['build_s']} s, "
          f"{'RSS' if device == 'cpu' else 'GPU memory'} after loading {setup['weights_gib']} GiB")
    print()
    print(f"| config | frames | windows | steps | frames/s per step | encode ms/frame | decode ms/frame | "
          f"finite | {memory.label} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['frames']} | {r['windows']} | {r['steps']} | {r['frames_per_s_per_step']} | "
              f"{r['encode_ms_per_frame']} | {r['decode_ms_per_frame']} | {r['finite']} | {r['peak_mem_gib']} |")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"setup": setup, "rows": rows}, handle, indent=1)
    return rows


if __name__ == "__main__":
    main()
