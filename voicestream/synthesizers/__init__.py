"""Speech synthesizers: text in, audio frames out.

A synthesizer is any object with a ``sample_rate`` and an async
``synthesize(text) -> Audio``. Its *engine* is its name, by which it is chosen
(``--engine``, ``voice.engine``); adding one means writing one class and naming
it in :data:`ENGINES`.
"""

from __future__ import annotations

from typing import Protocol

from ..audio import Audio
from ..config import VoiceConfig
from ..errors import UsageError


class Synthesizer(Protocol):
    sample_rate: int

    async def synthesize(self, text: str) -> Audio:
        """Speak ``text`` into memory; text with nothing to say gives empty audio."""
        ...


def speakable(text: str) -> bool:
    """Whether ``text`` has anything a voice would say (letters or digits)."""
    return any(c.isalnum() for c in text)


ENGINES = ("espeak", "piper", "silent")


async def open_synthesizer(config: VoiceConfig) -> Synthesizer:
    if config.engine == "espeak":
        from .espeak import EspeakSynthesizer

        return await EspeakSynthesizer.open(config.voice, config.rate)
    if config.engine == "piper":
        from .piper import PiperSynthesizer

        return await PiperSynthesizer.open(config.voice, config.rate)
    if config.engine == "silent":
        from .silent import SilentSynthesizer

        return SilentSynthesizer(config.rate)
    raise UsageError(f"unknown voice.engine '{config.engine}': choose one of {', '.join(ENGINES)}")
