"""Sinks: where audio frames end up (``speaker``, ``wav``, ``null``).

A sink is opened before any text is requested (so a missing device or an
unwritable file is a usage error, not a failure halfway through an answer):

- ``await write(audio)`` hands frames over, waiting if the sink is full;
- ``await drain()`` waits until everything handed over has been played or stored;
- ``leftover(audio) -> bool`` is offered audio that was synthesized but not yet
  handed over when the answer was cut short: a file keeps it (True), a speaker,
  where it would play late, drops it (False);
- ``silence()``: the answer was cut off: stop making sound now (a device drops
  what it holds; a file is unaffected), before the leftovers are offered;
- ``close()`` releases the sink at once; always called, safe to call twice;
- ``played_s``: seconds a device has played so far, or None for a sink that
  plays nothing (what it was handed counts as heard);
- ``underruns``, ``underrun_s``: times (and seconds) a device ran dry mid-answer;
- ``block_s``: the size of the audio blocks it wants, in seconds: small for a
  device (None: ``buffers.audio_block_s``, so the jitter buffer and a barge-in
  work at a fine grain), large for a file (each chunk whole: fewer writes).

:class:`BaseSink` has the defaults of a sink that is not a device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import trio

from ..audio import Audio
from ..config import OutputConfig
from ..errors import UsageError

SINKS = ("speaker", "wav", "null")


FILE_BLOCK_S = 30.0  # a sink that plays nothing takes a chunk's audio in one block


class Sink(Protocol):
    @property
    def block_s(self) -> float | None: ...

    @property
    def underruns(self) -> int: ...

    @property
    def underrun_s(self) -> float: ...

    @property
    def played_s(self) -> float | None: ...

    async def write(self, audio: Audio) -> None: ...

    async def drain(self) -> None: ...

    def leftover(self, audio: Audio) -> bool: ...

    def silence(self) -> None: ...

    def close(self) -> None: ...


class BaseSink:
    """The defaults of a sink that is not a device: it never runs dry, plays nothing
    (``played_s`` None), has nothing to drain, keeps no leftover."""

    underruns = 0
    underrun_s = 0.0
    block_s: float | None = FILE_BLOCK_S

    @property
    def played_s(self) -> float | None:
        return None

    async def write(self, audio: Audio) -> None:
        pass

    async def drain(self) -> None:
        pass

    def leftover(self, audio: Audio) -> bool:
        return False

    def silence(self) -> None:
        pass

    def close(self) -> None:
        pass


class NullSink(BaseSink):
    """Discards audio (text-only runs, benchmarks)."""


class ClockedSink(BaseSink):
    """A sink that plays to a clock, as a device would, without one (the server's
    streams, the benchmarks' listeners): audio plays from when it is handed over,
    or from the end of the audio before it; :meth:`play` returns ``lead_s`` before
    its audio would be played out. Counts underruns (audio handed over after the
    clock ran out, once playing began) and knows ``played_s``."""

    block_s = None  # played like a device
    lead_s = 0.2
    device_until: float | None = None  # when what was handed over will have played
    written_s = 0.0
    underruns = 0
    underrun_s = 0.0

    @property
    def played_s(self) -> float | None:
        return self.written_s - self.held_s()

    def held_s(self) -> float:
        """Seconds handed over and not yet played out."""
        return max(0.0, (self.device_until or 0.0) - trio.current_time())

    async def play(self, seconds: float) -> None:
        """``seconds`` of audio handed over: wait until they are ``lead_s`` from played."""
        now = trio.current_time()
        if self.device_until is not None and now > self.device_until + 1e-9:
            self.underruns += 1
            self.underrun_s += now - self.device_until
        self.device_until = max(now, self.device_until or now) + seconds
        self.written_s += seconds
        await trio.sleep_until(self.device_until - self.lead_s)

    async def drain(self) -> None:
        await trio.sleep_until(self.device_until or 0.0)


def open_sink(name: str, rate: int, config: OutputConfig, path: Path | None = None) -> Sink:
    """Open the named sink for audio at ``rate`` Hz (``wav`` needs ``path``)."""
    if name == "speaker":
        from .speaker import SpeakerSink

        return SpeakerSink(rate, config.device, config.latency_s)
    if name == "wav" and path is not None:
        from .wav import WavSink

        return WavSink(path, rate)
    if name == "null":
        return NullSink()
    raise UsageError(f"unknown sink '{name}': choose one of {', '.join(SINKS)}")


def open_output(rate: int, config: OutputConfig, out: Path | None, play: bool) -> Sink:
    """The sink for a WAV file (``out``), the speaker (``play``), both, or neither."""
    if out is not None and play:
        speaker = open_sink("speaker", rate, config)
        try:
            return Both(open_sink("wav", rate, config, out), speaker)
        except BaseException:
            speaker.close()
            raise
    if out is not None:
        return open_sink("wav", rate, config, out)
    return open_sink("speaker" if play else "null", rate, config)


class Both(BaseSink):
    """A file and the speaker at once: each block goes to the file, then the speaker."""

    def __init__(self, file: Sink, speaker: Sink) -> None:
        self.file, self.speaker = file, speaker
        self._filed: Audio | None = None  # in the file already; its playing may be cut

    @property
    def underruns(self) -> int:  # type: ignore[override]
        return self.speaker.underruns

    @property
    def underrun_s(self) -> float:  # type: ignore[override]
        return self.speaker.underrun_s

    @property
    def played_s(self) -> float | None:
        return self.speaker.played_s

    @property
    def block_s(self) -> float | None:  # type: ignore[override]
        return self.speaker.block_s

    async def write(self, audio: Audio) -> None:
        await self.file.write(audio)
        self._filed = audio
        await self.speaker.write(audio)

    async def drain(self) -> None:
        await self.speaker.drain()

    def leftover(self, audio: Audio) -> bool:
        return audio is self._filed or self.file.leftover(audio)

    def silence(self) -> None:
        self.speaker.silence()

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.speaker.close()
