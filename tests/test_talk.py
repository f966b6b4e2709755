"""``/v1/talk``: a conversation over one WebSocket, against the real server on
127.0.0.1 (hypercorn's trio worker), the loopback Anthropic stand-in upstream and
real espeak-ng; the client is trio-websocket."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
import trio
from test_server import TEXT, ask, events, running
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from voicestream.testing import FakeAnthropic, Script, wait_for


class Talker:
    """One socket: frames sent as JSON, frames received sorted into the answer's
    events (text frames) and its audio (binary frames), in order."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any] | bytes] = []

    async def send(self, **frame: Any) -> None:
        await self.ws.send_message(json.dumps(frame))

    async def next(self) -> dict[str, Any] | bytes:
        message = await self.ws.get_message()
        frame = message if isinstance(message, bytes) else json.loads(message)
        self.frames.append(frame)
        return frame

    async def until(self, kind: str, *also: str) -> dict[str, Any]:
        """Frames until one of ``kind`` (or ``also``); that frame."""
        while True:
            frame = await self.next()
            if isinstance(frame, dict) and frame["type"] in (kind, *also):
                return frame

    def events(self) -> list[dict[str, Any]]:
        return [
            f for f in self.frames if isinstance(f, dict) and "id" in f and f["type"] != "answer"
        ]

    def audio(self) -> bytes:
        return b"".join(f for f in self.frames if isinstance(f, bytes))


@asynccontextmanager
async def talking(port: int, **headers: str) -> AsyncIterator[Talker]:
    raw = [(name.encode(), value.encode()) for name, value in headers.items()]
    async with open_websocket_url(f"ws://127.0.0.1:{port}/v1/talk", extra_headers=raw) as ws:
        yield Talker(ws)


def port_of(client: httpx2.AsyncClient) -> int:
    port = client.base_url.port
    assert port is not None
    return port


