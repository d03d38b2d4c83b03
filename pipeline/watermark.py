"""Invisible, robust video watermark: a keyed, tiled spread-spectrum pattern in luma.

Design (issue 6):

* **One pattern for every frame.** The mark is a key-seeded pattern added to luma (the same delta
  on R, G and B, so chroma is untouched), identical in every frame. Frame-rate conversion, cut
  seconds and re-encodes therefore cannot desynchronise it, and detection simply averages luma over
  all frames, which beats compression noise and moving content.
* **Tiled with a fixed period** (`WatermarkConfig.tile_px`, default 128 px). A crop only shifts the
  phase of the tiling: the detector folds the averaged luma (high-passed and divided by its local
  level) modulo the period and finds the cyclic offset by FFT cross-correlation with the key's sync
  pattern. A resize changes the period: the detector tries `search_scales` and keeps the best.
* **The tile** is a grid of `cell_px` cells, each a +-1 chip of a keyed pseudo-random sequence,
  smoothed by a small Gaussian (no blocky edges; mid/low frequencies that survive H.264/VP9). Each
  cell carries one coded bit as chip * (+-1); coded bits are spread over the cells by a keyed
  permutation (interleaving). A separate keyed sync pattern is superimposed with `sync_energy` of
  the mark's energy.
* **Payload**: 64 bits (`make_payload`: generator id, clip id, unix time) + a keyed 16-bit CRC,
  protected by a rate-1/2, K=7 convolutional code (generators 133/171 octal, soft Viterbi decoding):
  (64 + 16 + 6 tail) * 2 = 172 coded bits.
* **Perceptual mask**: the mark is scaled by local luma activity (local standard deviation), so it
  is weak on flat backgrounds and skin and stronger in texture; a per-frame cap keeps the RMS change
  <= `max_rms` (PSNR >= 40 dB against the unmarked frame, rounding included).
* **Detector filter**: after folding, a cyclic high-pass, a notch on the codec's 8x8 block-grid
  frequencies, and whitening by the smoothed power spectrum (the host residual is coloured).
* **Decision**: `found` needs a valid keyed CRC, a sync z-score >= `z_threshold` and a data
  agreement (soft bits vs the decoded codeword) >= `data_threshold`; thresholds were set from
  >= 100 unmarked clips and images (tests/bench/bench_watermark.py). `confidence` is the sync z.
* Optional **informed embedding** (`informed=True`): cancels the host's projection on the bit
  patterns per frame. It makes raw frames decode perfectly but did not survive compression better
  in our measurements and costs sync energy, so it is off by default.

Pure numpy (+ OpenCV when installed, for speed; scipy otherwise). Never imports ComfyUI or torch.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError

try:  # OpenCV is optional: 5-10x faster filters and resizes than scipy.
    import cv2 as _cv2  # noqa: N813
except Exception:  # pragma: no cover - exercised only where OpenCV is missing
    _cv2 = None


# ---------------------------------------------------------------------------------------------
# Configuration and payload
# ---------------------------------------------------------------------------------------------

#: Payload size in bits carried by every mark (see `make_payload` for the layout).
PAYLOAD_BITS = 64
#: Bits of the keyed CRC appended to the payload before channel coding.
CRC_BITS = 16
#: Convolutional code: constraint length and generator polynomials (octal 133, 171; NASA/CCSDS).
CONV_K = 7
CONV_POLYS = (0o133, 0o171)


@dataclass(frozen=True)
class WatermarkConfig:
    """Everything the embedder and the detector must agree on (plus detector-only knobs).

    Attributes:
        key: secret key string; seeds the chips, the cell roles and the CRC. Different keys give
            orthogonal marks.
        tile_px: tile period in pixels at the embedded resolution (pattern repeats every tile_px).
        cell_px: side of one chip cell in pixels; tile_px must be a multiple of it.
        smooth_sigma_px: Gaussian smoothing of the chip grid, in pixels (removes cell edges).
        sync_period_px: period of the separate sync pattern (divides tile_px). Shorter periods
            fold more repeats but their small template gives weak z-scores (32 px measured
            worse); when shorter than tile_px the detector tries every consistent tile offset.
        sync_energy: share of the mark's energy in the sync pattern (the rest carries data).
        strength: mark amplitude in 8-bit luma levels before masking (unit-RMS pattern).
        mask_window_px: window of the local-activity (standard deviation) mask, pixels.
        mask_ref_std: local std (8-bit levels) at which the mask gain is 1.
        mask_min, mask_max: clamp of the mask gain (flat areas get mask_min).
        max_rms: per-frame cap on the RMS change in 8-bit levels (2.4 -> PSNR >= 40.4 dB incl.
            rounding).
        informed: cancel the host's interference with the detector statistics at embedding
            (see WatermarkEmbedder._host_correction); informed_margin: the margin target, in
            units of the mark's own nominal response; informed_mark_share: share of max_rms
            given to the masked mark before the correction is added.
        highpass_sigma_px: detector high-pass: luma minus its Gaussian blur of this sigma.
        norm_window_px, norm_floor: detector local normalisation: the residual is divided by
            its local RMS (box window, pixels) plus the floor (8-bit levels).
        local_norm: apply the local normalisation (else fold plain luma).
        whiten_sigma_bins, whiten_exp, whiten_floor: the folded tile's spectrum is divided by
            (its power spectrum smoothed over whiten_sigma_bins FFT bins + whiten_floor * mean
            power) ** whiten_exp.
        whiten_bits: read the bits from the whitened tile too (else only the sync search).
        block_px: codec block size whose grid frequencies are notched out (0: no notch).
        sync_whiten: template whitening of the sync pattern: its spectrum is divided by
            (|S| + sync_whiten * mean |S|); small values sharpen the correlation peak.
        search_scales: detector's candidate resize factors (received size / embedded size).
        z_threshold: minimum sync-correlation z-score (peak vs mean/std of all cyclic offsets).
        data_threshold: minimum `data_agreement` of the soft bits with the decoded codeword.
            `found` needs a valid keyed CRC-16 and both thresholds. Calibration (Nov 2026,
            tests/bench/bench_watermark.py, 101 unmarked clips/images): unmarked data agreement
            max 9.06 (median 8.6; Viterbi's path search biases noise upwards), sync z max 8.3,
            no CRC pass; correctly decoded marked clips 10.0-11.5 and z 6.6-26.
        frame_z_threshold: per-frame z-score above which a frame counts as marked.
        max_share_frames: at most this many frames are kept (subsampled) to compute the share of
            marked frames; bounds detector memory for long videos.
    """

    key: str = "talkinghead-v1"
    tile_px: int = 128
    cell_px: int = 4
    smooth_sigma_px: float = 1.0
    sync_period_px: int = 128
    sync_energy: float = 0.35
    strength: float = 3.2
    mask_window_px: int = 9
    mask_ref_std: float = 10.0
    mask_min: float = 0.5
    mask_max: float = 1.4
    max_rms: float = 2.4
    informed: bool = False
    informed_margin: float = 1.0
    informed_mark_share: float = 0.6
    highpass_sigma_px: float = 3.0
    norm_window_px: int = 9
    norm_floor: float = 0.5
    whiten_sigma_bins: float = 2.0
    whiten_exp: float = 1.0
    local_norm: bool = True
    block_px: int = 8
    whiten_bits: bool = True
    sync_whiten: float = 1.0
    whiten_floor: float = 0.05
    search_scales: Tuple[float, ...] = (1.0, 0.5, 0.75, 2.0 / 3.0, 0.9, 0.8, 1.25, 1.5, 2.0)
    z_threshold: float = 5.0
    data_threshold: float = 9.5
    frame_z_threshold: float = 3.0
    max_share_frames: int = 256

    def validate(self) -> None:
        """Raises InputError for inconsistent settings."""
        if self.tile_px < 16 or self.cell_px < 1 or self.tile_px % self.cell_px:
            raise InputError("watermark config", f"tile_px={self.tile_px} and cell_px={self.cell_px}"
                             " are inconsistent", "use a tile_px >= 16 that is a multiple of cell_px")
        data_cells = (self.tile_px // self.cell_px) ** 2
        if data_cells < coded_bit_count():
            raise InputError("watermark config", f"only {data_cells} data cells for "
                             f"{coded_bit_count()} coded bits", "use a larger tile_px or smaller cell_px")
        if not 0.05 <= self.sync_energy <= 0.8:
            raise InputError("watermark config", f"sync_energy={self.sync_energy}",
                             "use a value between 0.05 and 0.8")
        if self.tile_px % self.sync_period_px or self.sync_period_px % self.cell_px:
            raise InputError("watermark config", f"sync_period_px={self.sync_period_px}",
                             "use a divisor of tile_px that is a multiple of cell_px")
        if self.strength <= 0 or self.max_rms <= 0:
            raise InputError("watermark config", "strength and max_rms must be positive",
                             "use e.g. strength=3.2, max_rms=2.4")


DEFAULT_WATERMARK_CONFIG = WatermarkConfig()


def make_payload(generator_id: int, clip_id: int, unix_time_s: int) -> bytes:
    """Packs the 64-bit payload, big-endian.

    Layout (bits, most significant first): generator_id 16 | clip_id 16 | unix_time_s 32.

    Args:
        generator_id: 0..65535, which generator/installation made the clip.
        clip_id: 0..65535, clip counter or hash.
        unix_time_s: 0..2**32-1, creation time in seconds since 1970 (valid until 2106).
    Returns:
        8 bytes.
    """
    for name, value, bits in (("generator_id", generator_id, 16), ("clip_id", clip_id, 16),
                              ("unix_time_s", unix_time_s, 32)):
        if not isinstance(value, (int, np.integer)) or not 0 <= int(value) < (1 << bits):
            raise InputError(name, f"{value!r} is not an integer in 0..{(1 << bits) - 1}",
                             f"pass a value that fits in {bits} bits")
    return ((int(generator_id) << 48) | (int(clip_id) << 32) | int(unix_time_s)).to_bytes(8, "big")


def parse_payload(payload: bytes) -> Dict[str, int]:
    """Inverse of `make_payload`: {"generator_id", "clip_id", "unix_time_s"}."""
    value = int.from_bytes(bytes(payload), "big")
    return {"generator_id": value >> 48, "clip_id": (value >> 32) & 0xFFFF,
            "unix_time_s": value & 0xFFFFFFFF}


def _crc(key: str, payload: bytes) -> int:
    return zlib.crc32(key.encode("utf-8") + b"\x00" + bytes(payload)) & ((1 << CRC_BITS) - 1)


def _bytes_to_bits(data: bytes) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes(data), np.uint8))


def coded_bit_count() -> int:
    """Number of channel bits: (payload + CRC + tail) * 2."""
    return (PAYLOAD_BITS + CRC_BITS + CONV_K - 1) * len(CONV_POLYS)


def _conv_tables() -> Tuple[np.ndarray, np.ndarray]:
    """For each state (last K-1 input bits) and input u: next state and the 2 output bits."""
    n_states = 1 << (CONV_K - 1)
    nxt = np.zeros((n_states, 2), np.int64)
    out = np.zeros((n_states, 2, len(CONV_POLYS)), np.int8)
    for s in range(n_states):
        for u in (0, 1):
            reg = (u << (CONV_K - 1)) | s  # newest bit in the top position
            nxt[s, u] = reg >> 1
            for j, poly in enumerate(CONV_POLYS):
                out[s, u, j] = bin(reg & _reverse_bits(poly, CONV_K)).count("1") & 1
    return nxt, out


def _reverse_bits(value: int, width: int) -> int:
    return int(format(value, f"0{width}b")[::-1], 2)


_NEXT, _OUT = _conv_tables()


def encode_bits(payload: bytes, key: str) -> np.ndarray:
    """Payload -> coded bits (uint8 0/1, shape [coded_bit_count()]): CRC, tail, conv. code."""
    if len(payload) * 8 != PAYLOAD_BITS:
        raise InputError("payload", f"{len(payload)} bytes", f"pass {PAYLOAD_BITS // 8} bytes "
                         "(see make_payload)")
    crc = _crc(key, payload).to_bytes(CRC_BITS // 8, "big")
    return _conv_encode(_bytes_to_bits(payload + crc))


def _conv_encode(info: np.ndarray) -> np.ndarray:
    """Info bits (0/1) -> convolutional code bits, with the K-1 zero tail appended."""
    state, coded = 0, []
    for u in np.concatenate([np.asarray(info, np.uint8), np.zeros(CONV_K - 1, np.uint8)]):
        coded.extend(_OUT[state, int(u)])
        state = int(_NEXT[state, int(u)])
    return np.asarray(coded, np.uint8)


def data_agreement(soft: np.ndarray, info: np.ndarray) -> float:
    """z-like agreement of soft channel values [n_coded] with the codeword of `info` bits:
    sum(soft * c) / sqrt(sum(soft^2)), c = +-1. ~N(0,1) for a fixed codeword and pure noise
    (the Viterbi search biases it upwards on noise: the threshold is calibrated on unmarked
    content); sqrt(n_coded) ~ 13 when every channel bit agrees."""
    c = _conv_encode(info).astype(np.float64) * 2.0 - 1.0
    soft = np.asarray(soft, np.float64)
    return float(soft @ c / max(np.sqrt(soft @ soft), 1e-12))


def decode_bits(soft: np.ndarray, key: str) -> Tuple[Optional[bytes], np.ndarray]:
    """Soft Viterbi decoding. soft: [coded_bit_count()] floats, > 0 means bit 1.

    Returns:
        (payload bytes or None when the CRC fails, decoded info bits [PAYLOAD_BITS + CRC_BITS]).
    """
    n_out = len(CONV_POLYS)
    steps = soft.size // n_out
    signs = 2.0 * _OUT.astype(np.float64) - 1.0  # [S, 2, n_out]
    n_states = _NEXT.shape[0]
    metric = np.full(n_states, -np.inf)
    metric[0] = 0.0
    back = np.zeros((steps, n_states), np.int64)  # predecessor * 2 + u, per new state
    src = np.repeat(np.arange(n_states), 2)
    inp = np.tile([0, 1], n_states)
    dst = _NEXT[src, inp]
    for t in range(steps):
        branch = signs[src, inp] @ soft[t * n_out:(t + 1) * n_out]
        cand = metric[src] + branch
        order = np.lexsort((-cand, dst))  # per destination: best candidate first
        first = np.ones(order.size, bool)
        first[1:] = dst[order][1:] != dst[order][:-1]
        best = order[first]
        new = np.full(n_states, -np.inf)
        new[dst[best]] = cand[best]
        back[t, dst[best]] = src[best] * 2 + inp[best]
        metric = new
    state, bits = 0, np.zeros(steps, np.uint8)  # tail bits force the end state to 0
    for t in range(steps - 1, -1, -1):
        code = back[t, state]
        bits[t] = code & 1
        state = code >> 1
    info = bits[:PAYLOAD_BITS + CRC_BITS]
    raw = np.packbits(info).tobytes()
    payload, crc = raw[:PAYLOAD_BITS // 8], int.from_bytes(raw[PAYLOAD_BITS // 8:], "big")
    return (payload if _crc(key, payload) == crc else None), info


# ---------------------------------------------------------------------------------------------
# Image helpers (OpenCV when present)
# ---------------------------------------------------------------------------------------------

def _gauss(img: np.ndarray, sigma: float) -> np.ndarray:
    if _cv2 is not None:
        return _cv2.GaussianBlur(img, (0, 0), sigma, borderType=_cv2.BORDER_REFLECT)
    from scipy.ndimage import gaussian_filter  # noqa: PLC0415
    return gaussian_filter(img, sigma, mode="reflect", truncate=3.0)


def _box(img: np.ndarray, size: int) -> np.ndarray:
    if _cv2 is not None:
        return _cv2.blur(img, (size, size), borderType=_cv2.BORDER_REFLECT)
    from scipy.ndimage import uniform_filter  # noqa: PLC0415
    return uniform_filter(img, size, mode="reflect")


def _resize(img: np.ndarray, height: int, width: int) -> np.ndarray:
    if img.shape[:2] == (height, width):
        return img
    if _cv2 is not None:
        interp = _cv2.INTER_AREA if height < img.shape[0] else _cv2.INTER_LINEAR
        return _cv2.resize(img, (width, height), interpolation=interp)
    from scipy.ndimage import zoom  # noqa: PLC0415
    return zoom(img, (height / img.shape[0], width / img.shape[1]), order=1)


def _luma(frame: np.ndarray) -> np.ndarray:
    """uint8 RGB [H,W,3] (or gray [H,W]) -> float32 luma [H,W], BT.601 weights, 0..255."""
    if frame.ndim == 2:
        return frame.astype(np.float32)
    if _cv2 is not None and frame.dtype == np.uint8:
        return _cv2.cvtColor(frame, _cv2.COLOR_RGB2GRAY).astype(np.float32)
    f = frame.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def _check_frame(frame: Any, name: str = "frame") -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise InputError(name, f"expected uint8 RGB [H,W,3], got {arr.dtype} {arr.shape}",
                         "convert the frame to uint8 RGB (e.g. (x * 255).round().astype(np.uint8))")
    if min(arr.shape[:2]) < 32:
        raise InputError(name, f"frame {arr.shape[1]}x{arr.shape[0]} is too small to mark",
                         "use frames of at least 32x32 pixels")
    return arr


# ---------------------------------------------------------------------------------------------
# The keyed tile
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Tile:
    """Keyed layout. P = tile_px, S = sync_period_px, C = P // cell_px.

    Attributes:
        role: [C, C] int, the coded bit each data cell carries.
        chips: [C, C] float32 +-1 data chips.
        sync: [S, S] float32 rendered sync pattern (repeats every S px inside the tile).
        data_basis: [n_coded, P*P] float32 rendered per-bit patterns (chip signs, bit = 1).
        data_norm, sync_norm: RMS of the rendered data tile / sync pattern.
        proj: [n_coded, P*P] float32: high-passed, block-notched data patterns (detector filter).
        proj_gain: [n_coded] <data_basis_k, proj_k>.
        sync_proj: [S*S] float32 filtered sync; sync_gain: <sync, sync_proj>.
    """

    role: np.ndarray
    chips: np.ndarray
    sync: np.ndarray
    data_basis: np.ndarray
    data_norm: float
    sync_norm: float
    proj: np.ndarray
    proj_gain: np.ndarray
    sync_proj: np.ndarray
    sync_gain: float


def _render(cells: np.ndarray, config: WatermarkConfig) -> np.ndarray:
    """Cell values [c,c] -> cyclically smoothed pattern [c*cell_px]^2 float32."""
    up = np.kron(cells, np.ones((config.cell_px, config.cell_px), np.float32))
    p = up.shape[-1]
    f = np.fft.fftfreq(p)
    h = np.exp(-2.0 * (np.pi * config.smooth_sigma_px) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(up) * h)).astype(np.float32)


def _highpass_cyclic(tiles: np.ndarray, sigma: float) -> np.ndarray:
    """x - Gaussian(x, sigma) with wrap-around, over the last two axes of [..., P, P]."""
    p = tiles.shape[-1]
    f = np.fft.fftfreq(p)
    h = 1.0 - np.exp(-2.0 * (np.pi * sigma) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    return np.real(np.fft.ifft2(np.fft.fft2(tiles) * h)).astype(np.float32)


def _detector_filter(tiles: np.ndarray, config: WatermarkConfig, scale: float) -> np.ndarray:
    """The detector's linear filter on folded tiles [..., p, p]: cyclic high-pass, then removal
    of the codec block-grid frequencies (8x8 DCT blocks at `scale`)."""
    p = tiles.shape[-1]
    f = np.fft.fftfreq(p)
    h = 1.0 - np.exp(-2.0 * (np.pi * config.highpass_sigma_px) ** 2
                     * (f[:, None] ** 2 + f[None, :] ** 2))
    h = h * _block_notch(p, scale, config.block_px)
    return np.real(np.fft.ifft2(np.fft.fft2(tiles) * h))


_TILE_CACHE: Dict[WatermarkConfig, _Tile] = {}


def _tile(config: WatermarkConfig) -> _Tile:
    cached = _TILE_CACHE.get(config)
    if cached is not None:
        return cached
    config.validate()
    seed = int.from_bytes(hashlib.sha256(config.key.encode("utf-8")).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    c = config.tile_px // config.cell_px
    n = c * c
    n_coded = coded_bit_count()
    chips = rng.choice(np.array([-1.0, 1.0], np.float32), size=(c, c))
    role = (rng.permutation(n) % n_coded).reshape(c, c)
    cs = config.sync_period_px // config.cell_px
    sync = _render(rng.choice(np.array([-1.0, 1.0], np.float32), size=(cs, cs)), config)
    basis = np.stack([_render(np.where(role == k, chips, 0.0).astype(np.float32), config).ravel()
                      for k in range(n_coded)])
    data_norm = float(np.sqrt(np.mean(_render(chips, config) ** 2)))
    sync_norm = float(np.sqrt(np.mean(sync ** 2)))
    p = config.tile_px
    proj = _detector_filter(basis.reshape(n_coded, p, p), config, 1.0).reshape(n_coded, -1)
    gain = np.einsum("kn,kn->k", basis.astype(np.float64), proj)
    sync_proj = _detector_filter(sync, config, 1.0)
    tile = _Tile(role, chips, sync, basis, data_norm, sync_norm, proj.astype(np.float32), gain,
                 sync_proj.ravel().astype(np.float32), float(np.sum(sync * sync_proj)))
    _TILE_CACHE[config] = tile
    return tile


def _sync_weights(config: WatermarkConfig, t: _Tile) -> Tuple[float, float]:
    """Multipliers of the rendered data / sync patterns in the unit-RMS tile."""
    return (np.sqrt(1.0 - config.sync_energy) / t.data_norm,
            np.sqrt(config.sync_energy) / t.sync_norm)


def _payload_tile(payload: bytes, config: WatermarkConfig) -> np.ndarray:
    """The unit-RMS tile [P,P] float32 carrying `payload` (data cells + repeated sync)."""
    t = _tile(config)
    bits = encode_bits(payload, config.key).astype(np.float32) * 2.0 - 1.0
    data = _render((t.chips * bits[t.role]).astype(np.float32), config)
    reps = config.tile_px // config.sync_period_px
    wd, ws = _sync_weights(config, t)
    return (wd * data + ws * np.tile(t.sync, (reps, reps))).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Embedding
# ---------------------------------------------------------------------------------------------

class WatermarkEmbedder:
    """Adds the mark to uint8 RGB frames, one at a time (streaming, constant memory).

    The tiled pattern is built once per frame size (lazily, on the first frame of that size).

        embedder = WatermarkEmbedder(make_payload(7, 42, int(time.time())))
        for frame in frames:                    # uint8 [H, W, 3]
            out = embedder.embed(frame)         # uint8 [H, W, 3], PSNR >= 40 dB vs frame

    Args:
        payload: 8 bytes, e.g. from `make_payload`.
        config: shared with the detector (same key and tile geometry).
    """

    def __init__(self, payload: bytes, config: WatermarkConfig = DEFAULT_WATERMARK_CONFIG):
        payload = bytes(payload)
        if len(payload) != PAYLOAD_BITS // 8:
            raise InputError("payload", f"{len(payload)} bytes",
                             f"pass exactly {PAYLOAD_BITS // 8} bytes (use make_payload)")
        config.validate()
        self.payload = payload
        self.config = config
        self._tile = _payload_tile(payload, config)
        self._patterns: Dict[Tuple[int, int], np.ndarray] = {}
        self._targets: Dict[Tuple[int, int], np.ndarray] = {}
        bits = encode_bits(payload, config.key).astype(np.float32) * 2.0 - 1.0
        self._signs = np.concatenate([[1.0], bits]).astype(np.float32)  # sync row, then bits

    def pattern(self, height: int, width: int) -> np.ndarray:
        """Unit-RMS tiled pattern for a frame size, float32 [H, W] (cached)."""
        key = (height, width)
        pat = self._patterns.get(key)
        if pat is None:
            p = self.config.tile_px
            reps = (-(-height // p), -(-width // p))
            pat = np.ascontiguousarray(np.tile(self._tile, reps)[:height, :width])
            self._patterns[key] = pat
        return pat

    def delta(self, frame: np.ndarray) -> np.ndarray:
        """The luma change for one frame, float32 [H, W] in 8-bit levels (before rounding)."""
        cfg = self.config
        y = _luma(frame)
        mean = _box(y, cfg.mask_window_px)
        var = _box(y * y, cfg.mask_window_px) - mean * mean
        gain = np.sqrt(np.maximum(var, 0.0)) * (1.0 / cfg.mask_ref_std)
        np.clip(gain, cfg.mask_min, cfg.mask_max, out=gain)
        d = self.pattern(*y.shape) * gain
        d *= cfg.strength
        budget = cfg.max_rms * (cfg.informed_mark_share if cfg.informed else 1.0)
        rms = float(np.sqrt(np.dot(d.ravel(), d.ravel()) / d.size))
        if rms > budget:
            d *= budget / rms
        if cfg.informed:
            d += self._host_correction(y, d)
            rms = float(np.sqrt(np.dot(d.ravel(), d.ravel()) / d.size))
            if rms > cfg.max_rms:
                d *= cfg.max_rms / rms
        return d

    def _host_correction(self, y: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Informed embedding: cancels the host's interference with the detector statistics.

        The detector's statistics are linear in the (frame-averaged) luma: the folded tile
        projected on the high-passed sync and bit patterns. Knowing the frame, we compute them
        for frame + mark and, for every statistic whose margin is below the target (the mark's own
        nominal response times `informed_margin`), add just enough of that pattern (unmasked,
        tiled) to reach it. Costs little energy: only ~1% of the folded host energy lies in
        those 173 directions. Returns the correction, float32 [H, W].
        """
        t = _tile(self.config)
        cfg = self.config
        h, w = y.shape
        p, ps = cfg.tile_px, cfg.sync_period_px
        k = p // ps
        folded = _fold_fast(y + d, p).astype(np.float32)
        x = np.empty(t.proj.shape[0] + 1, np.float32)
        x[0] = t.sync_proj @ folded.reshape(k, ps, k, ps).mean(axis=(0, 2)).ravel()
        x[1:] = t.proj @ folded.ravel()
        target = self._targets.get((h, w))
        if target is None:  # the mark's own response, calibrated once per frame size
            fd = _fold_fast(d, p).astype(np.float32)
            own = np.empty_like(x)
            own[0] = t.sync_proj @ fd.reshape(k, ps, k, ps).mean(axis=(0, 2)).ravel()
            own[1:] = t.proj @ fd.ravel()
            own *= self._signs
            target = np.empty_like(own)
            target[0] = own[0]
            target[1:] = np.median(own[1:])
            target = target * cfg.informed_margin
            self._targets[(h, w)] = target
        short = target - self._signs * x
        gains = np.concatenate([[t.sync_gain], t.proj_gain])
        gamma = np.where(short > 0, short * self._signs / gains, 0.0).astype(np.float32)
        corr_tile = (gamma[1:] @ t.data_basis).reshape(p, p) + gamma[0] * np.tile(t.sync, (k, k))
        return np.tile(corr_tile, (-(-h // p), -(-w // p)))[:h, :w]

    def embed(self, frame: Any) -> np.ndarray:
        """Marks one frame. frame: uint8 RGB [H, W, 3] -> uint8 RGB [H, W, 3] (a new array)."""
        arr = _check_frame(frame)
        d = np.rint(self.delta(arr))
        if _cv2 is not None:
            pos = np.clip(d, 0, 255).astype(np.uint8)
            neg = np.clip(-d, 0, 255).astype(np.uint8)
            out = _cv2.add(arr, _cv2.merge([pos, pos, pos]))
            return _cv2.subtract(out, _cv2.merge([neg, neg, neg]))
        out = arr.astype(np.int16) + d.astype(np.int16)[..., None]
        return np.clip(out, 0, 255).astype(np.uint8)

    def embed_stream(self, frames: Iterable[Any]) -> Iterator[np.ndarray]:
        """Lazily marks an iterable of uint8 RGB [H, W, 3] frames."""
        for frame in frames:
            yield self.embed(frame)


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------

@dataclass
class WatermarkResult:
    """What the detector found.

    Attributes:
        found: True when the sync z-score passes `z_threshold` AND the payload's CRC checks out.
        payload: the 8 payload bytes when found, else None.
        fields: `parse_payload(payload)` when found, else None.
        confidence: z-score of the sync correlation peak (unmarked content stays below ~6).
        frames_marked_share: share (0..1) of the (sampled) frames whose own z-score at the found
            offset passes `frame_z_threshold`; 0.0 when not found.
        frames_seen: number of frames read.
        scale: the resize factor that matched best (received / embedded size).
        offset_px: (dy, dx) cyclic offset of the tile, pixels at the embedded scale.
        notes: human-readable remarks.
    """

    found: bool
    payload: Optional[bytes]
    fields: Optional[Dict[str, int]]
    confidence: float
    frames_marked_share: float
    frames_seen: int
    scale: float = 1.0
    offset_px: Tuple[int, int] = (0, 0)
    bits: Optional[np.ndarray] = None
    data_z: float = 0.0
    notes: List[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"found": self.found, "payload_hex": self.payload.hex() if self.payload else None,
                "fields": self.fields, "confidence": round(self.confidence, 2),
                "frames_marked_share": round(self.frames_marked_share, 3),
                "data_z": round(self.data_z, 2), "frames_seen": self.frames_seen, "scale": self.scale,
                "offset_px": list(self.offset_px), "notes": list(self.notes)}


class _LumaAccumulator:
    """Running luma sum plus a bounded, evenly subsampled set of frames for the share."""

    def __init__(self, max_keep: int):
        self.sum: Optional[np.ndarray] = None
        self.count = 0
        self.kept: List[np.ndarray] = []
        self.stride = 1
        self.max_keep = max(2, max_keep)

    def add(self, y: np.ndarray) -> None:
        if self.sum is None:
            self.sum = np.zeros(y.shape, np.float64)
        elif y.shape != self.sum.shape:
            raise InputError("frames", f"frame size changed from {self.sum.shape[::-1]} to "
                             f"{y.shape[::-1]}", "pass frames of one size")
        self.sum += y
        if self.count % self.stride == 0:
            self.kept.append(y.astype(np.uint8) if y.dtype != np.uint8 else y.copy())
            if len(self.kept) >= self.max_keep:
                self.kept = self.kept[::2]
                self.stride *= 2
        self.count += 1


def _highpass(y: np.ndarray, sigma: float) -> np.ndarray:
    y = y.astype(np.float32)
    return y - _gauss(y, sigma)


def _fold(img: np.ndarray, p: int) -> np.ndarray:
    """Folds [h,w] modulo p -> [p,p], mean over the tiles that cover each cell position."""
    h, w = img.shape
    hp, wp = -(-h // p) * p, -(-w // p) * p
    pad = np.zeros((hp, wp), np.float64)
    cnt = np.zeros((hp, wp), np.float64)
    pad[:h, :w] = img
    cnt[:h, :w] = 1.0
    s = pad.reshape(hp // p, p, wp // p, p).sum(axis=(0, 2))
    c = cnt.reshape(hp // p, p, wp // p, p).sum(axis=(0, 2))
    return s / np.maximum(c, 1.0)


def _whiten(folded: np.ndarray, sigma_bins: float, power_exp: float = 1.0,
            floor: float = 0.05) -> np.ndarray:
    """Divides the spectrum of a folded tile [P,P] by its smoothed power spectrum.

    The host residual is strongly coloured (low frequencies dominate); the keyed pattern is white
    over its band, so this is the matched filter's noise whitening (applied twice, W^2)."""
    spec = np.fft.fft2(folded)
    power = np.fft.fftshift((spec.real ** 2 + spec.imag ** 2).astype(np.float32))
    power = np.fft.ifftshift(_gauss(power, sigma_bins)).astype(np.float64)
    return np.real(np.fft.ifft2(spec / (power + floor * power.mean() + 1e-20) ** power_exp))


def _block_notch(p: int, scale: float, block_px: int) -> np.ndarray:
    """[p,p] 0/1 spectral mask removing the codec block grid (every `block_px` received pixels,
    i.e. every block_px / scale pixels in the resized tile): its rows and columns of FFT bins."""
    if block_px <= 0:
        return np.ones((p, p), np.float64)
    spacing = p * scale / block_px
    k = np.arange(p, dtype=np.float64)
    r = np.mod(k, spacing)
    hit = np.minimum(r, spacing - r) < 0.5 + 1e-9
    keep = (~hit).astype(np.float64)
    return keep[:, None] * keep[None, :]


def _fold_fast(img: np.ndarray, p: int) -> np.ndarray:
    """`_fold` with a reshape fast path when the size is a multiple of p."""
    h, w = img.shape
    if h % p == 0 and w % p == 0:
        return img.reshape(h // p, p, w // p, p).mean(axis=(0, 2))
    return _fold(img, p)


def _robust_z(values: np.ndarray, peak: float) -> float:
    """(peak - mean) / std of a correlation map (the peak itself barely moves either)."""
    return (peak - float(np.mean(values))) / max(float(np.std(values)), 1e-12)


def _analyse(y_mean: np.ndarray, config: WatermarkConfig):
    """Scale and offset search, then soft bits and decoding, on the mean luma [H, W].

    Per candidate scale: resize by 1/scale, fold modulo the sync period, filter, whiten and
    cross-correlate with the sync pattern (cyclic FFT) -> offset modulo the sync period and a
    z-score. At the best scale: fold modulo the tile period, filter, and for each of the
    (tile/sync period)^2 offsets consistent with the sync, project on the bit patterns and
    Viterbi-decode; the CRC picks the right one.

    Returns (z, scale, (dy, dx), soft bits [n_coded], payload or None), or None if too small.
    """
    t = _tile(config)
    p, ps = config.tile_px, config.sync_period_px
    spec = np.fft.fft2(t.sync)  # template whitening: sharp peak, low autocorrelation sidelobes
    sync_f = np.conj(spec) / (np.abs(spec) + config.sync_whiten * np.abs(spec).mean())
    y = y_mean.astype(np.float32)
    if config.local_norm:
        # High-pass, then divide by the local residual level: strong edges and texture (where the
        # host and its codec noise are loudest) weigh less; a cheap noise-variance weighting.
        y = _highpass(y, config.highpass_sigma_px)
        y /= np.sqrt(np.maximum(_box(y * y, config.norm_window_px), 0.0)) + config.norm_floor
    h, w = y.shape
    best = None
    for s in config.search_scales:
        th, tw = int(round(h / s)), int(round(w / s))
        if min(th, tw) < ps * 2 or max(th, tw) > 8192:
            continue
        resized = _resize(y, th, tw)
        fs = _detector_filter(_fold(resized, ps), config, s)
        fs = _whiten(fs, config.whiten_sigma_bins, config.whiten_exp, config.whiten_floor)
        corr = np.real(np.fft.ifft2(np.fft.fft2(fs) * sync_f))
        idx = int(np.argmax(corr))
        z = _robust_z(corr.ravel(), float(corr.ravel()[idx]))
        if best is None or z > best[0]:
            best = (z, s, divmod(idx, ps), resized)
    if best is None:
        return None
    z, s, (dy, dx), resized = best
    folded = _detector_filter(_fold(resized, p), config, s)
    if config.whiten_bits:
        folded = _whiten(folded, config.whiten_sigma_bins, config.whiten_exp, config.whiten_floor)
    k = p // ps
    cands = []
    for i in range(k):
        for j in range(k):
            off = (dy + i * ps, dx + j * ps)
            soft = t.data_basis @ np.roll(folded, (-off[0], -off[1]), axis=(0, 1)).ravel()
            cands.append((float(np.sum(np.abs(soft))), off, soft))
    cands.sort(key=lambda c: -c[0])
    for _, off, soft in cands:
        payload, _ = decode_bits(soft.astype(np.float64), config.key)
        if payload is not None:
            return z, s, off, soft, payload
    return z, s, cands[0][1], cands[0][2], None


def _frame_share(kept: Sequence[np.ndarray], payload: bytes, scale: float,
                 offset: Tuple[int, int], config: WatermarkConfig) -> float:
    """Share of kept luma frames whose own correlation with the expected mark is significant."""
    if not kept:
        return 0.0
    h, w = kept[0].shape
    p = config.tile_px
    tile = np.roll(_payload_tile(payload, config), offset, axis=(0, 1))
    th, tw = int(round(h / scale)), int(round(w / scale))
    full = np.tile(tile, (-(-th // p), -(-tw // p)))[:th, :tw]
    template = _resize(full.astype(np.float32), h, w)
    rng = np.random.default_rng(0)
    n_null = 24
    period = p * scale  # received pixels; null shifts stay 1/4..3/4 of a period off the mark
    shifts = [(int(round(a * period)), int(round(b * period)))
              for a, b in zip(rng.uniform(0.25, 0.75, n_null), rng.uniform(0.25, 0.75, n_null))]
    nulls = np.stack([np.roll(template, sh, axis=(0, 1)).ravel() for sh in shifts])
    t0 = template.ravel()
    marked = 0
    for y in kept:
        r = _highpass(y, config.highpass_sigma_px).ravel()
        c0 = float(t0 @ r)
        cn = nulls @ r
        sd = float(np.std(cn))
        if sd > 0 and (c0 - float(np.mean(cn))) / sd >= config.frame_z_threshold:
            marked += 1
    return marked / len(kept)


def _detect_luma(frames_luma: Iterable[np.ndarray], config: WatermarkConfig) -> WatermarkResult:
    acc = _LumaAccumulator(config.max_share_frames)
    for y in frames_luma:
        acc.add(y)
    if acc.count == 0:
        raise InputError("frames", "no frames to read", "pass at least one frame")
    res = _analyse((acc.sum / acc.count).astype(np.float32), config)
    if res is None:
        return WatermarkResult(False, None, None, 0.0, 0.0, acc.count,
                               notes=["frames too small for the tile period"])
    z, s, off, soft, payload = res
    info = decode_bits(soft.astype(np.float64), config.key)[1]
    dz = data_agreement(soft, info)
    notes = [f"sync z {z:.1f}, data agreement {dz:.1f}"]
    found = payload is not None and z >= config.z_threshold and dz >= config.data_threshold
    if payload is None and z >= config.z_threshold:
        notes.append("sync found but the payload CRC failed (too damaged, or another key)")
    if payload is not None and not found:
        notes.append("CRC matched but the evidence is below the thresholds: not reported")
    share = _frame_share(acc.kept, payload, s, off, config) if found else 0.0
    if acc.stride > 1:
        notes.append(f"share measured on every {acc.stride}th frame")
    return WatermarkResult(found, payload if found else None,
                           parse_payload(payload) if found else None, float(z), share,
                           acc.count, scale=float(s), offset_px=off, bits=info[:PAYLOAD_BITS],
                           data_z=dz, notes=notes)


def detect_frames(frames: Iterable[Any],
                  config: WatermarkConfig = DEFAULT_WATERMARK_CONFIG) -> WatermarkResult:
    """Looks for the mark in frames (an iterable, streamed; memory is bounded).

    Args:
        frames: uint8 RGB [H, W, 3] frames (or uint8/float luma [H, W] in 0..255), all one size.
            A single still image works too (pass [image]); more frames give more confidence.
        config: the embedder's config (same key and tile geometry).
    Returns:
        WatermarkResult.
    """
    def lumas():
        for i, frame in enumerate(frames):
            arr = np.asarray(frame)
            if arr.ndim == 3:
                arr = _check_frame(arr, f"frames[{i}]")
            elif arr.ndim != 2:
                raise InputError(f"frames[{i}]", f"shape {arr.shape}",
                                 "pass uint8 RGB [H,W,3] or luma [H,W] frames")
            yield _luma(arr) if arr.ndim == 3 else arr.astype(np.float32)
    return _detect_luma(lumas(), config)


def detect_file(path: str, config: WatermarkConfig = DEFAULT_WATERMARK_CONFIG,
                max_frames: Optional[int] = None) -> WatermarkResult:
    """Decodes a video (any container/codec PyAV reads: MP4, WebM, ...) or an image and detects.

    Luma is taken straight from the decoder (`to_ndarray(format="gray")`), no RGB round trip.

    Args:
        path: video or image file.
        max_frames: read at most this many frames (None: all).
    """
    import av  # noqa: PLC0415

    def lumas():
        try:
            container = av.open(str(path))
        except Exception as exc:  # noqa: BLE001 - av raises many types
            raise InputError("path", f"cannot open {path!r} ({exc})",
                             "pass a readable video or image file") from exc
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for n, frame in enumerate(container.decode(stream)):
                if max_frames is not None and n >= max_frames:
                    break
                yield frame.to_ndarray(format="gray")
    return _detect_luma(lumas(), config)


def psnr(reference: np.ndarray, test: np.ndarray) -> float:
    """PSNR in dB between two uint8 images of one shape (inf when identical)."""
    diff = reference.astype(np.float64) - test.astype(np.float64)
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)
