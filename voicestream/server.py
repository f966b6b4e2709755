"""``voicestream serve``: spoken answers over HTTP, to browsers and any client.

Hypercorn's trio worker runs a Starlette app inside the server's own nursery (no
asyncio loop anywhere). Each answer is one :class:`voicestream.runner.Answer`
whose sink is an :class:`AudioStream`: the server plays the answer to a clock,
as a speaker would, ``lead_s`` ahead of real time, and keeps the last
``window_s`` seconds for clients to read, so a client that is slow, gone or
resuming never makes memory grow, and the model's stream is read exactly as
when a person listens at the desktop (the same channels, the same stall budget).

The API (see the README for examples)::

    POST   /v1/answers                 {"prompt", "history"?, "voice"?, "rate"?} -> 201
    GET    /v1/answers/{id}/events     text/event-stream; Last-Event-ID resumes
    GET    /v1/answers/{id}/audio      audio/wav, streamed; ?from_s= resumes
    DELETE /v1/answers/{id}            stop now (barge-in)
    GET    /healthz, /metrics, /       liveness, Prometheus, the web page

Events: ``text`` {text}, ``chunk`` {index, text, audio_start_s, audio_s, words:
[{offset, length, audio_start_s, estimated}]} (where each word starts),
``notice`` {message}, then one ``done`` {stop_reason, metrics} or ``error``
{message}; every event has an increasing ``id``. A finished answer stays for
``retention_s`` so that a client can still resume; one that no client has been
attached to for ``grace_s`` is stopped.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import json
import math
import os
import secrets
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import trio

from . import stopping
from .audio import Audio
from .config import Config, ServerConfig
from .errors import UsageError, redact
from .runner import Answer, Chunk, Event, Finished, Notice, Text
from .sinks import ClockedSink
from .sources import check_source, open_source
from .synthesizers import Synthesizer, open_synthesizer

MAX_BODY = 64 * 1024
WRITE_BYTES = 32 * 1024  # the most audio handed to a client at once
STREAMING_SIZE = 0xFFFFFFFF  # a WAV header's sizes while the length is unknown
SHUTDOWN = "the server is shutting down; ask again in a moment"


class Gone(Exception):
    """Audio a client asked for is older than the window kept."""


class AudioStream(ClockedSink):
    """The answer's audio, played to a clock ``lead_s`` ahead of real time, its last
    ``window_s`` seconds kept for readers (16-bit mono PCM, little-endian)."""

    def __init__(self, rate: int, window_s: float, lead_s: float) -> None:
        self.rate = rate
        self.window = int(window_s * rate) * 2  # bytes
        self.lead_s = lead_s
        self.data = bytearray()
        self.first = 0  # the byte offset in the answer's audio of data[0]
        self.end = 0  # bytes written so far
        self.closed = False
        self._changed = trio.Event()

    @property
    def held(self) -> int:
        return len(self.data)

    async def write(self, audio: Audio) -> None:
        self.data += audio.samples.astype("<i2", copy=False).tobytes()
        self.end += 2 * len(audio.samples)
        if len(self.data) > self.window:
            drop = len(self.data) - self.window
            del self.data[:drop]
            self.first += drop
        self._notify()
        await self.play(audio.seconds)

    async def drain(self) -> None:
        pass  # the answer is over once its audio is made; readers take it at their pace

    def close(self) -> None:
        self.closed = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def read(self, offset: int) -> bytes:
        """The audio from byte ``offset`` on, waiting until there is some; b"" at
        the end; :class:`Gone` when it is no longer kept."""
        while offset >= self.end and not self.closed:
            await self._changed.wait()
        if offset < self.first:
            kept = self.first / 2 / self.rate
            raise Gone(
                f"audio before {kept:.1f} s is no longer kept (the server keeps the last "
                "window_s seconds); resume from a later from_s"
            )
        return bytes(self.data[offset - self.first :])


def wav_header(rate: int) -> bytes:
    """A WAV header for a stream of unknown length: both sizes at their maximum
    (what players and decoders read as "until the end of the stream")."""
    return (
        b"RIFF"
        + STREAMING_SIZE.to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")  # PCM
        + (1).to_bytes(2, "little")  # mono
        + rate.to_bytes(4, "little")
        + (rate * 2).to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
        + b"data"
        + STREAMING_SIZE.to_bytes(4, "little")
    )


@dataclass
class Live:
    """One answer as the server keeps it: its events, its audio, who is attached."""

    id: str
    audio: AudioStream
    environ: Mapping[str, str]  # its secrets are redacted from every event
    answer: Answer = field(init=False)
    events: list[tuple[int, str, str]] = field(default_factory=list)
    attached: int = 0
    alone_since: float = 0.0
    finished_at: float | None = None
    _changed: trio.Event = field(default_factory=trio.Event)

    def emit(self, name: str, data: Mapping[str, Any]) -> None:
        self.events.append((len(self.events) + 1, name, json.dumps(data)))
        self._changed.set()
        self._changed = trio.Event()

    def on_event(self, event: Event) -> None:
        if self.finished:
            return  # ended already (the server is shutting down)
        if isinstance(event, Text):
            self.emit("text", {"text": event.text})
        elif isinstance(event, Chunk):
            words = [
                {
                    "offset": w.offset,
                    "length": w.length,
                    "audio_start_s": s,
                    "estimated": w.estimated,
                }
                for w, s in zip(event.words, event.word_starts_s(), strict=True)
            ]
            fields = ("index", "text", "audio_start_s", "audio_s")
            self.emit("chunk", {f: getattr(event, f) for f in fields} | {"words": words})
        elif isinstance(event, Notice):
            self.emit("notice", {"message": redact(event.message, self.environ)})
        elif isinstance(event, Finished):
            if event.error is not None:
                self.emit("error", {"message": redact(event.error, self.environ)})
            else:
                reason = event.metrics.get("source", {}).get("stop_reason", "end_turn")
                stop_reason = "stopped" if event.outcome == "stopped" else reason
                self.emit("done", {"stop_reason": stop_reason, "metrics": event.metrics})

    @property
    def finished(self) -> bool:
        return bool(self.events) and self.events[-1][1] in ("done", "error")

    async def events_after(self, last: int, heartbeat_s: float) -> AsyncIterator[str]:
        """Server-sent events after id ``last``, as they come; a comment line when
        nothing came for ``heartbeat_s``; ends after the last event."""
        while True:
            new = self.events[last:]
            if new:  # all that is waiting, in one write
                yield "".join(
                    f"id: {eid}\nevent: {name}\ndata: {data}\n\n" for eid, name, data in new
                )
                last = new[-1][0]
            if self.finished:
                return
            with trio.move_on_after(heartbeat_s) as waited:
                await self._changed.wait()
            if waited.cancelled_caught:
                yield ": heartbeat\n\n"


class Metrics:
    """The Prometheus figures (prometheus_client, a registry of the server's own)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.active = Gauge("voicestream_answers_active", "answers running now", registry=r)
        self.total = Counter("voicestream_answers", "answers started", registry=r)
        self.refused = Counter("voicestream_answers_refused", "answers refused (503)", registry=r)
        self.timeouts = Counter(
            "voicestream_producer_timeouts",
            "sends that waited longer than the stall budget",
            registry=r,
        )
        self.hard_cap = Counter(
            "voicestream_hard_cap_waits", "sends held back at a text hard cap", registry=r
        )
        self.underruns = Counter(
            "voicestream_underruns", "times an answer's audio clock ran dry", registry=r
        )
        self.buffered = Gauge(
            "voicestream_audio_buffered_bytes", "audio kept for clients, all answers", registry=r
        )
        buckets = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30)
        self.ttft = Histogram(
            "voicestream_ttft_seconds", "time to first token", buckets=buckets, registry=r
        )
        self.ttfa = Histogram(
            "voicestream_ttfa_seconds", "time to first audio", buckets=buckets, registry=r
        )

    def finished(self, live: Live) -> None:
        m = live.answer.metrics
        self.timeouts.inc(sum(c.producer_timeouts for c in m.channels.values()))
        self.hard_cap.inc(sum(c.hard_cap_waits for c in m.channels.values()))
        self.underruns.inc(live.audio.underruns)
        if m.ttft_s is not None:
            self.ttft.observe(m.ttft_s)
        if m.ttfa_s is not None:
            self.ttfa.observe(m.ttfa_s)


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_request(body: bytes, server: ServerConfig) -> dict[str, Any]:
    """The POST body's fields, checked; :class:`BadRequest` (422) says what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(422, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(422, 'the body must be a JSON object with a "prompt"')
    unknown = set(data) - {"prompt", "history", "voice", "rate"}
    if unknown:
        raise BadRequest(422, f"unknown field(s): {', '.join(sorted(unknown))}")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest(422, '"prompt" must be a non-empty string')
    if len(prompt) > server.max_prompt_chars:
        raise BadRequest(422, f'"prompt" is longer than {server.max_prompt_chars} characters')
    history = data.get("history", [])
    roles = ["user", "assistant"] * len(history)
    if not isinstance(history, list) or any(
        not isinstance(turn, dict)
        or turn.get("role") != role
        or not isinstance(turn.get("content"), str)
        or set(turn) != {"role", "content"}
        for turn, role in zip(history, roles, strict=False)
    ):
        raise BadRequest(
            422,
            '"history" must be a list of {"role", "content"} turns, user and assistant in turn',
        )
    if len(history) % 2:
        raise BadRequest(422, '"history" must end with an assistant turn')
    voice = data.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise BadRequest(422, '"voice" must be a string')
    rate = data.get("rate")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not 80 <= rate <= 500
    ):
        raise BadRequest(422, '"rate" must be words per minute, from 80 to 500')
    return {"prompt": prompt, "history": history, "voice": voice, "rate": rate}


class Server:
    """The answers and the HTTP app; runs inside a trio nursery."""

    def __init__(
        self,
        config: Config,
        source: str,
        token: str | None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.token = token
        self.environ = dict(os.environ if environ is None else environ)
        self.answers: dict[str, Live] = {}
        self.metrics = Metrics()
        self.nursery: trio.Nursery | None = None
        self.closing = False
        self.stopped = trio.Event()  # set: stop listening, end the streams, return
        self.sample_rate = 22050
        self.voices: dict[tuple[str, int], Synthesizer] = {}
        self.exit_code = 0
        self.app = self._app()

    # -- answers ----------------------------------------------------------------

    @property
    def running(self) -> list[Live]:
        return [live for live in self.answers.values() if not live.finished]

    def per_answer_bytes(self) -> int:
        return int(self.config.server.window_s * self.sample_rate) * 2

    def buffered(self) -> int:
        return sum(live.audio.held for live in self.answers.values())

    def admits(self) -> str | None:
        """Why a new answer cannot start now (None: it can)."""
        server = self.config.server
        if self.closing:
            return SHUTDOWN
        if len(self.running) >= server.max_answers:
            return f"{server.max_answers} answers are running (--max-answers); ask again soon"
        budget = server.budget_mb * 2**20
        if self.buffered() + self.per_answer_bytes() * (len(self.running) + 1) > budget:
            return "the server's audio budget (server.budget_mb) is taken; ask again soon"
        return None

    async def synthesizer(self, voice: str | None, rate: float | None) -> Synthesizer:
        voice_config = dataclasses.replace(
            self.config.voice,
            voice=self.config.voice.voice if voice is None else voice,
            rate=self.config.voice.rate if rate is None else int(rate),
        )
        key = (voice_config.voice, voice_config.rate)
        if key not in self.voices:
            self.voices[key] = await open_synthesizer(voice_config)
        return self.voices[key]

    async def start_answer(self, request: dict[str, Any]) -> Live:
        assert self.nursery is not None
        synthesizer = await self.synthesizer(request["voice"], request["rate"])
        source = open_source(
            self.source, self.config, request["prompt"], self.environ, request["history"]
        )
        server = self.config.server
        audio = AudioStream(synthesizer.sample_rate, server.window_s, server.lead_s)
        answer_id = secrets.token_urlsafe(18)
        live = Live(answer_id, audio, self.environ)
        live.answer = Answer(source, synthesizer, audio, self.config, on_event=live.on_event)
        live.alone_since = trio.current_time()
        self.answers[answer_id] = live
        self.metrics.total.inc()
        self.nursery.start_soon(self._run, live)
        return live

    async def _run(self, live: Live) -> None:
        self.metrics.active.inc()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_attachment, live, nursery.cancel_scope)
                await live.answer.run()
                nursery.cancel_scope.cancel()
        finally:
            self.metrics.active.dec()
            self.metrics.finished(live)
            live.audio.close()
            live.finished_at = trio.current_time()
        with trio.move_on_after(self.config.server.retention_s):
            await self.stopped.wait()  # kept for resuming, while the server runs
        self.answers.pop(live.id, None)

    async def _watch_attachment(self, live: Live, done: trio.CancelScope) -> None:
        grace = self.config.server.grace_s
        while True:
            await trio.sleep(min(1.0, grace / 4) if grace else 0.05)
            alone = trio.current_time() - live.alone_since
            if live.attached == 0 and alone >= grace:
                live.answer.stop()
                live.answer.source.notices.append(
                    f"no client was attached for {grace:g} s (server.grace_s): stopped"
                )
                return

    def attach(self, live: Live) -> None:
        live.attached += 1

    def detach(self, live: Live) -> None:
        live.attached -= 1
        if not live.attached:
            live.alone_since = trio.current_time()

    def shut_down(self) -> None:
        """Stop taking answers; end every running one with an ``error`` event; return
        from :func:`serve` once they have ended (a few seconds at most)."""
        self.closing = True
        for live in self.running:
            live.emit("error", {"message": SHUTDOWN})
            live.answer.stop()
        self.stopped.set()

    # -- HTTP -------------------------------------------------------------------

    def _app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        def error(status: int, message: str, **headers: str) -> Response:
            return JSONResponse(
                {"error": redact(message, self.environ)}, status, headers=headers or None
            )

        def authorized(request: Any) -> bool:
            if self.token is None:
                return True
            given = request.headers.get("authorization", "")
            return hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode())

        def guarded(handler: Any) -> Any:
            async def endpoint(request: Any) -> Response:
                if not authorized(request):
                    return error(
                        401,
                        "this server needs a token: send 'Authorization: Bearer TOKEN'",
                        **{"WWW-Authenticate": "Bearer"},
                    )
                try:
                    response: Response = await handler(request)
                except BadRequest as e:
                    return error(e.status, str(e))
                return response

            return endpoint

        def find(request: Any) -> Live:
            live = self.answers.get(request.path_params["answer_id"])
            if live is None:
                raise BadRequest(404, "no such answer (finished answers are kept retention_s)")
            return live

        async def create(request: Any) -> Response:
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
                return error(413, f"the body is over {MAX_BODY // 1024} KB")
            body = bytearray()
            async for piece in request.stream():
                body += piece
                if len(body) > MAX_BODY:
                    return error(413, f"the body is over {MAX_BODY // 1024} KB")
            fields = parse_request(bytes(body), self.config.server)
            refused = self.admits()
            if refused is not None:
                self.metrics.refused.inc()
                return error(503, refused, **{"Retry-After": "5"})
            try:
                live = await self.start_answer(fields)
            except UsageError as e:
                return error(422, str(e))
            base = f"/v1/answers/{live.id}"
            return JSONResponse(
                {"id": live.id, "events": f"{base}/events", "audio": f"{base}/audio"}, 201
            )

        async def events(request: Any) -> Response:
            from starlette.responses import StreamingResponse

            live = find(request)
            raw = request.headers.get("last-event-id") or request.query_params.get(
                "last_event_id", "0"
            )
            if not raw.isdigit():
                raise BadRequest(422, "Last-Event-ID must be an event id (a whole number)")
            last = int(raw)
            heartbeat = self.config.server.heartbeat_s

            async def body() -> AsyncIterator[str]:
                self.attach(live)
                try:
                    async for event in live.events_after(last, heartbeat):
                        yield event
                finally:
                    self.detach(live)

            return StreamingResponse(
                body(),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )

        async def audio(request: Any) -> Response:
            from starlette.responses import StreamingResponse

            live = find(request)
            try:
                from_s = float(request.query_params.get("from_s", "0"))
            except ValueError:
                from_s = math.nan
            if not (math.isfinite(from_s) and from_s >= 0):
                raise BadRequest(422, "from_s must be seconds, 0 or more")
            stream = live.audio
            offset = int(from_s * stream.rate) * 2
            if offset < stream.first:
                raise BadRequest(410, f"audio before {stream.first / 2 / stream.rate:.1f} s "
                                 "is no longer kept; resume from a later from_s")  # fmt: skip

            async def body() -> AsyncIterator[bytes]:
                nonlocal offset
                self.attach(live)
                try:
                    yield wav_header(stream.rate)
                    while True:
                        try:
                            data = await stream.read(offset)
                        except Gone as gone:  # fell behind the window: said, then ended
                            live.emit("notice", {"message": f"an audio reader fell behind: {gone}"})
                            return
                        if not data:
                            return
                        for at in range(0, len(data), WRITE_BYTES):  # a slow reader makes
                            piece = data[at : at + WRITE_BYTES]  # progress within the
                            offset += len(piece)  # send timeout, write by write
                            yield piece
                finally:
                    self.detach(live)

            return StreamingResponse(
                body(), media_type="audio/wav", headers={"Cache-Control": "no-cache"}
            )

        async def stop(request: Any) -> Response:
            live = find(request)
            live.answer.stop()
            return Response(status_code=204)

        async def healthz(request: Any) -> Response:
            return JSONResponse({"ok": True, "answers": len(self.running)})

        async def metrics(request: Any) -> Response:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            self.metrics.buffered.set(self.buffered())
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        async def page(request: Any) -> Response:
            name = request.path_params.get("name", "index.html")
            web = resources.files("voicestream") / "data" / "web"
            kinds = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
            kind = kinds.get(Path(name).suffix)
            file = web / name
            if kind is None or "/" in name or not file.is_file():
                return error(404, "no such page")
            return Response(file.read_bytes(), media_type=f"{kind}; charset=utf-8")

        app = Starlette(
            routes=[
                Route("/v1/answers", guarded(create), methods=["POST"]),
                Route("/v1/answers/{answer_id}/events", guarded(events), methods=["GET"]),
                Route("/v1/answers/{answer_id}/audio", guarded(audio), methods=["GET"]),
                Route("/v1/answers/{answer_id}", guarded(stop), methods=["DELETE"]),
                Route("/metrics", guarded(metrics), methods=["GET"]),
                Route("/healthz", healthz, methods=["GET"]),
                Route("/", page, methods=["GET"]),
                Route("/web/{name}", page, methods=["GET"]),
            ]
        )
        return app


def time_out_writes(seconds: float) -> None:
    """Give hypercorn's socket writes a deadline: it writes in a shielded scope with
    none, so a client that stops reading would hold its connection, and the
    server's exit, for ever. A write that waits longer than ``seconds`` closes the
    connection (hypercorn has no setting for it; its TCPServer is subclassed)."""
    from hypercorn.events import Closed, RawData
    from hypercorn.trio import run
    from hypercorn.trio.tcp_server import TCPServer

    class TimedTCPServer(TCPServer):
        async def protocol_send(self, event: Any) -> None:
            if not isinstance(event, RawData):
                await super().protocol_send(event)
                return
            closed = False
            async with self.send_lock:
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(seconds) as late:
                        try:
                            await self.stream.send_all(event.data)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            closed = True
                    if late.cancelled_caught:
                        await self.stream.aclose()
                        closed = True
            if closed:
                await self.protocol.handle(Closed())

    run.TCPServer = TimedTCPServer  # type: ignore[attr-defined]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(environ: Mapping[str, str], token_file: Path | None) -> str | None:
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as e:
            raise UsageError(f"cannot read --token-file {token_file}: {e.strerror}") from None
        if not token:
            raise UsageError(f"--token-file {token_file} is empty")
        return token
    return environ.get("VOICESTREAM_TOKEN") or None


def check(config: Config, source: str, token: str | None, environ: Mapping[str, str]) -> None:
    """Refuse a configuration the server cannot run with, before it listens."""
    host = config.server.host
    if not is_loopback(host) and token is None:
        raise UsageError(
            f"serving on {host} (not loopback) needs a token: set VOICESTREAM_TOKEN or "
            "--token-file, or bind to 127.0.0.1"
        )
    if source == "stdin":
        raise UsageError(
            "serve answers prompts from HTTP: choose --source anthropic, openai or demo"
        )
    check_source(source, config, "?", environ)


async def serve(
    config: Config,
    source: str,
    token: str | None,
    *,
    environ: Mapping[str, str] | None = None,
    task_status: trio.TaskStatus[tuple[Server, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server until SIGTERM or Ctrl-C; report ``(server, port)`` once it
    listens. Its ``exit_code`` is then 0 (SIGTERM) or 130 (Ctrl-C)."""
    from hypercorn.config import Config as HypercornConfig
    from hypercorn.trio import serve as hypercorn_serve

    time_out_writes(config.server.send_timeout_s)
    server = Server(config, source, token, environ)
    synthesizer = await server.synthesizer(None, None)  # the engine loads before listening
    server.sample_rate = synthesizer.sample_rate
    hyper = HypercornConfig()
    hyper.bind = [f"{config.server.host}:{config.server.port}"]
    hyper.graceful_timeout = 3.0
    hyper.backlog = 2048  # a burst of connections waits in the queue, not in SYN retries
    hyper.accesslog = None
    hyper.errorlog = None
    received: list[int] = []

    async def signals() -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as incoming:
            async for signum in incoming:
                received.append(signum)
                server.shut_down()
                return

    async with trio.open_nursery() as nursery:
        server.nursery = nursery
        nursery.start_soon(signals)
        binds = await nursery.start(
            lambda task_status: hypercorn_serve(
                server.app, hyper, shutdown_trigger=server.stopped.wait, task_status=task_status
            )
        )
        port = int(binds[0].rsplit(":", 1)[1])
        task_status.started((server, port))
        await server.stopped.wait()
        # Hypercorn stops listening and gives open streams graceful_timeout to end
        # (each has its last event by now); then whatever is left is cancelled.
        nursery.cancel_scope.deadline = trio.current_time() + hyper.graceful_timeout + 1
    if received and received[0] == signal.SIGINT:
        server.exit_code = stopping.exit_code(signal.SIGINT)
