"""Where ``serve`` keeps its answers: in this process (:class:`MemoryRelay`, the
default) or in Redis Streams, shared by every process that uses the same Redis
(:class:`voicestream.relay.redis.RedisRelay`, ``serve --relay redis://...``).

An answer is written by one process, its *owner*, and read by any number of
clients on any process. The owner publishes in order, in batches
(:meth:`Relay.publish`): events with the ids ``1, 2, 3...`` and whole chunks of
audio keyed by their first sample, each chunk together with its ``chunk`` event,
so that what a relay holds always ends at a chunk's end. Readers get an
:class:`AnswerLog`, the answer as one process sees it: its events, the last
``window_s`` seconds of its audio, and who in this process is attached to it.

A relay also counts the answers running everywhere (:meth:`Relay.admit` takes a
slot at once, or refuses), carries a stop to the owner (:meth:`Relay.stop`), and
hands an answer whose owner went away to another process (:meth:`Relay.claim`).
"""

from __future__ import annotations

import bisect
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from ..config import ServerConfig

FINAL = ("done", "error")


class Fenced(Exception):
    """Another process owns this answer now: its owner must stop writing it."""


class RelayDown(Exception):
    """The relay cannot be reached; the message says what to do."""


class Gone(Exception):
    """Audio a client asked for is older than the window kept."""


@dataclass(frozen=True)
class Item:
    """One thing an owner publishes: an event (``name``, its JSON ``data``), or a
    chunk of audio starting at sample ``sample`` (``pcm``: 16-bit mono, little-endian)."""

    id: int  # the event's id, or the audio's first sample
    name: str = ""
    data: str = ""
    pcm: bytes = b""

    @property
    def audio(self) -> bool:
        return self.name == ""


@dataclass(frozen=True)
class Claim:
    """An answer this process now owns because its owner went away: its request and
    what was published of it."""

    id: str
    request: dict[str, Any]
    events: list[tuple[int, str, str]]
    audio_end: int  # samples published
    stop: bool  # a stop was asked for before the owner went away


class AudioLog:
    """An answer's audio as readers get it, byte offsets counted from the answer's
    start (16-bit mono PCM). It comes a chunk at a time, as each starts to play;
    the newest chunk and the ``window_s`` seconds before it are kept."""

    def __init__(self, rate: int, window_s: float) -> None:
        self.rate = rate
        self.window = int(window_s * rate) * 2  # bytes
        self.data = bytearray()
        self.first = 0  # the offset of data[0]
        self.end = 0
        self.closed = False
        self._changed = trio.Event()

    @property
    def held(self) -> int:
        return len(self.data)

    def add(self, offset: int, pcm: bytes) -> None:
        if not self.data:
            self.first = self.end = offset
        self.data += pcm
        self.end += len(pcm)
        drop = offset - self.window - self.first  # keep window_s before the newest chunk
        if drop > 0:
            del self.data[:drop]
            self.first += drop
        self._notify()

    def close(self) -> None:
        self.closed = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def gone(self, offset: int) -> str | None:
        """Why the audio from ``offset`` can no longer be read (None: it can)."""
        if offset < self.first:
            return (
                f"audio before {self.first / 2 / self.rate:.1f} s is no longer kept (the server "
                "keeps the last window_s seconds); resume from a later from_s"
            )
        return None

    async def read(self, offset: int) -> bytes:
        """The audio from byte ``offset`` on, waiting until there is some; b"" at the
        end; :class:`Gone` when it is no longer kept."""
        while offset >= self.end and not self.closed:
            await self._changed.wait()
        return self.now(offset)

    def now(self, offset: int) -> bytes:
        """The audio from byte ``offset`` on that is here now (perhaps none);
        :class:`Gone` when it is no longer kept."""
        why = self.gone(offset)
        if why is not None:
            raise Gone(why)
        return bytes(self.data[offset - self.first :])


