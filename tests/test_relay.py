"""Answers in Redis Streams (``serve --relay``): Debian's real ``redis-server`` on a
free loopback port, real ``serve`` processes, real HTTP. No mock of Redis here."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from conftest import Cli, RedisServer

from voicestream.chunker import SentenceChunker
from voicestream.config import ServerConfig
from voicestream.relay import Fenced, Item
from voicestream.relay.redis import open_redis
from voicestream.sources.demo import demo_answer
from voicestream.testing import wait_for

# The demo answer at 25 tokens a second (~9 s of text), spoken as fast as espeak-ng
# makes it: the server plays it ahead of the clock, so it ends with its text.
SLOW_DEMO = {
    "VOICESTREAM_DEMO_FIRST_TOKEN_S": "0.2",
    "VOICESTREAM_DEMO_TOKENS_PER_S": "25",
    "VOICESTREAM_SERVER_WINDOW_S": "600",
    "VOICESTREAM_SERVER_LEAD_S": "600",
}


@contextmanager
def serve(cli: Cli, redis: RedisServer, *flags: str, **env: str) -> Iterator[str]:
    """A ``serve`` process on the test's Redis; yields its base URL."""
    process = cli.popen(
        "serve", "--source", "demo", "--port", "0", "--relay", redis.url, *flags, **env
    )
    try:
        yield started(process)
    finally:
        stop(process)


def started(process: subprocess.Popen[bytes]) -> str:
    assert process.stderr is not None
    line = process.stderr.readline().decode()
    assert " on http://" in line, line + process.stderr.read().decode()
    return line.split(" on ")[1].split("/ ")[0]


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def ask(url: str, prompt: str = "tell me") -> dict[str, Any]:
    response = httpx2.post(f"{url}/v1/answers", json={"prompt": prompt}, timeout=30)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def events(url: str, path: str, last: int = 0) -> list[dict[str, Any]]:
    """Every event after ``last`` until the stream ends: ``{"id", "event", "data"}``."""
    out: list[dict[str, Any]] = []
    headers = {"Last-Event-ID": str(last)}
    with httpx2.stream("GET", f"{url}{path}", headers=headers, timeout=60) as response:
        assert response.status_code == 200, response.read()
        event: dict[str, Any] = {}
        for line in response.iter_lines():
            if not line and event:
                out.append(event)
                event = {}
            elif line.startswith("id: "):
                event["id"] = int(line[4:])
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
    return out


def text_of(got: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["text"] for e in got if e["event"] == "text")


def bare(text: str) -> str:
    return "".join(text.split())


def spoken(got: list[dict[str, Any]]) -> str:
    return bare("".join(e["data"]["text"] for e in got if e["event"] == "chunk"))


def chunked(text: str) -> str:
    chunker = SentenceChunker()
    return bare("".join([*chunker.feed(text), *chunker.flush()]))


async def test_a_second_writer_is_refused_by_redis_itself(redis: RedisServer) -> None:
    config = ServerConfig(relay=redis.url, lease_s=0.5)
    hi = Item(1, "text", '{"text": "Hi"}')
    async with open_redis(redis.url, config) as first, open_redis(redis.url, config) as second:
        assert await first.admit("x", {"prompt": "q"}, 1000, limit=10)
        await first.publish("x", [hi])
        assert await second.claim() is None  # the owner's lease runs
        await trio.sleep(0.7)  # the owner is silent past its lease (paused, cut off)
        claim = await second.claim()
        assert claim is not None and claim.id == "x" and claim.events == [(1, "text", hi.data)]
        with pytest.raises(Fenced):  # the first owner, back: refused, whatever it writes
            await first.publish("x", [Item(2, "text", '{"text": " there"}')])
        assert not await first.renew("x")
        await second.publish("x", [Item(2, "text", '{"text": " there"}')])
        with pytest.raises(Exception, match="equal or smaller"):  # an id is written once
            await second.publish("x", [Item(2, "text", '{"text": " again"}')])
        log = await second.log("x")
        assert log is not None and [e[0] for e in log.events] == [1, 2]


async def test_an_owner_late_to_renew_does_not_take_its_own_answer_over(
    redis: RedisServer,
) -> None:
    # A busy process renews late and then claims: the answer is its own, still
    # speaking; a second speaker of it in the same process would say it all twice.
    config = ServerConfig(relay=redis.url, lease_s=0.5)
    async with open_redis(redis.url, config) as owner:
        assert await owner.admit("x", {"prompt": "q"}, 1000, limit=10)
        await trio.sleep(0.7)  # past its lease
        assert await owner.claim() is None
        assert await owner.renew("x")  # still its own, and renewed
        await owner.publish("x", [Item(1, "text", '{"text": "Hi"}')])


