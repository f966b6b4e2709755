"""``/v1/talk``: a conversation over one WebSocket.

One socket carries what a browser otherwise needs four requests for: the question,
the answer's events, its audio and the stop. Client to server, JSON text frames::

    {"type": "auth", "token": T}            first, when the server has a token and
                                            the client cannot send a header (a browser)
    {"type": "ask", "prompt", "history"?, "voice"?, "rate"?}
    {"type": "stop"}                        the current answer ends with done/stopped
    {"type": "resume", "answer": ID, "last_event_id": N, "from_s": S}

Server to client: ``{"type": "answer", "id", "sample_rate"}`` for each ask (and
resume), then the answer's events as text frames, ``{"type": "text"|"chunk"|
"notice"|"done"|"error", "id": N, ...}`` with exactly the fields of the SSE
``data``, and its audio as binary frames of 16-bit mono PCM, in order; nothing of
an answer follows its ``done`` or ``error``. A ``{"type": "heartbeat"}`` when
nothing was sent for ``heartbeat_s``. A frame that cannot be taken is answered
with ``{"type": "error", "message", "status"}`` (no ``id``: it is not the
answer's) and the socket stays open.

One answer at a time: an ``ask`` while one runs stops it first, and its
``done`` (``stopped``) is sent before the new ``answer`` frame. The answers are
the relay's, as over HTTP: one asked here can be read over SSE and ``/audio``,
on any process, with the same event ids, and the other way round. A client that
goes away leaves its answer running for ``grace_s``, to be resumed; one that
stops reading is closed after ``send_timeout_s`` (the server's write deadline)
without holding the answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from typing import TYPE_CHECKING, Any

import trio

from .errors import redact
from .guard import bearer, same_token
from .relay import FINAL, AnswerLog, Gone, RelayDown

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from .server import Server

log = logging.getLogger("voicestream.server")

PATH = "/v1/talk"
AUTH_NEEDED = 'this server needs a token: send {"type": "auth", "token": TOKEN} first'
STOP_WAIT_S = 10.0  # at most this for a stopped answer's last event before the next ask


class Refused(Exception):
    """A frame that cannot be taken: an ``error`` frame, and the socket stays."""

    def __init__(self, status: int, message: str, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.close = close


class Talk:
    """One socket's conversation: the frames it receives, the answer it follows."""

    def __init__(self, server: Server, websocket: WebSocket) -> None:
        self.server = server
        self.ws = websocket
        self.authorized = server.token is None or bearer(
            websocket.headers.get("authorization", ""), server.token
        )
        self.send_lock = trio.Lock()
        self.sent_at = trio.current_time()
        self.current: _Following | None = None
        self.nursery: trio.Nursery | None = None

    async def run(self) -> None:
        await self.ws.accept()
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._heartbeat)
                await self._receive()
                nursery.cancel_scope.cancel()
        except _Closed:
            with trio.move_on_after(1):
                await self.ws.close(1011, "this client fell too far behind; resume")
        finally:
            if self.current is not None:
                self.current.scope.cancel()

    async def _receive(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                await self._take(message.get("text"))
            except Refused as e:
                await self.send({"type": "error", "message": str(e), "status": e.status})
                if e.close:
                    await self.ws.close(1008, str(e)[:120])
                    return

    async def _take(self, text: str | None) -> None:
        if text is None:
            raise Refused(422, "send JSON text frames; audio only comes from the server")
        try:
            frame = json.loads(text)
        except (ValueError, RecursionError):
            raise Refused(422, "a frame is not JSON (or is nested too deeply)") from None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise Refused(422, 'a frame must be a JSON object with a "type"')
        kind = frame.pop("type")
        if kind == "auth":
            token = frame.get("token")
            given = token if isinstance(token, str) else ""
            if self.server.token is not None and not same_token(given, self.server.token):
                raise Refused(401, "wrong token", close=True)
            self.authorized = True
            return
        if not self.authorized:
            raise Refused(401, AUTH_NEEDED, close=True)
        if kind == "ask":
            await self._ask(frame)
        elif kind == "stop":
            if self.current is not None:
                try:
                    await self.server.stop_answer(self.current.answer_id)
                except RelayDown as e:
                    raise Refused(503, f"{e}; ask again in a moment") from None
        elif kind == "resume":
            await self._resume(frame)
        else:
            raise Refused(422, f"unknown frame type {kind[:40]!r}: ask, stop, resume or auth")

    async def _ask(self, fields: dict[str, Any]) -> None:
        from .server import BadRequest, parse_request

        try:
            request = parse_request(json.dumps(fields).encode(), self.server.config.server)
        except BadRequest as e:
            raise Refused(e.status, str(e)) from None
        await self._end_current()
        try:
            live = await self.server.admit(request)
        except BadRequest as e:
            raise Refused(e.status, str(e)) from None
        answer = await self._log(live.id)
        await self._follow(answer, 0, 0)

    async def _resume(self, frame: dict[str, Any]) -> None:
        answer_id, last, from_s = (
            frame.get("answer"),
            frame.get("last_event_id", 0),
            frame.get("from_s", 0),
        )
        if not isinstance(answer_id, str) or not 0 < len(answer_id) <= 100:
            raise Refused(422, '"answer" must be an answer\'s id')
        if isinstance(last, bool) or not isinstance(last, int) or not 0 <= last < 10**18:
            raise Refused(422, '"last_event_id" must be an event id, 0 or more')
        if isinstance(from_s, bool) or not isinstance(from_s, int | float):
            raise Refused(422, '"from_s" must be seconds, 0 or more')
        if not (math.isfinite(from_s) and from_s >= 0):
            raise Refused(422, '"from_s" must be seconds, 0 or more')
        if self.current is not None:  # follow the other answer instead; this one runs on
            self.current.scope.cancel()
            await self.current.done.wait()
        answer = await self._log(answer_id)
        offset = min(int(from_s * answer.audio.rate) * 2, answer.audio.end)
        gone = answer.audio.gone(offset)
        if gone is not None:
            raise Refused(410, gone)
        await self._follow(answer, last, offset)

    async def _log(self, answer_id: str) -> AnswerLog:
        try:
            answer = await self.server.relay.log(answer_id)
        except RelayDown as e:
            raise Refused(503, f"{e}; ask again in a moment") from None
        if answer is None:
            raise Refused(404, "no such answer (finished answers are kept for a while)")
        return answer

    async def _end_current(self) -> None:
        """Stop the answer being followed; its last event is sent before we go on."""
        current = self.current
        if current is None:
            return
        if not current.done.is_set():
            with contextlib.suppress(RelayDown):  # then it ends by itself, or is cut here
                await self.server.stop_answer(current.answer_id)
            with trio.move_on_after(STOP_WAIT_S):
                await current.done.wait()
            current.scope.cancel()
            await current.done.wait()

    async def _follow(self, answer: AnswerLog, last: int, offset: int) -> None:
        assert self.nursery is not None
        following = _Following(answer.id)
        self.current = following
        await self.send({"type": "answer", "id": answer.id, "sample_rate": answer.audio.rate})
        self.nursery.start_soon(self._send_answer, answer, last, offset, following)

    async def _send_answer(
        self, answer: AnswerLog, last: int, offset: int, following: _Following
    ) -> None:
        """The answer's events after ``last`` and its audio from byte ``offset``, as
        they come; its final event after all of its audio."""
        answer.attach()
        try:
            with following.scope:
                # Audio goes up to the end of the chunks announced (resumed: those
                # the client has had).
                announced = [d for eid, name, d in answer.events if name == "chunk" and eid <= last]
                heard = max([offset] + [_end(data, answer.audio.rate) for data in announced])
                while True:
                    change = answer.change()
                    final = None
                    for eid, name, data in answer.after(last):
                        if name in FINAL:
                            final = (eid, name, data)
                            break
                        fields = json.loads(data)
                        await self.send({"type": name, "id": eid, **fields})
                        last = eid
                        if name == "chunk":  # its audio follows its event
                            heard = max(heard, _end(data, answer.audio.rate))
                        offset = await self._send_audio(answer, offset, heard)
                    if final is not None:
                        await self._send_audio(answer, offset, None)
                        eid, name, data = final
                        await self.send({"type": name, "id": eid, **json.loads(data)})
                        return
                    await change.wait()
        finally:
            answer.detach()
            following.done.set()

    async def _send_audio(self, answer: AnswerLog, offset: int, upto: int | None) -> int:
        """The audio from ``offset`` that is here, up to ``upto`` (None: all)."""
        from .server import WRITE_BYTES

        if upto is not None and offset >= upto:
            return offset
        try:
            data = answer.audio.now(offset)[: None if upto is None else upto - offset]
        except Gone as e:  # fell behind the window: cut off, as over HTTP
            log.info("a talk reader of %s fell behind: %s", answer.id, e)
            raise _Closed from None
        for at in range(0, len(data), WRITE_BYTES):
            piece = data[at : at + WRITE_BYTES]
            await self._send_bytes(piece)
            offset += len(piece)
        return offset

    async def send(self, frame: dict[str, Any]) -> None:
        text = json.dumps(frame)
        if frame.get("type") == "error":
            text = redact(text, self.server.environ)
        async with self.send_lock:
            try:
                await self.ws.send_text(text)
            except Exception as e:  # the socket is gone (closed, or timed out writing)
                raise _Closed from e
            self.sent_at = trio.current_time()

    async def _send_bytes(self, data: bytes) -> None:
        async with self.send_lock:
            try:
                await self.ws.send_bytes(data)
            except Exception as e:
                raise _Closed from e
            self.sent_at = trio.current_time()

    async def _heartbeat(self) -> None:
        every = self.server.config.server.heartbeat_s
        while True:
            await trio.sleep_until(self.sent_at + every)
            if trio.current_time() >= self.sent_at + every:
                await self.send({"type": "heartbeat"})


class _Following:
    """The answer a socket follows: stopping its task, and knowing it has ended."""

    def __init__(self, answer_id: str) -> None:
        self.answer_id = answer_id
        self.scope = trio.CancelScope()
        self.done = trio.Event()


class _Closed(Exception):
    """The socket is done with (the client fell too far behind)."""


def _end(chunk: str, rate: int) -> int:
    """The byte offset where a ``chunk`` event's audio ends."""
    fields = json.loads(chunk)
    end_s = float(fields["audio_start_s"]) + float(fields["audio_s"])
    return 2 * round(end_s * rate)
