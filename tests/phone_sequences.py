"""Hand-made phone sequences for the viseme tests."""

from talkinghead.pipeline.speech.timing import PhonemeTiming


def seq(*items, start=0.0):
    """[("AA", 0.1), ...] -> contiguous PhonemeTimings starting at `start` seconds."""
    out, t = [], start
    for ph, d in items:
        out.append(PhonemeTiming(ph, t, t + d))
        t += d
    return out