def test_any_process_serves_resumes_and_stops_any_answer(cli: Cli, redis: RedisServer) -> None:
    with serve(cli, redis, **SLOW_DEMO) as a, serve(cli, redis, **SLOW_DEMO) as b:
        created = ask(a)
        whole = events(b, created["events"])  # read on the process that does not speak it
        assert whole[-1]["event"] == "done" and text_of(whole) == demo_answer()
        assert [e["id"] for e in whole] == list(range(1, len(whole) + 1))
        middle = len(whole) // 2
        assert events(a, created["events"], last=middle) == whole[middle:]  # resumed elsewhere
        audio_a = httpx2.get(f"{a}{created['audio']}", timeout=30).content
        audio_b = httpx2.get(f"{b}{created['audio']}", timeout=30).content
        assert audio_a == audio_b and len(audio_a) > 44 + 22050 * 2 * 10
        late = httpx2.get(f"{b}{created['audio']}?from_s=10", timeout=30).content
        assert late[44:] == audio_a[44 + 22050 * 2 * 10 :]

        running = ask(a)
        stopped = httpx2.delete(f"{b}/v1/answers/{running['id']}", timeout=10)
        assert stopped.status_code == 204
        got = events(b, running["events"])
        assert got[-1]["event"] == "done" and got[-1]["data"]["stop_reason"] == "stopped"
        again = httpx2.delete(f"{a}/v1/answers/{running['id']}", timeout=10)
        assert again.status_code == 409


def test_max_answers_holds_across_processes(cli: Cli, redis: RedisServer) -> None:
    with (
        serve(cli, redis, "--max-answers", "1", **SLOW_DEMO) as a,
        serve(cli, redis, "--max-answers", "1", **SLOW_DEMO) as b,
    ):
        first = ask(a)
        refused = httpx2.post(f"{b}/v1/answers", json={"prompt": "too"}, timeout=10)
        assert refused.status_code == 503 and "--max-answers" in refused.json()["error"]
        httpx2.delete(f"{b}/v1/answers/{first['id']}", timeout=10)
        assert events(a, first["events"])[-1]["event"] == "done"
        ask(b)  # its slot is free again, everywhere


def test_a_killed_owners_answer_goes_on_with_nothing_lost_or_doubled(
    cli: Cli, redis: RedisServer
) -> None:
    owner = cli.popen("serve", "--source", "demo", "--port", "0", "--relay", redis.url, **SLOW_DEMO)
    try:
        a = started(owner)
        with serve(cli, redis, **SLOW_DEMO) as b:
            created = ask(a)
            # Once a few chunks are out, the owner dies without a word.
            wait_for(lambda: spoken(events_so_far(b, created["events"])) != "", 20)
            time.sleep(1.0)
            owner.send_signal(signal.SIGKILL)
            owner.wait()
            got = events(b, created["events"])
    finally:
        stop(owner)
    assert got[-1]["event"] == "done", got[-3:]
    assert [e["id"] for e in got] == list(range(1, len(got) + 1))  # still increasing
    assert text_of(got) == demo_answer()  # every piece once
    assert spoken(got) == chunked(demo_answer())  # every word spoken once, none twice
    chunks = [e["data"] for e in got if e["event"] == "chunk"]
    assert [c["index"] for c in chunks] == list(range(len(chunks)))
    for before, after in itertools.pairwise(chunks):  # the audio is seamless
        assert after["audio_start_s"] == pytest.approx(
            before["audio_start_s"] + before["audio_s"], abs=1e-3
        )
    notices = [e["data"]["message"] for e in got if e["event"] == "notice"]
    assert any("took over" in n for n in notices), got[-3:]


def events_so_far(url: str, path: str) -> list[dict[str, Any]]:
    """The events there are now (the stream read for a moment)."""
    out: list[dict[str, Any]] = []
    until = time.monotonic() + 0.5
    try:
        with httpx2.stream("GET", f"{url}{path}", timeout=1.0) as response:
            for line in response.iter_lines():
                if time.monotonic() > until:
                    break
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                    out.append({"event": "chunk" if "audio_s" in data else "other", "data": data})
    except httpx2.ReadTimeout:
        pass
    return out


def test_nothing_in_redis_outlives_the_retention_time(
    cli: Cli, redis: RedisServer, tmp_path: Path
) -> None:
    fast = SLOW_DEMO | {"VOICESTREAM_DEMO_TOKENS_PER_S": "2000"}
    with serve(cli, redis, **fast, VOICESTREAM_SERVER_RETENTION_S="2") as a:
        created = ask(a)
        assert events(a, created["events"])[-1]["event"] == "done"
        assert redis.keys()  # kept to resume, for now
        deadline = time.monotonic() + 10
        while redis.keys() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert redis.keys() == []  # every key expires; none outlives retention_s
        assert httpx2.get(f"{a}{created['events']}", timeout=10).status_code == 404


