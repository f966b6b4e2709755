"""The speaking pipeline: source -> chunker -> synthesizer -> sink.

One nursery, three tasks, joined by bounded channels (voicestream.channels)::

    source + chunker --chunks--> synthesizer --audio blocks--> sink

The chunker is sans-IO and costs well under a microsecond a piece, so it runs in
the source's task: a piece from the network is filtered, captioned and chunked
without a task switch, and only whole chunks cross a channel. By default the text
channel is Adaptive (the source waits at most its stall budget to hand a chunk
on; memory stays under a hard cap) and the audio channel is a Jitter buffer
holding a few seconds of speech ahead of playback. A send that has room never
switches tasks; audio blocks are sized for the sink (a chunk whole for a file).
A slow engine is paced (voicestream.pacing): a chunk it could not make before the
audio ahead runs out is said in two parts, and its first audio gets a head start.
While audio plays in real time, every engine says a long chunk in parts that fit
the jitter buffer's room, each made once there is room for it: an answer holds its
jitter target of audio and about one part, however long its sentences.
Every block the sink takes goes into the answer's Timeline, with its word marks.

Captions are printed as pieces arrive, after escape sequences and control
characters are taken out (voicestream.text): the terminal and the synthesizer
see the same clean text. When the source fails mid-answer, what
it already produced is still chunked, spoken and stored, and the failure is
raised after that (so nothing is lost). When any other stage fails or the run
is cancelled, every stage is cancelled and the sink silenced at once; audio
synthesized but not yet handed to the sink is offered to it as leftover (a WAV
keeps it), and the sink is always closed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import aclosing
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol, TypeVar

import trio

from .audio import Audio, trim_end
from .channels import (
    Adaptive,
    ChannelStatistics,
    Fixed,
    Jitter,
    Policy,
    ReceiveEnd,
    SendEnd,
    Unbounded,
    open_channel,
)
from .chunker import SentenceChunker
from .config import BuffersConfig
from .errors import SourceError
from .pacing import PART_PAUSE_S, RESERVE_S, Pacer
from .playback import Timeline, heard_frames
from .sinks import Sink
from .sources import Source
from .synthesizers import Synthesizer, speakable
from .text import ControlFilter
from .words import estimate

T = TypeVar("T")


class TextOut(Protocol):
    """Where the text goes as it streams (a text file such as stdout will do)."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


@dataclass(frozen=True)
class Buffers:
    """The channel policies: text between source, chunker and synthesizer; audio
    (in blocks of ``block_s`` seconds) between synthesizer and sink."""

    text: Policy
    audio: Policy
    block_s: float = BuffersConfig.audio_block_s
    stall_budget_s: float = BuffersConfig.stall_budget_s

    @classmethod
    def from_config(cls, config: BuffersConfig) -> Buffers:
        if config.policy == "adaptive":
            text: Policy = Adaptive(config.text_floor, config.text_hard_cap, config.stall_budget_s)
            audio: Policy = Jitter(config.audio_floor_s, config.audio_cap_s)
        elif config.policy == "fixed":
            text = audio = Fixed(config.fixed_capacity)
        else:  # "unbounded"; the configuration's check admits nothing else
            text = audio = Unbounded()
        return cls(text, audio, config.audio_block_s, config.stall_budget_s)

    def open(self, kind: str) -> tuple[SendEnd[Any], ReceiveEnd[Any]]:
        """A channel for ``text`` or ``audio``, costed as its policy counts and sized in
        characters or seconds of audio, whatever the policy."""
        policy = self.text if kind == "text" else self.audio
        size: Callable[[Any], float] = len if kind == "text" else _seconds
        counts_units = isinstance(policy, Adaptive | Jitter) or (
            isinstance(policy, Fixed) and policy.units
        )
        return open_channel(
            policy, size if counts_units else None, size=size, stall_budget=self.stall_budget_s
        )


def _seconds(audio: Audio) -> float:
    return audio.seconds


