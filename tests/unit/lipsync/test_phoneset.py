"""phoneset: espeak-ng mnemonics -> ARPAbet, Speak timings -> contiguous ARPAbet timings, G2P."""

from __future__ import annotations

import pytest

from talkinghead.pipeline.lipsync.phoneset import (
                                                   ARPABET, convert_speech_timings, espeak_to_arpabet, g2p_arpabet, parse_espeak_phonemes)
from talkinghead.pipeline.lipsync.track import SILENCE
from talkinghead.pipeline.speech.speak import SpeakConfig, speak
from talkinghead.pipeline.speech.timing import PhonemeTiming, SpeechTimings

VALID = set(ARPABET) | {SILENCE}

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore.",
    "Peter Piper picked a peck of pickled peppers.",
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood?",
    "I think that this is the right thing to do, although nobody agrees with me.",
    "Measure the pleasure of the treasure in the azure vision.",
    "Judge George jogged through the gorgeous village with a badge.",
    "Church bells rang while the children watched the cheerful choir.",
    "We were walking on the warm white sand when the wind whistled.",
    "Our boy enjoyed the noisy toys and the oily coins.",
    "The hour was late, and the cow found a brown mouse in the house.",
    "Fine wine and nice light might make my night.",
    "Go slowly over the road to the old stone boat.",
    "Play the game again today, and stay away from the rain.",
    "Would you look at the book that the good cook took?",
    "The blue moon shone through the cool June room.",
    "Her first word was a bird, heard early in the third term.",
    "Father calls the dog a star on the far lawn.",
    "Thousands of thoughtful people gathered there yesterday.",
    "The zebra was visiting the zoo in the hazy season.",
    "Hello, my name is Alice, and I live in a yellow house.",
    "Can you hear the ringing of the bells in the evening?",
    "Please bring the big bag of apples to the kitchen.",
    "Television programs are usually better in winter.",
    "Everybody wanted to know what happened in nineteen eighty four.",
    "It costs 25 dollars and 99 cents, or roughly 3 pounds.",
    "Button, bottle, little, kitten, and mitten are tricky words.",
    "Rhythm and prism and chasm end with a syllabic m.",
    "Your tour of the pure cure was poor, sure.",
    "The beer here is near the pier, dear.",
    "Where is the chair? There is a bear over there.",
    "Sing a song of sixpence, a pocket full of rye.",
    "An ambitious engineer unveiled an enormous invention.",
    "Genuine genius requires unusual patience and luck.",
    "Vivid violet velvet covers the vast valley.",
    "Yes, young Yolanda yelled at the yak.",
    "The actual situation is absolutely extraordinary.",
    "Whose shoes are these, and whose are those?",
    "Don't worry, it's fine; we'll be there at eight o'clock.",
    "Lorem ipsum, Zorblax flibbertigibbet, quixotic xylophone.",
]


def test_arpabet_is_the_cmu_set():
    assert len(ARPABET) == 39 and len(set(ARPABET)) == 39
    assert all(p.isupper() and p.isalpha() for p in ARPABET)


@pytest.mark.parametrize("mnemonic, expected", [
    ("aI@", ["AY", "ER"]), ("'aI@", ["AY", "ER"]), ("n-", ["AH", "N"]), ("@L", ["AH", "L"]),
    ("_", ["SIL"]), ("_:", ["SIL"]), ("", ["SIL"]), ("_!", ["SIL"]),
    ("'i:", ["IY"]), (",oU", ["OW"]), ("D", ["DH"]), ("T", ["TH"]), ("tS", ["CH"]),
    ("dZ", ["JH"]), ("N", ["NG"]), ("t#", ["T"]), ("?", ["T"]), ("3:", ["ER"]), ("j", ["Y"]),
])
def test_known_mnemonics(mnemonic, expected):
    assert espeak_to_arpabet(mnemonic) == expected


@pytest.mark.parametrize("odd", ["Zq~", "xyz123", "'", "~", "@@@", "\u00e9", "W#X"])
def test_unknown_mnemonics_never_crash(odd):
    out = espeak_to_arpabet(odd)
    assert all(p in VALID for p in out)


