"""Bounded, adaptive channels between the pipeline's stages.

``open_channel(policy, cost)`` returns a send end and a receive end with the
semantics of trio's memory channels (``send``/``send_nowait``, ``receive``/
``receive_nowait``, ``clone``, ``close``/``aclose``, async iteration,
``EndOfChannel`` once every sender closed and the buffer is drained,
``BrokenResourceError`` once every receiver closed), and like them every
operation is atomic with respect to cancellation: a cancelled ``send`` leaves the
item unsent and the channel unchanged, a cancelled ``receive`` loses nothing.

Capacity is counted in *cost units*, ``cost(item)`` (1 per item by default;
characters for text, seconds for audio). An item is admitted when it fits in the
current capacity, or when the buffer is empty (so one large item cannot block a
channel forever). The policies:

- ``Fixed(capacity)``: a classic bounded queue. If in doubt, this with a small
  capacity: backpressure is a feature. (The pipeline counts it in items, or with
  ``units=True`` in what flows: characters, seconds of audio.)
- ``Unbounded()``: never waits; memory grows with the backlog. For comparison.
- ``Adaptive(floor, hard_cap, stall_budget)``: for a producer that must not stall
  (a model's stream times out when it is not read). Capacity starts at ``floor``.
  A send that has waited 80% of its ``stall_budget`` grows the capacity (doubling,
  at least enough for its item) and goes through, so no send waits longer than
  the budget -- unless the buffer would pass ``hard_cap``: then the sender waits
  for room (counted in ``hard_cap_waits``; nothing is ever dropped), and ``used``
  never exceeds ``hard_cap``. When a receive leaves the buffer under a quarter
  full, capacity halves back toward ``floor``. It adapts to what it observes, the
  time senders wait, so a fast consumer keeps it at ``floor`` and a slow one
  lets it hold just the backlog the producer needs to keep going.
- ``Jitter(floor, cap)``: the audio jitter buffer, in seconds of audio. It keeps
  a target amount of audio ahead of playback: senders wait while the buffer holds
  the target. The producer says how long making each item took
  (``SendEnd.note_production(seconds, audio_s)``, a synthesis); the target is
  ``margin`` times the longest the next one may take: the slowest production so
  far (with a tenth to spare), or a long sentence (``long_s`` of audio) at the
  engine's speed (seconds of work per second of audio, the median of the last
  nine) -- never under ``floor``, never over ``cap``. So a
  fast engine keeps the floor, a slow one (Piper) keeps enough ahead before it has
  run dry once, and one that has stalled keeps its stall ahead for the rest of
  the answer. Underruns that come from the text running out (a slow model) teach
  it nothing: more audio ahead would not have helped.

``statistics()`` on either end returns a frozen :class:`ChannelStatistics`.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import trio

from .config import BuffersConfig

T = TypeVar("T")

PATIENCE = 0.8  # of the stall budget: how long an Adaptive sender waits before it grows


@dataclass(frozen=True)
class Fixed:
    capacity: float
    units: bool = False  # for the pipeline: count characters / seconds, not items


@dataclass(frozen=True)
class Unbounded:
    pass


# The defaults are the shipped settings ([buffers] in config.toml), defined there once.
@dataclass(frozen=True)
class Adaptive:
    floor: float = BuffersConfig.text_floor
    hard_cap: float = BuffersConfig.text_hard_cap
    stall_budget: float = BuffersConfig.stall_budget_s


@dataclass(frozen=True)
class Jitter:
    floor: float = BuffersConfig.audio_floor_s
    cap: float = BuffersConfig.audio_cap_s
    margin: float = 1.5  # a long sentence's synthesis, in multiples of the engine's speed
    long_s: float = 12.0  # a long sentence's audio (200 characters)


Policy = Fixed | Unbounded | Adaptive | Jitter


@dataclass(frozen=True)
class ChannelStatistics:
    used: float  # cost units buffered (what the policy counts)
    items: int
    size: float  # what is buffered, in the unit of what flows (characters, seconds)
    peak_size: float
    capacity: float  # current
    peak_used: float
    peak_capacity: float
    tasks_waiting_send: int
    tasks_waiting_receive: int
    longest_send_wait: float  # seconds, by trio's clock
    producer_timeouts: int  # sends that waited longer than the stall budget
    hard_cap_waits: int  # sends that had to wait because the hard cap was reached
    empty_receives: int  # receives that found the buffer empty after the first
    open_send_channels: int
    open_receive_channels: int


class _State(Generic[T]):
    def __init__(
        self,
        policy: Policy,
        cost: Callable[[Any], float],
        size: Callable[[Any], float],
        stall_budget: float,
    ) -> None:
        if isinstance(policy, Fixed) and not policy.capacity > 0:
            raise ValueError("Fixed capacity must be positive")
        self.policy = policy
        self.cost = cost
        self.size_of = size
        self.stall_budget = stall_budget
        self.buffer: deque[tuple[T, float, float]] = deque()  # item, cost, size
        self.used = 0.0
        self.size = 0.0
        self.peak_size = 0.0
        self.capacity: float = (
            policy.capacity
            if isinstance(policy, Fixed)
            else math.inf
            if isinstance(policy, Unbounded)
            else policy.floor
        )
        self.senders = trio.lowlevel.ParkingLot()
        self.receivers = trio.lowlevel.ParkingLot()
        self.open_send = 0
        self.open_receive = 0
        self.peak_used = 0.0
        self.peak_capacity = self.capacity
        self.longest_send_wait = 0.0
        self.producer_timeouts = 0
        self.hard_cap_waits = 0
        self.empty_receives = 0
        self.started = False  # an item has been received
        self.slowest = 0.0  # Jitter: the longest production so far, seconds
        self.speeds: deque[float] = deque(maxlen=9)  # seconds of work per second of audio

    def fits(self, cost: float) -> bool:
        return self.used + cost <= self.capacity or not self.buffer

    def put(self, item: T, cost: float) -> None:
        size = cost if self.size_of is self.cost else self.size_of(item)
        self.buffer.append((item, cost, size))
        self.used += cost
        self.size += size
        self.peak_used = max(self.peak_used, self.used)
        self.peak_size = max(self.peak_size, self.size)
        if self.receivers:  # a parking lot is falsy when nobody waits: no work then
            self.receivers.unpark()

    def take(self) -> T:
        item, cost, size = self.buffer.popleft()
        self.used -= cost
        self.size -= size
        if not self.buffer:
            self.used = self.size = 0.0  # no float drift
        drained = self.used <= self.capacity / 4 and not self.senders
        if isinstance(self.policy, Adaptive) and drained:
            self.capacity = max(self.policy.floor, self.capacity / 2)
        if self.senders:
            self.senders.unpark_all()
        return item

    def grow(self, cost: float) -> bool:
        """Adaptive: make room for ``cost`` more, within the hard cap."""
        policy = self.policy
        assert isinstance(policy, Adaptive)
        if self.used + cost > policy.hard_cap:
            return False
        self.capacity = min(policy.hard_cap, max(2 * self.capacity, self.used + cost))
        self.peak_capacity = max(self.peak_capacity, self.capacity)
        return True

    def note_production(self, seconds: float, audio_s: float) -> None:
        policy = self.policy
        if not isinstance(policy, Jitter):
            return
        self.slowest = max(self.slowest, seconds)
        if audio_s > 0:
            self.speeds.append(seconds / audio_s)
        speed = statistics.median(self.speeds) if self.speeds else 0.0  # a stall is no speed
        needed = max(1.1 * self.slowest, policy.margin * speed * policy.long_s)
        self.capacity = max(policy.floor, min(policy.cap, needed))
        self.peak_capacity = max(self.peak_capacity, self.capacity)

    def statistics(self) -> ChannelStatistics:
        return ChannelStatistics(
            used=self.used,
            items=len(self.buffer),
            size=self.size,
            peak_size=self.peak_size,
            capacity=self.capacity,
            peak_used=self.peak_used,
            peak_capacity=self.peak_capacity,
            tasks_waiting_send=self.senders.statistics().tasks_waiting,
            tasks_waiting_receive=self.receivers.statistics().tasks_waiting,
            longest_send_wait=self.longest_send_wait,
            producer_timeouts=self.producer_timeouts,
            hard_cap_waits=self.hard_cap_waits,
            empty_receives=self.empty_receives,
            open_send_channels=self.open_send,
            open_receive_channels=self.open_receive,
        )


class SendEnd(trio.abc.SendChannel[T]):
    """The sending end; see the module docstring."""

    def __init__(self, state: _State[T]) -> None:
        self._state = state
        self._closed = False
        state.open_send += 1

    def send_nowait(self, item: T) -> None:
        """Buffer ``item`` at once, or raise ``trio.WouldBlock``."""
        self._send_nowait(item, self._state.cost(item))

    def _send_nowait(self, item: T, cost: float) -> None:
        state = self._state
        if self._closed:
            raise trio.ClosedResourceError
        if not state.open_receive:
            raise trio.BrokenResourceError
        if not state.fits(cost):
            raise trio.WouldBlock
        state.put(item, cost)

    async def send(self, item: T) -> None:
        """Buffer ``item``, waiting for room as the policy says."""
        await trio.lowlevel.checkpoint_if_cancelled()
        state = self._state
        cost = state.cost(item)
        policy = state.policy
        if isinstance(policy, Adaptive) and cost > policy.hard_cap:
            raise ValueError(f"an item costing {cost} can never fit under hard_cap")
        start = trio.current_time()
        patience = policy.stall_budget * PATIENCE if isinstance(policy, Adaptive) else math.inf
        deadline = start + patience
        yielded = False
        try:
            while True:
                try:
                    self._send_nowait(item, cost)
                    break
                except trio.WouldBlock:
                    pass
                if not yielded:
                    # The receiver may be about to take one: let it, before a timed
                    # wait (its cancel scope costs more than this switch).
                    yielded = True
                    await trio.lowlevel.checkpoint()
                    continue
                if trio.current_time() >= deadline:
                    if state.grow(cost):
                        continue
                    deadline = math.inf  # at the hard cap: wait for room
                    state.hard_cap_waits += 1  # counted now: the wait may end in a cancel
                if deadline == math.inf:
                    await state.senders.park()
                else:
                    with trio.move_on_at(deadline):
                        await state.senders.park()
        finally:  # a send cancelled after a long wait still waited
            waited = trio.current_time() - start
            state.longest_send_wait = max(state.longest_send_wait, waited)
            if waited > state.stall_budget:
                state.producer_timeouts += 1
        await trio.lowlevel.cancel_shielded_checkpoint()

    @property
    def held(self) -> float:
        """What the channel holds now, in the unit of what flows (``statistics().size``,
        without building the statistics)."""
        return self._state.size

    @property
    def capacity(self) -> float:
        """Its capacity now, in cost units."""
        return self._state.capacity

    def room(self) -> float:
        """How much more the channel takes now, in cost units (its capacity less what
        it holds; ``inf`` unbounded)."""
        state = self._state
        return max(0.0, state.capacity - state.used)

    async def wait_room(self, cost: float) -> None:
        """Wait until an item of ``cost`` would go in at once (or the channel is
        empty, or nobody receives): a producer that can make its items smaller asks
        first, and makes one that fits (:meth:`room`)."""
        state = self._state
        while state.open_receive and not state.fits(cost):
            await state.senders.park()
        await trio.lowlevel.checkpoint()

    def note_production(self, seconds: float, audio_s: float = 0.0) -> None:
        """The producer took ``seconds`` to make what it sends next (``audio_s`` of
        audio): a Jitter channel learns from it how much to keep ahead; other
        policies ignore it."""
        self._state.note_production(seconds, audio_s)

    def clone(self) -> SendEnd[T]:
        if self._closed:
            raise trio.ClosedResourceError
        return SendEnd(self._state)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        state = self._state
        state.open_send -= 1
        state.senders.unpark_all()  # this end's waiting senders find it closed
        if not state.open_send:
            state.receivers.unpark_all()  # they find the end of the channel

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def __enter__(self) -> SendEnd[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> ChannelStatistics:
        return self._state.statistics()


class ReceiveEnd(trio.abc.ReceiveChannel[T]):
    """The receiving end; see the module docstring."""

    def __init__(self, state: _State[T]) -> None:
        self._state = state
        self._closed = False
        state.open_receive += 1

    def receive_nowait(self) -> T:
        """An item at once, or ``trio.WouldBlock`` (``EndOfChannel`` when all is done)."""
        state = self._state
        if self._closed:
            raise trio.ClosedResourceError
        if state.buffer:
            state.started = True
            return state.take()
        if not state.open_send:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        state = self._state
        starved = False
        while True:
            if self._closed:
                raise trio.ClosedResourceError
            if state.buffer:
                state.empty_receives += state.started and starved
                state.started = True
                item = state.take()
                break
            if not state.open_send:
                raise trio.EndOfChannel
            starved = True
            await state.receivers.park()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return item

    def clone(self) -> ReceiveEnd[T]:
        if self._closed:
            raise trio.ClosedResourceError
        return ReceiveEnd(self._state)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        state = self._state
        state.open_receive -= 1
        state.receivers.unpark_all()
        if not state.open_receive:
            state.buffer.clear()
            state.used = state.size = 0.0
            state.senders.unpark_all()  # they find the channel broken

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def __enter__(self) -> ReceiveEnd[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def statistics(self) -> ChannelStatistics:
        return self._state.statistics()


def open_channel(
    policy: Policy,
    cost: Callable[[Any], float] | None = None,
    *,
    size: Callable[[Any], float] | None = None,
    stall_budget: float | None = None,
) -> tuple[SendEnd[Any], ReceiveEnd[Any]]:
    """A connected ``(send, receive)`` pair; see the module docstring.

    ``size`` measures what is held in the unit of what flows (characters, seconds
    of audio), whatever the policy counts: ``statistics().size`` and ``peak_size``
    (``cost`` by default). ``stall_budget`` (seconds) is what counts as a send
    waiting too long in ``producer_timeouts``, for any policy; an ``Adaptive``
    policy's own by default.
    """
    if stall_budget is None:
        stall_budget = policy.stall_budget if isinstance(policy, Adaptive) else math.inf
    cost = cost or (lambda item: 1)
    state: _State[Any] = _State(policy, cost, size or cost, stall_budget)
    return SendEnd(state), ReceiveEnd(state)
