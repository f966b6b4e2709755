"""The channels: trio's memory-channel semantics, cancellation atomicity, the policies."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from voicestream.channels import Adaptive, Fixed, Jitter, Unbounded, open_channel


async def test_items_arrive_in_order_and_the_end_is_signalled() -> None:
    send, receive = open_channel(Fixed(3))
    async with send:
        for i in range(3):
            await send.send(i)
        with pytest.raises(trio.WouldBlock):
            send.send_nowait(3)
    assert [i async for i in receive] == [0, 1, 2]
    with pytest.raises(trio.EndOfChannel):
        receive.receive_nowait()


async def test_closed_and_broken_ends() -> None:
    send, receive = open_channel(Fixed(1))
    clone = send.clone()
    send.close()
    with pytest.raises(trio.ClosedResourceError):
        await send.send(1)
    await clone.send("still open")  # a clone keeps the channel open
    receive.close()
    with pytest.raises(trio.BrokenResourceError):
        await clone.send("nobody listens")
    with pytest.raises(trio.ClosedResourceError):
        receive.receive_nowait()
    assert clone.statistics().used == 0  # closing the receivers drops the buffer


async def test_closing_wakes_tasks_blocked_on_that_end() -> None:
    send, receive = open_channel(Fixed(1))
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:

            async def blocked_receive() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await receive.receive()

            nursery.start_soon(blocked_receive)
            await trio.testing.wait_all_tasks_blocked()
            receive.close()
    assert send.statistics().open_receive_channels == 0


async def test_cost_counts_units_not_items(clock: trio.testing.MockClock) -> None:
    send, receive = open_channel(Fixed(10), cost=len)
    send.send_nowait("abcdef")
    with pytest.raises(trio.WouldBlock):
        send.send_nowait("ghijk")  # 6 + 5 > 10
    send.send_nowait("ghij")
    stats = send.statistics()
    assert (stats.used, stats.items, stats.peak_used) == (10, 2, 10)
    receive.receive_nowait()
    big, rest = "x" * 50, receive.receive_nowait()
    assert rest == "ghij"
    send.send_nowait(big)  # larger than the capacity, but the buffer is empty
    assert receive.receive_nowait() == big


async def test_unbounded_never_waits() -> None:
    send, _receive = open_channel(Unbounded())
    for i in range(10_000):
        send.send_nowait(i)
    assert send.statistics().capacity == math.inf


async def test_adaptive_grows_under_pressure_and_shrinks_back(
    clock: trio.testing.MockClock,
) -> None:
    policy = Adaptive(floor=10, hard_cap=1000, stall_budget=2.0)
    send, receive = open_channel(policy, cost=len)
    for _ in range(40):  # nobody reads: each send waits half its budget, then it grows
        await send.send("x" * 10)
    stats = send.statistics()
    assert stats.used == 400 and stats.capacity >= 400
    assert 0 < stats.longest_send_wait <= policy.stall_budget
    assert stats.producer_timeouts == 0
    while receive.statistics().items:
        receive.receive_nowait()
    assert receive.statistics().capacity == policy.floor


async def test_adaptive_at_the_hard_cap_waits_and_reports(clock: trio.testing.MockClock) -> None:
    policy = Adaptive(floor=10, hard_cap=50, stall_budget=2.0)
    send, receive = open_channel(policy, cost=len)
    async with trio.open_nursery() as nursery:

        async def slow_reader() -> None:
            await trio.sleep(30)
            async for _ in receive:
                await trio.sleep(1)

        nursery.start_soon(slow_reader)
        async with send:
            for _ in range(10):
                await send.send("y" * 10)
                assert send.statistics().used <= policy.hard_cap
    stats = receive.statistics()
    assert stats.peak_used == policy.hard_cap
    assert stats.hard_cap_waits >= 1 and stats.producer_timeouts >= 1
    assert stats.longest_send_wait >= 25


async def test_a_send_cancelled_while_held_at_the_hard_cap_is_still_reported(
    clock: trio.testing.MockClock,
) -> None:
    """The answer is stopped while the model's stream is held back at the cap: the
    notice must still say so (it was counted only when such a send completed)."""
    send, receive = open_channel(Adaptive(floor=20, hard_cap=20, stall_budget=2.0), cost=len)
    send.send_nowait("x" * 10)
    send.send_nowait("x" * 10)
    with trio.move_on_after(10):  # nobody reads: held at the cap, then cancelled
        await send.send("y" * 10)
    stats = receive.statistics()
    assert stats.hard_cap_waits == 1 and stats.producer_timeouts == 1
    assert stats.longest_send_wait == pytest.approx(10)
    assert stats.used == 20  # and nothing of the cancelled send went in


async def test_adaptive_refuses_an_item_over_the_hard_cap() -> None:
    send, _receive = open_channel(Adaptive(floor=1, hard_cap=5), cost=len)
    with pytest.raises(ValueError, match="hard_cap"):
        await send.send("too long")


async def test_jitter_keeps_ahead_what_the_next_synthesis_may_take() -> None:
    """A fast engine keeps the floor; a slow one (its median speed) keeps a long
    sentence's synthesis ahead before it ever ran dry; a stall keeps itself ahead
    for the rest of the answer, but does not count as the engine's speed."""
    send, _receive = open_channel(Jitter(floor=1.0, cap=8.0, margin=1.5, long_s=8.0), cost=float)
    for _ in range(3):
        send.note_production(0.04, 2.0)  # espeak: 1/50 of real time
    assert send.statistics().capacity == 1.0
    send.note_production(2.0, 0.5)  # a stall of 2 s on a short chunk
    assert send.statistics().capacity == pytest.approx(2.2)  # the stall, and a tenth
    slow, _receive = open_channel(Jitter(floor=1.0, cap=8.0, margin=1.5, long_s=8.0), cost=float)
    for seconds in (0.6, 0.9, 0.6):  # Piper: 0.3 s of work per second of audio
        slow.note_production(seconds, seconds / 0.3)
    assert slow.statistics().capacity == pytest.approx(1.5 * 0.3 * 8.0)
    slow.note_production(100.0, 4.0)
    assert slow.statistics().capacity == 8.0  # never past the cap
    assert slow.statistics().peak_capacity == 8.0


