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
