"""voicestream: speak a language model's answer while it is still being generated.

The public names, all importable from here (``from voicestream import speak``):

- :func:`speak` (under trio), :func:`say` (for scripts), :func:`load_config`;
- one answer, for front ends of your own: :class:`Answer` and its events;
  :class:`Heard`, a question spoken (``chat --listen``; :mod:`voicestream.listen`);
- the building blocks: :class:`SentenceChunker`, :func:`open_channel` and its
  policies, the :class:`Source`, :class:`Synthesizer` and :class:`Sink`
  interfaces with their base classes and factories;
- the errors: :class:`VoicestreamError` and its kinds.

They are loaded when first used, so ``python -m voicestream`` starts (and takes
Ctrl-C) before trio, numpy or an SDK are imported.
"""

from __future__ import annotations

import importlib
import time
from typing import TYPE_CHECKING, Any

BEGUN = time.monotonic()  # when voicestream was imported: a command's start (start_s)

__version__ = "0.1.0"

_HOME = {
    "speak": "api",
    "say": "api",
    "load_config": "api",
    "Spoken": "api",
    "Config": "config",
    "Answer": "runner",
    "Result": "runner",
    "Event": "runner",
    "Text": "runner",
    "Chunk": "runner",
    "Block": "runner",
    "Notice": "runner",
    "Finished": "runner",
    "Heard": "listen",
    "SentenceChunker": "chunker",
    "open_channel": "channels",
    "Fixed": "channels",
    "Unbounded": "channels",
    "Adaptive": "channels",
    "Jitter": "channels",
    "ChannelStatistics": "channels",
    "Audio": "audio",
    "Source": "sources",
    "BaseSource": "sources",
    "TextSource": "sources",
    "open_source": "sources",
    "Synthesizer": "synthesizers",
    "open_synthesizer": "synthesizers",
    "Sink": "sinks",
    "BaseSink": "sinks",
    "open_sink": "sinks",
    "open_output": "sinks",
    "VoicestreamError": "errors",
    "UsageError": "errors",
    "SourceError": "errors",
    "SinkError": "errors",
}

__all__ = [
    "Adaptive",
    "Answer",
    "Audio",
    "BaseSink",
    "BaseSource",
    "Block",
    "ChannelStatistics",
    "Chunk",
    "Config",
    "Event",
    "Finished",
    "Fixed",
    "Heard",
    "Jitter",
    "Notice",
    "Result",
    "SentenceChunker",
    "Sink",
    "SinkError",
    "Source",
    "SourceError",
    "Spoken",
    "Synthesizer",
    "Text",
    "TextSource",
    "Unbounded",
    "UsageError",
    "VoicestreamError",
    "load_config",
    "open_channel",
    "open_output",
    "open_sink",
    "open_source",
    "open_synthesizer",
    "say",
    "speak",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'voicestream' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return [*globals(), *__all__]


if TYPE_CHECKING:
    from .api import Spoken, load_config, say, speak
    from .audio import Audio
    from .channels import Adaptive, ChannelStatistics, Fixed, Jitter, Unbounded, open_channel
    from .chunker import SentenceChunker
    from .config import Config
    from .errors import SinkError, SourceError, UsageError, VoicestreamError
    from .listen import Heard
    from .runner import Answer, Block, Chunk, Event, Finished, Notice, Result, Text
    from .sinks import BaseSink, Sink, open_output, open_sink
    from .sources import BaseSource, Source, TextSource, open_source
    from .synthesizers import Synthesizer, open_synthesizer
