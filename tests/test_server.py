"""``voicestream serve``: the real server on 127.0.0.1, driven over HTTP, with the
loopback Anthropic stand-in upstream (the real SDK talks to it) and real espeak-ng."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import signal
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import numpy as np
import pytest
import trio
import trio.testing
from conftest import Cli

from voicestream import server as serving
from voicestream.audio import Audio
from voicestream.config import Config, ServerConfig, VoiceConfig
from voicestream.relay import AnswerLog, AudioLog, Gone, Item
from voicestream.runner import Chunk
from voicestream.testing import FakeAnthropic, Script, wait_for
from voicestream.words import spans

KEY = "sk-ant-test-0123456789abcdefSECRET"
JSON = {"Content-Type": "application/json"}
TEXT = (
    "The first sentence is short. The second one takes a little longer to say aloud. "
    "And a third, to end."
)


def config(**server: Any) -> Config:
    # No pacing (tests run faster than speech), and room for many such answers at once.
    base = dict(lead_s=600.0, window_s=3600.0, budget_mb=1_000_000.0)
    return dataclasses.replace(
        Config(),
        server=dataclasses.replace(ServerConfig(), port=0, **(base | server)),
        voice=VoiceConfig(engine="espeak"),
    )


@asynccontextmanager
async def running(
    fake: FakeAnthropic,
    monkeypatch: pytest.MonkeyPatch,
    token: str | None = None,
    **server: Any,
) -> AsyncIterator[tuple[serving.Server, httpx2.AsyncClient]]:
    environ = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake.base_url}
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    async with trio.open_nursery() as nursery:
        live, port = await nursery.start(
            lambda task_status: serving.serve(
                config(**server), "anthropic", token, environ=environ, task_status=task_status
            )
        )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx2.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
        ) as client:
            yield live, client
        live.shut_down()


async def events(client: httpx2.AsyncClient, url: str, **headers: str) -> list[dict[str, Any]]:
    """Every event of a stream, parsed: ``{"id", "event", "data"}``."""
    out: list[dict[str, Any]] = []
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        event: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if not line:
                if event:
                    out.append(event)
                event = {}
            elif line.startswith("id: "):
                event["id"] = int(line[4:])
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
    return out


async def ask(client: httpx2.AsyncClient, prompt: str = "Say three sentences.") -> dict[str, Any]:
    response = await client.post("/v1/answers", json={"prompt": prompt})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_an_answer_streams_its_text_chunks_and_audio(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT, piece=3)
    async with running(fake_api, monkeypatch) as (_, client):
        created = await ask(client)
        assert len(created["id"]) >= 22  # unguessable: 18 random bytes
        got = await events(client, created["events"])
        audio = await client.get(created["audio"])
    kinds = [e["event"] for e in got]
    assert [e["id"] for e in got] == list(range(1, len(got) + 1))
    assert kinds[-1] == "done" and kinds.count("done") == 1 and "error" not in kinds
    assert "".join(e["data"]["text"] for e in got if e["event"] == "text") == TEXT
    assert got[-1]["data"]["stop_reason"] == "end_turn"
    assert got[-1]["data"]["metrics"]["ttfa_s"] > 0
    chunks = [e["data"] for e in got if e["event"] == "chunk"]
    assert [c["index"] for c in chunks] == list(range(len(chunks))) and len(chunks) >= 3
    for before, after in itertools.pairwise(chunks):
        assert after["audio_start_s"] == pytest.approx(before["audio_start_s"] + before["audio_s"])
    for c in chunks:  # every word marked, in order, inside its chunk's audio, by espeak-ng
        words = c["words"]
        assert [(w["offset"], w["length"]) for w in words] == spans(c["text"])
        starts = [w["audio_start_s"] for w in words]
        assert starts == sorted(starts)
        assert c["audio_start_s"] <= starts[0] and starts[-1] < c["audio_start_s"] + c["audio_s"]
        assert sum(w["estimated"] for w in words) <= 1
    # The audio of a complete answer: a WAV with its real length, then exactly the
    # chunks' audio, spoken.
    assert audio.headers["content-type"] == "audio/wav"
    body = audio.content
    assert body[:4] == b"RIFF" and body[8:16] == b"WAVEfmt " and body[36:40] == b"data"
    assert int(audio.headers["content-length"]) == len(body)
    assert int.from_bytes(body[4:8], "little") == len(body) - 8
    assert int.from_bytes(body[40:44], "little") == len(body) - 44
    with wave.open(io.BytesIO(body)) as read:  # what a player reads: the real length
        assert read.getnframes() == (len(body) - 44) // 2
    rate = int.from_bytes(body[24:28], "little")
    samples = np.frombuffer(body[44:], dtype="<i2")
    total = sum(c["audio_s"] for c in chunks)
    assert len(samples) == round(total * rate)
    loud = np.abs(samples.astype(np.int32)) > 500
    assert loud.mean() > 0.2  # speech, mostly: not silence


async def test_resuming_from_any_event_gives_exactly_the_rest(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT, piece=5)
    async with running(fake_api, monkeypatch) as (_, client):
        created = await ask(client)
        everything = await events(client, created["events"])
        last = len(everything)
        for after in (0, 1, 7, last - 1, last):
            rest = await events(client, created["events"], **{"Last-Event-ID": str(after)})
            assert rest == everything[after:]
        by_query = await events(client, created["events"] + "?last_event_id=3")
        assert by_query == everything[3:]
        bad = await client.get(created["events"], headers={"Last-Event-ID": "x"})
        assert bad.status_code == 422


async def test_resuming_mid_answer_misses_nothing_and_repeats_nothing(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT, piece=3, delay_s=0.02)
    async with running(fake_api, monkeypatch) as (_, client):
        created = await ask(client)
        seen: list[dict[str, Any]] = []
        async with client.stream("GET", created["events"]) as response:  # a dropped connection
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    seen.append({"id": int(line[4:])})
                if len(seen) == 5:
                    break
        rest = await events(client, created["events"], **{"Last-Event-ID": "5"})
    assert [e["id"] for e in rest] == list(range(6, 6 + len(rest)))
    assert rest[-1]["event"] == "done"


async def test_delete_stops_the_answer_and_closes_the_upstream_stream(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT * 20, piece=3, delay_s=0.02)
    async with running(fake_api, monkeypatch) as (server, client):
        created = await ask(client)
        async with client.stream("GET", created["events"]) as response:
            async for line in response.aiter_lines():
                if line.startswith("event: chunk"):
                    break  # speech has begun
        stopped = await client.delete(f"/v1/answers/{created['id']}")
        assert stopped.status_code == 204
        got = await events(client, created["events"])
        assert got[-1]["event"] == "done" and got[-1]["data"]["stop_reason"] == "stopped"
        await trio.to_thread.run_sync(
            wait_for, lambda: fake_api.requests[-1].outcome == "closed by client", 10
        )
        written = "".join(e["data"]["text"] for e in got if e["event"] == "text")
        assert len(written) < len(TEXT * 20) / 2  # it stopped early
        assert not server.running


async def test_requests_that_cannot_be_served_get_one_line_and_the_right_status(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT * 20, piece=3, delay_s=0.05)
    async with running(fake_api, monkeypatch, token="let-me-in", max_answers=1) as (_, client):
        async with httpx2.AsyncClient(base_url=client.base_url) as stranger:
            denied = await stranger.post("/v1/answers", json={"prompt": "hi"})
            assert denied.status_code == 401 and "Bearer" in denied.json()["error"]
            wrong = await stranger.get(
                "/v1/answers/x/events", headers={"Authorization": "Bearer nope"}
            )
            assert wrong.status_code == 401
            assert (await stranger.get("/healthz")).status_code == 200  # open, for probes
        big = await client.post(
            "/v1/answers", content=b'{"prompt": "' + b"a" * 70_000 + b'"}', headers=JSON
        )
        assert big.status_code == 413
        for body, complaint in (
            (b"not json", "not JSON"),
            (b"[1]", "object"),
            (b'{"prompt": ""}', "prompt"),
            (b'{"prompt": "hi", "rate": 5}', "rate"),
            (b'{"prompt": "hi", "history": [{"role": "assistant", "content": "x"}]}', "history"),
            (b'{"prompt": "hi", "colour": "red"}', "colour"),
            (b'{"prompt": "hi", "voice": "no-such-voice"}', "voice"),
        ):
            bad = await client.post("/v1/answers", content=body, headers=JSON)
            assert bad.status_code == 422, body
            message = bad.json()["error"]
            assert complaint in message and "\n" not in message
        assert (await client.get("/v1/answers/nothing-here/events")).status_code == 404
        assert (await client.delete("/v1/answers/nothing-here")).status_code == 404
        await ask(client)
        busy = await client.post("/v1/answers", json={"prompt": "and another"})
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) > 0
        assert "max-answers" in busy.json()["error"]


async def test_audio_resumes_from_any_second_and_quiet_streams_get_heartbeats(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT, piece=3)
    async with running(fake_api, monkeypatch, heartbeat_s=0.2) as (_, client):
        created = await ask(client)
        await events(client, created["events"])
        whole = (await client.get(created["audio"])).content
        rate = int.from_bytes(whole[24:28], "little")
        # Any second, not only round ones: the audio resumes on a whole sample (an odd
        # byte would turn every sample after it into noise).
        for from_s in (0.0, 1.5, 0.7371, 1 / rate, 2.5 / rate, 1.00002):
            tail = (await client.get(created["audio"] + f"?from_s={from_s!r}")).content
            start = 44 + int(from_s * rate) * 2
            assert tail[8:40] == whole[8:40] and tail[44:] == whole[start:], from_s
            assert int.from_bytes(tail[40:44], "little") == len(whole) - start
        assert (await client.get(created["audio"] + "?from_s=-1")).status_code == 422
        fake_api.script = Script(text=TEXT, piece=3, delay_s=0.3)  # a slow model
        slow = await ask(client)
        async with client.stream("GET", slow["events"]) as response:
            lines = []
            async for line in response.aiter_lines():
                lines.append(line)
                if line == ": heartbeat":
                    break
        await client.delete(f"/v1/answers/{slow['id']}")
    assert ": heartbeat" in lines


async def test_the_audio_budget_refuses_answers_instead_of_running_out_of_memory(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT * 20, piece=3, delay_s=0.05)
    # Each answer may keep 10 s of audio (441 KB); 1 MB holds two such windows.
    async with running(fake_api, monkeypatch, window_s=10.0, lead_s=5.0, budget_mb=1.0) as (
        _,
        client,
    ):
        first = await ask(client)
        second = await ask(client)
        refused = await client.post("/v1/answers", json={"prompt": "one more"})
        assert refused.status_code == 503 and "budget_mb" in refused.json()["error"]
        assert refused.headers["retry-after"]
        for created in (first, second):
            await client.delete(f"/v1/answers/{created['id']}")


async def test_the_key_never_appears_in_any_response(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(
        text=TEXT, piece=3, error_after=2, error_message=f"bad request from key {KEY}"
    )
    async with running(fake_api, monkeypatch) as (_, client):
        created = await ask(client)
        got = await events(client, created["events"])
        responses = [
            json.dumps(got),
            (await client.get(created["audio"])).text,
            (await client.get("/metrics")).text,
            (await client.get("/healthz")).text,
        ]
    assert got[-1]["event"] == "error"
    sent = {k.lower(): v for k, v in fake_api.requests[0].headers.items()}
    assert KEY in sent["authorization"]  # the key went upstream, and nowhere else
    assert not any(KEY in r or KEY[-12:] in r for r in responses)


async def test_audio_a_client_fell_too_far_behind_for_is_a_clear_error(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT * 3, piece=20)
    async with running(fake_api, monkeypatch, window_s=2.0, lead_s=1.0) as (server, client):
        created = await ask(client)
        live = server.answers[created["id"]].log
        await trio.to_thread.run_sync(wait_for, lambda: live.audio.first > 0, 20)
        late = await client.get(created["audio"])  # from the start: no longer kept
        assert late.status_code == 410 and "from_s" in late.json()["error"]

        newest = max(json.loads(d)["audio_s"] for _, name, d in live.events if name == "chunk")
        rate = live.audio.rate
        assert live.audio.held <= 2 * (int(2.0 * rate) + round(newest * rate))  # window + chunk
        current = live.audio.end / 2 / live.audio.rate
        async with client.stream("GET", f"{created['audio']}?from_s={current:.2f}") as fresh:
            assert fresh.status_code == 200 and "content-length" not in fresh.headers
            streamed = b""
            async for data in fresh.aiter_bytes():  # the header, then audio: enough
                streamed += data
                if len(streamed) > 44:
                    break
            assert streamed[40:44] == b"\xff\xff\xff\xff"  # length unknown while it plays
        await client.delete(f"/v1/answers/{created['id']}")


async def test_the_audio_log_keeps_a_window(clock: trio.testing.MockClock) -> None:
    log = AudioLog(rate=1000, window_s=2.0)
    for i in range(10):  # ten chunks of 0.5 s
        log.add(2 * 500 * i, np.full(500, i, dtype="<i2").tobytes())
    # The newest chunk (from 4.5 s) and the 2 s before it.
    assert log.held == int(2.5 * 1000) * 2 and log.first == int(2.5 * 1000) * 2
    kept = np.frombuffer(await log.read(log.first), dtype="<i2")
    assert list(kept[::500]) == [5, 6, 7, 8, 9]
    with pytest.raises(Gone, match="no longer kept"):
        await log.read(0)
    log.close()
    assert await log.read(log.end) == b""  # the end


async def test_a_chunk_is_published_whole_with_its_event_when_it_starts_to_play(
    clock: trio.testing.MockClock,
) -> None:
    live = serving.Live("a", 1000, {}, "voice", 0.0)
    sink = serving.RelaySink(live, lead_s=1.0)
    chunk = Audio(np.arange(2500, dtype=np.int16), 1000, "one")  # 2.5 s, played in 5 blocks
    live.on_event(Chunk(0, "one", 0.0, 2.5, (), 1000, chunk))
    assert not live.pending  # made, not yet playing: not published
    start = trio.current_time()
    for k in range(5):
        await sink.write(Audio(chunk.samples[500 * k : 500 * (k + 1)], 1000, "one"))
        if k == 0:
            event, audio = live.pending
            assert (event.id, event.name, audio.id) == (1, "chunk", 0)
            assert audio.pcm == chunk.samples.astype("<i2").tobytes()  # all of it, at once
    assert len(live.pending) == 2  # the later blocks add nothing
    assert trio.current_time() - start == pytest.approx(2.5 - 1.0)  # real time, 1 s ahead


async def test_an_event_added_while_a_reader_writes_is_sent_at_once(
    clock: trio.testing.MockClock,
) -> None:
    # The reader is busy sending the first event when the second is added: it must
    # not then wait for a third (or for the heartbeat, 15 s on) to send the second.
    log = AnswerLog("x", AudioLog(rate=1000, window_s=2.0))
    log.add([Item(1, "text", '{"text": "a"}')])
    sent: list[tuple[float, str]] = []
    async for block in log.events_after(0, heartbeat_s=15):
        sent.append((trio.current_time(), block))
        if len(sent) == 1:
            log.add([Item(2, "text", '{"text": "b"}')])
        if "id: 2" in block:
            break
    assert [t for t, _ in sent] == [0, 0] and "heartbeat" not in "".join(b for _, b in sent)


async def test_a_client_that_stops_reading_is_dropped(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT * 60, piece=40)  # minutes of speech: MBs of audio
    async with running(fake_api, monkeypatch, send_timeout_s=0.5) as (server, client):
        created = await ask(client)
        live = server.answers[created["id"]].log
        host, port = client.base_url.host, client.base_url.port
        stuck = await trio.open_tcp_stream(host, port)  # asks for the audio, never reads
        request = f"GET {created['audio']} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        await stuck.send_all(request.encode())
        await trio.to_thread.run_sync(wait_for, lambda: live.attached == 1, 10)
        await trio.to_thread.run_sync(wait_for, lambda: live.attached == 0, 60)  # dropped
        await stuck.aclose()
        await client.delete(f"/v1/answers/{created['id']}")


async def test_an_answer_nobody_listens_to_is_stopped_after_the_grace_time(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT * 20, piece=3, delay_s=0.05)
    async with running(fake_api, monkeypatch, grace_s=1.0) as (server, client):
        created = await ask(client)  # and never reads it
        await trio.to_thread.run_sync(
            wait_for,
            lambda: fake_api.requests and fake_api.requests[-1].outcome == "closed by client",
            20,
        )
        got = await events(client, created["events"])
        assert got[-1]["data"]["stop_reason"] == "stopped"
        assert any("grace_s" in e["data"]["message"] for e in got if e["event"] == "notice")
        assert not server.running


async def test_metrics_count_answers_in_the_prometheus_format(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT, piece=4)
    async with running(fake_api, monkeypatch) as (_, client):
        for _ in range(2):
            await events(client, (await ask(client))["events"])
        text = (await client.get("/metrics")).text
    from prometheus_client.parser import text_string_to_metric_families

    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["voicestream_answers_total"] == 2
    assert samples["voicestream_answers_active"] == 0
    assert samples["voicestream_ttfa_seconds_count"] == 2
    assert samples["voicestream_producer_timeouts_total"] == 0
    assert "voicestream_audio_buffered_bytes" in samples


def test_serving_beyond_loopback_needs_a_token(cli: Cli) -> None:
    done = cli.run("serve", "--source", "demo", "--host", "0.0.0.0", "--port", "0")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "VOICESTREAM_TOKEN" in done.stderr
    process = cli.popen(
        "serve", "--source", "demo", "--engine", "silent", "--host", "0.0.0.0", "--port", "0",
        VOICESTREAM_TOKEN="a-long-enough-token",
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = process.stderr.readline().decode()
        assert "serving demo answers on http://0.0.0.0:" in line  # with a token, it may
        assert "a-long-enough-token" not in line
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_sigterm_ends_every_stream_with_an_event_and_exits_0(cli: Cli) -> None:
    process = cli.popen(
        "serve", "--source", "demo", "--engine", "silent", "--port", "0",
        VOICESTREAM_DEMO_TOKENS_PER_S="20",
    )  # fmt: skip
    try:
        assert process.stderr is not None
        line = process.stderr.readline().decode()
        url = line.split(" on ")[1].split("/ ")[0]
        created = httpx2.post(f"{url}/v1/answers", json={"prompt": "hi"}).json()
        got: list[str] = []
        with httpx2.stream("GET", url + created["events"], timeout=30) as response:
            for line in response.iter_lines():
                got.append(line)
                if line.startswith("event: text") and len(got) > 8:
                    process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "event: error" in got and not any(line == "event: done" for line in got)
    assert any("shutting down" in line for line in got if line.startswith("data: "))
    assert process.stderr.read().decode() == ""  # nothing more: no traceback


def test_serve_starts_from_the_command_line(cli: Cli) -> None:
    process = cli.popen("serve", "--source", "demo", "--engine", "silent", "--port", "0")
    try:
        assert process.stderr is not None
        url = process.stderr.readline().decode().split(" on ")[1].split("/ ")[0]
        assert httpx2.get(f"{url}/healthz").json() == {
            "ok": True, "answers": 0, "relay": "memory", "source": "demo",
        }  # fmt: skip
        assert "<html" in httpx2.get(f"{url}/").text.lower()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 130
    finally:
        if process.poll() is None:
            process.kill()
