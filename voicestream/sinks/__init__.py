"""Sinks: where audio frames end up (``speaker``, ``wav``, ``null``).

A sink is opened before any text is requested (so a missing device or an
unwritable file is a usage error, not a failure halfway through an answer):

- ``await write(audio)`` hands frames over, waiting if the sink is full;
- ``await drain()`` waits until everything handed over has been played or stored;
- ``salvage(audio)`` takes audio that was synthesized but not yet handed over
  when the answer was cancelled: a file keeps it, a speaker drops it;
- ``close()`` releases the sink at once; always called, safe to call twice.

``first_audio`` is trio's clock when the first frame was handed over (or None).
"""

from __future__ import annotations

from typing import Protocol

from ..audio import Audio


class Sink(Protocol):
    @property
    def underruns(self) -> int: ...

    @property
    def underrun_s(self) -> float: ...

    async def write(self, audio: Audio) -> None: ...

    async def drain(self) -> None: ...

    def salvage(self, audio: Audio) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """Discards audio (text-only runs, benchmarks)."""

    underruns = 0
    underrun_s = 0.0

    async def write(self, audio: Audio) -> None:
        pass

    async def drain(self) -> None:
        pass

    def salvage(self, audio: Audio) -> None:
        pass

    def close(self) -> None:
        pass
