"""Fuzzing the real server (its own process) with whatever a client may send: the
POST body's fields, the events' and audio's query and headers. Never a 5xx, never
an exit, and ``/healthz`` answers after every case."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from conftest import FAST_DEMO, Cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
ROLES = st.sampled_from(["user", "assistant", "system", ""])
TURNS = st.lists(
    st.fixed_dictionaries({"role": ROLES})
    | st.fixed_dictionaries({"role": ROLES, "content": JSON_VALUES}),
    max_size=5,
)
VOICES = st.text(max_size=30) | st.sampled_from(["silent", "/etc/passwd", "~"])
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "prompt": st.text(max_size=60) | JSON_VALUES,
        "history": TURNS | JSON_VALUES,
        "voice": VOICES | JSON_VALUES,
        "rate": st.integers(-10, 1000) | st.floats(allow_nan=True) | JSON_VALUES,
        "colour": JSON_VALUES,
    },
)
# Header values a client library lets through (no control characters), any of latin-1.
HEADER_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=30
).map(lambda s: s.strip())
QUERY_TEXT = st.text(max_size=30)

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from voicestream.testing import clean_env

    runtime = tmp_path_factory.mktemp("runtime")
    runtime.chmod(0o700)
    cli = Cli(clean_env(runtime), tmp_path_factory.mktemp("fuzz"))
    process = cli.popen(
        "serve", "--source", "demo", "--engine", "silent", "--port", "0",
        VOICESTREAM_SERVER_GRACE_S="0", VOICESTREAM_SERVER_MAX_ANSWERS="100000",
        VOICESTREAM_SERVER_BUDGET_MB="100000", VOICESTREAM_SERVER_WINDOW_S="5",
        VOICESTREAM_SERVER_LEAD_S="5", **FAST_DEMO,
    )  # fmt: skip
    assert process.stderr is not None
    line = process.stderr.readline().decode()
    assert " on http" in line, line
    yield line.split(" on ")[1].split("/ ")[0]
    process.send_signal(signal.SIGTERM)
    try:
        assert process.wait(timeout=10) == 0
    except subprocess.TimeoutExpired:
        process.kill()
        raise


@pytest.fixture(scope="module")
def client(url: str) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def answer(client: httpx2.Client) -> dict[str, Any]:
    """A finished answer (stopped once it has begun, rather than a minute of real
    time for the demo to play out)."""
    created: dict[str, Any] = client.post("/v1/answers", json={"prompt": "hi"}).json()
    with client.stream("GET", created["events"]) as response:  # to its end
        for line in response.iter_lines():
            if line == "event: chunk":
                client.delete(f"/v1/answers/{created['id']}")
    return created


def survived(client: httpx2.Client, response: httpx2.Response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:200])
    assert client.get("/healthz").status_code == 200


@SETTINGS
@given(fields=FIELDS, raw=st.none() | st.binary(max_size=200))
def test_any_post_body_is_answered_below_500(
    client: httpx2.Client, fields: dict[str, Any], raw: bytes | None
) -> None:
    headers = {"Content-Type": "application/json"}
    body = json.dumps(fields).encode() if raw is None else raw  # NaN and Infinity too
    response = client.post("/v1/answers", content=body, headers=headers)
    survived(client, response)
    if response.status_code == 201:  # a valid answer: it stops, for nobody listens
        assert set(response.json()) == {"id", "events", "audio"}


@SETTINGS
@given(
    which=st.sampled_from(["events", "audio"]),
    header=st.none() | HEADER_TEXT,
    query=st.dictionaries(st.sampled_from(["last_event_id", "from_s", "x"]), QUERY_TEXT),
    known=st.booleans(),
)
def test_any_stream_request_is_answered_below_500(
    client: httpx2.Client,
    answer: dict[str, Any],
    which: str,
    header: str | None,
    query: dict[str, str],
    known: bool,
) -> None:
    path = answer[which] if known else f"/v1/answers/{header or 'x'}/{which}"
    headers = {} if header is None else {"Last-Event-ID": header.encode("latin-1")}
    with client.stream("GET", path, params=query, headers=headers) as response:
        survived(client, response)
