"""What the listener has heard: a sink wrapper that follows playback.

``speak()`` hands the sink audio in blocks; the first block of each chunk
carries the chunk's text. :class:`Playback` notes where each chunk starts in
the stream of frames and maps the sink's play position back onto the chunks:
which one is being spoken now (for captions), and, when an answer is cut off,
the text heard up to that point (for the conversation history). The position
is what the device has taken (a speaker's ``played_s``) or, for a file, what
has been stored. Audio still queued when an answer is cut off was not heard,
so it is dropped rather than kept.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from .audio import Audio
from .sinks import Sink


@dataclass(frozen=True)
class Position:
    index: int  # the chunk being spoken; len(chunks) once all of it has been played
    text: str  # that chunk's text ("" when nothing is being spoken)
    fraction: float  # how much of that chunk has been played


class Playback:
    def __init__(self, sink: Sink, rate: int) -> None:
        self.sink = sink
        self.rate = rate
        self.starts: list[int] = []  # the frame where each chunk starts
        self.texts: list[str] = []
        self.written = 0
        self.blocks: list[np.ndarray] = []  # the answer's audio, for /save

    @property
    def underruns(self) -> int:
        return self.sink.underruns

    @property
    def underrun_s(self) -> float:
        return self.sink.underrun_s

    @property
    def played_s(self) -> float | None:
        return self.sink.played_s

    @property
    def block_s(self) -> float | None:
        return self.sink.block_s

    async def write(self, audio: Audio) -> None:
        if audio.text:
            self.starts.append(self.written)
            self.texts.append(audio.text)
        self.written += len(audio.samples)
        self.blocks.append(audio.samples)
        await self.sink.write(audio)

    async def drain(self) -> None:
        await self.sink.drain()

    def leftover(self, audio: Audio) -> bool:
        return False  # queued when the answer was cut off: never heard, so dropped

    def close(self) -> None:
        self.sink.close()

    def played(self) -> int:
        """Frames heard so far."""
        played_s = self.sink.played_s
        if played_s is None:
            return self.written  # a file: stored is as good as heard
        return min(self.written, round(played_s * self.rate))

    def position(self, frames: int | None = None) -> Position:
        """The chunk being spoken once ``frames`` (default: those played) are played."""
        frames = self.played() if frames is None else frames
        i = bisect.bisect_right(self.starts, frames) - 1
        if i < 0:
            return Position(0, "", 0.0)
        end = self.starts[i + 1] if i + 1 < len(self.starts) else self.written
        if frames >= end:
            return Position(len(self.texts), "", 1.0)
        return Position(i, self.texts[i], (frames - self.starts[i]) / (end - self.starts[i]))

    def heard(self, frames: int | None = None) -> str:
        """The text heard once ``frames`` are played: whole chunks, then the words
        of the chunk in progress in proportion to its audio played."""
        at = self.position(frames)
        words = at.text.split()
        partial = " ".join(words[: int(len(words) * at.fraction)])
        return " ".join([*self.texts[: at.index], partial]).strip()

    def audio(self) -> np.ndarray:
        """All the audio handed to the sink for this answer."""
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, dtype=np.int16)
