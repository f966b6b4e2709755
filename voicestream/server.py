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
    DELETE /v1/answers/{id}            stop now (barge-in); 409 once finished
    GET    /v1/voices                  the engine, its voices, the default
    WS     /v1/talk                    a conversation over one socket (voicestream.talk)
    GET    /healthz, /metrics, /       liveness, Prometheus, the web page

Events: ``text`` {text}, ``chunk`` {index, text, audio_start_s, audio_s, words:
[{offset, length, audio_start_s, estimated}]} (where each word starts),
``notice`` {message}, then one ``done`` {stop_reason, metrics} or ``error``
{message}; every event has an increasing ``id``, and nothing follows the last.
A finished answer stays for ``retention_s`` (the newest ``max_finished`` of them)
so that a client can still resume; one that no client has been attached to for
``grace_s`` is stopped.

Everything from the network is hostile: :mod:`voicestream.guard` checks Host,
Origin, content type and token at the door; bodies are bounded in size and time;
fields are checked before anything is opened; an answer's failure, whatever it
is, ends that answer with an ``error`` event and is logged, and nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import math
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute

from . import stopping
from .audio import Audio
from .chunker import ResumedChunker
from .config import Config, ServerConfig
from .errors import UsageError, redact, root_cause
from .guard import Guard
from .relay import FINAL, AnswerLog, Claim, Fenced, Gone, Item, Relay, RelayDown, open_relay
from .relay.memory import MemoryRelay
from .runner import Answer, Chunk, Event, Finished, Notice, Text, chunker_config
from .sinks import ClockedSink
from .sources import Replayed, Source, check_source, check_text, open_source
from .synthesizers import Synthesizer
from .talk import PATH as TALK
from .talk import Talk
from .voices import Busy, Voices, default_pool

log = logging.getLogger("voicestream.server")

MAX_BODY = 64 * 1024
MAX_EVENT_ID_DIGITS = 18
WRITE_BYTES = 32 * 1024  # the most audio handed to a client at once
STREAMING_SIZE = 0xFFFFFFFF  # a WAV header's sizes while the length is unknown
SHUTDOWN = "the server is shutting down; ask again in a moment"
FAILED = "the answer failed on the server (its log says why)"
LISTEN_FD = "VOICESTREAM_LISTEN_FD"  # set by voicestream.workers: listen on this socket


class Cut(Exception):
    """End this client's response now, without its end: the client sees the
    transfer broken (an error of its own), not a clean end."""


class RelaySink(ClockedSink):
    """The answer's audio, played to a clock ``lead_s`` ahead of real time, as a
    speaker would. A chunk is published whole, with its ``chunk`` event, when its
    first block plays: what the relay holds always ends at a chunk's end."""

    def __init__(self, live: Live, lead_s: float) -> None:
        self.live = live
        self.lead_s = lead_s
        self.samples = live.audio_base  # where the next block starts

    async def write(self, audio: Audio) -> None:
        self.live.played(self.samples)
        self.samples += len(audio.samples)
        await self.play(audio.seconds)

    async def drain(self) -> None:
        pass  # the answer is over once its audio is out; readers take it at their pace


def wav_header(rate: int, data_bytes: int | None = None) -> bytes:
    """A WAV header for ``data_bytes`` of audio; for a stream of unknown length
    (None), both sizes at their maximum (what players and decoders read as "until
    the end of the stream")."""
    riff = STREAMING_SIZE if data_bytes is None else 36 + data_bytes
    data = STREAMING_SIZE if data_bytes is None else data_bytes
    return (
        b"RIFF"
        + riff.to_bytes(4, "little")
        + b"WAVEfmt "
        + (16).to_bytes(4, "little")
        + (1).to_bytes(2, "little")  # PCM
        + (1).to_bytes(2, "little")  # mono
        + rate.to_bytes(4, "little")
        + (rate * 2).to_bytes(4, "little")
        + (2).to_bytes(2, "little")
        + (16).to_bytes(2, "little")
        + b"data"
        + data.to_bytes(4, "little")
    )