@pytest.mark.parametrize("voice", ["en-us", "en-gb"])
def test_every_phoneme_of_a_varied_corpus_maps_to_arpabet(voice):
    seen: set[str] = set()
    for sentence in CORPUS:
        for p in speak(sentence, SpeakConfig(voice=voice)).timings.phonemes:
            seen.add(p.phoneme)
    assert len(seen) > 50
    for mnemonic in seen:
        phones = espeak_to_arpabet(mnemonic)
        assert all(p in VALID for p in phones), (mnemonic, phones)
        if not mnemonic.startswith("_") and mnemonic != ";":
            assert phones and SILENCE not in phones, mnemonic


def _check_contiguous(phones, duration):
    assert phones[0].start_s == pytest.approx(0.0, abs=1e-9)
    assert phones[-1].end_s == pytest.approx(duration, abs=1e-6)
    for a, b in zip(phones, phones[1:]):
        assert a.end_s == pytest.approx(b.start_s, abs=1e-9)
        assert not (a.phoneme == SILENCE and b.phoneme == SILENCE)
    assert all(p.end_s > p.start_s and p.phoneme in VALID for p in phones)


def test_convert_speech_timings_of_real_speech():
    sp = speak("Button, bottle, little; the hour of fire.")
    phones = convert_speech_timings(sp.timings)
    _check_contiguous(phones, sp.timings.duration_s)
    labels = [p.phoneme for p in phones if p.phoneme != SILENCE]
    assert labels[:5] == ["B", "AH", "T", "AH", "N"]


def test_convert_splits_two_phone_mnemonics_and_fills_gaps():
    timings = SpeechTimings(
        phonemes=[PhonemeTiming("f", 0.1, 0.2), PhonemeTiming("'aI@", 0.2, 0.4),
                  PhonemeTiming("_:", 0.4, 0.5), PhonemeTiming("_", 0.5, 0.55),
                  PhonemeTiming("m", 0.6, 0.7)],
        duration_s=1.0, source="espeak-ng test rate 175 wpm")
    phones = convert_speech_timings(timings)
    _check_contiguous(phones, 1.0)
    assert [p.phoneme for p in phones] == ["SIL", "F", "AY", "ER", "SIL", "M", "SIL"]
    ay, er = phones[2], phones[3]
    assert ay.end_s - ay.start_s == pytest.approx(er.end_s - er.start_s)


def test_convert_moves_voiceless_stops_to_their_closure():
    timings = SpeechTimings(
        phonemes=[PhonemeTiming("'a", 0.0, 0.2), PhonemeTiming("p", 0.2, 0.3)],
        duration_s=0.3, source="espeak-ng rate 175 wpm")
    phones = convert_speech_timings(timings)
    assert phones[1].phoneme == "P" and phones[1].start_s == pytest.approx(0.2 - 0.048, abs=1e-3)


def test_convert_empty_timings_is_all_silence():
    phones = convert_speech_timings(SpeechTimings(duration_s=0.5))
    assert [(p.phoneme, p.start_s, p.end_s) for p in phones] == [("SIL", 0.0, 0.5)]


def test_g2p_gives_real_pronunciations():
    assert g2p_arpabet("25") == ["T", "W", "EH", "N", "T", "IY", "F", "AY", "V"]
    zorblax = g2p_arpabet("Zorblax")
    assert zorblax[0] == "Z" and "B" in zorblax and zorblax[-2:] == ["K", "S"]
    assert g2p_arpabet("button") == ["B", "AH", "T", "AH", "N"]
    assert all(p in ARPABET for p in g2p_arpabet("flibbertigibbet", "en-gb"))
    assert g2p_arpabet("") == []


def test_parse_espeak_phonemes_longest_match():
    assert parse_espeak_phonemes("D@2 kw'Ik f'aI@") == ["DH", "AH", "K", "W", "IH", "K", "F", "AY", "ER"]
