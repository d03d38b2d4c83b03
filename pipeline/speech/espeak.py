"""ctypes binding to libespeak-ng (the copy shipped by the `espeakng-loader` wheel).

Only what the Speak stage needs: initialise once per process, list voices, set voice and
parameters, and synthesise text synchronously while collecting the audio and the events
(word and phoneme onsets with exact sample positions).

espeak-ng keeps all of its state in globals, so every call into the library must hold `LOCK`
(other modules that drive the same library, e.g. a phonemiser, should take it too).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import ToolError

# One lock for the whole process: the library is one set of globals, whoever loaded it.
LOCK = threading.RLock()

# --- constants from speak_lib.h (espeak-ng 1.52) -------------------------------------------
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_DONT_EXIT = 0x8000  # report a missing data folder as an error instead of exit()

EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_SENTENCE = 2
EVENT_MARK = 3
EVENT_PLAY = 4
EVENT_END = 5
EVENT_MSG_TERMINATED = 6
EVENT_PHONEME = 7
EVENT_SAMPLERATE = 8

POS_CHARACTER = 1
CHARS_UTF8 = 1
ENDPAUSE = 0x1000  # add the end-of-clause pause after the last clause too

PARAM_RATE = 1
PARAM_VOLUME = 2
PARAM_PITCH = 3
PARAM_RANGE = 4

EE_OK = 0

# Buffer handed to the callback, in milliseconds of audio. Small enough that the callback is
# called often (bounded memory inside one call), large enough that the call overhead is negligible.
BUFFER_MS = 200


class _EventId(ctypes.Union):
    # union { int number; const char *name; char string[8]; } -- 8 bytes on x86_64 / arm64
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),
    ]


class _Event(ctypes.Structure):
    # espeak_EVENT. Offsets on LP64: type 0, unique_identifier 4, text_position 8, length 12,
    # audio_position 16, sample 20, user_data 24 (pointer, 8-aligned), id 32; size 40.
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    # espeak_VOICE
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated string)* then a 0 byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


# int callback(short *wav, int numsamples, espeak_EVENT *events); return 0 to go on, 1 to abort.
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass
class RawEvent:
    """One event as espeak reported it.

    Attributes:
        kind: EVENT_WORD, EVENT_SENTENCE or EVENT_PHONEME.
        sample: position in the audio of this synthesis call (samples at the library's rate).
        text_position: 1-based character index into the text given to `synthesize` (WORD/SENTENCE).
        length: number of characters of the word (WORD).
        phoneme: the phoneme mnemonic (PHONEME), "" otherwise.
    """

    kind: int
    sample: int
    text_position: int
    length: int
    phoneme: str = ""


@dataclass
class RawSynthesis:
    """Audio and events of one `synthesize` call.

    Attributes:
        samples: int16 array of shape [num_samples] (mono, at the library's sample rate).
        events: word / sentence / phoneme events in the order espeak emitted them.
    """

    samples: np.ndarray
    events: list[RawEvent] = field(default_factory=list)


@dataclass
class RawVoice:
    name: str
    identifier: str
    languages: list[tuple[int, str]]
    gender: int
    age: int


class _Library:
    """The loaded library, initialised once per process."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # a core dependency; only a broken install lands here
            raise ToolError("espeak-ng", "the `espeakng-loader` package is not installed; "
                            "run `pip install espeakng-loader`") from exc
        lib_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as exc:
            raise ToolError("espeak-ng", f"could not load {lib_path}: {exc}") from exc

        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p

        rate = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, data_path.encode(),
            INITIALIZE_PHONEME_EVENTS | INITIALIZE_DONT_EXIT,
        )
        if rate <= 0:
            raise ToolError("espeak-ng", f"espeak_Initialize failed ({rate}) with data at {data_path}")
        self.lib = lib
        self.sample_rate = int(rate)
        self.version = (lib.espeak_Info(None) or b"?").decode("utf-8", "replace")

        # The collector of the synthesis in progress; the callback writes into it. Keeping one
        # CFUNCTYPE object alive for the process matters: espeak holds a raw pointer to it.
        self._chunks: list[np.ndarray] = []
        self._events: list[RawEvent] = []
        self._callback_error: Exception | None = None
        self._callback = _SYNTH_CALLBACK(self._on_synth)
        lib.espeak_SetSynthCallback(self._callback)
        # espeak_TextToPhonemes calls since the last synthesis (see `synthesize`).
        self._phonemized_since_synth = 0

    def _on_synth(self, wav, num_samples, events) -> int:
        try:
            if num_samples > 0 and wav:
                # Copy out: the buffer is reused by espeak on the next call.
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
            i = 0
            while True:
                ev = events[i]
                if ev.type == EVENT_LIST_TERMINATED:
                    break
                if ev.type == EVENT_PHONEME:
                    # string[8] is NUL-terminated unless the name uses all 8 bytes; ctypes'
                    # c_char array `.value` stops at the first NUL and never reads past 8.
                    name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                    self._events.append(RawEvent(EVENT_PHONEME, ev.sample, ev.text_position,
                                                 ev.length, name))
                elif ev.type in (EVENT_WORD, EVENT_SENTENCE):
                    self._events.append(RawEvent(ev.type, ev.sample, ev.text_position, ev.length))
                i += 1
        except Exception as exc:  # never let an exception cross into C: abort, re-raise after
            self._callback_error = exc
            return 1
        return 0

    def synthesize(self, text: str, voice: str, rate_wpm: int, pitch: int) -> RawSynthesis:
        """Synthesises `text` in one call. Caller must hold LOCK."""
        # Voice and parameters are global: set them on every call, another caller may have
        # changed them since.
        err = self.lib.espeak_SetVoiceByName(voice.encode("utf-8"))
        if err != EE_OK:
            raise ToolError("espeak-ng", f"could not select voice {voice!r} (error {err})")
        self.lib.espeak_SetParameter(PARAM_RATE, int(rate_wpm), 0)
        self.lib.espeak_SetParameter(PARAM_PITCH, int(pitch), 0)
        if self._phonemized_since_synth:
            # After ~55-150 espeak_TextToPhonemes calls in a row (espeak-ng 1.52; periodic in the
            # count, an internal buffer wrapping), the next synthesis loses the word and phoneme
            # events of its first word(s) while the audio is complete: Speak's timings then had
            # no "Bob" in "Bob made ...". A throwaway synthesis of nothing absorbs it (measured:
            # every count from 55 to 150 gives the full events after it; 154 samples, discarded).
            self._synth_raw(b"\0")
            self._phonemized_since_synth = 0
        return self._synth_raw(text.encode("utf-8") + b"\0")

    def _synth_raw(self, data: bytes) -> RawSynthesis:
        buf = ctypes.create_string_buffer(data, len(data))
        self._chunks, self._events, self._callback_error = [], [], None
        try:
            err = self.lib.espeak_Synth(buf, len(data), 0, POS_CHARACTER, 0,
                                        CHARS_UTF8 | ENDPAUSE, None, None)
            if err != EE_OK:
                raise ToolError("espeak-ng", f"espeak_Synth failed (error {err})")
            if self._callback_error is not None:
                raise ToolError("espeak-ng", "collecting the synthesised audio failed: "
                                f"{self._callback_error!r}") from self._callback_error
            samples = (np.concatenate(self._chunks) if self._chunks
                       else np.zeros(0, dtype=np.int16))
            return RawSynthesis(samples=samples, events=self._events)
        finally:
            self._chunks, self._events, self._callback_error = [], [], None

    def text_to_phonemes(self, text: str, voice: str) -> str:
        """espeak's phoneme transcription of `text` (mnemonics), "" if it says nothing. Hold LOCK."""
        err = self.lib.espeak_SetVoiceByName(voice.encode("utf-8"))
        if err != EE_OK:
            raise ToolError("espeak-ng", f"could not select voice {voice!r} (error {err})")
        self._phonemized_since_synth += 1
        data = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
        ptr = ctypes.c_void_p(ctypes.addressof(data))
        out = []
        # The call consumes one clause at a time and advances the pointer; NULL when done.
        while ptr.value:
            res = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), CHARS_UTF8, 0)
            if res:
                out.append(res.decode("utf-8", "replace"))
        return " ".join(s.strip() for s in out if s.strip())

    def list_voices(self) -> list[RawVoice]:
        """All voices espeak knows. Caller must hold LOCK."""
        arr = self.lib.espeak_ListVoices(None)
        voices = []
        i = 0
        while arr[i]:
            v = arr[i].contents
            langs = []
            if v.languages:
                p = v.languages
                while True:
                    priority = ctypes.c_ubyte.from_address(p).value
                    if priority == 0:
                        break
                    lang = ctypes.string_at(p + 1)
                    langs.append((priority, lang.decode("utf-8", "replace")))
                    p += 1 + len(lang) + 1
            voices.append(RawVoice(
                name=(v.name or b"").decode("utf-8", "replace"),
                identifier=(v.identifier or b"").decode("utf-8", "replace"),
                languages=langs, gender=int(v.gender), age=int(v.age),
            ))
            i += 1
        return voices


_library: _Library | None = None


def library() -> _Library:
    """The process-wide initialised library (initialised on first use, under LOCK)."""
    global _library
    with LOCK:
        if _library is None:
            _library = _Library()
        return _library
