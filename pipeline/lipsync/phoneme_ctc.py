"""Optional phone recogniser for the no-transcript path: a local wav2vec2-style phoneme CTC model.

Why: without a transcript, pocketsphinx's word search caps lip sync at ~0.67-0.72 frame accuracy
(see recognition.py); the 0.85 target needs a much better phone recogniser. Public
wav2vec2 models fine-tuned to emit espeak-ng IPA phonemes are such recognisers:

* facebook/wav2vec2-lv-60-espeak-cv-ft (English-pretrained, phonemes of many languages),
* facebook/wav2vec2-xlsr-53-espeak-cv-ft (multilingual),
* any transformers CTC speech model of the same family (Wav2Vec2 / HuBERT / WavLM / data2vec-audio
  `*ForCTC`) whose vocab.json holds IPA phoneme tokens.

The user puts such a model folder (config.json, model.safetensors, vocab.json,
preprocessor_config.json) in ComfyUI's models/phoneme_ctc folder, or $TALKINGHEAD_MODELS_DIR/phoneme_ctc
headless. Nothing is ever downloaded (`local_files_only=True`), and only safetensors weights are
read: a folder with pickle weights only (pytorch_model.bin) is refused, since loading a pickle can
run arbitrary code.

ACCURACY HAS NOT BEEN MEASURED HERE: no such weights are available in this environment, so whether
this path reaches the 0.85 frame-accuracy target is unknown. Measure it with
`python tests/bench/bench_visemes.py --phoneme-model PATH`. The tests only check the mechanics with
a tiny random model.

Method: mono 16 kHz, normalised per chunk as the model's feature extractor says; audio longer than
CHUNK_S is cut into CHUNK_S pieces, each run with OVERLAP_S of context on both sides and only its own
frames kept (memory stays bounded: one chunk's activations, and one int per frame). Greedy CTC
decoding (argmax per frame, repeats collapsed, blanks dropped) with the frame period the model's
convolution strides give (20 ms for wav2vec2). Each phone spans from its first frame to the next
phone's start; a blank run longer than SIL_MIN_S becomes SIL, after the phone before it keeps
SIL_HOLD_S of it. IPA tokens go to ARPAbet through `phoneset.ipa_to_arpabet`; tokens it cannot
place are skipped and counted.

Needs torch and transformers (`pip install 'talkinghead[llm]'`; ComfyUI always has both); they are
imported only when a model is loaded.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ..core.audio import AudioClip
from ..core.audio_dsp import mono_at
from ..core.errors import InputError
from ..speech.timing import PhonemeTiming
from . import phoneset
from .track import SILENCE

ProgressFn = Callable[[int, int], None]

#: Model folder kind: ComfyUI models/phoneme_ctc, or $TALKINGHEAD_MODELS_DIR/phoneme_ctc.
MODEL_KIND = "phoneme_ctc"
SAMPLE_RATE = 16000
#: Audio per model call, seconds, and context added on each side (both rounded to whole frames).
CHUNK_S = 20.0
OVERLAP_S = 1.0
#: A blank run longer than this becomes SIL (after SIL_HOLD_S of it stays with the phone before).
SIL_MIN_S = 0.12
SIL_HOLD_S = 0.04

METHOD_NOTE = "phones recognised by the local phoneme CTC model {name!r} (no transcript; greedy CTC decoding)"
KNOWN_MODELS = "facebook/wav2vec2-lv-60-espeak-cv-ft or facebook/wav2vec2-xlsr-53-espeak-cv-ft"
WHERE = "ComfyUI's models/phoneme_ctc folder (headless: $TALKINGHEAD_MODELS_DIR/phoneme_ctc)"
REQUIRED_FILES = "config.json, model.safetensors, vocab.json and preprocessor_config.json"
PICKLE_EXTENSIONS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: Tokens that are not sounds: CTC blank/padding, sentence marks, word delimiters.
_SPECIAL = frozenset({"<pad>", "<s>", "</s>", "<unk>", "|", " ", "", "[PAD]", "[UNK]"})


@dataclass
class PhonemeModel:
    """A loaded phoneme CTC model.

    Attributes:
        model: the transformers *ForCTC model, eval mode.
        tokens: id -> token string (vocab.json).
        blank_id: the CTC blank (the model's pad token).
        frame_s: seconds per output frame (product of the conv strides / 16000).
        kernels, strides: the feature encoder's convolutions (for output lengths).
        normalize: zero-mean unit-variance input, as the feature extractor says.
        source: absolute folder path; name: its base name.
    """

    model: Any
    tokens: dict[int, str]
    blank_id: int
    frame_s: float
    kernels: tuple[int, ...]
    strides: tuple[int, ...]
    normalize: bool
    source: str
    name: str
    device: str = "cpu"

    @property
    def hop(self) -> int:
        return int(np.prod(self.strides))

    @property
    def receptive_field(self) -> int:
        size = 1
        for k, s in zip(reversed(self.kernels), reversed(self.strides)):
            size = (size - 1) * s + k
        return size

    def num_frames(self, num_samples: int) -> int:
        length = int(num_samples)
        for k, s in zip(self.kernels, self.strides):
            length = (length - k) // s + 1
        return max(length, 0)


@dataclass
class PhoneRecognition:
    """Phones (ARPAbet + SIL, contiguous over 0..duration_s) and what the decoder skipped."""

    phones: list[PhonemeTiming]
    duration_s: float
    unknown_tokens: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)


# ---- loading -----------------------------------------------------------------------------------

_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2


def _missing(input_name: str, problem: str) -> InputError:
    return InputError(
        input_name, problem,
        f"Put a phoneme CTC model folder ({REQUIRED_FILES}), e.g. {KNOWN_MODELS}, in {WHERE} "
        "and choose it; nothing is downloaded. Or leave the phoneme model unset to use the built-in recogniser",
    )


def _read_json(path: str, input_name: str) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(input_name, f"{path!r} is not readable JSON ({exc})",
                         "Copy the file again from the model's release") from exc


def _vocab(folder: str, input_name: str) -> dict[int, str]:
    raw = _read_json(os.path.join(folder, "vocab.json"), input_name)
    if isinstance(raw, dict) and raw and all(isinstance(v, dict) for v in raw.values()):
        raw = raw.get("en") or next(iter(raw.values()))  # multi-language vocab files
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, int) for v in raw.values()):
        raise InputError(input_name, f"{os.path.join(folder, 'vocab.json')!r} is not a token -> id table",
                         f"Use the vocab.json that came with the model ({KNOWN_MODELS})")
    return {int(i): str(t) for t, i in raw.items()}


def _check_folder(path: str, input_name: str) -> list[str]:
    """The safetensors weight files of a complete model folder; InputError naming what is missing."""
    if not os.path.exists(path):
        raise _missing(input_name, f"nothing at {path!r}")
    if not os.path.isdir(path):
        raise _missing(input_name, f"{path!r} is a file; a phoneme CTC model is a folder")
    files = os.listdir(path)
    if "config.json" not in files:
        raise _missing(input_name, f"{path!r} has no config.json")
    weights = sorted(f for f in files if f.endswith(".safetensors"))
    if not weights:
        pickles = sorted(f for f in files if f.lower().endswith(PICKLE_EXTENSIONS))
        if pickles:
            raise InputError(
                input_name,
                f"{os.path.join(path, pickles[0])!r} is a pickle checkpoint, which can run arbitrary code when "
                "loaded, and the folder has no model.safetensors",
                "Get the model's .safetensors weights (many Hugging Face repos have them, or a 'refs/pr' "
                "conversion), or convert once in a trusted environment: "
                "AutoModelForCTC.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)",
            )
        raise _missing(input_name, f"{path!r} has no model.safetensors")
    if "vocab.json" not in files:
        raise _missing(input_name, f"{path!r} has no vocab.json (the phoneme tokens)")
    return [os.path.join(path, w) for w in weights]


def _signature(path: str, weights: list[str]) -> tuple:
    names = [os.path.join(path, n) for n in ("config.json", "vocab.json", "preprocessor_config.json",
                                             "processor_config.json")] + weights
    return tuple((n, os.path.getmtime(n)) for n in names if os.path.exists(n))


def load_phoneme_model(path: Union[str, os.PathLike], device: Optional[str] = None,
                       input_name: str = "phoneme_model") -> PhonemeModel:
    """Loads a phoneme CTC model folder, offline; cached by path and file modification times.

    Args:
        path: the model folder (config.json, model.safetensors, vocab.json, preprocessor_config.json).
        device: torch device; None: "cuda" when available, else "cpu".
        input_name: the input to name in errors.
    Raises:
        InputError: missing or incomplete folder, pickle-only weights, not a CTC model, torch or
            transformers not installed.
    """
    if isinstance(path, PhonemeModel):
        return path
    if not path or not isinstance(path, (str, os.PathLike)):
        raise _missing(input_name, "no model folder was given")
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    weights = _check_folder(path, input_name)
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCTC
    except ImportError as exc:
        raise InputError(input_name, f"the phoneme CTC recogniser needs torch and transformers ({exc})",
                         "Install them: pip install 'talkinghead[llm]', or leave the phoneme model unset") from exc
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    key = (path, str(device), _signature(path, weights))
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    tokens = _vocab(path, input_name)
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
        model = AutoModelForCTC.from_pretrained(path, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InputError(input_name, f"cannot load a CTC speech model from {path!r} ({exc})",
                         f"Give a wav2vec2-style phoneme CTC folder ({REQUIRED_FILES}), e.g. {KNOWN_MODELS}") from exc
    kernels = tuple(int(k) for k in getattr(config, "conv_kernel", ()) or ())
    strides = tuple(int(s) for s in getattr(config, "conv_stride", ()) or ())
    if not kernels or len(kernels) != len(strides):
        raise InputError(input_name, f"{os.path.join(path, 'config.json')!r} has no conv_kernel/conv_stride",
                         f"Give a wav2vec2-style model (convolutional feature encoder), e.g. {KNOWN_MODELS}")
    normalize = True
    pre = os.path.join(path, "preprocessor_config.json")
    pre_cfg = _read_json(pre, input_name) if os.path.isfile(pre) else None
    if pre_cfg is None and os.path.isfile(os.path.join(path, "processor_config.json")):
        pre = os.path.join(path, "processor_config.json")  # transformers 5 saves the extractor in here
        pre_cfg = _read_json(pre, input_name).get("feature_extractor")
    if isinstance(pre_cfg, dict):
        normalize = bool(pre_cfg.get("do_normalize", True))
        rate = int(pre_cfg.get("sampling_rate", SAMPLE_RATE))
        if rate != SAMPLE_RATE:
            raise InputError(input_name, f"{pre!r} says the model takes {rate} Hz audio; only 16000 Hz models "
                             "are supported", f"Use a 16 kHz model such as {KNOWN_MODELS}")
    blank = getattr(config, "pad_token_id", None)
    if blank is None:
        blank = next((i for i, t in tokens.items() if t in ("<pad>", "[PAD]")), 0)
    model = model.to(device).eval()
    model.requires_grad_(False)
    loaded = PhonemeModel(
        model=model, tokens=tokens, blank_id=int(blank), frame_s=float(np.prod(strides)) / SAMPLE_RATE,
        kernels=kernels, strides=strides, normalize=normalize, source=path,
        name=os.path.basename(path.rstrip(os.sep)), device=str(device),
    )
    with _CACHE_LOCK:
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = loaded
    return loaded


# ---- decoding -----------------------------------------------------------------------------------


def _r(t: float) -> float:
    return round(float(t), 6)


def decode_frame_ids(ids: Sequence[int], tokens: dict[int, str], *, blank_id: int, frame_s: float,
                     duration_s: Optional[float] = None, sil_min_s: float = SIL_MIN_S,
                     sil_hold_s: float = SIL_HOLD_S) -> PhoneRecognition:
    """Greedy CTC decoding of per-frame best token ids into contiguous ARPAbet + SIL phones.

    Frame i starts at i * frame_s. Repeats of a token collapse (a blank between two equal tokens
    separates them); blanks, padding and word delimiters carry no sound. Each phone spans from its
    first frame to the next phone's first frame, except across a blank run longer than `sil_min_s`:
    the phone then ends `sil_hold_s` after its last frame and SIL fills the rest. Before the first
    phone is SIL; after the last, SIL when the tail is long, else the phone runs to the end. A token
    of several ARPAbet phones ("ts", "əl") shares its span evenly. Tokens `phoneset.ipa_to_arpabet`
    cannot place are skipped (their frames do not count as blank) and counted in `unknown_tokens`.
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    duration = float(duration_s) if duration_s is not None else len(ids) * frame_s
    # segments: (labels or None for unknown, first frame, last frame)
    segments: list[tuple[Optional[tuple[str, ...]], int, int]] = []
    unknown: Counter = Counter()
    prev = blank_id
    for i, tid in enumerate(ids.tolist()):
        token = tokens.get(tid)
        if tid == blank_id or token is None or token in _SPECIAL or (token.startswith("<") and token.endswith(">")):
            prev = blank_id
            continue
        if tid == prev:
            labels, first, _ = segments[-1]
            segments[-1] = (labels, first, i)
            continue
        labels = tuple(phoneset.ipa_to_arpabet(token))
        if not labels:
            unknown[token] += 1
        segments.append((labels or None, i, i))
        prev = tid
    # timed phones: (labels, start_s, end_s)
    timed: list[tuple[tuple[str, ...], float, float]] = []
    pending: Optional[list] = None  # [labels, start_s, last_frame_end_s] of the phone being built
    cursor = 0.0  # where the next item starts (contiguity)

    def close(end_s: float) -> None:
        nonlocal pending, cursor
        if pending is not None:
            timed.append((pending[0], pending[1], end_s))
            cursor = end_s
            pending = None

    def add_sil(end_s: float) -> None:
        nonlocal cursor
        if end_s > cursor + 1e-9:
            timed.append(((SILENCE,), cursor, end_s))
            cursor = end_s

    last_end = 0.0  # end of the last non-blank frame seen (any segment)
    for labels, first, last in segments:
        start = min(first * frame_s, duration)
        gap = start - last_end
        if pending is not None and gap > sil_min_s:
            close(min(last_end + sil_hold_s, start))
        if labels is not None:
            close(start)
            add_sil(start)  # leading silence, or the rest of a long blank run
            pending = [labels, start]
        last_end = min((last + 1) * frame_s, duration)
    if pending is not None:
        if duration - last_end > sil_min_s:
            close(min(last_end + sil_hold_s, duration))
        else:
            close(duration)
    add_sil(duration)

    phones: list[PhonemeTiming] = []
    for labels, start, end in timed:
        if end <= start + 1e-9:
            continue
        step = (end - start) / len(labels)
        for k, label in enumerate(labels):
            a = start + k * step
            b = end if k == len(labels) - 1 else start + (k + 1) * step
            if phones and phones[-1].phoneme == SILENCE and label == SILENCE:
                phones[-1].end_s = _r(b)
            else:
                phones.append(PhonemeTiming(label, _r(a), _r(b)))
    if not phones:
        phones = [PhonemeTiming(SILENCE, 0.0, _r(duration))]
    phones[0].start_s = 0.0
    phones[-1].end_s = _r(duration)
    return PhoneRecognition(phones, duration, unknown)


def decode_logits(logits: Any, tokens: dict[int, str], *, blank_id: int, frame_s: float,
                  duration_s: Optional[float] = None, sil_min_s: float = SIL_MIN_S,
                  sil_hold_s: float = SIL_HOLD_S) -> PhoneRecognition:
    """`decode_frame_ids` of the per-frame argmax of CTC logits [frames, vocab] (numpy or torch)."""
    array = logits.detach().cpu().numpy() if hasattr(logits, "detach") else np.asarray(logits)
    if array.ndim == 3:
        array = array[0]
    return decode_frame_ids(array.argmax(axis=-1), tokens, blank_id=blank_id, frame_s=frame_s,
                            duration_s=duration_s, sil_min_s=sil_min_s, sil_hold_s=sil_hold_s)


# ---- recognition --------------------------------------------------------------------------------


def frame_ids(samples: np.ndarray, model: PhonemeModel, *, chunk_s: float = CHUNK_S, overlap_s: float = OVERLAP_S,
              progress: Optional[ProgressFn] = None) -> np.ndarray:
    """Best token id per output frame of mono 16 kHz float audio, chunk by chunk (bounded memory)."""
    import torch

    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    hop, field_ = model.hop, model.receptive_field
    total = model.num_frames(max(len(x), field_))
    ids = np.full(total, model.blank_id, dtype=np.int32)
    chunk = max(1, int(round(chunk_s * SAMPLE_RATE / hop))) * hop
    pad = max(0, int(round(overlap_s * SAMPLE_RATE / hop))) * hop
    starts = list(range(0, max(len(x), 1), chunk))
    for n, a in enumerate(starts):
        lo, hi = max(0, a - pad), min(len(x), a + chunk + pad)
        piece = x[lo:hi]
        if len(piece) < field_:
            piece = np.pad(piece, (0, field_ - len(piece)))
        if model.normalize:
            piece = (piece - piece.mean()) / np.sqrt(piece.var() + 1e-7)
        with torch.inference_mode():
            inp = torch.from_numpy(np.ascontiguousarray(piece, dtype=np.float32))[None].to(model.device)
            logits = model.model(inp).logits[0]
            best = logits.argmax(dim=-1).cpu().numpy().astype(np.int32)
        f0, fa, fb = lo // hop, a // hop, min((a + chunk) // hop, total)
        if a + chunk >= len(x):
            fb = total
        take = best[fa - f0: fb - f0]
        ids[fa: fa + len(take)] = take
        if progress is not None:
            progress(n + 1, len(starts))
    return ids


def recognize(audio: AudioClip, model: Union[PhonemeModel, str, os.PathLike], *, chunk_s: float = CHUNK_S,
              overlap_s: float = OVERLAP_S, progress: Optional[ProgressFn] = None) -> PhoneRecognition:
    """Phones of `audio` by the phoneme CTC model, with what was skipped and a method note."""
    model = load_phoneme_model(model)
    x = mono_at(audio, SAMPLE_RATE)
    duration = len(x) / float(SAMPLE_RATE)
    ids = frame_ids(x, model, chunk_s=chunk_s, overlap_s=overlap_s, progress=progress)
    result = decode_frame_ids(ids, model.tokens, blank_id=model.blank_id, frame_s=model.frame_s, duration_s=duration)
    result.notes.append(METHOD_NOTE.format(name=model.name))
    if result.unknown_tokens:
        count = sum(result.unknown_tokens.values())
        shown = ", ".join(repr(t) for t, _ in result.unknown_tokens.most_common(5))
        result.notes.append(f"{count} recognised phoneme token(s) had no English mouth shape and were skipped ({shown})")
    return result


def recognize_phones(audio: AudioClip, model: Union[PhonemeModel, str, os.PathLike], **kwargs) -> list[PhonemeTiming]:
    """ARPAbet + SIL phones, contiguous over 0..duration, recognised by the phoneme CTC model."""
    return recognize(audio, model, **kwargs).phones


def speech_phone_count(phones: Sequence[PhonemeTiming]) -> int:
    return sum(1 for p in phones if p.phoneme != SILENCE)


__all__ = ["MODEL_KIND", "PhonemeModel", "PhoneRecognition", "load_phoneme_model", "decode_frame_ids",
           "decode_logits", "frame_ids", "recognize", "recognize_phones"]
