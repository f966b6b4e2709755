"""The public API: speak a model's stream, or any text, from a Python program.

:func:`speak` under trio, :func:`say` for scripts; both run one answer through
:class:`voicestream.runner.Answer`, the way the command line does.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from . import config as configuration
from .config import Config
from .pipeline import TextOut
from .runner import Answer
from .sinks import open_output
from .sources import BaseSource, TextSource, check_text
from .synthesizers import open_synthesizer


@dataclass(frozen=True)
class Spoken:
    """What :func:`speak` did: the text the source wrote, and the metrics (the same
    keys as ``--metrics``: ``ttft_s``, ``ttfa_s``, ``audio_s``, ``chunks``, ...)."""

    text: str
    metrics: dict[str, Any]
    stopped: bool = False


def load_config(path: str | os.PathLike[str] | None = None, **overrides: Any) -> Config:
    """The configuration as the command line builds it (``./config.toml``, ``path``,
    ``VOICESTREAM_*`` variables), with ``overrides`` by table on top::

        load_config(voice={"rate": 200}, buffers={"policy": "fixed"})

    Every value is checked here; a mistake raises :class:`voicestream.UsageError`.
    """
    return configuration.load(
        Path(path) if path is not None else None, os.environ, overrides, where="load_config()"
    )


async def speak(
    source: str | AsyncIterable[str] | BaseSource,
    *,
    out: str | os.PathLike[str] | None = None,
    play: bool | None = None,
    config: Config | None = None,
    captions: TextOut | None = None,
) -> Spoken:
    """Speak ``source`` as it arrives: a string, any async iterable of text pieces
    (a model's stream), or a voicestream source. Call it from trio.

    ``out`` writes a WAV file; ``play`` plays on the speaker (the default when there
    is no ``out``); both at once work; ``out=None, play=False`` synthesizes and
    discards (for text only, or to measure). ``captions`` (a text file such as
    ``sys.stdout``) gets the text as it streams. A failure raises the
    :class:`voicestream.VoicestreamError` the command line would print.
    """
    begun = time.monotonic()
    config = config or load_config()
    play = out is None if play is None else play
    if isinstance(source, str):
        check_text(source, "the text")
    answer_source = source if isinstance(source, BaseSource) else TextSource(source)
    synthesizer = await open_synthesizer(config.voice)
    sink = open_output(
        synthesizer.sample_rate, config.output, Path(out) if out is not None else None, play
    )
    answer = Answer(answer_source, synthesizer, sink, config, captions=captions, begun=begun)
    result = await answer.run()
    if result.error is not None:
        raise result.error
    return Spoken(result.text, result.metrics.as_dict(), result.outcome == "stopped")


def say(
    text: str,
    *,
    out: str | os.PathLike[str] | None = None,
    play: bool | None = None,
    config: Config | None = None,
) -> Spoken:
    """:func:`speak` for scripts (runs trio itself; not from inside trio)."""

    async def run() -> Spoken:
        return await speak(text, out=out, play=play, config=config)

    return trio.run(run)
