"""Watermark benchmark: our tiled spread-spectrum mark vs invisible-watermark (dwtDct, dwtDctSvd).

Same 5 s, 25 fps clip of a natural image (skimage astronaut with a small per-frame shift and
noise), same attacks (ffmpeg: H.264 CRF 23/28, 50% downscale, 10% crops, VP9 WebM, brightness and
contrast +-10%, 25->30 fps, first second cut, combinations), same frames. Reports per attack: bit
accuracy and exact-payload for each method, PSNR, embed/detect frames/s at 512x512 on one thread,
and a false-positive sweep over >= 100 unmarked clips and images (max confidence vs threshold).

invisible-watermark embeds and decodes per frame: its bit accuracy is the mean over sampled frames,
and "exact" is a per-bit majority vote over those frames. Ours reads the whole file (`detect_file`).

Run: python tests/bench/bench_watermark.py [--size 512] [--no-imwatermark]
Helpers (make_clip, ATTACKS, attack, write_master) are shared with tests/unit/publish/test_watermark.py.
"""

from __future__ import annotations

import os

# Run as a script: one thread everywhere (the speed target is per core); BLAS pools start
# at numpy import, so this must come first. Not done on import (tests import this module).
if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Dict, Iterator, List, Optional, Sequence, Tuple  # noqa: E402

import numpy as np  # noqa: E402

from talkinghead.pipeline.core.ffmpeg import FfmpegWriter, run_ffmpeg  # noqa: E402
from talkinghead.pipeline.publish import watermark as wm  # noqa: E402

FPS = 25
SECONDS = 5
#: Master encode, like pipeline.publish.mux's defaults (what "our own output" is).
MASTER_ARGS = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
H264 = ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p"]
VP9 = ["-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "36", "-deadline", "realtime", "-cpu-used", "8",
       "-row-mt", "1", "-pix_fmt", "yuv420p"]


def _crop(side: str) -> str:
    """ffmpeg crop filter removing 10% from one side (even sizes for yuv420p)."""
    w = "trunc(iw*0.9/2)*2" if side in ("left", "right") else "iw"
    h = "trunc(ih*0.9/2)*2" if side in ("top", "bottom") else "ih"
    x = "iw-ow" if side == "left" else "0"
    y = "ih-oh" if side == "top" else "0"
    return f"crop={w}:{h}:{x}:{y}"


#: name -> (input options before -i, video filter or None, encoder args, output extension)
ATTACKS: Dict[str, Tuple[List[str], Optional[str], List[str], str]] = {
    "h264_crf23": ([], None, H264 + ["-crf", "23"], "mp4"),
    "h264_crf28": ([], None, H264 + ["-crf", "28"], "mp4"),
    "downscale_50": ([], "scale=trunc(iw/4)*2:trunc(ih/4)*2", H264 + ["-crf", "23"], "mp4"),
    "crop10_left": ([], _crop("left"), H264 + ["-crf", "23"], "mp4"),
    "crop10_right": ([], _crop("right"), H264 + ["-crf", "23"], "mp4"),
    "crop10_top": ([], _crop("top"), H264 + ["-crf", "23"], "mp4"),
    "crop10_bottom": ([], _crop("bottom"), H264 + ["-crf", "23"], "mp4"),
    "vp9_webm": ([], None, VP9, "webm"),
    "brightness+10": ([], "eq=brightness=0.1", H264 + ["-crf", "23"], "mp4"),
    "brightness-10": ([], "eq=brightness=-0.1", H264 + ["-crf", "23"], "mp4"),
    "contrast+10": ([], "eq=contrast=1.1", H264 + ["-crf", "23"], "mp4"),
    "contrast-10": ([], "eq=contrast=0.9", H264 + ["-crf", "23"], "mp4"),
    "fps25to30": ([], "fps=30", H264 + ["-crf", "23"], "mp4"),
    "cut_first_1s": (["-ss", "1"], None, H264 + ["-crf", "23"], "mp4"),
    "combo_scale50+crf28": ([], "scale=trunc(iw/4)*2:trunc(ih/4)*2", H264 + ["-crf", "28"], "mp4"),
    "combo_crop10left+vp9": ([], _crop("left"), VP9, "webm"),
    "combo_cut1s+fps30": (["-ss", "1"], "fps=30", H264 + ["-crf", "23"], "mp4"),
    "combo_contrast-10+crop10top": ([], "eq=contrast=0.9," + _crop("top"), H264 + ["-crf", "28"],
                                    "mp4"),
}