def sse_like(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Socket frames as the SSE test helper gives events: ``{"id", "event", "data"}``."""
    return [
        {
            "id": f["id"],
            "event": f["type"],
            "data": {k: v for k, v in f.items() if k not in ("id", "type")},
        }
        for f in frames
    ]


async def test_an_answer_over_the_socket_is_the_answer_over_sse_and_audio(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT, piece=3)
    async with running(fake_api, monkeypatch) as (_, client):
        async with talking(port_of(client)) as talk:
            await talk.send(type="ask", prompt="Say three sentences.")
            answer = await talk.until("answer")
            done = await talk.until("done", "error")
        assert done["type"] == "done" and done["stop_reason"] == "end_turn"
        got = talk.events()
        assert [e["id"] for e in got] == list(range(1, len(got) + 1))
        assert "".join(e["text"] for e in got if e["type"] == "text") == TEXT
        assert talk.frames[-1] == done  # nothing of an answer follows its end
        # The same answer, read over HTTP: the same events, ids and fields; the same audio.
        over_sse = await events(client, f"/v1/answers/{answer['id']}/events")
        wav = (await client.get(f"/v1/answers/{answer['id']}/audio")).content
    assert sse_like(got) == over_sse
    assert talk.audio() == wav[44:] and len(wav) > 44 + 22050
    assert answer["sample_rate"] == int.from_bytes(wav[24:28], "little")
    # Each chunk's audio came before the next chunk's event, and all of it before done.
    chunks = [f for f in talk.frames if isinstance(f, dict) and f["type"] == "chunk"]
    seen = 0
    for frame in talk.frames:
        if isinstance(frame, bytes):
            seen += len(frame)
        elif frame.get("type") == "chunk" and frame["index"] > 0:
            before = chunks[frame["index"] - 1]
            end = round((before["audio_start_s"] + before["audio_s"]) * answer["sample_rate"])
            assert seen == 2 * end


async def test_an_ask_mid_answer_stops_it_first_and_its_end_comes_first(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT * 20, piece=3, delay_s=0.02)
    async with running(fake_api, monkeypatch) as (server, client):
        async with talking(port_of(client)) as talk:
            await talk.send(type="ask", prompt="A long one.")
            first = await talk.until("answer")
            await talk.until("text")
            await talk.send(type="ask", prompt="Something else.")
            end = await talk.until("done", "error")
            second = await talk.until("answer")
            after = len(talk.frames)
            await talk.until("done")
        assert end["type"] == "done" and end["stop_reason"] == "stopped"
        assert second["id"] != first["id"]
        # Nothing of the first answer after its end: the second's events start at 1.
        ids = [f["id"] for f in talk.frames[after:] if isinstance(f, dict) and "id" in f]
        assert ids == list(range(1, len(ids) + 1))
        assert not server.running


async def test_a_stop_frame_ends_the_answer_and_the_socket_stays(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT * 20, piece=3, delay_s=0.02)
    async with running(fake_api, monkeypatch) as (_, client):
        async with talking(port_of(client)) as talk:
            await talk.send(type="ask", prompt="A long one.")
            await talk.until("text")
            await talk.send(type="stop")
            end = await talk.until("done", "error")
            assert end["stop_reason"] == "stopped"
            fake_api.script = Script(text=TEXT, piece=5)
            await talk.send(type="ask", prompt="Again.")
            assert (await talk.until("done", "error"))["stop_reason"] == "end_turn"
        await trio.to_thread.run_sync(
            wait_for, lambda: fake_api.requests[0].outcome == "closed by client", 10
        )


BAD = [
    ("not JSON", "{", 422),
    ("not an object", "[1, 2]", 422),
    ("no type", '{"prompt": "q"}', 422),
    ("unknown type", '{"type": "fly"}', 422),
    ("no prompt", '{"type": "ask"}', 422),
    ("rate out of range", '{"type": "ask", "prompt": "q", "rate": 9000}', 422),
    ("unknown field", '{"type": "ask", "prompt": "q", "temperature": 2}', 422),
    ("a lone surrogate", '{"type": "ask", "prompt": "\\ud800"}', 422),
    ("a path as the voice", '{"type": "ask", "prompt": "q", "voice": "/etc/passwd"}', 422),
    ("deep nesting", '{"type": "ask", "prompt": ' + "[" * 3000 + "]" * 3000 + "}", 422),
    ("resume nothing", '{"type": "resume", "answer": "nope"}', 404),
    ("resume a bad id", '{"type": "resume", "answer": 5}', 422),
    ("resume before 0", '{"type": "resume", "answer": "x", "from_s": -1}', 422),
]


async def test_bad_frames_get_an_error_frame_and_the_socket_stays(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT, piece=5)
    async with running(fake_api, monkeypatch) as (_, client):
        async with talking(port_of(client)) as talk:
            for name, frame, status in BAD:
                await talk.ws.send_message(frame)
                error = await talk.until("error")
                assert error["status"] == status and "id" not in error, name
                assert "\n" not in error["message"] and error["message"], name
            await talk.ws.send_message(b"\x00binary")
            assert (await talk.until("error"))["status"] == 422
            await talk.send(type="ask", prompt="Now a real one.")
            assert (await talk.until("done", "error"))["type"] == "done"
        assert fake_api.requests and len(fake_api.requests) == 1  # none paid for the bad ones


async def test_the_token_comes_as_a_header_or_as_the_first_frame(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT, piece=5)
    token = "t0ken-" + "x" * 20
    async with running(fake_api, monkeypatch, token=token) as (_, client):
        port = port_of(client)
        async with talking(port) as talk:  # no token: refused, and closed
            await talk.send(type="ask", prompt="q")
            assert (await talk.until("error"))["status"] == 401
            with pytest.raises(ConnectionClosed) as closed:
                await talk.next()
            assert closed.value.reason.code == 1008
        async with talking(port) as talk:
            await talk.send(type="auth", token="wrong")
            assert (await talk.until("error"))["status"] == 401
        async with talking(port) as talk:
            await talk.send(type="auth", token=token)
            await talk.send(type="ask", prompt="q")
            assert (await talk.until("done", "error"))["type"] == "done"
        async with talking(port, Authorization=f"Bearer {token}") as talk:
            await talk.send(type="ask", prompt="q")
            assert (await talk.until("done", "error"))["type"] == "done"
    assert len(fake_api.requests) == 2


@pytest.mark.parametrize(
    ("host", "origin"),
    [(None, "http://evil.example"), (None, "null"), ("evil.example", None)],
    ids=["another-site", "null-origin", "rebound-host"],
)
async def test_another_site_cannot_open_the_socket(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, host: str | None, origin: str | None
) -> None:
    async with running(fake_api, monkeypatch) as (_, client):
        port = port_of(client)
        stream = await opened(port, host=host or f"127.0.0.1:{port}", origin=origin)
        reply = await stream.receive_some(4096)
        await stream.aclose()
        # And the same handshake from the server's own page is taken (101).
        own = await opened(port, host=f"127.0.0.1:{port}", origin=f"http://127.0.0.1:{port}")
        accepted = await own.receive_some(4096)
        await own.aclose()
    assert reply.split(b"\r\n")[0].split()[1] in (b"403", b"421")
    assert accepted.startswith(b"HTTP/1.1 101")
    assert fake_api.requests == []


async def test_a_socket_resumes_an_answer_after_a_reconnect(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT * 3, piece=3)
    async with running(fake_api, monkeypatch) as (_, client):
        port = port_of(client)
        async with talking(port) as talk:
            await talk.send(type="ask", prompt="q")
            answer = await talk.until("answer")
            while len(talk.events()) < 10 or not talk.audio():
                await talk.next()
        first = talk.events()
        heard = talk.audio()
        rate = answer["sample_rate"]
        from_s = (len(heard) // 2 + 0.5) / rate  # the next sample
        async with talking(port) as again:
            await again.send(
                type="resume", answer=answer["id"], last_event_id=first[-1]["id"], from_s=from_s
            )
            resumed = await again.until("answer")
            await again.until("done", "error")
        assert resumed["id"] == answer["id"]
        whole = await events(client, f"/v1/answers/{answer['id']}/events")
        wav = (await client.get(f"/v1/answers/{answer['id']}/audio")).content[44:]
    assert sse_like(first + again.events()) == whole  # each event once, in order
    assert heard + again.audio() == wav


async def test_the_answer_limit_holds_over_the_socket(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT * 20, piece=3, delay_s=0.02)
    async with running(fake_api, monkeypatch, max_answers=1) as (_, client):
        created = await ask(client)  # over HTTP: the one slot
        async with talking(port_of(client)) as talk:
            await talk.send(type="ask", prompt="q")
            refused = await talk.until("error")
            assert refused["status"] == 503 and "--max-answers" in refused["message"]
        await client.delete(f"/v1/answers/{created['id']}")


async def test_a_quiet_socket_gets_heartbeats(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(fake_api, monkeypatch, heartbeat_s=0.2) as (_, client):
        port = port_of(client)
        async with talking(port) as talk:
            assert (await talk.next()) == {"type": "heartbeat"}


async def test_a_client_that_stops_reading_is_closed_and_the_answer_goes_on(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT * 60, piece=40)  # minutes of speech: MBs of audio
    async with running(fake_api, monkeypatch, send_timeout_s=0.5) as (server, client):
        host, port = "127.0.0.1", port_of(client)
        stuck = await opened(port, host=f"{host}:{port}")  # asks over a socket, never reads
        assert (await stuck.receive_some(4096)).startswith(b"HTTP/1.1 101")
        await stuck.send_all(masked(json.dumps({"type": "ask", "prompt": "q"})))
        await trio.to_thread.run_sync(wait_for, lambda: len(server.answers) == 1, 10)
        (live,) = server.answers.values()
        assert live.log is not None
        await trio.to_thread.run_sync(wait_for, lambda: live.log.attached == 1, 10)
        await trio.to_thread.run_sync(wait_for, lambda: live.log.attached == 0, 60)  # closed
        assert not live.finished  # the answer was not held: it goes on, to be resumed
        got = await events(client, f"/v1/answers/{live.id}/events")
        assert got[-1]["event"] == "done"
        await stuck.aclose()


async def opened(port: int, host: str, origin: str | None = None) -> trio.SocketStream:
    """A WebSocket handshake sent by hand (a client library sets Host itself)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    handshake = (
        f"GET /v1/talk HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n" + (f"Origin: {origin}\r\n" if origin else "") + "\r\n"
    )
    await stream.send_all(handshake.encode())
    return stream


def masked(text: str) -> bytes:
    """A client's text frame (clients must mask theirs)."""
    payload = text.encode()
    mask = os.urandom(4)
    assert len(payload) < 126
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body
