"""Speech synthesizers: text in, audio frames out.

A synthesizer is any object with a ``sample_rate`` and an async
``synthesize(text) -> Audio``, the audio carrying a mark for every word of the
text (:mod:`voicestream.words`: from the engine's own timing where it gives it,
else estimated). Its *engine* is its name, by which it is chosen (``--engine``,
``voice.engine``); adding one means writing one class and naming it in
:data:`ENGINES`.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

import numpy as np
import trio

from ..audio import Audio
from ..config import VoiceConfig
from ..errors import UsageError
from ..words import Word


class Synthesizer(Protocol):
    sample_rate: int
    # Optionally ``language``, the voice's ("en-us", "es"): the chunker's abbreviations.

    async def synthesize(self, text: str) -> Audio:
        """Speak ``text`` into memory, with its word marks; text with nothing to say
        gives empty audio. Cancelled once its work has begun, an engine finishes it
        and returns the audio (the cancel comes at the caller's next checkpoint), so
        that a file keeps it: :class:`ThreadedSynthesizer` waits for its thread."""
        ...


def speakable(text: str) -> bool:
    """Whether ``text`` has anything a voice would say (letters or digits)."""
    return any(c.isalnum() for c in text)


Samples = np.ndarray[Any, np.dtype[np.int16]]


class ThreadedSynthesizer:
    """An engine whose work blocks: ``_synthesize(text) -> (samples, word marks)``
    runs in a worker thread, one at a time (``trio.to_thread`` behind a limiter of
    one), or, for an engine whose loaded voice may be used from several threads at
    once (``parallel``), as many at a time as :meth:`pool` allows. A thread that has
    started is waited for, cancelled or not: its audio is returned."""

    sample_rate: int
    parallel = False  # its voice is safe to use from several threads at once

    def __init__(self) -> None:
        self._limiter = trio.CapacityLimiter(1)

    def pool(self, size: int) -> int:
        """Let ``size`` syntheses run at once (the voice and its clones at other rates
        share them); an engine that is not ``parallel`` stays at one. The size set."""
        self._limiter.total_tokens = size if self.parallel else 1
        return int(self._limiter.total_tokens)

    async def synthesize(self, text: str) -> Audio:
        if not speakable(text):
            return Audio(np.zeros(0, dtype=np.int16), self.sample_rate, text)
        samples, words = await trio.to_thread.run_sync(
            self._synthesize, text, limiter=self._limiter
        )
        return Audio(samples, self.sample_rate, text, tuple(words))

    def _synthesize(self, text: str) -> tuple[Samples, list[Word]]:
        raise NotImplementedError


def at_rate(synthesizer: Synthesizer, words_per_minute: int) -> Synthesizer:
    """The same loaded voice speaking at another rate: the rate is a parameter of each
    synthesis, so the model, the worker thread and the caches are shared."""
    clone = copy.copy(synthesizer)
    clone.words_per_minute = words_per_minute  # type: ignore[attr-defined]
    return clone


ENGINES = ("espeak", "piper", "silent")


async def open_synthesizer(config: VoiceConfig) -> Synthesizer:
    if config.engine == "espeak":
        from .espeak import EspeakSynthesizer

        return await EspeakSynthesizer.open(config.voice, config.rate)
    if config.engine == "piper":
        from .piper import PiperSynthesizer

        return await PiperSynthesizer.open(config.voice, config.rate, config.piper_threads)
    if config.engine == "silent":
        from .silent import SilentSynthesizer

        return SilentSynthesizer(config.rate)
    raise UsageError(f"unknown voice.engine '{config.engine}': choose one of {', '.join(ENGINES)}")