@dataclass
class ChannelFigures:
    # The most held; above the capacity when one item was larger than the bound (an
    # item always enters an empty channel: a long sentence's audio never blocks).
    peak_used: float
    peak_capacity: float
    capacity: float
    longest_send_wait_s: float
    producer_timeouts: int  # sends that waited longer than the stall budget
    hard_cap_waits: int
    empty_receives: int  # the consumer found nothing waiting (not a device underrun)

    @classmethod
    def of(cls, stats: ChannelStatistics) -> ChannelFigures:
        return cls(
            stats.peak_used,
            stats.peak_capacity,
            stats.capacity,
            stats.longest_send_wait,
            stats.producer_timeouts,
            stats.hard_cap_waits,
            stats.empty_receives,
        )


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
    heard_words: int = 0  # words whose audio had started when the answer ended
    longest_token_gap_s: float = 0.0  # between two pieces of the model's text, once it began
    synthesis_s: float = 0.0  # the engine's work, all chunks: / audio_s = its real-time factor
    first_chunk_ready_s: float | None = None  # the first chunk's audio exists
    head_start_s: float = 0.0  # the first audio waited for a slow engine (voicestream.pacing)
    # The most audio the answer held at once, seconds: queued for the sink, and made
    # but not yet queued (the device's own buffer aside).
    audio_held_peak_s: float = 0.0
    # From the command's start (or the API call) to the model request: what a person
    # waits before ttft_s begins, the engine's load included (None: not measured).
    start_s: float | None = None
    channels: dict[str, ChannelFigures] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # what the source reports (usage)
    # Live, for observers (the benchmark); not part of the report.
    live: dict[str, ReceiveEnd[Any]] = field(default_factory=dict, repr=False)
    inflight_audio_s: float = field(default=0.0, repr=False)

    def as_dict(self) -> dict[str, Any]:
        report = asdict(self)
        del report["live"], report["inflight_audio_s"]
        return report


def _drain(receive: ReceiveEnd[T]) -> list[T]:
    items = []
    while True:
        try:
            items.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return items


def blocks(audio: Audio, seconds: float) -> list[Audio]:
    """``audio`` cut into blocks of at most ``seconds``.

    Audio that fits in one block goes as it is (a file takes each chunk whole: no
    copy). Cut for a device, each block is a copy of its part: a view would keep
    the whole chunk's samples alive until its last block had played, while copies
    are freed as they play (1,000 concurrent answers with audio that is really
    written: +514 MB of RSS with copies, +765 MB with views). Each block carries
    the word marks that start in it, counted from its own first sample."""
    step = max(1, int(seconds * audio.rate))
    samples = audio.samples
    if len(samples) <= step:
        return [audio]
    return [
        Audio(
            samples[i : i + step].copy(),
            audio.rate,
            audio.text if i == 0 else "",
            tuple(w._replace(sample=w.sample - i) for w in audio.words if i <= w.sample < i + step),
        )
        for i in range(0, len(samples), step)
    ]


async def send_all(out: SendEnd[T], items: Iterable[T]) -> None:
    """Send ``items`` in order, without a task switch while there is room."""
    for item in items:
        try:
            out.send_nowait(item)
        except trio.WouldBlock:
            await out.send(item)


async def speak(
    source: Source,
    synthesizer: Synthesizer,
    sink: Sink,
    *,
    captions: TextOut | None = None,
    written: bytearray | None = None,
    buffers: Buffers | None = None,
    chunker: SentenceChunker | None = None,
    metrics: Metrics | None = None,
    timeline: Timeline | None = None,
    on_chunk: Callable[[int, Audio, float], None] | None = None,
    on_block: Callable[[Audio, float], None] | None = None,
) -> Metrics:
    """Speak one answer from ``source`` into ``sink``; return its metrics.

    Pass ``metrics`` to have the figures filled in even when this raises, and
    ``timeline`` to follow what is heard (every block is added as the sink is
    handed it), ``written`` to keep the model's text (cleaned), appended as UTF-8;
    ``captions`` are written and flushed each piece. ``on_chunk(index, audio,
    start_s)`` is called as each chunk's audio (with its word marks) is ready,
    with where it starts in the answer's audio; ``on_block(audio, start_s)`` as
    each block is accepted by the sink. An engine that gives no word timing gets
    estimated marks. Raises :class:`SourceError` after speaking what arrived if
    the source failed. Use it through :class:`voicestream.runner.Answer`, which
    adds the cost check, the events and ``stop()``.
    """
    pipeline = Pipeline(
        source,
        synthesizer,
        sink,
        captions=captions,
        written=written,
        buffers=buffers or Buffers.from_config(BuffersConfig()),
        chunker=chunker if chunker is not None else SentenceChunker(),
        metrics=Metrics() if metrics is None else metrics,
        timeline=Timeline() if timeline is None else timeline,
        on_chunk=on_chunk,
        on_block=on_block,
    )
    return await pipeline.run()