def make_clip(size: int = 512, frames: int = FPS * SECONDS, seed: int = 0,
              image: Optional[np.ndarray] = None) -> Iterator[np.ndarray]:
    """A natural-looking clip: uint8 RGB [size, size, 3] frames of `image` (default astronaut),
    shifted by a slow sub-pixel wobble (<= 2 px) plus Gaussian noise (sigma 1 level)."""
    import cv2  # noqa: PLC0415
    from skimage import data  # noqa: PLC0415

    src = data.astronaut() if image is None else image
    if src.ndim == 2:
        src = np.stack([src] * 3, -1)
    base = cv2.resize(src[..., :3], (size, size), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(seed)
    for i in range(frames):
        m = np.float32([[1, 0, 2 * np.sin(i / 7)], [0, 1, 1.5 * np.cos(i / 9)]])
        f = cv2.warpAffine(base, m, (size, size), borderMode=cv2.BORDER_REFLECT)
        yield np.clip(f + rng.normal(0, 1.0, f.shape), 0, 255).astype(np.uint8)


def write_master(frames: Sequence[np.ndarray], path: str, fps: int = FPS) -> str:
    """Encodes uint8 RGB frames to an H.264 MP4 like our pipeline's output (CRF 18, yuv420p)."""
    h, w = frames[0].shape[:2]
    args = ["-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps),
            "-i", "-", *MASTER_ARGS, path]
    with FfmpegWriter(args) as writer:
        for f in frames:
            writer.write(np.ascontiguousarray(f).tobytes())
    return path


def attack(src: str, name: str, out_dir: str) -> str:
    """Applies ATTACKS[name] to video `src` with ffmpeg; returns the output path."""
    pre, vf, enc, ext = ATTACKS[name]
    out = os.path.join(out_dir, f"{os.path.splitext(os.path.basename(src))[0]}-{name}.{ext}")
    args = ["-y", *pre, "-i", src, "-an", "-threads", "1"]
    if vf:
        args += ["-vf", vf]
    run_ffmpeg(args + enc + [out])
    return out


def read_rgb(path: str, every: int = 1) -> List[np.ndarray]:
    """Decodes every `every`-th frame of a video as uint8 RGB [H,W,3]."""
    import av  # noqa: PLC0415

    out = []
    with av.open(path) as c:
        for i, fr in enumerate(c.decode(video=0)):
            if i % every == 0:
                out.append(fr.to_ndarray(format="rgb24"))
    return out


def unmarked_corpus(size: int = 256) -> Iterator[Tuple[str, List[np.ndarray]]]:
    """>= 100 unmarked items: skimage images, random crops/resizes, noise, gradients, clips."""
    import cv2  # noqa: PLC0415
    from skimage import data  # noqa: PLC0415

    names = ["astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "page",
             "text", "horse", "clock", "immunohistochemistry", "hubble_deep_field", "retina",
             "motorcycle_left", "colorwheel", "logo", "brick", "grass", "gravel", "cat"]
    images = []
    for n in names:
        try:
            im = getattr(data, n)()
        except Exception:  # noqa: BLE001 - some need pooch downloads: skip those
            continue
        im = np.asarray(im)
        if im.dtype == bool:
            im = im.astype(np.uint8) * 255
        if im.dtype != np.uint8:
            im = (255 * (im - im.min()) / max(np.ptp(im), 1e-9)).astype(np.uint8)
        if im.ndim == 2:
            im = np.stack([im] * 3, -1)
        images.append((n, np.ascontiguousarray(im[..., :3])))
    rng = np.random.default_rng(123)
    for n, im in images:  # whole image
        yield f"image:{n}", [im]
    for k in range(40):  # random crops, random resizes
        n, im = images[k % len(images)]
        h, w = im.shape[:2]
        ch, cw = int(rng.integers(min(h, 96), h + 1)), int(rng.integers(min(w, 96), w + 1))
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = im[y0:y0 + ch, x0:x0 + cw]
        scale = float(rng.uniform(0.5, 2.0))
        crop = cv2.resize(crop, (max(64, int(cw * scale)), max(64, int(ch * scale))))
        yield f"crop:{n}:{k}", [crop]
    for k in range(15):  # noise of several spectra
        noise = rng.normal(128, float(rng.uniform(2, 40)), (size, size, 3))
        if k % 3 == 1:
            noise = cv2.GaussianBlur(noise, (0, 0), float(rng.uniform(0.5, 3)))
        if k % 3 == 2:  # periodic texture: the hardest case for a tiled mark
            yy, xx = np.mgrid[0:size, 0:size]
            noise += 20 * np.sin(2 * np.pi * (xx / rng.uniform(4, 40) + yy / rng.uniform(4, 40)))[..., None]
        yield f"noise:{k}", [np.clip(noise, 0, 255).astype(np.uint8)]
    for k in range(10):  # gradients and flat fields
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        g = 255 * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))
        g = (g - g.min()) / max(np.ptp(g), 1e-6) * rng.uniform(0, 255)
        yield f"gradient:{k}", [np.repeat(g[..., None], 3, -1).astype(np.uint8)]
    for k in range(16):  # unmarked clips (25 frames), several images and sizes
        n, im = images[k % len(images)]
        clip_size = [256, 320, 384, 512][k % 4]
        yield f"clip:{n}:{clip_size}", list(make_clip(clip_size, 25, seed=k, image=im))