@dataclass
class Live:
    """An answer this process speaks (owns): what it has yet to publish to the
    relay. A taken-over answer starts where its first owner's left off: at event
    ``next_id``, chunk ``chunk_base``, sample ``audio_base``, its first ``said``
    characters of text published already."""

    id: str
    rate: int
    environ: Mapping[str, str]  # its secrets are redacted from every event
    voice: str  # the key its synthesizer was acquired with (Voices.release)
    started: float
    log: AnswerLog | None = None  # this process's copy, when the relay keeps it here
    next_id: int = 1
    chunk_base: int = 0
    audio_base: int = 0
    said: int = 0
    answer: Answer = field(init=False)
    pending: list[Item] = field(default_factory=list)
    unplayed: list[tuple[int, list[Item]]] = field(default_factory=list)  # by first sample
    synthesized: int = 0  # samples
    ended: bool = False  # its last event is pending or published
    frozen: bool = False  # handed over: nothing more is published
    _changed: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self.synthesized = self.audio_base

    # What tests and the page's own readers look at, while the relay is this process.
    @property
    def events(self) -> list[tuple[int, str, str]]:
        return self.log.events if self.log is not None else []

    @property
    def finished(self) -> bool:
        return self.log.finished if self.log is not None else self.ended

    @property
    def finished_at(self) -> float | None:
        return self.log.finished_at if self.log is not None else None

    def emit(self, name: str, data: Mapping[str, Any]) -> None:
        if self.ended or self.frozen:
            return  # nothing follows the last event
        self.pending.append(Item(self.next_id, name, json.dumps(data)))
        self.next_id += 1
        self.ended = name in FINAL
        if self.ended:
            self.unplayed.clear()  # never played: never heard
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def played(self, sample: int) -> None:
        """The block from ``sample`` plays: publish the chunks that start by then."""
        while self.unplayed and self.unplayed[0][0] <= sample and not self.frozen:
            _, items = self.unplayed.pop(0)
            for item in items:
                if not item.audio:
                    item = Item(self.next_id, item.name, item.data)
                    self.next_id += 1
                self.pending.append(item)
            self._wake()

    async def batches(self) -> AsyncIterator[list[Item]]:
        """What to publish, in order, all that is waiting at once; ends after the last
        event (or when handed over)."""
        while True:
            if self.pending:
                batch, self.pending = self.pending, []
                yield batch
            elif self.ended or self.frozen:
                return
            else:
                await self._changed.wait()

    def on_event(self, event: Event) -> None:
        if isinstance(event, Text):
            text = event.text
            if self.said:  # published by the answer's first owner
                skip = min(self.said, len(text))
                text, self.said = text[skip:], self.said - skip
            if text:
                self.emit("text", {"text": text})
        elif isinstance(event, Chunk):
            start = self.synthesized
            samples = round(event.audio_s * self.rate)
            self.synthesized += samples
            start_s = start / self.rate
            words = [
                {
                    "offset": w.offset,
                    "length": w.length,
                    "audio_start_s": start_s + w.sample / event.rate,
                    "estimated": w.estimated,
                }
                for w in event.words
            ]
            data = {
                "index": self.chunk_base + event.index,
                "text": event.text,
                "audio_start_s": start_s,
                "audio_s": event.audio_s,
                "words": words,
            }
            pcm = b"" if event.audio is None else event.audio.samples.astype("<i2").tobytes()
            items = [Item(0, "chunk", json.dumps(data))]
            if pcm:
                items.append(Item(start, pcm=pcm))
            self.unplayed.append((start, items))
        elif isinstance(event, Notice):
            self.emit("notice", {"message": redact(event.message, self.environ)})
        elif isinstance(event, Finished):
            if event.error is not None:
                self.emit("error", {"message": redact(event.error, self.environ)})
            else:
                reason = event.metrics.get("source", {}).get("stop_reason", "end_turn")
                stop_reason = "stopped" if event.outcome == "stopped" else reason
                self.emit("done", {"stop_reason": stop_reason, "metrics": event.metrics})


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
        self.underruns.inc(live.answer.sink.underruns)
        if m.ttft_s is not None:
            self.ttft.observe(m.ttft_s)
        if m.ttfa_s is not None:
            self.ttfa.observe(m.ttfa_s)