@dataclass
class AnswerLog:
    """One answer as this process sees it: its events, its audio, who is attached."""

    id: str
    audio: AudioLog
    events: list[tuple[int, str, str]] = field(default_factory=list)
    attached: int = 0
    alone_since: float = 0.0
    finished_at: float | None = None
    _changed: trio.Event = field(default_factory=trio.Event)

    @property
    def finished(self) -> bool:
        return bool(self.events) and self.events[-1][1] in FINAL

    @property
    def last_id(self) -> int:
        return self.events[-1][0] if self.events else 0

    def add(self, items: Sequence[Item]) -> None:
        """Take published items, in order (nothing follows the last event)."""
        for item in items:
            if self.finished:
                break
            if item.audio:
                self.audio.add(2 * item.id, item.pcm)
            elif item.id > self.last_id:
                self.events.append((item.id, item.name, item.data))
                if item.name in FINAL:
                    self.audio.close()
                    self.finished_at = trio.current_time()
        self._changed.set()
        self._changed = trio.Event()

    def end_here(self, name: str, data: Mapping[str, Any]) -> None:
        """End this process's copy with an event of its own (the relay was lost)."""
        self.add([Item(self.last_id + 1, name, json.dumps(data))])

    def after(self, last: int) -> list[tuple[int, str, str]]:
        """The events after id ``last`` that are here now."""
        return self.events[bisect.bisect_right(self.events, last, key=lambda e: e[0]) :]

    def change(self) -> trio.Event:
        """Set when something is next added (events or audio): taken before reading,
        so that nothing added while the reader was busy goes unnoticed."""
        return self._changed

    async def events_after(self, last: int, heartbeat_s: float) -> AsyncIterator[str]:
        """Server-sent events after id ``last``, as they come; a comment line when
        nothing came for ``heartbeat_s``; ends after the last event."""
        while True:
            change = self.change()
            new = self.after(last)
            if new:  # all that is waiting, in one write
                yield "".join(
                    f"id: {eid}\nevent: {name}\ndata: {data}\n\n" for eid, name, data in new
                )
                last = new[-1][0]
            if self.finished:
                return
            with trio.move_on_after(heartbeat_s) as waited:
                await change.wait()
            if waited.cancelled_caught:
                yield ": heartbeat\n\n"

    def attach(self) -> None:
        self.attached += 1

    def detach(self) -> None:
        self.attached -= 1
        if not self.attached:
            self.alone_since = trio.current_time()


class Relay(Protocol):
    """What ``serve`` needs of a relay; see the module docstring."""

    name: str

    async def health(self) -> str | None:
        """Why the relay cannot be used now (None: it can)."""
        ...

    async def admit(self, answer_id: str, request: dict[str, Any], rate: int, limit: int) -> bool:
        """Take a slot for a new answer if fewer than ``limit`` run everywhere."""
        ...

    async def publish(self, answer_id: str, items: Sequence[Item]) -> None:
        """Add items to an answer this process owns; :class:`Fenced` if it does not."""
        ...

    async def renew(self, answer_id: str) -> bool:
        """Keep owning a running answer (False: another process took it over)."""
        ...

    async def watched(self, answer_id: str, grace_s: float) -> bool:
        """Whether a client anywhere was attached to the answer in the last ``grace_s``."""
        ...

    async def finish(self, answer_id: str) -> None:
        """The answer has its last event: free its slot; keep it ``retention_s``."""
        ...

    async def release(self, answer_id: str) -> None:
        """Stop owning a running answer, for another process to take over now."""
        ...

    async def stop(self, answer_id: str) -> str | None:
        """Ask the owner, wherever it is, to stop: "stopping", "finished", None (no such answer)."""
        ...

    async def log(self, answer_id: str) -> AnswerLog | None:
        """The answer for readers in this process (None: no such answer)."""
        ...

    async def claim(self) -> Claim | None:
        """Take over one answer whose owner went away, if there is one."""
        ...

    def held(self) -> int:
        """Bytes of audio this process keeps for readers."""
        ...

    def stops(self) -> trio.MemoryReceiveChannel[str]:
        """Ids of answers this process owns that another process asked to stop."""
        ...


@asynccontextmanager
async def open_relay(server: ServerConfig) -> AsyncIterator[Relay]:
    """The relay ``server.relay`` names: this process's memory (""), or Redis."""
    if not server.relay:
        from .memory import MemoryRelay

        yield MemoryRelay(server)
        return
    from .redis import open_redis

    async with open_redis(server.relay, server) as relay:
        yield relay
