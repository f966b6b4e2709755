"""The pipeline's data flow, failures and cancellation, in virtual time."""

from __future__ import annotations

import io
import itertools
import threading
from collections.abc import AsyncGenerator
from pathlib import Path

import numpy as np
import pytest
import trio
import trio.testing
from wavcheck import read_wav

from voicestream.audio import Audio
from voicestream.channels import Fixed
from voicestream.chunker import SentenceChunker
from voicestream.config import BuffersConfig, Config, DemoConfig
from voicestream.errors import SourceError
from voicestream.pipeline import Buffers, Metrics, blocks, speak
from voicestream.runner import Answer, Block, Chunk, Event, Finished, Text
from voicestream.sinks.wav import WavSink
from voicestream.sources import BaseSource
from voicestream.sources.demo import DemoSource
from voicestream.synthesizers import ThreadedSynthesizer
from voicestream.synthesizers.silent import SilentSynthesizer, spoken_seconds
from voicestream.words import Word


class RecordingSink:
    """Takes audio in real time (one second of audio takes one second), like a speaker."""

    underruns = 0
    underrun_s = 0.0
    played_s = None  # what it took counts as heard
    block_s = None  # like a device: blocks of buffers.audio_block_s

    def __init__(self, realtime: bool = True) -> None:
        self.realtime = realtime
        self.written: list[Audio] = []
        self.salvaged: list[Audio] = []
        self.silenced = False
        self.closed = False

    async def write(self, audio: Audio) -> None:
        assert not self.closed
        self.written.append(audio)
        await trio.sleep(audio.seconds if self.realtime else 0)

    async def drain(self) -> None:
        pass

    def leftover(self, audio: Audio) -> bool:
        self.salvaged.append(audio)
        return True

    def silence(self) -> None:
        self.silenced = True

    def close(self) -> None:
        self.closed = True


class ListSource(BaseSource):
    def __init__(self, pieces: list[str], gap: float = 0.01, fail_after: int | None = None) -> None:
        super().__init__()
        self.pieces, self.gap, self.fail_after = pieces, gap, fail_after
        self.sent = 0

    async def stream(self) -> AsyncGenerator[str]:
        for piece in self.pieces:
            if self.sent == self.fail_after:
                raise SourceError("the connection dropped")
            await trio.sleep(self.gap)
            self.sent += 1
            yield piece


TEXT = "One sentence here. Another sentence there. A third one ends it."


async def test_demo_answer_is_spoken_in_order_with_first_audio_early(
    clock: trio.testing.MockClock,
) -> None:
    sink, captions = RecordingSink(), io.StringIO()
    source = DemoSource(DemoConfig(seed=1))
    metrics = await speak(source, SilentSynthesizer(180), sink, captions=captions)
    chunker = SentenceChunker()
    spoken = [a.text for a in sink.written if a.text]  # audio travels in blocks
    assert spoken == chunker.feed(source.text) + chunker.flush()
    assert len(spoken) == metrics.chunks
    assert captions.getvalue() == source.text
    assert metrics.ttft_s == pytest.approx(0.4)
    assert metrics.ttfa_s is not None and metrics.ttfa_s - metrics.ttft_s < 0.5
    assert metrics.audio_s == pytest.approx(sum(a.seconds for a in sink.written))
    assert metrics.wall_s >= metrics.audio_s  # a real-time sink: speech takes its time
    assert sink.closed


async def test_source_failure_keeps_what_arrived_then_raises(clock: trio.testing.MockClock) -> None:
    sink, captions = RecordingSink(), io.StringIO()
    pieces = ["One sentence ", "here. Another ", "sentence is ", "never finished."]
    metrics = Metrics()
    with pytest.raises(SourceError):
        await speak(
            ListSource(pieces, fail_after=3), SilentSynthesizer(), sink, captions=captions,
            metrics=metrics,
        )  # fmt: skip
    spoken = [a.text for a in sink.written if a.text]
    assert spoken == ["One sentence here.", "Another sentence is"]
    assert captions.getvalue() == "One sentence here. Another sentence is "  # what arrived
    assert metrics.chunks == 2 and sink.closed


