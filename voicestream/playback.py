"""What the listener has heard: the answer's audio as the sink took it, mapped
back onto its chunks and words.

``speak()`` hands the sink audio in blocks; the first block of each chunk
carries the chunk's text, and every block the word marks that start in it
(:mod:`voicestream.words`). A :class:`Timeline` (sans-IO) notes where each chunk
and each word starts in the answer's frames and maps a play position back: the
sentence and the word being heard (for captions), and, when an answer is cut
off, exactly the words heard up to the stop, the word in progress included (for
the conversation history and ``heard_words``). The position is what the device
has taken (a sink's ``played_s``) or, for a file, what has been stored
(:func:`heard_frames`).

:class:`Playback` is the chat's sink wrapper: audio still queued when an answer
is cut off was not heard, so it is dropped rather than kept, and the answer's
audio is kept for ``/save``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from .audio import Audio
from .sinks import Sink
from .words import Word


@dataclass(frozen=True)
class Position:
    index: int  # the chunk being spoken; len(chunks) once all of it has been played
    text: str  # that chunk's text ("" when nothing is being spoken)
    fraction: float  # how much of that chunk's audio has been played
    word: Word | None = None  # the word being heard in ``text`` (None before its first)


class Timeline:
    """Where each chunk and each word of an answer starts, in the frames the sink
    took (:meth:`add` each block, in order). Marks are kept as their blocks brought
    them, a tuple a block, and looked up by bisection.

    :meth:`forget` what has been played and its chunks collapse to counts (and,
    with ``keep_heard``, one text: what :meth:`heard` needs of them), so an
    answer's timeline holds only the chunks still to be heard, however long the
    answer. Positions before the forgotten point are not asked for after it: play
    only goes forward."""

    def __init__(self, keep_heard: bool = True) -> None:
        self.keep_heard = keep_heard
        self.starts: list[int] = []  # the frame where each kept chunk starts
        self.texts: list[str] = []
        self.first = 0  # the answer's index of texts[0]: chunks before it are forgotten
        self._played = bytearray()  # the forgotten chunks' texts, joined (UTF-8)
        self._block_starts: list[int] = []  # of the kept blocks that carry marks
        self._block_marks: list[tuple[int, tuple[Word, ...]]] = []  # (chunk, its marks)
        self._before: list[int] = []  # marks in the blocks before each
        self._marks = 0
        self._forgotten_marks = 0  # marks in the forgotten blocks
        self.frames = 0
        self.rate = 0

    @property
    def chunks(self) -> int:
        """Chunks added so far, forgotten ones included."""
        return self.first + len(self.texts)

    def add(self, audio: Audio) -> None:
        """A block the sink took (the first of a chunk carries its text)."""
        if audio.text:
            self.starts.append(self.frames)
            self.texts.append(audio.text)
        if audio.words:
            self._block_starts.append(self.frames)
            self._block_marks.append((self.chunks - 1, audio.words))
            self._before.append(self._marks)
            self._marks += len(audio.words)
        self.frames += len(audio.samples)
        self.rate = audio.rate

    def forget(self, frames: int) -> None:
        """``frames`` have been played: collapse the chunks played to their end."""
        k = bisect.bisect_right(self.starts, frames) - 1  # the chunk playing: kept
        if k <= 0:
            return
        for text in self.texts[:k]:
            if self.keep_heard:
                self._played += (f" {text}" if self.first else text).encode()
            self.first += 1
        del self.starts[:k], self.texts[:k]
        j = bisect.bisect_left(self._block_marks, self.first, key=_chunk)
        if j:
            self._forgotten_marks = self._before[j] if j < len(self._before) else self._marks
            del self._block_starts[:j], self._block_marks[:j], self._before[:j]

    def word_frames(self) -> list[int]:
        """Where every kept word starts, in order."""
        return [
            start + w.sample
            for start, (_, marks) in zip(self._block_starts, self._block_marks, strict=True)
            for w in marks
        ]

    def started(self, frames: int) -> int:
        """How many words have started once ``frames`` are played."""
        i = bisect.bisect_left(self._block_starts, frames) - 1
        if i < 0:
            return self._forgotten_marks
        into = frames - self._block_starts[i]
        return self._before[i] + bisect.bisect_left(self._block_marks[i][1], into, key=_sample)

    def _word(self, n: int) -> tuple[int, Word]:
        """The ``n``-th word (from 0, a kept one) and its chunk."""
        i = bisect.bisect_right(self._before, n) - 1
        chunk, marks = self._block_marks[i]
        return chunk, marks[n - self._before[i]]

    def position(self, frames: int) -> Position:
        """The chunk, and the word in it, being spoken once ``frames`` are played."""
        i = bisect.bisect_right(self.starts, frames) - 1
        if i < 0:
            return Position(self.first, "", 0.0)
        end = self.starts[i + 1] if i + 1 < len(self.starts) else self.frames
        if frames >= end:
            return Position(self.chunks, "", 1.0)
        n = self.started(frames)
        word = None
        if n > self._forgotten_marks:
            chunk, last = self._word(n - 1)
            word = last if chunk == self.first + i else None
        fraction = (frames - self.starts[i]) / (end - self.starts[i])
        return Position(self.first + i, self.texts[i], fraction, word)

    def heard(self, frames: int) -> str:
        """The text heard once ``frames`` are played: the chunks played to their end,
        then the chunk in progress up to the end of the word in progress (a timeline
        that does not ``keep_heard`` knows it only until it forgets a chunk)."""
        if self.first and not self.keep_heard:
            raise ValueError("this timeline kept no text of the chunks played (keep_heard)")
        at = self.position(frames)
        partial = at.text[: at.word.end] if at.word is not None else ""
        kept = self.texts[: at.index - self.first]
        return " ".join([self._played.decode(), *kept, partial]).strip()


def _chunk(marks: tuple[int, tuple[Word, ...]]) -> int:
    return marks[0]


def _sample(word: Word) -> int:
    return word.sample


def heard_frames(sink: Sink, timeline: Timeline) -> int:
    """The frames of ``timeline`` heard through ``sink``: what a device has played,
    or, for a sink that plays nothing, all it took."""
    played_s = sink.played_s
    if played_s is None:
        return timeline.frames
    return min(timeline.frames, round(played_s * timeline.rate))


class Playback:
    """A sink wrapper for the chat: leftovers are dropped (never heard), the answer's
    audio is kept (for ``/save``)."""

    def __init__(self, sink: Sink, rate: int) -> None:
        self.sink = sink
        self.rate = rate
        self.written = 0
        self.blocks: list[np.ndarray] = []

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
        self.written += len(audio.samples)
        self.blocks.append(audio.samples)
        await self.sink.write(audio)

    async def drain(self) -> None:
        await self.sink.drain()

    def leftover(self, audio: Audio) -> bool:
        return False  # queued when the answer was cut off: never heard, so dropped

    def silence(self) -> None:
        self.sink.silence()

    def pause(self, held: bool) -> None:
        """Hold the sound (a person speaks over it), or let it go on; a sink that does
        not play in real time has nothing to hold."""
        pause = getattr(self.sink, "pause", None)
        if pause is not None:
            pause(held)

    def close(self) -> None:
        self.sink.close()

    def segment(self, start: int, end: int) -> np.ndarray:
        """The frames ``start`` to ``end`` of the audio handed to the sink (as far as
        there are any)."""
        parts, at = [], 0
        for block in self.blocks:
            if at >= end:
                break
            if at + len(block) > start:
                parts.append(block[max(0, start - at) : end - at])
            at += len(block)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def audio(self) -> np.ndarray:
        """All the audio handed to the sink for this answer."""
        return np.concatenate(self.blocks) if self.blocks else np.zeros(0, dtype=np.int16)
