"""The speaking pipeline: source -> chunker -> synthesizer -> sink.

One nursery, one task per stage, joined by bounded channels::

    source --pieces--> chunker --chunks--> synthesizer --audio--> sink

Captions are printed as pieces arrive. When the source fails mid-answer, what
it already produced is still chunked, spoken and stored, and the failure is
raised after that (so nothing is lost). When any other stage fails or the run
is cancelled, every stage is cancelled; audio synthesized but not yet handed
to the sink is salvaged (a WAV keeps it) and the sink is always closed.
"""

from __future__ import annotations

import math
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TextIO, TypeVar

import trio

from .audio import Audio
from .chunker import SentenceChunker
from .config import BuffersConfig
from .errors import SourceError
from .sinks import Sink
from .sources import Source
from .tts import Synthesizer

T = TypeVar("T")


@dataclass
class ChannelFigures:
    peak_items: int = 0
    longest_send_wait_s: float = 0.0


@dataclass
class Metrics:
    ttft_s: float | None = None
    ttfa_s: float | None = None
    tokens: int = 0
    chunks: int = 0
    audio_s: float = 0.0
    wall_s: float = 0.0
    underruns: int = 0
    underrun_s: float = 0.0
    channels: dict[str, ChannelFigures] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class MeteredSend(Generic[T]):
    """A send end that records the channel's peak fill and the longest send wait."""

    def __init__(self, send: trio.MemorySendChannel[T], figures: ChannelFigures) -> None:
        self._send = send
        self.figures = figures

    async def send(self, item: T) -> None:
        start = trio.current_time()
        await self._send.send(item)
        figures = self.figures
        figures.longest_send_wait_s = max(figures.longest_send_wait_s, trio.current_time() - start)
        figures.peak_items = max(figures.peak_items, self._send.statistics().current_buffer_used)

    async def aclose(self) -> None:
        await self._send.aclose()

    async def __aenter__(self) -> MeteredSend[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _drain(receive: trio.MemoryReceiveChannel[T]) -> list[T]:
    items = []
    while True:
        try:
            items.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return items


def _channel(
    metrics: Metrics, name: str, size: int
) -> tuple[MeteredSend[Any], trio.MemoryReceiveChannel[Any]]:
    send, receive = trio.open_memory_channel[Any](size if size > 0 else math.inf)
    metrics.channels[name] = figures = ChannelFigures()
    return MeteredSend(send, figures), receive


async def speak(
    source: Source,
    synthesizer: Synthesizer,
    sink: Sink,
    *,
    captions: TextIO | None = None,
    buffers: BuffersConfig | None = None,
    chunker: SentenceChunker | None = None,
    metrics: Metrics | None = None,
) -> Metrics:
    """Speak one answer from ``source`` into ``sink``; return its metrics.

    Pass ``metrics`` to have the figures filled in even when this raises.
    Raises :class:`SourceError` after speaking what arrived if the source failed.
    """
    buffers = buffers or BuffersConfig()
    chunker = chunker if chunker is not None else SentenceChunker()
    metrics = Metrics() if metrics is None else metrics
    started = trio.current_time()
    source_error: list[SourceError] = []

    async def read_source(out: MeteredSend[str]) -> None:
        last = "\n"
        async with out:
            try:
                async with aclosing(source.stream()) as pieces:
                    async for piece in pieces:
                        if metrics.ttft_s is None:
                            metrics.ttft_s = trio.current_time() - started
                        metrics.tokens += 1
                        if captions is not None:
                            captions.write(piece)
                            captions.flush()
                            last = piece[-1:] or last
                        await out.send(piece)
            except SourceError as e:
                source_error.append(e)  # speak what arrived, then report
            finally:
                if captions is not None and last != "\n":
                    captions.write("\n")  # end the caption line, whatever happened
                    captions.flush()

    async def chunk_text(pieces: trio.MemoryReceiveChannel[str], out: MeteredSend[str]) -> None:
        async with pieces, out:
            async for piece in pieces:
                for chunk in chunker.feed(piece):
                    await out.send(chunk)
            for chunk in chunker.flush():
                await out.send(chunk)

    unsent: list[Audio] = []  # synthesized, but its send was cancelled

    async def synthesize(chunks: trio.MemoryReceiveChannel[str], out: MeteredSend[Audio]) -> None:
        async with chunks, out:
            async for chunk in chunks:
                # Shielded: a synthesis takes milliseconds, and audio that exists
                # when the answer is cancelled must not be thrown away.
                with trio.CancelScope(shield=True):
                    audio = await synthesizer.synthesize(chunk)
                metrics.chunks += 1
                if len(audio.samples):
                    unsent.append(audio)
                    await out.send(audio)  # cancellation-atomic: sent, or still unsent
                    unsent.pop()

    async def play(audio_in: trio.MemoryReceiveChannel[Audio]) -> None:
        async for audio in audio_in:
            if metrics.ttfa_s is None:
                metrics.ttfa_s = trio.current_time() - started
            metrics.audio_s += audio.seconds
            await sink.write(audio)
        await sink.drain()

    pieces_out, pieces_in = _channel(metrics, "pieces", buffers.tokens)
    chunks_out, chunks_in = _channel(metrics, "chunks", buffers.chunks)
    audio_out, audio_in = _channel(metrics, "audio", buffers.audio)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_source, pieces_out)
            nursery.start_soon(chunk_text, pieces_in, chunks_out)
            nursery.start_soon(synthesize, chunks_in, audio_out)
            nursery.start_soon(play, audio_in)
    finally:
        # Cancelled or failed: keep the audio that exists but was not handed over
        # (a WAV stores it, a speaker drops it), in the order it was made.
        for audio in [*_drain(audio_in), *unsent]:
            metrics.audio_s += audio.seconds
            sink.salvage(audio)
        audio_in.close()
        sink.close()
        metrics.wall_s = trio.current_time() - started
        metrics.underruns = sink.underruns
        metrics.underrun_s = sink.underrun_s
    if source_error:
        raise source_error[0]
    return metrics
