"""The optional phoneme CTC recogniser (pipeline/lipsync/phoneme_ctc.py) with a tiny random wav2vec2 model.

Only the mechanics are checked here (offline loading, refusals, chunking, decoding, the aligner's
path); a random model says nothing about accuracy, and no real weights are available in tests.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from talkinghead.pipeline.core.audio import AudioClip  # noqa: E402
from talkinghead.pipeline.core.errors import InputError  # noqa: E402
from talkinghead.pipeline.lipsync import phoneme_ctc  # noqa: E402
from talkinghead.pipeline.lipsync.phoneset import ARPABET  # noqa: E402
from talkinghead.pipeline.lipsync.track import SILENCE  # noqa: E402

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", "b", "aɪ", "m", "ɑː", "p", "ə", "t", "s", "iː", "ʃ", "oʊ", "ɹ"]
VALID = set(ARPABET) | {SILENCE}


def _build_tiny(folder) -> None:
    from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                              Wav2Vec2Processor)

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = folder / "vocab_src.json"
    vocab_file.write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}, ensure_ascii=False), encoding="utf-8")
    tokenizer = Wav2Vec2CTCTokenizer(str(vocab_file), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                         return_attention_mask=False)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(str(folder))
    vocab_file.unlink()
    config = Wav2Vec2Config(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16, 16, 16), conv_kernel=(10, 4, 4, 4), conv_stride=(5, 4, 4, 4), conv_bias=False,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, pad_token_id=0, ctc_loss_reduction="mean",
    )
    model = Wav2Vec2ForCTC(config).eval()
    with torch.no_grad():  # keep the blank from winning every frame, so a random model emits phones
        model.lm_head.bias.zero_()
        model.lm_head.bias[0] = -5.0
    model.save_pretrained(str(folder), safe_serialization=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("models") / "phoneme_ctc" / "tiny-w2v2-espeak"
    _build_tiny(folder)
    return folder


@pytest.fixture(scope="module")
def model(model_dir):
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # loading must never need the network
    try:
        yield phoneme_ctc.load_phoneme_model(str(model_dir), device="cpu")
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def _speechlike(seconds: float, rate: int = 16000, seed: int = 1) -> AudioClip:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    voiced = 0.3 * np.sin(2 * np.pi * 140 * t) + 0.15 * np.sin(2 * np.pi * 700 * t)
    x = (envelope * voiced + 0.02 * rng.standard_normal(len(t))).astype(np.float32)
    return AudioClip(x[None], rate)


def _check_contiguous(phones, duration):
    assert phones and phones[0].start_s == 0.0
    assert phones[-1].end_s == pytest.approx(duration, abs=1e-6)
    for a, b in zip(phones, phones[1:]):
        assert a.end_s == b.start_s and a.end_s > a.start_s
    assert {p.phoneme for p in phones} <= VALID


# ---- loading ------------------------------------------------------------------------------------


def test_loads_offline_with_frame_period_from_conv_strides(model, model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert model.frame_s == pytest.approx(0.02)  # 5 * 4 * 4 * 4 = 320 samples at 16 kHz
    assert model.blank_id == 0 and model.tokens[6] == "aɪ" and model.normalize
    assert phoneme_ctc.load_phoneme_model(str(model_dir), device="cpu") is model  # cached
    # a changed file (new mtime) is loaded again
    config = model_dir / "config.json"
    later = time.time() + 5
    os.utime(config, (later, later))
    reloaded = phoneme_ctc.load_phoneme_model(str(model_dir), device="cpu")
    assert reloaded is not model and reloaded.tokens == model.tokens


def test_pickle_only_folder_is_refused_naming_the_file(model_dir, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    for name in ("config.json", "vocab.json", "preprocessor_config.json", "processor_config.json"):
        if (model_dir / name).exists():
            (folder / name).write_bytes((model_dir / name).read_bytes())
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(InputError) as info:
        phoneme_ctc.load_phoneme_model(str(folder))
    assert "pytorch_model.bin" in str(info.value) and "pickle" in str(info.value)
    assert info.value.input_name == "phoneme_model"


def test_missing_or_incomplete_folder_says_what_and_where(model_dir, tmp_path):
    with pytest.raises(InputError) as info:
        phoneme_ctc.load_phoneme_model(str(tmp_path / "nope"))
    text = str(info.value)
    assert "nothing at" in text and "models/phoneme_ctc" in text and "TALKINGHEAD_MODELS_DIR" in text
    assert "wav2vec2-lv-60-espeak-cv-ft" in text and "downloaded" in text
    folder = tmp_path / "novocab"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        (folder / name).write_bytes((model_dir / name).read_bytes())
    with pytest.raises(InputError, match="vocab.json"):
        phoneme_ctc.load_phoneme_model(str(folder))
    with pytest.raises(InputError, match="config.json"):
        phoneme_ctc.load_phoneme_model(str(tmp_path))


# ---- recognition --------------------------------------------------------------------------------


def test_short_audio_gives_contiguous_phones_deterministically(model):
    clip = _speechlike(0.5, rate=22050)
    phones = phoneme_ctc.recognize_phones(clip, model)
    _check_contiguous(phones, clip.duration_s)
    assert any(p.phoneme != SILENCE for p in phones)
    assert phoneme_ctc.recognize_phones(clip, model) == phones


def test_long_audio_is_chunked_and_covers_the_duration(model):
    clip = _speechlike(45.0)
    calls = []
    result = phoneme_ctc.recognize(clip, model, progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (3, 3)  # 20 s chunks
    _check_contiguous(result.phones, 45.0)
    assert sum(p.phoneme != SILENCE for p in result.phones) > 50
    assert any("tiny-w2v2-espeak" in n for n in result.notes)
    ids = phoneme_ctc.frame_ids(clip.samples[0], model)
    assert len(ids) == model.num_frames(len(clip.samples[0])) == 2249


# ---- decoding (exact, hand-made logits) -------------------------------------------------------

TOKENS = {0: "<pad>", 1: "b", 2: "aɪ", 3: "|", 4: "ts", 5: "ʙ", 6: "m", 7: "<unk>"}


def _logits(ids, vocab=len(TOKENS)):
    out = np.full((len(ids), vocab), -3.0, np.float32)
    out[np.arange(len(ids)), ids] = 2.0
    return out


def test_decoding_collapses_repeats_and_turns_long_blanks_into_silence():
    ids = [0, 0, 1, 1, 2, 2, 2, 3, 1] + [0] * 9 + [6, 6]  # 20 frames of 20 ms
    result = phoneme_ctc.decode_logits(_logits(ids), TOKENS, blank_id=0, frame_s=0.02, duration_s=0.4)
    got = [(p.phoneme, p.start_s, p.end_s) for p in result.phones]
    assert got == [
        ("SIL", 0.0, 0.04),   # leading blanks
        ("B", 0.04, 0.08),    # "b b" collapsed; runs to the next phone's start
        ("AY", 0.08, 0.16),   # the word delimiter "|" is no sound
        ("B", 0.16, 0.22),    # a new "b" (a blank-like token between); 180 ms of blank after: holds 40 ms
        ("SIL", 0.22, 0.36),
        ("M", 0.36, 0.4),
    ]
    assert not result.unknown_tokens


def test_decoding_splits_multi_phone_tokens_and_skips_unknown_ones():
    ids = [4, 4, 0, 5, 0, 6]
    result = phoneme_ctc.decode_frame_ids(ids, TOKENS, blank_id=0, frame_s=0.02, duration_s=0.12)
    got = [(p.phoneme, p.start_s, p.end_s) for p in result.phones]
    assert got == [("T", 0.0, 0.05), ("S", 0.05, 0.1), ("M", 0.1, 0.12)]
    assert result.unknown_tokens == {"ʙ": 1}


def test_decoding_timestamps_follow_the_frame_period_and_tail_silence():
    ids = [0, 6, 6, 0, 1] + [0] * 20  # 10 ms frames, torch logits with a batch axis
    logits = torch.from_numpy(_logits(ids))[None]
    result = phoneme_ctc.decode_logits(logits, TOKENS, blank_id=0, frame_s=0.01)
    got = [(p.phoneme, p.start_s, p.end_s) for p in result.phones]
    assert got == [("SIL", 0.0, 0.01), ("M", 0.01, 0.04), ("B", 0.04, 0.09), ("SIL", 0.09, 0.25)]
    short_tail = phoneme_ctc.decode_frame_ids([0, 6, 0, 0], TOKENS, blank_id=0, frame_s=0.02)
    assert [(p.phoneme, p.start_s, p.end_s) for p in short_tail.phones] == [("SIL", 0.0, 0.02), ("M", 0.02, 0.08)]
    silent = phoneme_ctc.decode_frame_ids([0, 7, 3, 0], TOKENS, blank_id=0, frame_s=0.02, duration_s=0.1)
    assert [(p.phoneme, p.start_s, p.end_s) for p in silent.phones] == [("SIL", 0.0, 0.1)]


# ---- the aligner's path ------------------------------------------------------------------------


def test_align_speech_uses_the_phoneme_model_without_a_transcript(model, model_dir, monkeypatch):
    from talkinghead.pipeline.lipsync import recognition as speech_recognition
    from talkinghead.pipeline.lipsync.aligner import align_speech

    def no_pocketsphinx(*args, **kwargs):
        raise AssertionError("pocketsphinx recognition must not run when a phoneme model is given")

    monkeypatch.setattr(speech_recognition, "recognize_for_visemes", no_pocketsphinx)
    from talkinghead.pipeline.speech.speak import SpeakConfig, speak

    clip = speak("Bob made a big map.", SpeakConfig()).audio
    track = align_speech(clip, fps=25, phoneme_model=model)
    assert track.method == "phoneme_ctc"
    assert any("phoneme CTC model" in w for w in track.warnings)
    _check_contiguous(track.phones, clip.duration_s)
    assert track.num_frames == round(clip.duration_s * 25)
    by_path = align_speech(clip, fps=25, phoneme_model=str(model_dir), language="de")
    assert by_path.method == "phoneme_ctc"  # multilingual IPA: other languages use it too


def test_node_lists_phoneme_models(model_dir, monkeypatch):
    from talkinghead.nodes import comfy_env
    from talkinghead.nodes.visemes import NO_PHONEME_MODEL, TalkingHeadVisemeAligner

    monkeypatch.setenv(comfy_env.MODELS_DIR_ENV, str(model_dir.parent.parent))
    choices, options = TalkingHeadVisemeAligner.INPUT_TYPES()["optional"]["phoneme_model"]
    assert choices == [NO_PHONEME_MODEL, "tiny-w2v2-espeak"] and options["default"] == NO_PHONEME_MODEL
    assert comfy_env.resolve_model("phoneme_ctc", "tiny-w2v2-espeak", "phoneme_model") == str(model_dir)