def _imwm_encoder(method: str, payload: bytes):
    from imwatermark import WatermarkDecoder, WatermarkEncoder  # noqa: PLC0415

    enc = WatermarkEncoder()
    enc.set_watermark("bytes", payload)
    dec = WatermarkDecoder("bits", len(payload) * 8)

    def embed(rgb: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(enc.encode(rgb[..., ::-1].copy(), method)[..., ::-1])

    def decode(rgb: np.ndarray) -> np.ndarray:
        return np.asarray(dec.decode(rgb[..., ::-1].copy(), method), np.uint8)
    return embed, decode


def main(argv: Optional[Sequence[str]] = None) -> int:
    import cv2  # noqa: PLC0415

    cv2.setNumThreads(1)
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--no-imwatermark", action="store_true")
    parser.add_argument("--imwm-every", type=int, default=12,
                        help="invisible-watermark decodes every Nth frame (it is slow)")
    parser.add_argument("--strengths", default="0.5,0.75,1.0,1.4,1.7,2.0",
                        help="strength factors for the sweep (comma-separated; empty: no sweep)")
    args = parser.parse_args(argv)
    cfg = wm.DEFAULT_WATERMARK_CONFIG
    payload = wm.make_payload(7, 42, 1764547200)
    truth_bits = np.unpackbits(np.frombuffer(payload, np.uint8))
    frames = list(make_clip(args.size))
    print(f"== Watermark benchmark: {len(frames)} frames {args.size}x{args.size} @ {FPS} fps, "
          f"payload {payload.hex()} (64 bits), key {cfg.key!r}")

    embedder = wm.WatermarkEmbedder(payload, cfg)
    embedder.embed(frames[0])  # builds the tiled pattern (once per size)
    t0 = time.perf_counter()
    marked = [embedder.embed(f) for f in frames]
    embed_fps = len(frames) / (time.perf_counter() - t0)
    psnrs = [wm.psnr(a, b) for a, b in zip(frames, marked)]
    t0 = time.perf_counter()
    res = wm.detect_frames(marked, cfg)
    detect_fps = len(frames) / (time.perf_counter() - t0)
    methods = {"ours": (marked, psnrs, embed_fps, detect_fps)}
    imwm = {}
    if not args.no_imwatermark:
        for method in ("dwtDct", "dwtDctSvd"):
            embed, decode = _imwm_encoder(method, payload)
            t0 = time.perf_counter()
            mk = [embed(f) for f in frames]
            efps = len(frames) / (time.perf_counter() - t0)
            sample = mk[::args.imwm_every]
            t0 = time.perf_counter()
            for f in sample:
                decode(f)
            dfps = len(sample) / (time.perf_counter() - t0)
            methods[method] = (mk, [wm.psnr(a, b) for a, b in zip(frames, mk)], efps, dfps)
            imwm[method] = decode
    print("\n-- quality and speed (one thread; ours detect = whole clip, per frame)")
    print(f"{'method':<12}{'PSNR min':>10}{'PSNR mean':>11}{'embed f/s':>11}{'detect f/s':>12}")
    for name, (_, ps, efps, dfps) in methods.items():
        print(f"{name:<12}{min(ps):>10.2f}{np.mean(ps):>11.2f}{efps:>11.1f}{dfps:>12.1f}")
    print(f"ours on the raw marked frames: found={res.found} z={res.confidence:.1f} "
          f"share={res.frames_marked_share:.2f}")

    print("\n-- attacks (bit acc = share of the 64 payload bits right; exact = all 64 right)")
    head = f"{'attack':<30}{'ours acc':>9}{'exact':>6}{'z':>7}{'data':>6}{'share':>6}"
    for m in imwm:
        head += f"{m + ' acc':>15}{'exact':>6}"
    print(head)
    all_ok = True
    with tempfile.TemporaryDirectory() as tmp:
        masters = {n: write_master(v[0], os.path.join(tmp, f"{n}.mp4")) for n, v in methods.items()}
        for name in ["master_crf18"] + list(ATTACKS):
            row = f"{name:<30}"
            for n, master in masters.items():
                path = master if name == "master_crf18" else attack(master, name, tmp)
                if n == "ours":
                    r = wm.detect_file(path, cfg)
                    got = r.bits[:64] if r.bits is not None else np.zeros(64, np.uint8)
                    acc = float(np.mean(got == truth_bits))
                    all_ok &= bool(r.found and r.payload == payload)
                    row += (f"{acc:>9.3f}{'yes' if r.found and r.payload == payload else 'NO':>6}"
                            f"{r.confidence:>7.1f}{r.data_z:>6.1f}{r.frames_marked_share:>6.2f}")
                else:
                    bits = np.stack([imwm[n](f) for f in read_rgb(path, args.imwm_every)])
                    acc = float(np.mean(bits == truth_bits[None]))
                    vote = (bits.mean(0) > 0.5).astype(np.uint8)
                    row += f"{acc:>15.3f}{'yes' if np.array_equal(vote, truth_bits) else 'NO':>6}"
            print(row, flush=True)

    print(f"\n-- false positives: unmarked clips and images (found = keyed CRC valid, z >= "
          f"{cfg.z_threshold}, data agreement >= {cfg.data_threshold})")
    zs, dzs, names, flagged, crc_pass = [], [], [], 0, 0
    for name, items in unmarked_corpus():
        r = wm.detect_frames(items, cfg)
        zs.append(r.confidence)
        dzs.append(r.data_z)
        names.append(name)
        flagged += int(r.found)
        crc_pass += int(any("CRC matched" in n for n in r.notes))
    zs, dzs = np.asarray(zs), np.asarray(dzs)
    print(f"items {len(zs)}, flagged {flagged}, CRC passes {crc_pass}")
    print(f"sync z: max {zs.max():.2f} ({names[int(zs.argmax())]}), p99 "
          f"{np.percentile(zs, 99):.2f}, median {np.median(zs):.2f}; threshold {cfg.z_threshold}")
    print(f"data agreement: max {dzs.max():.2f} ({names[int(dzs.argmax())]}), p99 "
          f"{np.percentile(dzs, 99):.2f}, median {np.median(dzs):.2f}; threshold "
          f"{cfg.data_threshold} (a loose sanity gate: the CRC is the guard)")
    decodes = 2 * cfg.n_candidates  # per candidate geometry: sync-aided, then decision-aided weights
    odds = decodes / 2.0 ** wm.CRC_BITS
    print(f"CRC-{wm.CRC_BITS} guard: up to {decodes} decodes per item -> a false pass has odds "
          f"{odds:.1e} per item, {odds * len(zs):.1e} expected over these {len(zs)} items")
    strengths = [float(v) for v in args.strengths.split(",") if v.strip()]
    if strengths:
        print("\n-- strength sweep (watermark_strength on Mux / strength on Watermark): PSNR and the attacks "
              "recovered exactly, same clip and attacks")
        print(f"{'strength':>8}{'PSNR min':>10}{'floor':>7}{'recovered':>11}  not recovered")
        with tempfile.TemporaryDirectory() as tmp:
            for strength in strengths:
                sweep_embedder = wm.WatermarkEmbedder(payload, wm.config_for_strength(strength))
                sweep_marked = [sweep_embedder.embed(f) for f in frames]
                psnr_min = min(wm.psnr(a, b) for a, b in zip(frames, sweep_marked))
                master = write_master(sweep_marked, os.path.join(tmp, f"strength{strength:g}.mp4"))
                missed = []
                for name in ATTACKS:
                    r = wm.detect_file(attack(master, name, tmp), cfg)
                    if not (r.found and r.payload == payload):
                        missed.append(name)
                print(f"{strength:>8.2f}{psnr_min:>10.2f}{wm.psnr_floor_db(strength):>7.1f}"
                      f"{len(ATTACKS) - len(missed):>6}/{len(ATTACKS):<4}  {', '.join(missed) or '-'}", flush=True)
    print(f"\nall attacks recovered exactly by ours: {all_ok} (issue 6 target: every attack, no false positive)")
    # a benchmark reports; misses are in its output (and the xfail tests), not in its exit status
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