async def test_jitter_senders_wait_at_the_target_and_underruns_teach_nothing(
    clock: trio.testing.MockClock,
) -> None:
    send, receive = open_channel(Jitter(floor=1.0, cap=8.0), cost=float)
    send.send_nowait(0.5)
    send.send_nowait(0.5)
    with pytest.raises(trio.WouldBlock):
        send.send_nowait(0.5)  # the producer is ahead: the target is reached
    await receive.receive()
    await receive.receive()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(receive.receive)  # the text ran out: an empty receive
        await trio.sleep(1)
        send.send_nowait(0.5)
    stats = receive.statistics()
    assert stats.empty_receives == 1
    assert stats.capacity == 1.0  # more audio ahead would not have helped


async def test_a_producer_waits_for_room_before_it_makes_an_item(
    clock: trio.testing.MockClock,
) -> None:
    send, receive = open_channel(Jitter(floor=2.0, cap=8.0), cost=float)
    await send.wait_room(5.0)  # empty: anything goes in
    send.send_nowait(0.75)
    send.send_nowait(0.75)
    assert send.room() == 0.5
    woke: list[float] = []

    async def producer() -> None:
        await send.wait_room(1.0)
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.sleep(1)
        assert not woke  # 0.5 s of room: not enough
        await receive.receive()
        await trio.sleep(0)
    assert woke == [1.0] and send.room() == 1.25
    receive.close()
    await send.wait_room(100.0)  # nobody receives: no wait (the send will say so)


async def test_fixed_ignores_production_times() -> None:
    send, _receive = open_channel(Fixed(2))
    send.note_production(5.0, 1.0)
    assert send.statistics().capacity == 2


# -- properties: many tasks, random timing, cancellation at random points ----------

sender_plan = st.lists(
    st.tuples(st.floats(0, 2), st.floats(0.01, 30)), min_size=1, max_size=12
)  # (delay before the send, deadline after which it is cancelled)
policies = st.one_of(
    st.builds(Fixed, st.integers(1, 8).map(float)),
    st.builds(Adaptive, st.just(2.0), st.integers(3, 12).map(float), st.floats(0.1, 3)),
    st.just(Unbounded()),
)


