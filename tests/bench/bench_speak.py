"""Speak throughput: seconds of speech per second of CPU, against raw espeak-ng in the same run.

Baseline: the ctypes binding's bare `synthesize` on the same sentences (one espeak call each, no
script cleaning, no timing bookkeeping, no streaming). The ratio speak()/baseline shows what our
side costs; x-real-time figures depend on the machine.

Run: python tests/bench/bench_speak.py [--words N]
"""

from __future__ import annotations

import argparse
import time

from talkinghead.pipeline.speech import espeak
from talkinghead.pipeline.speech.speak import SpeakConfig, iter_speech, resolve_voice

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please bring me a bowl of warm vegetable soup before the meeting starts.",
    "Seven shiny ships sailed slowly through the misty morning harbour.",
    "My phone buzzed twice, but by the time I looked, the message was gone.",
    "Few people know that the first computer bug was an actual moth.",
]


def script_of(words: int) -> str:
    text, count, i = [], 0, 0
    while count < words:
        sentence = SENTENCES[i % len(SENTENCES)]
        text.append(sentence)
        count += len(sentence.split())
        i += 1
    return " ".join(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--words", type=int, default=2000)
    args = parser.parse_args()
    config = SpeakConfig()
    script = script_of(args.words)
    spec = resolve_voice(config.voice)
    library = espeak.library()

    started = time.process_time()
    baseline_samples = 0
    for sentence in script.split(". "):
        raw = library.synthesize(sentence, spec, config.rate_wpm, config.pitch)
        baseline_samples += len(raw.samples)
    baseline_cpu_s = time.process_time() - started

    started = time.process_time()
    speech_samples, sample_rate = 0, 22050
    for chunk in iter_speech(script, config):
        speech_samples += len(chunk.samples)
        sample_rate = chunk.sample_rate
    speak_cpu_s = time.process_time() - started

    baseline_audio_s = baseline_samples / sample_rate
    audio_s = speech_samples / sample_rate
    print(f"script: {args.words} words, {audio_s:.1f} s of speech at {config.rate_wpm} wpm, voice {config.voice}")
    print(f"baseline raw espeak-ng:  {baseline_audio_s / baseline_cpu_s:7.1f} x real time (CPU)")
    print(f"iter_speech():           {audio_s / speak_cpu_s:7.1f} x real time (CPU), "
          f"{(audio_s / speak_cpu_s) / (baseline_audio_s / baseline_cpu_s):.2f} of baseline")


if __name__ == "__main__":
    main()
