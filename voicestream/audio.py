"""Audio frames as they travel from the synthesizer to the sink."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .words import Word

Samples = npt.NDArray[np.int16]


@dataclass(frozen=True)
class Audio:
    """Mono 16-bit PCM samples at ``rate`` Hz, with the text they speak and where
    each of its words starts (:class:`voicestream.words.Word`; a block cut from a
    chunk's audio carries the marks that start in it, their samples counted from
    the block's start and their offsets in the chunk's text)."""

    samples: Samples
    rate: int
    text: str = ""
    words: tuple[Word, ...] = ()

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


QUIET = 300  # |sample| at or under this is silence between words (of 32,767)


def trim_end(audio: Audio, keep_s: float) -> Audio:
    """``audio`` with the silence at its end cut to at most ``keep_s`` seconds: a part
    of a sentence, said alone, ends in a sentence's pause (espeak-ng: 0.28 s), which
    mid-sentence is a halt. Audio with no sound in it (the silent engine) is left as
    it is."""
    loud = np.flatnonzero(np.abs(audio.samples) > QUIET)
    if not len(loud):
        return audio
    end = int(loud[-1]) + 1 + int(keep_s * audio.rate)
    if end >= len(audio.samples):
        return audio
    return Audio(audio.samples[:end].copy(), audio.rate, audio.text, audio.words)
