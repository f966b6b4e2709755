from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio.testing

from voicestream import testing
from voicestream.testing import FakeAnthropic, clean_env, start_pulse


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Virtual time: sleeps return at once, the clock jumps when all tasks wait."""
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def fake_api() -> Iterator[FakeAnthropic]:
    fake = testing.start()
    yield fake
    fake.close()


@pytest.fixture
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment with no API key, no settings and no sound server."""
    runtime = tmp_path_factory.mktemp("runtime")
    runtime.chmod(0o700)
    return clean_env(runtime)


class Cli:
    """Runs ``voicestream`` as a person would, in its own process."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "voicestream", *args]

    def run(
        self, *args: str, input: str | None = None, timeout: float = 120, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env | env,
            cwd=self.cwd,
        )

    def popen(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv(*args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env | env,
            cwd=self.cwd,
        )


@pytest.fixture
def cli(env: dict[str, str], tmp_path: Path) -> Cli:
    return Cli(env, tmp_path)


def wrote(path: Path, stderr: str) -> str:
    """``say --out``'s closing line saying where the audio went (its seconds as said)."""
    seconds = re.search(r"\((\d+\.\d) s of speech\)", stderr)
    assert seconds is not None, stderr
    return f"voicestream: wrote {path} ({seconds[1]} s of speech)\n"


FAST_DEMO = {"VOICESTREAM_DEMO_FIRST_TOKEN_S": "0", "VOICESTREAM_DEMO_TOKENS_PER_S": "5000"}


@pytest.fixture(scope="session")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A private PulseAudio daemon with a null sink; yields the env to reach it."""
    if shutil.which("pulseaudio") is None:
        pytest.fail("pulseaudio is not installed: run 'make test', which installs it")
    try:
        daemon, env = start_pulse(tmp_path_factory.mktemp("pulse"))
    except RuntimeError as e:
        pytest.fail(str(e))
    yield {"env": env, "monitor": "vs_null.monitor"}
    daemon.terminate()
    daemon.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private ``redis-server`` on a free loopback port, with no persistence."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        testing.wait_for(lambda: self.ask("PING") == "PONG", 10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def ask(self, *command: str) -> str:
        """A command's answer, as redis-cli prints it ("" when it cannot connect)."""
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *command], capture_output=True, text=True
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    def keys(self) -> list[str]:
        return sorted(filter(None, self.ask("KEYS", "*").splitlines()))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: run 'make test', which installs it")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis(redis_server: RedisServer) -> RedisServer:
    """The session's Redis, emptied for this test."""
    redis_server.ask("FLUSHALL")
    return redis_server