@given(
    policies,
    st.lists(sender_plan, min_size=1, max_size=4),
    st.lists(st.tuples(st.floats(0, 2), st.floats(0.01, 30)), min_size=1, max_size=30),
    st.integers(1, 3),
)
@settings(max_examples=150, deadline=None)
def test_nothing_is_lost_or_duplicated_whatever_is_cancelled(
    policy: Fixed | Adaptive | Unbounded,
    senders: list[list[tuple[float, float]]],
    receives: list[tuple[float, float]],
    receivers: int,
) -> None:
    sent: list[tuple[int, int]] = []
    got: list[tuple[int, int]] = []
    peak = 0.0

    async def main() -> None:
        nonlocal peak
        send, receive = open_channel(policy)

        async def sender(
            who: int, plan: list[tuple[float, float]], end: trio.abc.SendChannel
        ) -> None:
            nonlocal peak
            async with end:
                for n, (delay, deadline) in enumerate(plan):
                    await trio.sleep(delay)
                    with trio.move_on_after(deadline):
                        await end.send((who, n))
                        sent.append((who, n))
                    peak = max(peak, end.statistics().used)

        async def receiver(plan: list[tuple[float, float]], end: trio.abc.ReceiveChannel) -> None:
            for delay, deadline in plan:
                await trio.sleep(delay)
                with trio.move_on_after(deadline):
                    try:
                        got.append(await end.receive())
                    except trio.EndOfChannel:
                        return

        async with trio.open_nursery() as nursery:
            for who, plan in enumerate(senders):
                nursery.start_soon(sender, who, plan, send.clone())
            for _ in range(receivers):
                nursery.start_soon(receiver, receives, receive.clone())
            send.close()
        while True:
            try:
                got.append(receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        stats = receive.statistics()
        assert stats.tasks_waiting_send == stats.tasks_waiting_receive == 0
        if isinstance(policy, Adaptive):
            assert stats.peak_used <= policy.hard_cap
            if not stats.hard_cap_waits:
                assert stats.longest_send_wait <= policy.stall_budget + 1e-9
        if isinstance(policy, Fixed):
            assert stats.peak_used <= policy.capacity

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert Counter(got) == Counter(sent)  # each sent item exactly once, no cancelled one
    if receivers == 1:  # one sender's items keep their order
        for who in range(len(senders)):
            mine = [n for w, n in got if w == who]
            assert mine == sorted(mine)


@pytest.mark.parametrize("policy", [Fixed(1), Adaptive(1, 4096, 100.0)], ids=["fixed", "adaptive"])
@pytest.mark.parametrize(
    "cancel_first", [False, True], ids=["wake-then-cancel", "cancel-then-wake"]
)
async def test_a_woken_sender_cancelled_in_the_same_tick_delivers_iff_send_returned(
    policy: Fixed | Adaptive, cancel_first: bool
) -> None:
    send, receive = open_channel(policy, len)
    send.send_nowait("a")  # full
    returned = False

    async def sender(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        nonlocal returned
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await send.send("b")
            returned = True

    async with trio.open_nursery() as nursery:
        scope = await nursery.start(sender)
        await trio.testing.wait_all_tasks_blocked()  # the sender is parked
        if cancel_first:
            scope.cancel()
        assert receive.receive_nowait() == "a"  # makes room: wakes the sender
        if not cancel_first:
            scope.cancel()  # same tick: no checkpoint in between
    send.close()
    delivered = [item async for item in receive]
    assert delivered == (["b"] if returned else [])


async def test_adaptive_never_shrinks_while_a_sender_waits(clock: trio.testing.MockClock) -> None:
    policy = Adaptive(floor=10, hard_cap=1000, stall_budget=2.0)
    send, receive = open_channel(policy, cost=len)
    for _ in range(40):
        await send.send("x" * 10)
    grown = send.statistics().capacity
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send.send, "y" * int(grown - 5))  # fits only once nearly empty
        for _ in range(3):
            await trio.lowlevel.checkpoint()
        assert receive.statistics().tasks_waiting_send == 1
        capacities = []
        for _ in range(35):  # down to a quarter and below, the sender waiting all along
            receive.receive_nowait()
            for _ in range(3):
                await trio.lowlevel.checkpoint()  # the woken sender looks, and waits again
            capacities.append(receive.statistics().capacity)
        assert receive.statistics().used <= grown / 4
        assert capacities == [grown] * 35  # halving now would only make it wait longer
        nursery.cancel_scope.cancel()