class BadRequest(Exception):
    def __init__(self, status: int, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def parse_request(body: bytes, server: ServerConfig) -> dict[str, Any]:
    """The POST body's fields, checked; :class:`BadRequest` (422) says what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest(422, "the body is not JSON (or is nested too deeply)") from None
    if not isinstance(data, dict):
        raise BadRequest(422, 'the body must be a JSON object with a "prompt"')
    unknown = set(data) - {"prompt", "history", "voice", "rate"}
    if unknown:
        raise BadRequest(422, f"unknown field(s): {', '.join(sorted(unknown))[:200]}")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest(422, '"prompt" must be a non-empty string')
    if len(prompt) > server.max_prompt_chars:
        raise BadRequest(422, f'"prompt" is longer than {server.max_prompt_chars} characters')
    history = data.get("history", [])
    if not isinstance(history, list) or not all(
        isinstance(turn, dict)
        and set(turn) == {"role", "content"}
        and turn["role"] == ("user", "assistant")[i % 2]
        and isinstance(turn["content"], str)
        for i, turn in enumerate(history)
    ):
        raise BadRequest(
            422,
            '"history" must be a list of {"role", "content"} turns, user and assistant in turn',
        )
    if len(history) % 2:
        raise BadRequest(422, '"history" must end with an assistant turn')
    voice = data.get("voice")
    if voice is not None and not (isinstance(voice, str) and 0 < len(voice) <= 200):
        raise BadRequest(422, '"voice" must be a voice\'s name (GET /v1/voices lists them)')
    rate = data.get("rate")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not 80 <= rate <= 500
    ):
        raise BadRequest(422, '"rate" must be words per minute, from 80 to 500')
    try:
        check_text(prompt, '"prompt"')
        for i, turn in enumerate(history):
            check_text(turn["content"], f'turn {i + 1} of "history"')
        check_text(voice or "", '"voice"')
    except UsageError as e:
        raise BadRequest(422, str(e)) from None
    return {
        "prompt": prompt,
        "history": history,
        "voice": voice,
        "rate": None if rate is None else round(rate),
    }


def event_id(raw: str) -> int:
    """A ``Last-Event-ID``: a whole number in ASCII digits ("²" is a digit to Python)."""
    if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_EVENT_ID_DIGITS):
        raise BadRequest(422, "Last-Event-ID must be an event id (a whole number)")
    return int(raw)


class Server:
    """The answers this process speaks, and the HTTP app; runs inside a trio
    nursery. Every answer, its events and its audio are in the relay (this
    process's memory by default; Redis with ``--relay``): the server keeps only
    what it has yet to publish of the answers it speaks."""

    def __init__(
        self,
        config: Config,
        source: str,
        token: str | None,
        environ: Mapping[str, str] | None = None,
        relay: Relay | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.token = token
        self.environ = dict(os.environ if environ is None else environ)
        if token is not None:  # a token from --token-file is redacted like the others
            self.environ["VOICESTREAM_TOKEN"] = token
        self.relay: Relay = relay if relay is not None else MemoryRelay(config.server)
        self.answers: dict[str, Live] = {}  # the ones this process speaks now
        self.starting = 0  # answers admitted, not yet in self.answers
        self.metrics = Metrics()
        self.nursery: trio.Nursery | None = None
        self.closing = False
        self.stopped = trio.Event()  # set: stop listening, end the streams, return
        self.sample_rate = 22050
        pool = config.server.engines_per_voice or default_pool(config.voice)
        self.voices = Voices(config.voice, config.server.max_voices, pool)
        self.exit_code = 0
        self.app = self._app()

    # -- answers ----------------------------------------------------------------

    @property
    def running(self) -> list[Live]:
        return [live for live in self.answers.values() if not live.finished]

    def per_answer_bytes(self) -> int:
        return int(self.config.server.window_s * self.sample_rate) * 2

    def limit(self) -> tuple[int, str]:
        """How many answers may run at once, everywhere, and which setting says so."""
        server = self.config.server
        by_budget = int(server.budget_mb * 2**20) // self.per_answer_bytes()
        if server.max_answers <= by_budget:
            return server.max_answers, (
                f"{server.max_answers} answers are running (--max-answers); ask again soon"
            )
        return by_budget, "the server's audio budget (server.budget_mb) is taken; ask again soon"

    def admits(self) -> str | None:
        """Why a new answer cannot start here now, before asking the relay (None: ask)."""
        if self.closing:
            return SHUTDOWN
        held = self.relay.held() + self.per_answer_bytes() * (len(self.running) + self.starting + 1)
        if held > self.config.server.budget_mb * 2**20:
            return self.limit()[1]
        return None

    def refuse(self, why: str) -> BadRequest:
        self.metrics.refused.inc()
        return BadRequest(503, why, **{"Retry-After": "5"})

    async def admit(self, request: dict[str, Any]) -> Live:
        """Start an answer if there is room: the slot is taken before anything awaits,
        so a burst cannot pass ``max_answers``; :class:`BadRequest` says why not."""
        refused = self.admits()
        if refused is not None:
            raise self.refuse(refused)
        self.starting += 1
        try:
            return await self.start_answer(request)
        except UsageError as e:
            raise BadRequest(422, str(e)) from None
        except Busy as e:
            raise self.refuse(str(e)) from None
        except RelayDown as e:
            raise self.refuse(f"{e}; ask again in a moment") from None
        finally:
            self.starting -= 1

    async def start_answer(self, request: dict[str, Any]) -> Live:
        source = open_source(
            self.source, self.config, request["prompt"], self.environ, request["history"]
        )
        voice, synthesizer = await self.voices.acquire(request["voice"], request["rate"])
        try:
            answer_id = secrets.token_urlsafe(18)
            limit, why = self.limit()
            if not await self.relay.admit(answer_id, request, synthesizer.sample_rate, limit):
                raise self.refuse(why)
        except BaseException:
            self.voices.release(voice)
            raise
        live = Live(answer_id, synthesizer.sample_rate, self.environ, voice, trio.current_time())
        self._launch(live, source, synthesizer)
        return live

    def _launch(
        self, live: Live, source: Source, synthesizer: Synthesizer, chunker: Any = None
    ) -> None:
        assert self.nursery is not None
        if isinstance(self.relay, MemoryRelay):
            live.log = self.relay.logs[live.id]
        sink = RelaySink(live, self.config.server.lead_s)
        live.answer = Answer(
            source, synthesizer, sink, self.config, on_event=live.on_event, chunker=chunker
        )
        self.answers[live.id] = live
        self.metrics.total.inc()
        self.nursery.start_soon(self._run, live)

    async def take_over(self, claim: Claim) -> bool:
        """Speak on an answer whose owner went away, from its last published chunk: the
        model's stream is reopened after the text published so far (the source's own
        resume), that text is chunked again, and what was spoken of it is skipped.
        False when this process cannot (it gave the answer back for another)."""
        last = claim.events[-1] if claim.events else (0, "", "")
        if last[1] in FINAL:  # its owner went away between its last event and its end
            await self.relay.finish(claim.id)
            return True
        request = claim.request
        texts = [json.loads(data)["text"] for _, name, data in claim.events if name == "text"]
        spoken = [json.loads(data)["text"] for _, name, data in claim.events if name == "chunk"]
        said = "".join(texts)
        try:
            source = open_source(
                self.source, self.config, request["prompt"], self.environ, request["history"],
                resume_from=said,
            )  # fmt: skip
            voice, synthesizer = await self.voices.acquire(request["voice"], request["rate"])
        except (UsageError, Busy) as e:
            log.warning("cannot take over answer %s here (%s); leaving it to another", claim.id, e)
            await self.relay.release(claim.id)
            return False
        live = Live(
            claim.id, synthesizer.sample_rate, self.environ, voice, trio.current_time(),
            next_id=last[0] + 1, chunk_base=len(spoken), audio_base=claim.audio_end,
            said=len(said),
        )  # fmt: skip
        replayed = Replayed(texts, source)
        replayed.notices.append(
            f"the server process speaking this answer went away; another took over after "
            f"{claim.audio_end / synthesizer.sample_rate:.1f} s of audio"
        )
        chunker = ResumedChunker(chunker_config(self.config.chunker, synthesizer), spoken)
        self._launch(live, replayed, synthesizer, chunker)
        if claim.stop:
            live.answer.stop()
        log.warning("took over answer %s from a server process that went away", claim.id)
        return True

    async def stop_answer(self, answer_id: str) -> str | None:
        """Stop an answer wherever it runs: here at once, elsewhere through the relay.
        Its state before ("running", "finished"; None: no such answer)."""
        live = self.answers.get(answer_id)
        if live is not None and not live.finished:
            live.answer.stop()
        return await self.relay.stop(answer_id)

    async def _run(self, live: Live) -> None:
        self.metrics.active.inc()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._publish, live)
                try:
                    async with trio.open_nursery() as speaking:
                        speaking.start_soon(self._keep_alive, live)
                        await live.answer.run()
                        speaking.cancel_scope.cancel()
                except (Fenced, RelayDown):
                    raise
                except Exception:  # whatever it is, it ends this answer and nothing else
                    log.exception("answer %s failed", live.id)
                    live.emit("error", {"message": FAILED})
            if live.frozen:
                await self.relay.release(live.id)
            else:
                await self.relay.finish(live.id)
        except Fenced:
            log.warning("answer %s was taken over by another server process", live.id)
        except RelayDown as e:
            log.warning("answer %s ended: %s", live.id, e)
        except Exception:  # the relay refused a write: a bug, and this answer's alone
            log.exception("answer %s could not be published", live.id)
        finally:
            self.voices.release(live.voice)
            self.metrics.active.dec()
            self.metrics.finished(live)
            self.answers.pop(live.id, None)

    async def _publish(self, live: Live) -> None:
        async for batch in live.batches():
            await self.relay.publish(live.id, batch)

    async def _keep_alive(self, live: Live) -> None:
        """Renew the answer's lease; stop it when no client anywhere has listened for
        ``grace_s``; :class:`Fenced` when another process took it over."""
        server = self.config.server
        grace = server.grace_s
        tick = min(server.lease_s / 3, grace / 4 if grace else 0.05, 1.0)
        while True:
            await trio.sleep(tick)
            if not await self.relay.renew(live.id):
                raise Fenced(f"answer {live.id} has another owner")
            alone = trio.current_time() - live.started >= grace
            if alone and not await self.relay.watched(live.id, grace):
                live.answer.stop()
                live.answer.source.notices.append(
                    f"no client was attached for {grace:g} s (server.grace_s): stopped"
                )
                return

    async def _stops(self) -> None:
        """Stop the answers other processes were asked to stop (DELETE elsewhere)."""
        async for answer_id in self.relay.stops():
            live = self.answers.get(answer_id)
            if live is not None:
                live.answer.stop()

    async def _claims(self) -> None:
        """Take over, one by one, the answers whose owner went away."""
        while not self.closing:
            await trio.sleep(self.config.server.lease_s / 4)
            try:
                while not self.closing and (claim := await self.relay.claim()) is not None:
                    if not await self.take_over(claim):
                        break  # full here: the one given back waits for the next round
            except RelayDown:
                continue

    def attach(self, live: Live) -> None:
        assert live.log is not None
        live.log.attach()

    def detach(self, live: Live) -> None:
        assert live.log is not None
        live.log.detach()

    def shut_down(self) -> None:
        """Stop taking answers; end every running one with an ``error`` event (or,
        with a shared relay, hand it to another process); return from :func:`serve`
        once they have ended (a few seconds at most)."""
        self.closing = True
        for live in self.running:
            if isinstance(self.relay, MemoryRelay):
                live.emit("error", {"message": SHUTDOWN})
            else:
                live.frozen = True
                live._wake()
            live.answer.stop()
        self.stopped.set()

    # -- HTTP -------------------------------------------------------------------

    def _app(self) -> Any:
        server = self.config.server
        retention = f"{server.retention_s:g} s"

        def error(status: int, message: str, **headers: str) -> Response:
            return JSONResponse(
                {"error": redact(message, self.environ)}, status, headers=headers or None
            )

        def handled(handler: Any) -> Any:
            async def endpoint(request: Any) -> Response:
                try:
                    response: Response = await handler(request)
                except BadRequest as e:
                    return error(e.status, str(e), **e.headers)
                except RelayDown as e:
                    return error(503, f"{e}; ask again in a moment", **{"Retry-After": "5"})
                except Exception as e:  # a bug: one 500 and the traceback in the log
                    log.exception("%s %s failed", request.method, request.url.path)
                    return error(500, f"the server failed: {type(e).__name__} (its log says why)")
                return response

            return endpoint

        async def find(request: Any) -> AnswerLog:
            answer = await self.relay.log(request.path_params["answer_id"])
            if answer is None:
                raise BadRequest(
                    404,
                    f"no such answer (a finished answer is kept for {retention}, "
                    f"the newest {server.max_finished})",
                )
            return answer

        async def read_body(request: Any) -> bytes:
            declared = request.headers.get("content-length", "")
            too_big = BadRequest(413, f"the body is over {MAX_BODY // 1024} KB", Connection="close")
            if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY:
                raise too_big
            body = bytearray()
            with trio.move_on_after(server.body_timeout_s):
                async for piece in request.stream():
                    body += piece
                    if len(body) > MAX_BODY:
                        raise too_big
                return bytes(body)
            raise BadRequest(
                408, f"the body did not arrive within {server.body_timeout_s:g} s",
                Connection="close",
            )  # fmt: skip

        async def create(request: Any) -> Response:
            fields = parse_request(await read_body(request), server)
            live = await self.admit(fields)
            base = f"/v1/answers/{live.id}"
            return JSONResponse(
                {"id": live.id, "events": f"{base}/events", "audio": f"{base}/audio"}, 201
            )

        async def events(request: Any) -> Response:
            answer = await find(request)
            raw = request.headers.get("last-event-id") or request.query_params.get(
                "last_event_id", "0"
            )
            last = event_id(raw)
            heartbeat = server.heartbeat_s

            async def body() -> AsyncIterator[str]:
                answer.attach()
                try:
                    async for event in answer.events_after(last, heartbeat):
                        yield event
                finally:
                    answer.detach()

            return Stream(
                body(),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"} | CLOSE,
            )

        async def audio(request: Any) -> Response:
            answer = await find(request)
            try:
                from_s = float(request.query_params.get("from_s", "0"))
            except ValueError:
                from_s = math.nan
            if not (math.isfinite(from_s) and from_s >= 0):
                raise BadRequest(422, "from_s must be seconds, 0 or more")
            stream = answer.audio
            offset = min(int(from_s * stream.rate) * 2, stream.end if stream.closed else 2**62)
            gone = stream.gone(offset)
            if gone is not None:
                raise BadRequest(410, gone)
            # A complete answer has a length: real sizes in the header, Content-Length.
            length = stream.end - offset if stream.closed else None
            headers = {"Cache-Control": "no-cache"} | CLOSE
            if length is not None:
                headers["Content-Length"] = str(44 + length)

            async def body() -> AsyncIterator[bytes]:
                nonlocal offset
                answer.attach()
                try:
                    yield wav_header(stream.rate, length)
                    while True:
                        try:
                            data = await stream.read(offset)
                        except Gone as e:  # fell behind the window: cut off
                            log.info("an audio reader of %s fell behind: %s", answer.id, e)
                            raise Cut from e
                        if not data:
                            return
                        for at in range(0, len(data), WRITE_BYTES):  # a slow reader makes
                            piece = data[at : at + WRITE_BYTES]  # progress within the
                            offset += len(piece)  # send timeout, write by write
                            yield piece
                finally:
                    answer.detach()

            return Stream(body(), media_type="audio/wav", headers=headers)

        async def stop(request: Any) -> Response:
            try:
                state = await self.stop_answer(request.path_params["answer_id"])
            except RelayDown as e:
                raise self.refuse(f"{e}; ask again in a moment") from None
            if state is None:
                await find(request)  # the 404
            if state == "finished":
                raise BadRequest(409, "the answer has finished already; nothing to stop")
            return Response(status_code=204)

        async def voices(request: Any) -> Response:
            return JSONResponse(self.voices.listing())

        async def healthz(request: Any) -> Response:
            why = await self.relay.health()
            if why is not None:
                return JSONResponse({"ok": False, "relay": self.relay.name, "error": why}, 503)
            shared = self.relay.name != "memory"  # which process answered, among several
            return JSONResponse(
                {"ok": True, "answers": len(self.running), "relay": self.relay.name}
                | {"source": self.source}
                | ({"process": os.getpid()} if shared else {})
            )

        async def metrics(request: Any) -> Response:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            self.metrics.buffered.set(self.relay.held())
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

        routes = [
            Route("/v1/answers", create, methods=["POST"]),
            Route("/v1/answers/{answer_id}/events", events, methods=["GET"]),
            Route("/v1/answers/{answer_id}/audio", audio, methods=["GET"]),
            Route("/v1/answers/{answer_id}", stop, methods=["DELETE"]),
            Route("/v1/voices", voices, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/", page, methods=["GET"]),
            Route("/web/{name}", page, methods=["GET"]),
        ]
        guard = Middleware(
            Guard,
            bound=server.host,
            token=self.token,
            allowed_hosts=server.allowed_hosts,
            allowed_origins=server.allowed_origins,
        )

        async def talk(websocket: Any) -> None:
            try:
                await Talk(self, websocket).run()
            except Exception:  # a bug: this socket ends, and nothing else
                log.exception("a %s socket failed", TALK)

        return Starlette(
            routes=[Route(r.path, handled(r.endpoint), methods=r.methods) for r in routes]
            + [WebSocketRoute(TALK, talk)],
            middleware=[guard],
        )


CLOSE = {"Connection": "close"}  # a stream's connection ends with it (no idle keep-alive)


class Stream(StreamingResponse):
    """A streaming response that a :class:`Cut` ends without its end."""

    async def stream_response(self, send: Any) -> None:
        with contextlib.suppress(Cut):  # the connection closes with the body unfinished
            await super().stream_response(send)


def time_out_writes(seconds: float) -> None:
    """Mend two faults of hypercorn's trio connections (its TCPServer is subclassed;
    it has no setting for either):

    - it writes in a shielded scope with no deadline, so a client that stops reading
      would hold its connection, and the server's exit, for ever: a write that
      waits longer than ``seconds`` closes the connection;
    - it closes a connection, or starts its keep-alive timer, from inside the
      response's own task, which Starlette cancels as soon as the client's
      disconnect event reaches it: the close was cancelled half-done and a
      connection whose stream had ended stayed open for ever. Closing and the idle
      timer are shielded here.
    """
    from hypercorn.events import Closed, RawData
    from hypercorn.trio import run
    from hypercorn.trio.tcp_server import TCPServer

    class TimedTCPServer(TCPServer):
        async def protocol_send(self, event: Any) -> None:
            if not isinstance(event, RawData):
                with trio.CancelScope(shield=True):  # quick, and never half-done
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


def cannot_listen(error: OSError, server: ServerConfig) -> Exception:
    """The one line for a port or address the server cannot listen on."""
    where = f"{server.host}:{server.port}"
    if error.errno == errno.EADDRINUSE:
        return UsageError(f"port {server.port} is in use ({where}): choose another with --port")
    if error.errno == errno.EACCES:
        return UsageError(f"no permission to listen on {where}: choose a port above 1023 (--port)")
    if error.errno == errno.EADDRNOTAVAIL:
        return UsageError(f"{server.host} is not an address of this machine: check --host")
    return error


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (tests swap it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _Redacting(logging.Formatter):
    """One line a record (and its traceback), with every secret cut out."""

    def __init__(self, fmt: str, environ: Mapping[str, str]) -> None:
        super().__init__(fmt)
        self.environ = environ

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.environ)


def configure_logging(server: ServerConfig, environ: Mapping[str, str]) -> logging.Logger | None:
    """The server's log on stderr at ``log_level`` (unexpected errors with their
    traceback), secrets redacted; the access logger when ``access_log`` asks for one."""
    errors = _Stderr()
    errors.setFormatter(_Redacting("voicestream: %(levelname)s: %(message)s", environ))
    for name in ("voicestream.server", "hypercorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [errors]
        logger.propagate = False
        logger.setLevel(server.log_level.upper())
    if not server.access_log:
        return None
    access = logging.getLogger("hypercorn.access")
    target: logging.Handler
    target = _Stderr() if server.access_log == "-" else logging.FileHandler(server.access_log)
    target.setFormatter(_Redacting("%(message)s", environ))
    access.handlers = [target]
    access.propagate = False
    access.setLevel(logging.INFO)
    return access


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
    if config.server.relay:
        from .relay.redis import check_url

        check_url(config.server.relay)
    elif config.server.workers > 1:
        raise UsageError(
            f"--workers {config.server.workers} needs a relay the processes share: add "
            '--relay redis://HOST:PORT/DB (see the README\'s "More than one process")'
        )
    log_file = config.server.access_log
    if log_file not in ("", "-"):
        try:
            with open(log_file, "a"):
                pass
        except OSError as e:
            raise UsageError(f"cannot write the access log {log_file}: {e.strerror}") from None


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
    async with open_relay(config.server) as relay:
        server = Server(config, source, token, environ, relay)
        await _serve(server, hypercorn_serve, HypercornConfig(), task_status)


async def _serve(
    server: Server, hypercorn_serve: Any, hyper: Any, task_status: trio.TaskStatus[Any]
) -> None:
    config = server.config
    access = configure_logging(config.server, server.environ)
    synthesizer = await server.voices.start()  # the engine loads before listening
    server.sample_rate = synthesizer.sample_rate
    listen_fd = server.environ.get(LISTEN_FD, "")  # a worker of voicestream.workers
    hyper.bind = [
        f"fd://{listen_fd}" if listen_fd else f"{config.server.host}:{config.server.port}"
    ]
    hyper.graceful_timeout = 3.0
    hyper.backlog = 2048  # a burst of connections waits in the queue, not in SYN retries
    hyper.websocket_max_message_size = MAX_BODY  # a /v1/talk frame is bounded as a body is
    hyper.accesslog = access
    hyper.errorlog = logging.getLogger("hypercorn.error")
    received: list[int] = []
    listening = trio.CancelScope()  # for signals: ended once the server has stopped

    async def signals() -> None:
        with listening, trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as incoming:
            async for signum in incoming:
                received.append(signum)
                server.shut_down()
                return

    async with trio.open_nursery() as nursery:
        server.nursery = nursery
        nursery.start_soon(signals)
        try:
            binds = await nursery.start(
                lambda task_status: hypercorn_serve(
                    server.app, hyper, shutdown_trigger=server.stopped.wait, task_status=task_status
                )
            )
        except Exception as e:  # hypercorn's nursery wraps it in a group
            cause = root_cause(e)
            if isinstance(cause, OSError):
                raise cannot_listen(cause, config.server) from None
            raise
        port = int(binds[0].rsplit(":", 1)[1])
        task_status.started((server, port))
        async with trio.open_nursery() as background:
            background.start_soon(server._stops)
            if not isinstance(server.relay, MemoryRelay):
                background.start_soon(server._claims)
            await server.stopped.wait()
            background.cancel_scope.cancel()
        # Hypercorn stops listening and gives open streams graceful_timeout to end
        # (each has its last event by now); then whatever is left is cancelled. The
        # answers end (or are handed over) meanwhile; then nothing waits for a signal.
        nursery.cancel_scope.deadline = trio.current_time() + hyper.graceful_timeout + 1
        while server.answers:
            await trio.sleep(0.05)
        listening.cancel()
    if received and received[0] == signal.SIGINT:
        server.exit_code = stopping.exit_code(signal.SIGINT)