class Pipeline:
    """One answer's pipeline: its three stages (:meth:`read_and_chunk`,
    :meth:`synthesize`, :meth:`play`) and everything it holds, named here. Run it
    once (:func:`speak`).

    Where the answer's bytes live while it runs (ARCHITECTURE.md has the whole
    picture):

    - ``chunker``: the text of the sentence being written, until it is a chunk;
    - ``chunks``: chunks waiting for the engine (the text channel);
    - ``unsent``: audio synthesized and cut into blocks, not yet in the audio
      channel (at most one part: :meth:`synthesize` waits for room first);
    - ``audio``: blocks waiting for the sink (the jitter buffer);
    - ``taken``: the block being written to the sink;
    - ``timeline``: the texts and word marks of the chunks still playing (played
      ones collapse to counts), and the sink's own device buffer.
    """

    def __init__(
        self,
        source: Source,
        synthesizer: Synthesizer,
        sink: Sink,
        *,
        captions: TextOut | None,
        written: bytearray | None,
        buffers: Buffers,
        chunker: SentenceChunker,
        metrics: Metrics,
        timeline: Timeline,
        on_chunk: Callable[[int, Audio, float], None] | None,
        on_block: Callable[[Audio, float], None] | None,
    ) -> None:
        self.source = source
        self.synthesizer = synthesizer
        self.sink = sink
        self.captions = captions
        self.written = written
        self.chunker = chunker
        self.metrics = metrics
        self.timeline = timeline
        self.on_chunk = on_chunk
        self.on_block = on_block
        self.block_s = sink.block_s or buffers.block_s
        self.pacer = Pacer(chunker.config.first_fragment_words) if chunker.config.pace else None
        self.chunks_out, self.chunks = buffers.open("text")
        self.bounded = isinstance(buffers.audio, Jitter)  # in seconds: parts fit its room
        self.audio_out, self.audio = buffers.open("audio")
        self.unsent: list[Audio] = []  # synthesized, but its send was cancelled
        self.taken: list[Audio] = []  # out of the channel, but its write was cancelled or failed
        self.synthesized_s = 0.0  # seconds of audio made so far
        self.slowest_s = 0.0  # the longest one synthesis took
        self.source_error: SourceError | None = None
        self.drained = trio.Event()  # all of it played (or stored): all of it was heard
        self.started = 0.0
        metrics.live.update(chunks=self.chunks, audio=self.audio)

    async def run(self) -> Metrics:
        self.started = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.read_and_chunk)
                nursery.start_soon(self.synthesize)
                nursery.start_soon(self.play)
        finally:
            self.finish()
        if self.source_error is not None:
            raise self.source_error
        return self.metrics

    async def read_and_chunk(self) -> None:
        """The source's pieces, cleaned, captioned and chunked, into ``chunks``."""
        metrics, captions = self.metrics, self.captions
        keep = None if self.written is None else self.written.extend
        # Bound once: this loop runs for every piece the model writes.
        clean = ControlFilter().feed  # nothing the model writes can drive the terminal
        chunk = self.chunker.feed
        now = trio.lowlevel.current_clock().current_time  # read once a piece: the shortest way
        started = self.started
        last_read = 0.0
        async with self.chunks_out as out:
            try:
                async with aclosing(self.source.stream()) as pieces:
                    async for raw in pieces:
                        read = now() - started
                        if metrics.ttft_s is None:
                            metrics.ttft_s = read
                        elif read - last_read > metrics.longest_token_gap_s:
                            metrics.longest_token_gap_s = read - last_read
                        last_read = read
                        metrics.tokens += 1
                        piece = clean(raw)
                        if not piece:
                            continue
                        if keep is not None:
                            keep(piece.encode())
                        if captions is not None:
                            captions.write(piece)
                            captions.flush()
                        chunks = chunk(piece)
                        if chunks:
                            await send_all(out, chunks)
            except SourceError as e:
                self.source_error = e  # speak what arrived, then report
            await send_all(out, self.chunker.flush())

    def ahead_s(self) -> float | None:
        """Audio made and not yet played (None: nothing plays in real time)."""
        played_s = self.sink.played_s
        return None if played_s is None else self.synthesized_s - played_s

    async def synthesize(self) -> None:
        """Each chunk into audio, into ``audio``, in parts (:meth:`next_part`)."""
        async with self.chunks, self.audio_out:
            async for chunk in self.chunks:
                rest = chunk
                while rest:
                    part, rest = await self.next_part(rest)
                    await self.say(part, ends_chunk=not rest)

    async def next_part(self, text: str) -> tuple[str, str]:
        """``(what to synthesize now, the rest)``, once it is time to.

        A slow engine says a chunk in parts when it could not say it whole in time
        (:mod:`voicestream.pacing`). While audio plays in real time, a chunk is also
        said in parts that fit the jitter target less ``RESERVE_S`` (at a pause;
        between two words only where no pause comes within 1.25 targets), each made
        once there is room for it in the jitter buffer, or, for a longer part, once
        the buffer is down to the reserve: 0.5 s, or 1.1 times the slowest synthesis
        so far (after a stall). What is made is queued at once, so an answer holds
        its jitter target of audio (and a part, after a stall), not the rest of a
        long sentence as well. A file takes audio as fast as it comes: chunks whole."""
        pacer, out = self.pacer, self.audio_out
        if pacer is None:
            return text, ""
        if self.ahead_s() is None or not self.bounded:
            return pacer.split(text, self.ahead_s())
        target = out.capacity  # the jitter target, seconds
        # What the buffer keeps while a part is made: the slowest synthesis so far (a
        # stall) is what the next one may take.
        reserve = min(target, max(RESERVE_S, 1.1 * self.slowest_s))
        part, rest = pacer.split(text, self.ahead_s(), target - RESERVE_S, 1.25 * target)
        # Started once the room will be there when it is made (a slow engine's part
        # takes a while): then what it makes goes straight in.
        needed = min(pacer.audio_s(len(part)), target - reserve) - pacer.estimate(len(part))
        await out.wait_room(max(0.0, needed))
        part, more = pacer.split(part, self.ahead_s())  # in time, with what is ahead now
        return part, f"{more} {rest}".strip()

    async def say(self, text: str, ends_chunk: bool = True) -> None:
        metrics, pacer, out = self.metrics, self.pacer, self.audio_out
        # Audio being made when the answer is cancelled is kept for a sink that keeps
        # leftovers (a device falls silent at once all the same: play()): an engine
        # finishes what it started (the Synthesizer protocol), so no shield here,
        # which cost ~6 us a part.
        began = trio.current_time()
        audio = await self.synthesizer.synthesize(text)
        took = trio.current_time() - began
        out.note_production(took, audio.seconds)
        if not ends_chunk:  # a part: the pause at a comma, not a sentence's
            audio = trim_end(audio, PART_PAUSE_S)
        metrics.synthesis_s += took
        self.slowest_s = max(self.slowest_s, took)
        if metrics.first_chunk_ready_s is None:
            metrics.first_chunk_ready_s = trio.current_time() - self.started
        if pacer is not None:
            pacer.learn(text, took, audio.seconds)
            if not self.synthesized_s and self.ahead_s() is not None:
                metrics.head_start_s = pacer.hold(audio.seconds)
        if not audio.words and len(audio.samples) and speakable(text):
            audio = replace(audio, words=tuple(estimate(text, len(audio.samples))))
        if self.on_chunk is not None:
            self.on_chunk(metrics.chunks, audio, self.synthesized_s)
        self.synthesized_s += audio.seconds
        metrics.chunks += 1
        metrics.inflight_audio_s = audio.seconds
        held = out.held + audio.seconds
        metrics.audio_held_peak_s = max(metrics.audio_held_peak_s, held)
        unsent = self.unsent
        unsent.extend(blocks(audio, self.block_s))
        del audio  # its blocks are all that is kept of it
        while unsent:
            block = unsent[0]
            try:
                out.send_nowait(block)  # no task switch while there is room
            except trio.WouldBlock:
                await out.send(block)  # cancellation-atomic: sent, or still unsent
            del unsent[0]
            metrics.inflight_audio_s -= block.seconds

    async def play(self) -> None:
        """The blocks from ``audio`` into the sink, each added to the timeline."""
        try:
            await self.play_all()
        except trio.Cancelled:
            # Cut off: silent now, not once a synthesis in progress has finished.
            self.sink.silence()
            raise

    async def play_all(self) -> None:
        metrics, sink, timeline, taken = self.metrics, self.sink, self.timeline, self.taken
        async for audio in self.audio:
            if metrics.ttfa_s is None:
                await trio.sleep(metrics.head_start_s)  # 0 but for a slow engine
                metrics.ttfa_s = trio.current_time() - self.started
            taken.append(audio)
            timeline.add(audio)  # before the write: a device plays it while it is written
            await sink.write(audio)
            taken.pop()
            timeline.forget(heard_frames(sink, timeline))  # played chunks: counts and text
            if self.on_block is not None:
                self.on_block(audio, metrics.audio_s)
            metrics.audio_s += audio.seconds
        await sink.drain()
        self.drained.set()

    def finish(self) -> None:
        """Cancelled or failed: keep the audio that exists but was not handed over
        (a WAV stores it, a speaker drops it), in the order it was made; then the
        figures, and the sink closed."""
        metrics, sink, timeline = self.metrics, self.sink, self.timeline
        for audio in self.taken:  # in the timeline already: handed over as it was written
            if sink.leftover(audio):
                metrics.audio_s += audio.seconds
        for audio in [*_drain(self.audio), *self.unsent]:
            if sink.leftover(audio):
                timeline.add(audio)
                metrics.audio_s += audio.seconds
        heard = timeline.frames if self.drained.is_set() else heard_frames(sink, timeline)
        metrics.heard_words = timeline.started(heard)
        metrics.channels = {n: ChannelFigures.of(c.statistics()) for n, c in metrics.live.items()}
        self.audio.close()
        sink.close()
        metrics.wall_s = trio.current_time() - self.started
        metrics.underruns = sink.underruns
        metrics.underrun_s = sink.underrun_s
        metrics.inflight_audio_s = 0.0