async def test_an_answer_that_fails_ends_its_caption_line_and_reports_the_error(
    clock: trio.testing.MockClock,
) -> None:
    sink, captions = RecordingSink(), io.StringIO()
    pieces = ["One sentence ", "here. Another ", "sentence is ", "never finished."]
    events: list[Event] = []
    answer = Answer(
        ListSource(pieces, fail_after=3), SilentSynthesizer(), sink, Config(),
        captions=captions, on_event=events.append,
    )  # fmt: skip
    result = await answer.run()
    assert result.outcome == "failed" and isinstance(result.error, SourceError)
    assert captions.getvalue() == "One sentence here. Another sentence is \n"
    assert result.text == "One sentence here. Another sentence is "  # the line end is not text
    assert [e.text for e in events if isinstance(e, Chunk)] == [
        "One sentence here.",
        "Another sentence is",
    ]
    assert isinstance(events[-1], Finished) and events[-1].outcome == "failed"
    assert sink.closed


async def test_a_caption_line_the_model_ended_is_not_ended_twice(
    clock: trio.testing.MockClock,
) -> None:
    captions = io.StringIO()
    pieces = ["A list:\n", "- one\n", "- two\n"]
    answer = Answer(
        ListSource(pieces), SilentSynthesizer(), RecordingSink(), Config(), captions=captions
    )
    result = await answer.run()
    assert result.outcome == "done" and result.text == "A list:\n- one\n- two\n"
    assert captions.getvalue() == result.text


class BrokenSynthesizer(SilentSynthesizer):
    async def synthesize(self, text: str) -> Audio:
        if "Another" in text:
            raise RuntimeError("engine crashed")
        return await super().synthesize(text)


async def test_a_failing_stage_cancels_the_others_and_closes_the_sink(
    clock: trio.testing.MockClock,
) -> None:
    sink = RecordingSink()
    source = ListSource([w + " " for w in TEXT.split(" ")] * 50, gap=0.5)
    with pytest.raises(BaseExceptionGroup) as raised:
        await speak(source, BrokenSynthesizer(), sink)
    assert raised.group_contains(RuntimeError, match="engine crashed")
    assert source.sent < 10  # the source was cancelled, not read to the end
    assert sink.closed


async def test_cancelled_answer_salvages_synthesized_audio(clock: trio.testing.MockClock) -> None:
    sink = RecordingSink()
    pieces = [TEXT + " "] * 20
    with trio.move_on_after(5.0):
        await speak(ListSource(pieces, gap=0.001), SilentSynthesizer(), sink)
    assert sink.closed
    assert sink.salvaged, "audio waiting in the channel reaches the sink's salvage()"
    # Played, then salvaged: one run of chunks in order, nothing lost or repeated.
    delivered = [a.text for a in sink.written + sink.salvaged if a.text]
    chunker = SentenceChunker()
    expected = chunker.feed("".join(pieces)) + chunker.flush()
    assert len(delivered) < len(expected)
    assert delivered == expected[: len(delivered)]


async def test_fixed_channels_stay_bounded_and_hold_the_producer_back(
    clock: trio.testing.MockClock,
) -> None:
    buffers = Buffers(text=Fixed(8), audio=Fixed(2))
    source = ListSource([w + " " for w in (TEXT + " ").split(" ")] * 30, gap=0.01)
    metrics = await speak(source, SilentSynthesizer(), RecordingSink(), buffers=buffers)
    assert metrics.channels["chunks"].peak_used <= 8
    assert metrics.channels["audio"].peak_used <= 2
    assert metrics.channels["chunks"].longest_send_wait_s > 1  # the producer was held back


async def test_adaptive_channels_keep_the_producer_going_and_audio_short(
    clock: trio.testing.MockClock,
) -> None:
    config = BuffersConfig(stall_budget_s=1.0)  # shorter than a sentence takes to say
    buffers = Buffers.from_config(config)
    source = ListSource([w + " " for w in (TEXT + " ").split(" ")] * 100, gap=0.01)
    sink = RecordingSink()
    metrics = await speak(source, SilentSynthesizer(), sink, buffers=buffers)
    audio = metrics.channels["audio"]
    text = [metrics.channels["chunks"]]
    assert all(c.producer_timeouts == 0 for c in text)
    assert all(c.longest_send_wait_s <= config.stall_budget_s for c in text)
    assert max(c.peak_capacity for c in text) > config.text_floor  # it grew under pressure
    assert all(c.capacity == config.text_floor for c in text)  # and shrank back once drained
    assert audio.peak_used <= config.audio_cap_s  # seconds of audio, however long
    assert len([a for a in sink.written if a.text]) == metrics.chunks > 100


