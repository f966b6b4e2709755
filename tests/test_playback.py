"""Playback position -> captions and "what was heard", in virtual time."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import trio
import trio.testing

from voicestream.audio import Audio
from voicestream.config import DemoConfig
from voicestream.pipeline import speak
from voicestream.playback import Playback
from voicestream.sinks import NullSink
from voicestream.sources.demo import DemoSource
from voicestream.synthesizers.silent import SilentSynthesizer
from voicestream.terminal import Captions

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|\n\x1b\[2K")

RATE = 22050
TEXT = (
    "Streaming speech starts early. The first sentence plays while the model writes on. "
    "Each later sentence follows the one before it, without a gap. "
    "Short ones, too. And a last sentence closes the answer."
)


@dataclass
class Block:
    frames: int  # left to play
    text: str  # the chunk's text, on its first block only


class Device:
    """A sound card in virtual time: takes 10 ms of frames every 10 ms through a
    one-second buffer, and knows which chunk it is playing (the test's oracle)."""

    underruns = 0
    underrun_s = 0.0
    block_s = None

    def __init__(self) -> None:
        self.queue: list[Block] = []
        self.played = 0
        self.playing = ""  # the text of the chunk whose frames it took last
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
                    self.playing, block.text = block.text, ""
                take = min(want, block.frames)
                block.frames -= take
                self.played += take
                want -= take
                if block.frames == 0:
                    self.queue.pop(0)

    async def write(self, audio: Audio) -> None:
        while self.buffered() + len(audio.samples) > RATE:
            await trio.sleep(0.01)
        self.queue.append(Block(len(audio.samples), audio.text))

    async def drain(self) -> None:
        while self.queue:
            await trio.sleep(0.01)

    def leftover(self, audio: Audio) -> bool:
        return False

    def close(self) -> None:
        pass


async def play(stop_after: float | None) -> tuple[Playback, Device, list[tuple[str, str]]]:
    """Speak TEXT into the virtual device; sample (caption, oracle) every 50 ms."""
    device = Device()
    playback = Playback(device, RATE)
    source = DemoSource(DemoConfig(first_token_s=0.4, tokens_per_s=60, seed=7), TEXT)
    samples: list[tuple[str, str]] = []

    async def sample() -> None:
        while True:
            samples.append((playback.position().text, device.playing if device.queue else ""))
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(device.run)
        nursery.start_soon(sample)
        with trio.move_on_after(stop_after if stop_after is not None else float("inf")):
            await speak(source, SilentSynthesizer(180), playback)
        nursery.cancel_scope.cancel()
    return playback, device, samples


async def test_the_caption_follows_the_sentence_being_played(
    clock: trio.testing.MockClock,
) -> None:
    playback, device, samples = await play(None)
    assert len(playback.texts) >= 4
    assert all(caption == playing for caption, playing in samples)
    shown = [caption for caption, _ in samples if caption]
    in_order = [text for i, text in enumerate(shown) if i == 0 or shown[i - 1] != text]
    assert in_order == playback.texts  # every sentence, once each, in order
    assert [*device.finished, device.playing] == playback.texts
    assert playback.heard() == " ".join(playback.texts)


async def test_heard_stops_where_playback_was_cut(clock: trio.testing.MockClock) -> None:
    playback, device, _ = await play(stop_after=4.0)
    heard = playback.heard()
    assert heard.startswith(" ".join(device.finished))
    in_progress = heard.removeprefix(" ".join(device.finished)).strip()
    assert device.playing.startswith(in_progress)  # words of the chunk being played
    assert 0 < len(heard) < len(" ".join(playback.texts))


async def test_position_and_heard_at_given_frames() -> None:
    playback = Playback(NullSink(), RATE)
    for frames, text in ((100, "One two three four."), (100, ""), (200, "Five six.")):
        await playback.write(Audio(np.zeros(frames, dtype=np.int16), RATE, text))
    assert playback.position(0).text == "One two three four."
    assert playback.position(50).fraction == 0.25
    assert playback.heard(100) == "One two"
    assert playback.position(200).index == 1 and playback.heard(200) == "One two three four."
    assert playback.heard(300) == "One two three four. Five"
    assert playback.position(400).index == 2 and playback.position(400).text == ""
    assert playback.heard() == "One two three four. Five six."  # a sink without played_s
    assert len(playback.audio()) == 400


async def test_heard_keeps_only_words_fully_reached() -> None:
    playback = Playback(NullSink(), RATE)
    await playback.write(Audio(np.zeros(400, dtype=np.int16), RATE, "One two three four."))
    # 74 % of a four-word chunk is 2.96 words: two were heard, the third was not finished.
    assert playback.heard(296) == "One two"
    assert playback.heard(299) == "One two"
    assert playback.heard(300) == "One two three"
    assert playback.heard(99) == ""


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
