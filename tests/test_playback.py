"""Playback position -> captions, the word being heard and "what was heard", in
virtual time."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

from voicestream.audio import Audio
from voicestream.config import Config, DemoConfig
from voicestream.pipeline import Metrics, speak
from voicestream.playback import Playback, Timeline, heard_frames
from voicestream.runner import Answer
from voicestream.sinks import NullSink
from voicestream.sources.demo import DemoSource
from voicestream.terminal import Captions
from voicestream.words import Word, spans

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\n\x1b\[2K")

RATE = 22050
TEXT = (
    "Streaming speech starts early. The first sentence plays while the model writes on. "
    "Each later sentence follows the one before it, without a gap. "
    "Short ones, too. And a last sentence closes the answer."
)
WORD_S = 0.3  # each word of the marked engine


class MarkedEngine:
    """An engine with exact, known timing: 0.1 s of silence, then each word for
    WORD_S, marked where it starts (not estimated)."""

    sample_rate = RATE

    async def synthesize(self, text: str) -> Audio:
        found = spans(text)
        lead, step = int(0.1 * RATE), int(WORD_S * RATE)
        words = tuple(Word(o, n, lead + i * step) for i, (o, n) in enumerate(found))
        samples = np.full(lead + len(found) * step, 1000, dtype=np.int16)
        return Audio(samples, RATE, text, words)


@dataclass
class Block:
    frames: int  # left to play
    played: int  # played of it
    text: str  # the chunk's text, on its first block only
    words: tuple[Word, ...]


class Device:
    """A sound card in virtual time: takes 10 ms of frames every 10 ms through a
    one-second buffer, and knows which chunk and which word it is playing from the
    blocks themselves (the test's oracle)."""

    underruns = 0
    underrun_s = 0.0
    block_s = None

    def __init__(self) -> None:
        self.queue: list[Block] = []
        self.played = 0
        self.playing = ""  # the text of the chunk whose frames it took last
        self.word = ""  # the word whose first frame it took last (in that chunk)
        self.heard: list[str] = []  # every word whose first frame it took
        self.finished: list[str] = []  # chunks played to the end

    @property
    def played_s(self) -> float:
        return self.played / RATE

    def buffered(self) -> int:
        return sum(block.frames for block in self.queue)

    async def run(self) -> None:
        while True:
            await trio.sleep(0.01)
            want = RATE // 100
            while want and self.queue:
                block = self.queue[0]
                if block.text:
                    if self.playing:
                        self.finished.append(self.playing)
                    self.playing, block.text, self.word = block.text, "", ""
                take = min(want, block.frames)
                for w in block.words:
                    if block.played <= w.sample < block.played + take:
                        self.word = self.playing[w.offset : w.end]
                        self.heard.append(self.word)
                block.frames -= take
                block.played += take
                self.played += take
                want -= take
                if block.frames == 0:
                    self.queue.pop(0)

    async def write(self, audio: Audio) -> None:
        while self.buffered() + len(audio.samples) > RATE:
            await trio.sleep(0.01)
        self.queue.append(Block(len(audio.samples), 0, audio.text, audio.words))

    async def drain(self) -> None:
        while self.queue:
            await trio.sleep(0.01)

    def leftover(self, audio: Audio) -> bool:
        return False

    def silence(self) -> None:
        self.queue.clear()  # what it held is not played

    def close(self) -> None:
        pass


Sample = tuple[str, str, str, str]  # caption, the word in it; the device's chunk and word


async def play(
    stop_after: float | None,
) -> tuple[Timeline, Device, Metrics, list[Sample], list[str]]:
    """Speak TEXT into the virtual device; sample (caption, word, oracle) every 50 ms.
    The last item: every chunk's text, as synthesized."""
    device = Device()
    timeline = Timeline()
    metrics = Metrics()
    source = DemoSource(DemoConfig(first_token_s=0.4, tokens_per_s=60, seed=7), TEXT)
    samples: list[Sample] = []
    texts: list[str] = []

    async def sample() -> None:
        while True:
            at = timeline.position(heard_frames(device, timeline))
            word = at.text[at.word.offset : at.word.end] if at.word else ""
            samples.append((at.text, word, device.playing if device.queue else "", device.word))
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(device.run)
        nursery.start_soon(sample)
        with trio.move_on_after(stop_after if stop_after is not None else float("inf")):
            await speak(
                source, MarkedEngine(), device, timeline=timeline, metrics=metrics,
                on_chunk=lambda _, audio, __: texts.append(audio.text),
            )  # fmt: skip
        nursery.cancel_scope.cancel()
    return timeline, device, metrics, samples, texts


async def test_the_caption_follows_the_sentence_and_the_word_being_played(
    clock: trio.testing.MockClock,
) -> None:
    timeline, device, metrics, samples, texts = await play(None)
    assert len(texts) >= 4 and timeline.chunks == len(texts)
    assert len(timeline.texts) == 1  # played chunks were collapsed as they played
    assert all(caption == playing for caption, _, playing, _ in samples)
    assert all(word == heard for caption, word, _, heard in samples if caption)
    shown = [caption for caption, *_ in samples if caption]
    in_order = [text for i, text in enumerate(shown) if i == 0 or shown[i - 1] != text]
    assert in_order == texts  # every sentence, once each, in order
    assert [*device.finished, device.playing] == texts
    words = [word for _, word, _, _ in samples if word]
    assert len({*words}) > 10  # the emphasis moved from word to word
    assert timeline.heard(timeline.frames) == " ".join(texts)
    assert metrics.heard_words == len(device.heard) == sum(len(spans(t)) for t in texts)


async def test_a_barge_in_keeps_exactly_the_words_played_before_it(
    clock: trio.testing.MockClock,
) -> None:
    for stop_after in (2.05, 3.0, 4.0, 5.52):
        timeline, device, metrics, _, texts = await play(stop_after)
        heard = timeline.heard(heard_frames(device, timeline))
        # The device's own account: the chunks it finished, then the words it began.
        in_progress = device.heard[len(" ".join(device.finished).split()) :]
        expected = " ".join([*device.finished, " ".join(in_progress)]).strip()
        assert re.sub(r"[^\w ]", "", heard) == re.sub(r"[^\w ]", "", expected), stop_after
        assert heard.endswith(device.word), stop_after  # up to the word in progress
        assert " ".join(texts).startswith(heard)
        assert metrics.heard_words == len(device.heard)


def marked(text: str, starts: list[int], frames: int) -> Audio:
    words = tuple(Word(o, n, s) for (o, n), s in zip(spans(text), starts, strict=True))
    return Audio(np.zeros(frames, dtype=np.int16), RATE, text, words)


def test_heard_at_given_frames_goes_up_to_the_word_in_progress() -> None:
    timeline = Timeline()
    timeline.add(marked("One two three four.", [0, 100, 200, 300], 400))
    timeline.add(marked("Five six.", [50, 150], 200))
    assert timeline.heard(0) == ""  # nothing played: not even the first word
    assert timeline.heard(1) == "One"
    assert timeline.heard(100) == "One"  # "two" starts at frame 100: not yet heard
    assert timeline.heard(101) == "One two"
    assert timeline.heard(399) == "One two three four"
    assert timeline.heard(400) == "One two three four."  # played to its end
    assert timeline.heard(450) == "One two three four."  # the next one's pause
    assert timeline.heard(451) == "One two three four. Five"
    assert timeline.heard(600) == "One two three four. Five six."
    at = timeline.position(250)
    assert (at.index, at.text[at.word.offset : at.word.end] if at.word else "") == (0, "three")
    assert timeline.position(420).word is None  # between chunks, before "Five"
    assert [timeline.started(f) for f in (0, 1, 101, 451, 600)] == [0, 1, 2, 5, 6]


def test_played_chunks_collapse_and_what_is_ahead_reads_the_same() -> None:
    def timeline() -> Timeline:
        t = Timeline()
        t.add(marked("One two three four.", [0, 100, 200, 300], 400))
        t.add(marked("Five six.", [50, 150], 200))
        second = marked("Seven eight nine.", [0, 120, 240], 300)
        t.add(replace(second, samples=second.samples[:200], words=second.words[:2]))
        t.add(Audio(second.samples[200:], RATE, "", (second.words[2]._replace(sample=40),)))
        return t

    whole = timeline()
    for played in range(0, whole.frames + 1, 25):
        kept = timeline()
        for at in range(0, played + 1, 50):  # as a sink reports play, forward only
            kept.forget(at)
        kept.forget(played)
        for f in range(played, whole.frames + 1):
            assert kept.heard(f) == whole.heard(f), (played, f)
            assert kept.started(f) == whole.started(f), (played, f)
            assert kept.position(f) == whole.position(f), (played, f)
    assert len(kept.texts) == 1 and kept.chunks == 3  # the last one is kept: it may play on
    assert kept.word_frames() == [600, 720, 840]  # of the chunk kept
    counted = Timeline(keep_heard=False)  # an answer's own: counts only, no text
    counted.add(marked("One two.", [0, 100], 200))
    counted.add(marked("Three.", [0], 100))
    counted.forget(250)
    assert counted.started(250) == 3 and counted.heard is not None
    with pytest.raises(ValueError, match="keep_heard"):
        counted.heard(250)  # it kept no text of the played chunk: said, not guessed


async def test_blocks_keep_the_marks_where_their_audio_is() -> None:
    """A chunk cut into device blocks: each word's mark lands in the block (and at
    the frame) where its audio is."""
    text = "Alpha beta gamma delta epsilon zeta."
    timeline = Timeline()

    class Sink(NullSink):
        block_s = 0.05  # shorter than a word: marks spread over many blocks

    starts = [0, 3000, 7000, 12000, 12500, 20000]
    audio = marked(text, starts, 24000)

    class Engine:
        sample_rate = RATE

        async def synthesize(self, chunk: str) -> Audio:
            return audio if chunk == text else Audio(np.zeros(0, dtype=np.int16), RATE, chunk)

    await speak(DemoSource(DemoConfig(first_token_s=0, tokens_per_s=1e6), text), Engine(), Sink(),
                timeline=timeline)  # fmt: skip
    assert timeline.word_frames() == starts
    assert [timeline.position(f + 1).word for f in starts] == [
        w._replace(sample=w.sample % (RATE // 20)) for w in audio.words
    ]  # the word, as its block carried it


async def test_a_device_sink_counts_what_it_played_a_file_what_it_took() -> None:
    timeline = Timeline()
    timeline.add(marked("One two.", [0, 100], 200))
    assert heard_frames(NullSink(), timeline) == 200
    device = Device()
    device.played = 150
    assert heard_frames(device, timeline) == 150
    playback = Playback(device, RATE)
    assert heard_frames(playback, timeline) == 150


def test_captions_keep_the_status_line_below_the_text(monkeypatch: Any) -> None:
    monkeypatch.setenv("COLUMNS", "20")
    out = io.StringIO()
    captions = Captions(out, ansi=True)
    captions.write("a" * 25)
    assert ANSI.sub("", out.getvalue()) == "a" * 20 + "\r\n" + "a" * 5  # wrapped by us
    captions.speaking("Being   spoken now.")
    drawn = out.getvalue()
    assert drawn.endswith("\n\x1b[2K\x1b[7m ▶ Being spoken now.\x1b[0m\x1b[1A\x1b[6G")
    captions.write("b")  # hides the status, writes, draws it again, back at column 7
    assert out.getvalue().endswith("b\n\x1b[2K\x1b[7m ▶ Being spoken now.\x1b[0m\x1b[1A\x1b[7G")
    captions.end("stopped")
    assert out.getvalue().endswith("\n\x1b[2K\x1b[1A\x1b[7G\n\x1b[2mstopped\x1b[0m\n")

    plain = io.StringIO()
    captions = Captions(plain, ansi=False)
    captions.write("text as written\n")
    captions.speaking("ignored")
    captions.end("footer")
    assert plain.getvalue() == "text as written\n"  # a pipe gets the text only


def test_the_word_being_heard_is_emphasized_and_kept_in_sight(monkeypatch: Any) -> None:
    monkeypatch.setenv("COLUMNS", "30")
    out = io.StringIO()
    captions = Captions(out, ansi=True)
    sentence = "Being   spoken now, and this sentence runs on past the edge."
    found = spans(sentence)
    captions.speaking(sentence, Word(*found[1], 0))
    assert out.getvalue().endswith(
        "\x1b[7m ▶ Being \x1b[1;4mspoken\x1b[22;24m now, and this \x1b[0m\x1b[1A\x1b[1G"
    )
    captions.speaking(sentence, Word(*found[-2], 0))  # "the", far past the edge
    line = out.getvalue().rsplit("\x1b[7m ▶ ", 1)[1].split("\x1b[0m")[0]
    assert "\x1b[1;4mthe\x1b[22;24m" in line and line.startswith("…")
    assert len(ANSI.sub("", line)) <= 27
    drawn = len(out.getvalue())
    captions.speaking(sentence, Word(*found[-2], 0))
    assert len(out.getvalue()) == drawn  # the same word again: nothing redrawn


async def test_a_barge_in_during_a_slow_synthesis_silences_the_device_at_once(
    clock: trio.testing.MockClock,
) -> None:
    """The synthesis in progress takes seconds with a slow engine; the device must
    not play on meanwhile."""
    device = Device()
    silenced: list[float] = []

    def silence() -> None:
        silenced.append(trio.current_time())
        device.queue.clear()

    device.silence = silence  # type: ignore[method-assign]

    class Slow(MarkedEngine):
        async def synthesize(self, text: str) -> Audio:
            await trio.sleep(0.0 if text.startswith("Streaming") else 3.0)
            return await super().synthesize(text)

    answer = Answer(DemoSource(DemoConfig(first_token_s=0, tokens_per_s=1e6), TEXT), Slow(),
                    device, Config(), keep_heard=True)  # fmt: skip
    async with trio.open_nursery() as nursery:
        nursery.start_soon(device.run)
        nursery.start_soon(answer.run)
        await trio.sleep(1.0)  # the first sentence plays; the second is being made
        played_before = device.played
        stopped_at = trio.current_time()
        answer.stop()
        await trio.sleep(5.0)
        nursery.cancel_scope.cancel()
    assert silenced[0] == stopped_at  # at once, not once the synthesis is done
    assert device.played - played_before <= RATE // 100  # not a frame more than a tick
    assert answer.timeline.heard(device.played).startswith("Streaming speech")
