"""An answer's life on the server, in virtual time (``trio.testing.MockClock``):
when it is stopped for want of a listener, and how long it is kept once finished.
The server's own code, without HTTP: the demo source and the silent engine, whose
timing is all ``trio.sleep``."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from voicestream import server as serving
from voicestream.config import Config, DemoConfig, ServerConfig, VoiceConfig

GRACE_S = 5.0


@asynccontextmanager
async def answers(**server: Any) -> AsyncIterator[serving.Server]:
    config = dataclasses.replace(
        Config(),
        server=dataclasses.replace(ServerConfig(), grace_s=GRACE_S, **server),
        voice=VoiceConfig(engine="silent"),
        demo=DemoConfig(first_token_s=0.2, tokens_per_s=60, seed=1),
    )
    live = serving.Server(config, "demo", None, environ={})
    await live.voices.start()
    async with trio.open_nursery() as nursery:
        live.nursery = nursery
        yield live
        nursery.cancel_scope.cancel()


async def start(server: serving.Server) -> serving.Live:
    return await server.start_answer({"prompt": "q", "history": [], "voice": None, "rate": None})


def outcome(live: serving.Live) -> str:
    name, data = live.events[-1][1], live.events[-1][2]
    return "stopped" if name == "done" and '"stop_reason": "stopped"' in data else name


async def test_an_attached_answer_plays_to_its_end(clock: trio.testing.MockClock) -> None:
    async with answers() as server:
        live = await start(server)
        server.attach(live)  # a listener from the start, for the whole answer
        while not live.finished:
            await trio.sleep(1)
        assert outcome(live) == "done"
        assert trio.current_time() > 10 * GRACE_S  # the demo answer is ~55 s of speech


async def test_an_answer_nobody_attaches_to_gets_the_grace_time_from_its_start(
    clock: trio.testing.MockClock,
) -> None:
    async with answers() as server:
        await trio.sleep(1000)  # the server has run a while before this answer
        begun = trio.current_time()
        live = await start(server)
        while not live.finished:
            await trio.sleep(0.1)
        assert outcome(live) == "stopped"
        assert live.finished_at is not None
        assert GRACE_S <= live.finished_at - begun <= GRACE_S + 1.5
        assert "grace_s" in "".join(data for _, name, data in live.events if name == "notice")


async def test_the_grace_time_counts_from_the_last_listener_leaving(
    clock: trio.testing.MockClock,
) -> None:
    async with answers() as server:
        live = await start(server)
        server.attach(live)
        await trio.sleep(4 * GRACE_S)
        server.detach(live)  # the listener leaves after 20 s
        left = trio.current_time()
        await trio.sleep(GRACE_S - 1)
        assert not live.finished  # alone for less than the grace time
        while not live.finished:
            await trio.sleep(0.1)
        assert outcome(live) == "stopped" and live.finished_at is not None
        assert GRACE_S <= live.finished_at - left <= GRACE_S + 1.5


@pytest.mark.parametrize("retention_s", [60.0, 200.0])
async def test_a_finished_answer_is_kept_for_the_retention_time(
    clock: trio.testing.MockClock, retention_s: float
) -> None:
    async with answers(retention_s=retention_s) as server:
        live = await start(server)
        server.attach(live)
        while live.finished_at is None:
            await trio.sleep(0.1)
        await trio.sleep(retention_s - 1)
        assert await server.relay.log(live.id) is live.log  # still there to resume
        await trio.sleep(2)
        assert await server.relay.log(live.id) is None and not server.relay.finished