def test_redis_down_at_start_is_one_line_and_exit_2(cli: Cli, tmp_path: Path) -> None:
    gone = RedisServer(tmp_path)  # never started: nothing listens on its port
    done = cli.run("serve", "--source", "demo", "--port", "0", "--relay", gone.url)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Redis at" in done.stderr and "--relay" in done.stderr
    bad = cli.run("serve", "--source", "demo", "--relay", "http://localhost:6379")
    assert bad.returncode == 2 and "redis://HOST:PORT/DB" in bad.stderr
    alone = cli.run("serve", "--source", "demo", "--workers", "2")
    assert alone.returncode == 2 and "--relay" in alone.stderr and alone.stderr.count("\n") == 1


def test_losing_redis_ends_answers_refuses_new_ones_and_recovers(cli: Cli, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path)
    redis.start()
    try:
        with serve(cli, redis, **SLOW_DEMO) as a:
            created = ask(a)
            heard: list[list[dict[str, Any]]] = []
            listener = threading.Thread(target=lambda: heard.append(events(a, created["events"])))
            listener.start()
            with httpx2.Client(timeout=30) as client:
                wait_for(lambda: spoken(events_so_far(a, created["events"])) != "", 20)
                redis.stop()
                listener.join(30)
                assert heard[0][-1]["event"] == "error"  # the answer ends, said why
                assert "Redis" in heard[0][-1]["data"]["message"]
                later = client.get(f"{a}{created['events']}")
                assert later.status_code == 503 and later.headers["retry-after"]
                refused = client.post(f"{a}/v1/answers", json={"prompt": "now?"})
                assert refused.status_code == 503 and refused.headers["retry-after"]
                health = client.get(f"{a}/healthz")
                assert health.status_code == 503 and "Redis" in health.json()["error"]
                redis.start()  # it comes back, on the same port
                wait_for(lambda: client.get(f"{a}/healthz").status_code == 200, 20)
                again = ask(a)
                assert events(a, again["events"])[-1]["event"] == "done"
    finally:
        redis.stop()


def test_workers_share_one_port_and_a_dead_one_is_replaced(cli: Cli, redis: RedisServer) -> None:
    parent = cli.popen(
        "serve", "--source", "demo", "--port", "0", "--relay", redis.url, "--workers", "2",
        **SLOW_DEMO,
    )  # fmt: skip
    try:
        url = started(parent)
        pids: set[int] = set()
        wait_for(lambda: pids.add(pid_of(url)) or len(pids) == 2, 30)  # type: ignore[func-returns-value]
        created = ask(url)
        assert events(url, created["events"])[-1]["event"] == "done"
        victim = sorted(pids)[0]
        subprocess.run(["kill", "-KILL", str(victim)], check=True)
        wait_for(lambda: len({pid_of(url) for _ in range(4)} - pids) > 0, 30)  # a new one
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 0
    finally:
        stop(parent)


def pid_of(url: str) -> int:
    with httpx2.Client(timeout=10) as client:  # a new connection: any worker may take it
        return int(client.get(f"{url}/healthz", headers={"Connection": "close"}).json()["process"])


async def test_an_answer_asked_over_a_socket_is_read_over_sse_on_another_process(
    cli: Cli, redis: RedisServer
) -> None:
    # And the other way round: asked over HTTP on B, followed over a socket on A.
    from test_talk import Talker, sse_like
    from trio_websocket import open_websocket_url

    quick = SLOW_DEMO | {"VOICESTREAM_DEMO_TOKENS_PER_S": "150"}  # nothing here needs it slow
    with serve(cli, redis, **quick) as a, serve(cli, redis, **quick) as b:
        async with open_websocket_url(a.replace("http", "ws") + "/v1/talk") as ws:
            talk = Talker(ws)
            await talk.send(type="ask", prompt="tell me")
            answer = await talk.until("answer")
            await talk.until("done", "error")
        over_sse = await trio.to_thread.run_sync(events, b, f"/v1/answers/{answer['id']}/events")
        assert sse_like(talk.events()) == over_sse and text_of(over_sse) == demo_answer()
        created = await trio.to_thread.run_sync(ask, b)
        async with open_websocket_url(a.replace("http", "ws") + "/v1/talk") as ws:
            follow = Talker(ws)
            await follow.send(type="resume", answer=created["id"], last_event_id=0, from_s=0)
            await follow.until("done", "error")
        whole = await trio.to_thread.run_sync(events, b, created["events"])
        assert sse_like(follow.events()) == whole
