"""Token counts with the real CLIP tokenizer, offline and without dependencies.

Text encoders of Stable Diffusion style models (CLIP ViT-L/14 and its relatives) read at most 77
tokens: a start token, up to 75 text tokens and an end token. Diffusers truncates longer prompts;
ComfyUI splits them into 77-token chunks whose embeddings are concatenated, so words past the first
chunk lose their context. To keep a prompt inside that budget we count what the encoder counts.

This is OpenAI CLIP's byte-level BPE (vocabulary `data/bpe_simple_vocab_16e6.txt.gz`, 49 408 tokens,
MIT, shipped with the pack: see `data/LICENSE-clip-bpe.txt`), applied exactly as `transformers`'
CLIPTokenizer does it, which is what ComfyUI and diffusers use:

1. the special strings `<|startoftext|>` and `<|endoftext|>` typed in the text become their own token;
2. the rest is NFC-normalised, every run of whitespace becomes one space, every character is
   lower-cased on its own;
3. it is split into pieces: the contractions 's 't 're 've 'm 'll 'd, runs of letters, single digits,
   runs of anything else that is not whitespace (whitespace is dropped);
4. each piece is mapped byte by byte to printable symbols, the last symbol gets the end-of-word mark
   `</w>`, and pairs are merged by the rank of the merge list until none applies.

`count_tokens` counts the start and end tokens too (the number a budget of 77 is compared with);
`encode` returns the text tokens only. The tests check ids against `transformers.CLIPTokenizer` and
ComfyUI's own `comfy/sd1_tokenizer` on many strings (emoji, CJK, accents, 2 000 words).

Pure Python (no `tokenizers` wheel and the hub client it pulls in): about 1 ms per 75-token prompt
once the word cache is warm; loading the vocabulary takes ~0.1 s, once per process.
"""

from __future__ import annotations

import gzip
import os
import threading
import unicodedata
from functools import lru_cache
from typing import Optional

VOCAB_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "bpe_simple_vocab_16e6.txt.gz")

#: Tokens the encoder reads, start and end tokens included.
CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
START_TOKEN_ID = 49406
END_TOKEN_ID = 49407
#: The merges CLIP uses: lines 1 .. 48 894 of the file (line 0 is a version header).
_NUM_MERGES = 49152 - 256 - 2

#: Unicode White_Space (what `\s` means to the regex engine of `tokenizers`).
_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
_CONTRACTIONS_2 = ("'s", "'t", "'m", "'d")
_CONTRACTIONS_3 = ("'re", "'ve", "'ll")
_LETTER, _NUMBER, _OTHER, _SPACE = 0, 1, 2, 3


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map of the 256 byte values to printable characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


@lru_cache(maxsize=4096)
def _kind(char: str) -> int:
    if char in _WHITESPACE:
        return _SPACE
    major = unicodedata.category(char)[0]
    if major == "L":
        return _LETTER
    if major == "N":
        return _NUMBER
    return _OTHER


def _pieces(text: str) -> list[str]:
    """Splits normalised text like CLIP's pattern
    `'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+` (matches kept, the rest dropped)."""
    pieces: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "'":
            three, two = text[i:i + 3], text[i:i + 2]
            if two in _CONTRACTIONS_2:
                pieces.append(two)
                i += 2
                continue
            if three in _CONTRACTIONS_3:
                pieces.append(three)
                i += 3
                continue
        kind = _kind(char)
        if kind == _SPACE:
            i += 1
            continue
        if kind == _NUMBER:
            pieces.append(char)
            i += 1
            continue
        j = i + 1
        while j < n and _kind(text[j]) == kind:
            j += 1
        pieces.append(text[i:j])
        i = j
    return pieces


def _normalise(text: str) -> str:
    """NFC, whitespace runs to one space, each character lower-cased on its own (as `tokenizers` does:
    no final-sigma rule)."""
    text = unicodedata.normalize("NFC", text)
    return "".join(" " if c in _WHITESPACE else c.lower() for c in text)


