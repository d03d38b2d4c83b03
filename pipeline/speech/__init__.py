"""Speak: script text -> speech audio with the exact phoneme and word timings (espeak-ng, offline).
Entry points: `speak.speak`, `speak.speak_to_wav`; the timing types are in `timing`."""