class CountingSynthesizer(SilentSynthesizer):
    """The silent engine, counting every frame it makes."""

    frames = 0

    async def synthesize(self, text: str) -> Audio:
        audio = await super().synthesize(text)
        self.frames += len(audio.samples)
        return audio


async def test_a_cancelled_answer_keeps_every_frame_synthesized(
    clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    path = tmp_path / "a.wav"
    synthesizer, sink = CountingSynthesizer(), WavSink(path, SilentSynthesizer.sample_rate)
    metrics = Metrics()
    source = ListSource([TEXT + " "] * 20, gap=0.001)
    with trio.move_on_after(5.0):
        # A real-time sink: the answer is cancelled with audio queued and in flight.
        await speak(source, synthesizer, SlowSink(sink), metrics=metrics)
    _, samples = read_wav(path)
    assert metrics.chunks > 3 and len(samples) > 0
    assert len(samples) == synthesizer.frames  # written + salvaged = synthesized
    assert metrics.audio_s == pytest.approx(synthesizer.frames / synthesizer.sample_rate)


class Working(ThreadedSynthesizer):
    """The silent engine in a worker thread that works until it is told to finish."""

    sample_rate = SilentSynthesizer.sample_rate

    def __init__(self) -> None:
        super().__init__()
        self.working, self.finish = threading.Event(), threading.Event()
        self.frames = 0

    def _synthesize(self, text: str) -> tuple[np.ndarray, list[Word]]:
        if self.frames:  # the second synthesis: held until the answer is cancelled
            self.working.set()
            self.finish.wait(10)
        frames = round(spoken_seconds(text, 180) * self.sample_rate)
        self.frames += frames
        return np.zeros(frames, dtype=np.int16), []


async def test_a_synthesis_under_way_when_the_answer_is_cancelled_is_kept(
    tmp_path: Path,
) -> None:
    path, engine = tmp_path / "a.wav", Working()
    scope = trio.CancelScope()

    async def answer() -> None:
        with scope:
            sink = WavSink(path, engine.sample_rate)
            await speak(ListSource([TEXT + " "] * 3), engine, sink)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer)
        await trio.to_thread.run_sync(engine.working.wait, 10)
        scope.cancel()  # while the engine's thread works on its second chunk
        engine.finish.set()
    _, samples = read_wav(path)
    assert engine.working.is_set() and len(samples) == engine.frames  # both chunks


class SlowSink:
    """A file written at the pace of playback: like a device, it waits for room, then
    takes the block at once (a write is cancelled whole, or not at all)."""

    underruns = 0
    underrun_s = 0.0
    played_s = None
    block_s = None

    def __init__(self, sink: WavSink) -> None:
        self.sink = sink

    async def write(self, audio: Audio) -> None:
        await trio.sleep(audio.seconds)
        await self.sink.write(audio)

    async def drain(self) -> None:
        pass

    def leftover(self, audio: Audio) -> bool:
        return self.sink.leftover(audio)

    def silence(self) -> None:
        pass

    def close(self) -> None:
        self.sink.close()


async def test_an_answer_reports_its_text_chunks_and_blocks_in_order(
    clock: trio.testing.MockClock,
) -> None:
    events: list[Event] = []
    source = DemoSource(DemoConfig(seed=2), TEXT)
    answer = Answer(source, SilentSynthesizer(), RecordingSink(), Config(), on_event=events.append)
    result = await answer.run()
    assert result.outcome == "done" and result.text == TEXT
    assert "".join(e.text for e in events if isinstance(e, Text)) == TEXT
    chunks = [e for e in events if isinstance(e, Chunk)]
    blocks = [e for e in events if isinstance(e, Block)]
    assert (
        [c.index for c in chunks] == list(range(len(chunks))) == list(range(result.metrics.chunks))
    )
    for before, after in itertools.pairwise(chunks):  # each starts where the last one ended
        assert after.audio_start_s == pytest.approx(before.audio_start_s + before.audio_s)
    for before, after in itertools.pairwise(blocks):
        assert after.audio_start_s == pytest.approx(before.audio_start_s + before.audio.seconds)
    assert sum(b.audio.seconds for b in blocks) == pytest.approx(result.metrics.audio_s)
    assert isinstance(events[-1], Finished) and events[-1].outcome == "done"


