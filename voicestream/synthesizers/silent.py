"""An instant engine that "speaks" silence for as long as a voice would take.

For benchmarks and tests that are about timing and buffers, not about the voice.
Its word marks are estimated (spread over the audio by the words' lengths).
"""

from __future__ import annotations

import numpy as np

from ..audio import Audio
from ..words import estimate
from . import speakable

SAMPLE_RATE = 22050
SENTENCE_PAUSE_S = 0.25


def spoken_seconds(text: str, words_per_minute: int) -> float:
    """Roughly how long espeak takes to say ``text`` at ``words_per_minute``."""
    if not speakable(text):
        return 0.0
    return len(text.split()) * 60.0 / words_per_minute + SENTENCE_PAUSE_S


class SilentSynthesizer:
    sample_rate = SAMPLE_RATE
    language = ""

    def __init__(self, words_per_minute: int = 180) -> None:
        self.words_per_minute = words_per_minute

    async def synthesize(self, text: str) -> Audio:
        frames = round(spoken_seconds(text, self.words_per_minute) * self.sample_rate)
        words = tuple(estimate(text, frames))
        return Audio(silence(frames), self.sample_rate, text, words)


_SILENCE = np.zeros(0, dtype=np.int16)


def silence(frames: int) -> np.ndarray[tuple[int], np.dtype[np.int16]]:
    """``frames`` of silence: a read-only view of one shared buffer, so the engine
    costs next to nothing (a new array of zeros a chunk cost ~1 us a token in
    ``benchmarks/throughput.py``, more than the chunker)."""
    global _SILENCE
    if len(_SILENCE) < frames:
        _SILENCE = np.zeros(max(frames, 2 * len(_SILENCE)), dtype=np.int16)
        _SILENCE.flags.writeable = False
    return _SILENCE[:frames]
