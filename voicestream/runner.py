"""One answer, start to end: the one way voicestream speaks.

``say``, ``chat`` and the public API (:mod:`voicestream.api`) run every answer
through :class:`Answer`; none of them builds the pipeline::

    answer = Answer(source, synthesizer, sink, config, captions=sys.stdout)
    result = await answer.run()       # in a trio task
    answer.stop()                     # from any other task: a barge-in, a signal
    answer.statistics()               # what it holds now, for a monitor or a benchmark

An answer:

1. runs the source's cost check (a request of its own, only when the guard is on);
2. speaks through the pipeline (:mod:`voicestream.pipeline`) into the sink, the
   captions getting the text as the model writes it;
3. whatever happens, closes the sink and completes the metrics (with the source's
   usage report), and collects the source's notices;
4. reports as it goes to ``on_event``: :class:`Text` as the model writes,
   :class:`Chunk` when a chunk's audio is ready (where it starts in the answer's
   audio, and where each of its words does), :class:`Block` as the sink accepts
   audio, :class:`Notice`, and last one :class:`Finished`;
5. keeps a :class:`voicestream.playback.Timeline` of the audio the sink was
   handed (``answer.timeline``), so a front end can tell the sentence and the
   word being heard, and what was heard when it stopped.

A failure the person should hear about (:class:`VoicestreamError`) is not raised:
it is the result's ``error``, with outcome ``"failed"``. ``stop()`` ends the answer
at once: the model's stream is closed, queued text and audio are dropped (or
kept, by a sink that keeps leftovers), and the outcome is ``"stopped"``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import trio

from .audio import Audio
from .channels import ChannelStatistics
from .chunker import ChunkerConfig, SentenceChunker
from .config import Config
from .errors import VoicestreamError, root_cause
from .pipeline import Buffers, Metrics, TextOut, speak
from .playback import Timeline
from .sinks import Sink
from .sources import Source
from .synthesizers import Synthesizer
from .words import Word

Outcome = Literal["done", "stopped", "failed"]


@dataclass(frozen=True)
class Text:
    """A piece of the answer as the model wrote it (control characters removed)."""

    text: str


@dataclass(frozen=True)
class Chunk:
    """A chunk's audio is ready: it starts ``audio_start_s`` into the answer's audio;
    ``words`` mark where each of its words starts (samples at ``rate`` Hz from the
    chunk's start; offsets in ``text``)."""

    index: int
    text: str
    audio_start_s: float
    audio_s: float
    words: tuple[Word, ...] = ()
    rate: int = 0
    audio: Audio | None = field(default=None, compare=False, repr=False)  # the chunk's audio

    def word_starts_s(self) -> list[float]:
        """Where each word starts in the answer's audio, in seconds."""
        return [self.audio_start_s + w.sample / self.rate for w in self.words]


@dataclass(frozen=True)
class Block:
    """A block of audio the sink accepted, ``audio_start_s`` into the answer's audio."""

    audio: Audio
    audio_start_s: float


@dataclass(frozen=True)
class Notice:
    """Something the person should know once the answer is over (one line)."""

    message: str


@dataclass(frozen=True)
class Finished:
    outcome: Outcome
    metrics: dict[str, Any]
    error: str | None = None


Event = Text | Chunk | Block | Notice | Finished


@dataclass(frozen=True)
class Statistics:
    channels: dict[str, ChannelStatistics]
    synthesizing_s: float


@dataclass
class Result:
    outcome: Outcome
    text: str  # everything the model wrote
    metrics: Metrics
    error: VoicestreamError | None = None
    notices: list[str] = field(default_factory=list)


HARD_CAP_NOTICE = (
    "the text buffer reached buffers.text_hard_cap; the model's stream was held back "
    "(raise the cap if the API timed out)"
)


def chunker_config(config: ChunkerConfig, synthesizer: Synthesizer) -> ChunkerConfig:
    """The chunker's settings for this voice: its language's abbreviations, unless
    ``[chunker] language`` names one."""
    if config.language:
        return config
    return replace(config, language=getattr(synthesizer, "language", ""))


class Answer:
    """One answer from ``source``, spoken by ``synthesizer`` into ``sink``."""

    def __init__(
        self,
        source: Source,
        synthesizer: Synthesizer,
        sink: Sink,
        config: Config,
        *,
        captions: TextOut | None = None,
        on_event: Callable[[Event], None] | None = None,
        buffers: Buffers | None = None,
        begun: float | None = None,
        chunker: SentenceChunker | None = None,
        keep_heard: bool = False,
    ) -> None:
        self.source = source
        self.synthesizer = synthesizer
        self.sink = sink
        self.config = config
        self.captions = captions
        self.on_event = on_event or (lambda event: None)
        self.listened = on_event is not None  # events per token and block only if so
        self.buffers = buffers or Buffers.from_config(config.buffers)
        self.metrics = Metrics()
        # keep_heard: the text of the chunks played stays, for timeline.heard() (the
        # chat's history); else an answer's memory does not grow with its length.
        self.timeline = Timeline(keep_heard)
        # The model's text, kept once: UTF-8 in one buffer (a list of pieces, or a
        # StringIO, which keeps one too, costs ~60 bytes a piece).
        self._written = bytearray()
        self._scope = trio.CancelScope()
        self.stopped = False
        self.begun = begun  # time.monotonic() when the person asked: metrics' start_s
        self.chunker = chunker or SentenceChunker(chunker_config(config.chunker, synthesizer))

    def statistics(self) -> Statistics:
        """What the answer holds right now: its channels (``pieces``, ``chunks``,
        ``audio``; empty before it starts) and the audio the synthesizer has made but
        not yet handed on."""
        return Statistics(
            {name: end.statistics() for name, end in self.metrics.live.items()},
            self.metrics.inflight_audio_s,
        )

    def stop(self) -> None:
        """End the answer now (safe to call before it starts, and more than once)."""
        self.stopped = True
        self._scope.cancel()

    async def run(self) -> Result:
        """Run the answer to its end; see the module docstring."""
        error: VoicestreamError | None = None
        try:
            with self._scope:
                try:
                    if self.begun is not None:
                        self.metrics.start_s = time.monotonic() - self.begun
                    await self.source.check_cost()
                    await speak(
                        self.source,
                        self.synthesizer,
                        self.sink,
                        written=self._written,
                        captions=self._recorder(),
                        buffers=self.buffers,
                        chunker=self.chunker,
                        metrics=self.metrics,
                        timeline=self.timeline,
                        on_chunk=self._chunk if self.listened else None,
                        on_block=self._block if self.listened else None,
                    )
                except Exception as e:
                    cause = root_cause(e)
                    if not isinstance(cause, VoicestreamError):
                        raise
                    error = cause
        finally:
            self._end_line()
            self.sink.close()
            self.metrics.source = self.source.report()
        outcome: Outcome = "failed" if error else "stopped" if self.stopped else "done"
        notices = self._notices() if outcome != "failed" else []
        for notice in notices:
            self.on_event(Notice(notice))
        self.on_event(Finished(outcome, self.metrics.as_dict(), str(error) if error else None))
        return Result(outcome, self.text, self.metrics, error, notices)

    @property
    def text(self) -> str:
        """What the model has written so far (control characters removed)."""
        return self._written.decode()

    def _recorder(self) -> _Recorder | None:
        """The captions and the Text events, if anyone wants them: else nothing is
        done a piece but to keep it."""
        return _Recorder(self) if self.captions is not None or self.listened else None

    def _end_line(self) -> None:
        """End the captions' line, whatever happened (not part of the answer's text)."""
        if self.captions is not None and self._written and not self._written.endswith(b"\n"):
            with contextlib.suppress(OSError):
                self.captions.write("\n")
                self.captions.flush()

    def _notices(self) -> list[str]:
        notices = list(self.source.notices)
        if any(c.hard_cap_waits for c in self.metrics.channels.values()):
            notices.append(HARD_CAP_NOTICE)
        return notices

    def _chunk(self, index: int, audio: Audio, start_s: float) -> None:
        self.on_event(
            Chunk(index, audio.text, start_s, audio.seconds, audio.words, audio.rate, audio)
        )

    def _block(self, audio: Audio, start_s: float) -> None:
        self.on_event(Block(audio, start_s))


class _Recorder:
    """The captions, passed on, and a Text event for each piece."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.captions = answer.captions

    def write(self, text: str) -> int:
        answer = self.answer
        if answer.listened:
            answer.on_event(Text(text))
        if self.captions is not None:
            self.captions.write(text)
        return len(text)

    def flush(self) -> None:
        if self.captions is not None:
            with contextlib.suppress(OSError):
                self.captions.flush()
