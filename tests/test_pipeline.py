"""The pipeline's data flow, failures and cancellation, in virtual time."""

from __future__ import annotations

import io
from collections.abc import AsyncGenerator

import pytest
import trio
import trio.testing

from voicestream.audio import Audio
from voicestream.chunker import SentenceChunker
from voicestream.config import BuffersConfig, DemoConfig
from voicestream.errors import SourceError
from voicestream.pipeline import Metrics, speak
from voicestream.sources.demo import DemoSource
from voicestream.tts.silent import SilentSynthesizer


class RecordingSink:
    """Takes audio in real time (one second of audio takes one second), like a speaker."""

    underruns = 0
    underrun_s = 0.0

    def __init__(self, realtime: bool = True) -> None:
        self.realtime = realtime
        self.written: list[Audio] = []
        self.salvaged: list[Audio] = []
        self.closed = False

    async def write(self, audio: Audio) -> None:
        assert not self.closed
        self.written.append(audio)
        await trio.sleep(audio.seconds if self.realtime else 0)

    async def drain(self) -> None:
        pass

    def salvage(self, audio: Audio) -> None:
        self.salvaged.append(audio)

    def close(self) -> None:
        self.closed = True


class ListSource:
    def __init__(self, pieces: list[str], gap: float = 0.01, fail_after: int | None = None) -> None:
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
    assert [a.text for a in sink.written] == chunker.feed(source.text) + chunker.flush()
    assert len(sink.written) == metrics.chunks
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
    assert [a.text for a in sink.written] == ["One sentence here.", "Another sentence is"]
    assert captions.getvalue() == "One sentence here. Another sentence is \n"
    assert metrics.chunks == 2 and sink.closed


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
    source = ListSource([s + " " for s in TEXT.split(". ")] * 20, gap=0.001)
    with trio.move_on_after(1.0):
        await speak(source, SilentSynthesizer(), sink)
    assert sink.closed
    assert sink.salvaged, "audio waiting in the channel reaches the sink's salvage()"
    delivered = [a.text for a in sink.written + sink.salvaged]
    assert delivered == [a.text for a in sink.written] + [a.text for a in sink.salvaged]


async def test_channels_stay_bounded_when_speech_is_slower_than_text(
    clock: trio.testing.MockClock,
) -> None:
    buffers = BuffersConfig(tokens=32, chunks=4, audio=2)
    sink = RecordingSink()
    source = ListSource([w + " " for w in (TEXT + " ").split(" ")] * 30, gap=0.01)
    metrics = await speak(source, SilentSynthesizer(), sink, buffers=buffers)
    assert metrics.channels["pieces"].peak_items <= 32
    assert metrics.channels["chunks"].peak_items <= 4
    assert metrics.channels["audio"].peak_items <= 2
    assert metrics.channels["pieces"].longest_send_wait_s > 1  # the producer was held back
