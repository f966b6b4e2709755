"""``voicestream serve`` under hostile and broken input: each test is one defect an
attacker found, and fails on the code that had it. The real server on 127.0.0.1,
the real SDK against the loopback Anthropic stand-in, real espeak-ng."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncGenerator
from typing import Any

import httpx2
import pytest
import trio
from conftest import Cli
from test_server import JSON, KEY, TEXT, ask, events, running

from voicestream import server as serving
from voicestream.errors import UsageError
from voicestream.relay import Item
from voicestream.testing import FakeAnthropic, Script


def exploding(monkeypatch: pytest.MonkeyPatch, prompt: str, error: BaseException) -> None:
    """Answers to ``prompt`` raise ``error`` (a bug of any kind) after a few pieces."""
    real = serving.open_source

    def opened(*args: Any, **kwargs: Any) -> Any:
        source = real(*args, **kwargs)
        if args[2] == prompt:
            pieces = source.stream

            async def stream() -> AsyncGenerator[str]:
                n = 0
                async for piece in pieces():
                    yield piece
                    n += 1
                    if n == 5:
                        raise error

            source.stream = stream
        return source

    monkeypatch.setattr(serving, "open_source", opened)


async def test_an_answers_unexpected_failure_ends_that_answer_and_nothing_else(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api.script = Script(text=TEXT, piece=3, delay_s=0.01)
    exploding(monkeypatch, "explode", RuntimeError(f"an injected bug, holding {KEY}"))
    async with running(fake_api, monkeypatch) as (_, client):
        good, bad = await ask(client, "a good question"), await ask(client, "explode")
        results: dict[str, list[dict[str, Any]]] = {}

        async def read(name: str, created: dict[str, Any]) -> None:
            results[name] = await events(client, created["events"])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, "good", good)
            nursery.start_soon(read, "bad", bad)
        assert (await client.get("/healthz")).json() == {
            "ok": True,
            "answers": 0,
            "relay": "memory",
            "source": "anthropic",
        }
        after = await ask(client, "and the server still answers")
        assert (await events(client, after["events"]))[-1]["event"] == "done"
    kinds = [e["event"] for e in results["bad"]]
    assert kinds[-1] == "error" and kinds.count("error") == 1 and "done" not in kinds
    message = results["bad"][-1]["data"]["message"]
    assert "log" in message and KEY not in message and "\n" not in message
    assert results["good"][-1]["event"] == "done"
    said = "".join(e["data"]["text"] for e in results["good"] if e["event"] == "text")
    assert said == TEXT  # the answer beside it finished, whole
    logged = capsys.readouterr().err
    assert "Traceback" in logged and "an injected bug" in logged  # the server's log says why
    assert KEY not in logged and "[redacted]" in logged


async def test_text_that_is_not_unicode_is_refused_at_the_door(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    async with running(fake_api, monkeypatch) as (server, client):
        for body in (
            b'{"prompt": "\\ud800"}',
            b'{"prompt": "fine", "history": [{"role": "user", "content": "\\udfff"},'
            b' {"role": "assistant", "content": "ok"}]}',
            b'{"prompt": "fine", "voice": "\\ud83d"}',
        ):
            refused = await client.post("/v1/answers", content=body, headers=JSON)
            assert refused.status_code == 422, body
            assert "surrogate" in refused.json()["error"]
        assert not fake_api.requests and not server.answers  # nothing was asked upstream
    # The command line: an argument that was not UTF-8 is one line and exit 2.
    done = cli.run("say", "--source", "demo", "--null", "caf\udce9")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "not valid Unicode" in done.stderr
    import voicestream

    with pytest.raises(UsageError, match="surrogate"):
        await voicestream.speak("\ud800 text", play=False)


async def test_other_web_pages_cannot_start_read_or_stop_answers(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT, piece=3)
    async with running(
        fake_api, monkeypatch, allowed_origins=("https://app.example",), allowed_hosts=("vs.lan",)
    ) as (_, client):
        port = client.base_url.port
        own = f"http://127.0.0.1:{port}"
        created = await ask(client)  # a client with no Origin (not a browser) may
        paths = ["/", "/web/app.js", "/metrics", "/healthz", "/v1/voices", created["events"]]
        attacks: list[tuple[str, str, dict[str, str], int]] = [
            # CSRF: a form or a no-cors fetch can only send text/plain and the like.
            ("POST", "/v1/answers", {"Content-Type": "text/plain"}, 415),
            ("POST", "/v1/answers", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
            ("POST", "/v1/answers", {"Content-Type": "application/json", "Origin": "null"}, 403),
            *(  # another site, and another port of this machine: other origins
                (method, path, {"Origin": origin} | JSON, 403)
                for origin in ("http://evil.example", f"http://127.0.0.1:{port + 1}", "null")
                for method, path in (
                    ("POST", "/v1/answers"),
                    ("GET", created["events"]),
                    ("GET", created["audio"]),
                    ("DELETE", created["events"][:-7]),
                    ("GET", "/metrics"),
                )
            ),
            # No Origin, but the browser says the request comes from another site.
            ("GET", created["audio"], {"Sec-Fetch-Site": "cross-site"}, 403),
            ("GET", created["events"], {"Sec-Fetch-Site": "same-site"}, 403),
            ("DELETE", created["events"][:-7], {"Sec-Fetch-Site": "cross-site"}, 403),
            # DNS rebinding: evil.example resolved to 127.0.0.1 reaches the port.
            *(("GET", path, {"Host": f"evil.example:{port}"}, 421) for path in paths),
            ("POST", "/v1/answers", {"Host": f"evil.example:{port}"} | JSON, 421),
        ]
        for method, path, headers, status in attacks:
            body = b'{"prompt": "spend money"}' if method == "POST" else None
            response = await client.request(method, path, headers=headers, content=body)
            assert response.status_code == status, (method, path, headers)
            assert "\n" not in response.json()["error"]
        assert len(fake_api.requests) == 1  # no attack started an answer
        # The server's own page, an allowed origin and host, and links to the page work.
        for headers in (
            {"Origin": own, "Sec-Fetch-Site": "same-origin"},
            {"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"},
            {"Host": "vs.lan", "Origin": "http://vs.lan"},
            {"Host": f"localhost:{port}"},
        ):
            response = await client.post("/v1/answers", json={"prompt": "allowed"}, headers=headers)
            assert response.status_code == 201, headers
        linked = await client.get("/", headers={"Sec-Fetch-Site": "cross-site"})
        assert linked.status_code == 200
        for header, value in (
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
        ):
            assert linked.headers[header] == value
        assert "frame-ancestors 'none'" in linked.headers["content-security-policy"]
        assert "default-src 'self'" in linked.headers["content-security-policy"]


async def test_the_token_is_exact_and_the_scheme_any_case(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(fake_api, monkeypatch, token="let-me-in") as (_, client):
        url = "/v1/voices"
        for given, status in (
            ("Bearer let-me-in", 200),
            ("bearer let-me-in", 200),
            ("BEARER  let-me-in", 200),
            ("Bearer let-me-in-and-more", 401),
            ("Bearer xlet-me-inx", 401),
            ("Bearer let-me", 401),
            ("Basic let-me-in", 401),
            ("let-me-in", 401),
            ("Bearer", 401),
        ):
            response = await client.get(url, headers={"Authorization": given})
            assert response.status_code == status, given


async def test_voices_over_http_are_names_and_loading_them_is_bounded(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text="One two three four five six seven eight.", piece=8)
    async with running(fake_api, monkeypatch, max_voices=2) as (server, client):
        listing = (await client.get("/v1/voices")).json()
        names = [v["name"] for v in listing["voices"]]
        assert listing["engine"] == "espeak" and listing["default"] in names
        assert {"gmw/en-us", "gmw/de", "roa/fr"} <= set(names)
        # A path is not a name: the same answer whether the file exists or not, and
        # nothing is loaded for it.
        refusals = set()
        for voice in ("/etc/shadow", "/etc/no-such-file", "~/.ssh/id_rsa", "../../etc/passwd"):
            response = await client.post("/v1/answers", json={"prompt": "hi", "voice": voice})
            assert response.status_code == 422
            refusals.add(response.json()["error"].replace(voice, "X"))
        assert len(refusals) == 1 and server.voices.loaded == [listing["default"]]
        # At most max_voices loaded: the least recently used one goes.
        for voice in ("gmw/en-us", "gmw/de", "roa/fr"):
            created = await ask_voice(client, voice=voice)
            await events(client, created["events"])
            assert len(server.voices.loaded) <= 2 and server.voices.loaded[-1] == voice
        # A rate is a parameter, not another voice: twice as slow, one voice loaded.
        slow = await ask_voice(client, voice="roa/fr", rate=100)
        fast = await ask_voice(client, voice="roa/fr", rate=300)
        slow_events, fast_events = await both(client, slow, fast)
        assert server.voices.loaded[-1] == "roa/fr" and len(server.voices.loaded) == 2
        slow_s, fast_s = (e[-1]["data"]["metrics"]["audio_s"] for e in (slow_events, fast_events))
        assert slow_s > 2 * fast_s  # each at its own rate, though spoken side by side
        # Every loaded voice speaking: another one is refused, not loaded.
        fake_api.script = Script(text=TEXT * 10, piece=3, delay_s=0.05)
        busy = [await ask_voice(client, voice=v) for v in server.voices.loaded]
        refused = await client.post("/v1/answers", json={"prompt": "hi", "voice": "roa/it"})
        assert refused.status_code == 503 and "max_voices" in refused.json()["error"]
        for created in busy:
            await client.delete(f"/v1/answers/{created['id']}")


async def ask_voice(client: httpx2.AsyncClient, **fields: Any) -> dict[str, Any]:
    response = await client.post("/v1/answers", json={"prompt": "Count."} | fields)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def both(client: httpx2.AsyncClient, *created: dict[str, Any]) -> list[list[dict[str, Any]]]:
    got: dict[int, list[dict[str, Any]]] = {}

    async def read(i: int, answer: dict[str, Any]) -> None:
        got[i] = await events(client, answer["events"])

    async with trio.open_nursery() as nursery:
        for i, answer in enumerate(created):
            nursery.start_soon(read, i, answer)
    return [got[i] for i in range(len(created))]


async def test_the_answer_limit_holds_under_a_burst(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT * 10, piece=3, delay_s=0.05)
    async with running(fake_api, monkeypatch, max_answers=2, max_voices=30) as (server, client):
        voices = [v["name"] for v in (await client.get("/v1/voices")).json()["voices"]][:20]
        statuses: list[int] = []

        async def post(voice: str, rate: int) -> None:
            fields = {"prompt": "hi", "voice": voice, "rate": rate}
            statuses.append((await client.post("/v1/answers", json=fields)).status_code)

        async with trio.open_nursery() as nursery:
            for i, voice in enumerate(voices):
                nursery.start_soon(post, voice, 100 + 10 * i)
        assert sorted(statuses) == [201, 201] + [503] * 18
        assert len(server.running) == 2
        for live in server.running:
            live.answer.stop()


async def test_nothing_follows_the_last_event(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT, piece=3)
    async with running(fake_api, monkeypatch) as (server, client):
        created = await ask(client)
        got = await events(client, created["events"])
        answer = await server.relay.log(created["id"])
        assert answer is not None
        # Whatever comes after the end, from anywhere.
        answer.add([Item(answer.last_id + 1, "notice", '{"message": "late"}')])
        with trio.fail_after(20):  # a stream that never ends is the bug
            assert await events(client, created["events"]) == got
        assert (await client.get("/healthz")).json()["answers"] == 0
        stopped = await client.delete(f"/v1/answers/{created['id']}")  # finished: nothing to stop
        assert stopped.status_code == 409 and "finished" in stopped.json()["error"]
        missing = await client.get("/v1/answers/gone-or-never-was/audio")
        assert missing.status_code == 404 and "kept for 300 s" in missing.json()["error"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("history", None), ("history", 3), ("history", "x"), ("history", [None]),
     ("history", [{"role": "user", "content": 1}, {"role": "assistant", "content": "a"}]),
     ("voice", 7), ("voice", ""), ("voice", "v" * 5000), ("rate", "fast"), ("rate", True),
     ("rate", 1e400), ("prompt", None), ("prompt", ["a"])],
)  # fmt: skip
def test_bad_fields_are_a_422_with_one_line(field: str, value: Any) -> None:
    with pytest.raises(serving.BadRequest) as raised:
        serving.parse_request(
            json.dumps({"prompt": "hi"} | {field: value}).encode(), serving.ServerConfig()
        )
    assert raised.value.status == 422 and "\n" not in str(raised.value)


async def test_bad_requests_are_4xx_and_a_bug_is_a_logged_500(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api.script = Script(text=TEXT, piece=3)
    async with running(fake_api, monkeypatch) as (server, client):
        for body in (
            b'{"prompt": "hi", "history": null}',
            b'{"prompt": "hi", "history": 12}',
            b"[" * 3000 + b"]" * 3000,
            b'{"prompt": "hi", "history": ' + b"[" * 3000 + b"]" * 3000 + b"}",
            b'{"prompt": "hi", "rate": 1e400}',
        ):
            response = await client.post("/v1/answers", content=body, headers=JSON)
            assert response.status_code == 422, body[:40]
        created = await ask(client)
        for given in ("²", "1" * 5000, "-1", "1.5", "0x7", "٣"):
            header = {"Last-Event-ID": given.encode()}  # bytes: not only ASCII
            by_header = await client.get(created["events"], headers=header)
            by_query = await client.get(created["events"], params={"last_event_id": given})
            assert by_header.status_code == by_query.status_code == 422, given
        for from_s in ("nan", "inf", "-0.5", "1e400", "x", "²"):
            response = await client.get(created["audio"], params={"from_s": from_s})
            assert response.status_code == 422, from_s

        def broken() -> dict[str, Any]:
            raise ZeroDivisionError("a bug in a handler")

        monkeypatch.setattr(server.voices, "listing", broken)
        failed = await client.get("/v1/voices")
        assert failed.status_code == 500 and "ZeroDivisionError" in failed.json()["error"]
        assert (await client.get("/healthz")).status_code == 200
    logged = capsys.readouterr().err
    assert "Traceback" in logged and "a bug in a handler" in logged


async def test_slow_bodies_time_out_and_streams_close_their_connection(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text=TEXT, piece=3)
    async with running(fake_api, monkeypatch, body_timeout_s=0.5) as (_, client):
        host, port = client.base_url.host, client.base_url.port
        created = await ask(client)
        await events(client, created["events"])

        async def raw(request: bytes) -> bytes:
            """What the server sends until it closes the connection."""
            stream = await trio.open_tcp_stream(host, port)
            await stream.send_all(request)
            received = b""
            with trio.fail_after(20):  # a connection held open fails here
                while piece := await stream.receive_some():
                    received += piece
            await stream.aclose()
            return received

        half = (
            b"POST /v1/answers HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" + b'{"prompt": '
        )
        answered = await raw(half)  # and never the rest
        assert answered.startswith(b"HTTP/1.1 408") and b"did not arrive" in answered
        for path in (created["events"], created["audio"]):
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            answered = await raw(request)  # a keep-alive request: closed after all the same
            assert answered.startswith(b"HTTP/1.1 200") and b"connection: close" in answered

        # A chunked body, with no length declared, is bounded all the same.
        async def big() -> AsyncGenerator[bytes]:
            yield b'{"prompt": "'
            for _ in range(20):
                yield b"a" * 4096

        response = await client.post("/v1/answers", content=big(), headers=JSON)
        assert response.status_code == 413


async def test_finished_answers_are_bounded_by_count(
    fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_api.script = Script(text="Short.", piece=3)
    async with running(fake_api, monkeypatch, max_finished=2) as (server, client):
        done = []
        for _ in range(5):
            created = await ask(client)
            await events(client, created["events"])
            done.append(created)
        await trio.sleep(0.1)  # the answers' tasks note the end
        assert not server.answers and len(server.relay.logs) == 2
        for created, kept in zip(done, [False] * 3 + [True] * 2, strict=True):
            status = (await client.get(created["events"])).status_code
            assert status == (200 if kept else 404)


def test_a_busy_port_is_one_line_and_exit_2(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli.run("serve", "--source", "demo", "--engine", "silent", "--port", str(port))
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert f"port {port} is in use" in done.stderr and "--port" in done.stderr


def test_the_log_level_and_the_access_log(cli: Cli) -> None:
    import signal

    process = cli.popen(
        "serve", "--source", "demo", "--engine", "silent", "--port", "0", "--access-log"
    )
    try:
        assert process.stderr is not None
        url = process.stderr.readline().decode().split(" on ")[1].split("/ ")[0]
        httpx2.get(f"{url}/healthz")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    logged = process.stderr.read().decode()
    assert '"GET /healthz' in logged and " 200 " in logged