class ClipTokenizer:
    """OpenAI CLIP's BPE tokenizer over the shipped vocabulary. Thread-safe; use `get_tokenizer()`."""

    def __init__(self, vocab_path: str = VOCAB_PATH):
        try:
            with gzip.open(vocab_path, "rt", encoding="utf-8") as handle:
                lines = handle.read().split("\n")
        except OSError as exc:
            raise FileNotFoundError(
                f"CLIP vocabulary: cannot read {vocab_path!r} ({exc}). It ships with the pack as "
                "pipeline/prompt/data/bpe_simple_vocab_16e6.txt.gz: reinstall the pack."
            ) from exc
        merges = [tuple(line.split()) for line in lines[1:_NUM_MERGES + 1]]
        byte_symbols = list(_bytes_to_unicode().values())
        vocab = byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(m) for m in merges]
        vocab += [START_OF_TEXT, END_OF_TEXT]
        if len(vocab) != VOCAB_SIZE:
            raise ValueError(f"CLIP vocabulary: {vocab_path!r} gave {len(vocab)} tokens, expected {VOCAB_SIZE}")
        self.encoder = {token: index for index, token in enumerate(vocab)}
        self.decoder = vocab
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.byte_encoder = _bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        self._cache: dict[str, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    # ---- BPE --------------------------------------------------------------------------------

    def _bpe(self, piece: str) -> tuple[int, ...]:
        cached = self._cache.get(piece)
        if cached is not None:
            return cached
        symbols = [self.byte_encoder[b] for b in piece.encode("utf-8")]
        symbols[-1] += "</w>"
        ranks = self.ranks
        while len(symbols) > 1:
            best_rank, best = None, None
            for pair in zip(symbols, symbols[1:]):
                rank = ranks.get(pair)
                if rank is not None and (best_rank is None or rank < best_rank):
                    best_rank, best = rank, pair
            if best is None:
                break
            first, second = best
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i < len(symbols) - 1 and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        ids = tuple(self.encoder[s] for s in symbols)
        with self._lock:
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[piece] = ids
        return ids

    # ---- public -----------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without the start and end tokens."""
        ids: list[int] = []
        for position, chunk in enumerate(_split_specials(text)):
            if position % 2:  # a special string typed in the text
                ids.append(START_TOKEN_ID if chunk == START_OF_TEXT else END_TOKEN_ID)
                continue
            for piece in _pieces(_normalise(chunk)):
                ids.extend(self._bpe(piece))
        return ids

    def count_tokens(self, text: str) -> int:
        """Tokens the text encoder reads for `text`: start token + text tokens + end token."""
        return len(self.encode(text)) + 2

    def decode(self, ids: list[int]) -> str:
        """Text of token ids (end-of-word marks become spaces; the special tokens are dropped)."""
        data = bytearray()
        for i in ids:
            if i in (START_TOKEN_ID, END_TOKEN_ID):
                continue
            token = self.decoder[i]
            word_end = token.endswith("</w>")
            data.extend(self.byte_decoder[c] for c in (token[:-4] if word_end else token))
            if word_end:
                data.extend(b" ")
        return data.decode("utf-8", errors="replace").strip()

    def tokens(self, text: str) -> list[str]:
        """The token strings of `text` (for reports and debugging)."""
        return [self.decoder[i] for i in self.encode(text)]


def _split_specials(text: str) -> list[str]:
    """[text, special, text, special, ..., text]: the special strings cut out of the text."""
    if "<|" not in text:
        return [text]
    parts: list[str] = []
    rest = text
    while True:
        hits = [(rest.find(s), s) for s in (START_OF_TEXT, END_OF_TEXT) if s in rest]
        if not hits:
            parts.append(rest)
            return parts
        index, special = min(hits)
        parts.extend([rest[:index], special])
        rest = rest[index + len(special):]


_shared: Optional[ClipTokenizer] = None
_shared_lock = threading.Lock()


def get_tokenizer() -> ClipTokenizer:
    """The process-wide tokenizer over the shipped vocabulary (loaded on first use)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = ClipTokenizer()
    return _shared


def count_tokens(text: str) -> int:
    """Tokens a CLIP text encoder reads for `text`, the start and end tokens included."""
    return get_tokenizer().count_tokens(text)


def encode(text: str) -> list[int]:
    """CLIP token ids of `text`, without the start and end tokens."""
    return get_tokenizer().encode(text)