async def test_stop_ends_the_answer_and_says_so(clock: trio.testing.MockClock) -> None:
    events: list[Event] = []
    source = ListSource([TEXT + " "] * 50, gap=0.05)
    answer = Answer(source, SilentSynthesizer(), RecordingSink(), Config(), on_event=events.append)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer.run)
        await trio.sleep(3.0)
        answer.stop()
    assert source.sent < 100  # the source was not read to its end
    assert isinstance(events[-1], Finished) and events[-1].outcome == "stopped"
    assert answer.statistics().channels["audio"].size == 0  # nothing left behind


async def test_fixed_in_units_counts_characters_and_seconds(
    clock: trio.testing.MockClock,
) -> None:
    """The decoupled baselines: text bounded in characters, audio in seconds."""
    buffers = Buffers(text=Fixed(120, units=True), audio=Fixed(1.5, units=True))
    source = ListSource([w + " " for w in (TEXT + " ").split(" ")] * 5, gap=0.01)
    metrics = await speak(source, SilentSynthesizer(), RecordingSink(), buffers=buffers)
    assert 60 < metrics.channels["chunks"].peak_used <= 120  # characters
    assert metrics.channels["audio"].peak_used == pytest.approx(1.5)  # three 0.5 s blocks


def test_audio_goes_whole_to_a_file_and_in_blocks_of_its_own_to_a_device() -> None:
    audio = Audio(np.arange(22050 * 2, dtype=np.int16), 22050, "Two seconds.")
    assert blocks(audio, 5.0) == [audio]  # one block: no copy
    cut = blocks(audio, 0.5)
    assert [len(b.samples) for b in cut] == [11025] * 4
    assert [b.text for b in cut] == ["Two seconds.", "", "", ""]
    assert np.array_equal(np.concatenate([b.samples for b in cut]), audio.samples)
    # Each block owns its samples: a played block frees its memory, and the chunk's
    # array is not kept alive by the blocks still to play.
    assert not any(np.shares_memory(b.samples, audio.samples) for b in cut)


async def test_the_block_size_is_the_sinks_choice(
    tmp_path: Path, clock: trio.testing.MockClock
) -> None:
    """A device gets small blocks (buffers.audio_block_s); a file each chunk whole."""
    device = RecordingSink()
    metrics = await speak(DemoSource(DemoConfig()), SilentSynthesizer(), device)
    assert max(a.seconds for a in device.written) == pytest.approx(0.5, abs=1e-4)
    assert len(device.written) > 2 * metrics.chunks

    written: list[Audio] = []

    class File(WavSink):
        async def write(self, audio: Audio) -> None:
            written.append(audio)
            await super().write(audio)

    metrics = await speak(
        DemoSource(DemoConfig()), SilentSynthesizer(), File(tmp_path / "a", 22050)
    )
    assert len(written) == metrics.chunks  # one block a chunk
    assert all(a.text for a in written)


@pytest.mark.parametrize(
    ("voice", "expected"),
    [
        ("es", ["Mañana por la tarde llega el Sr. Gómez a la oficina."]),
        ("en", ["Mañana por la tarde llega el Sr.", "Gómez a la oficina."]),
    ],
)
async def test_the_voices_language_picks_the_chunkers_titles(
    voice: str, expected: list[str]
) -> None:
    # espeak-ng's voice knows its language; the answer's chunker uses its titles.
    from voicestream.sources import TextSource
    from voicestream.synthesizers.espeak import EspeakSynthesizer

    engine = await EspeakSynthesizer.open(voice, 180)
    events: list[Event] = []
    text = "Mañana por la tarde llega el Sr. Gómez a la oficina."
    answer = Answer(TextSource(text), engine, RecordingSink(), Config(), on_event=events.append)
    assert (await answer.run()).outcome == "done"
    assert [e.text for e in events if isinstance(e, Chunk)] == expected
