from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fake_anthropic
import pytest
import trio.testing


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Virtual time: sleeps return at once, the clock jumps when all tasks wait."""
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.fixture
def fake_api() -> Iterator[fake_anthropic.FakeAnthropic]:
    fake = fake_anthropic.start()
    yield fake
    fake.close()


def _clean_env(runtime_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANTHROPIC_", "VOICESTREAM_", "PULSE_")) and k != "XDG_RUNTIME_DIR"
    }
    config = runtime_dir / "client.conf"
    config.write_text("autospawn = no\n")
    env.update(XDG_RUNTIME_DIR=str(runtime_dir), PULSE_CLIENTCONFIG=str(config))
    return env


@pytest.fixture
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment with no API key, no settings and no sound server."""
    runtime = tmp_path_factory.mktemp("runtime")
    runtime.chmod(0o700)
    return _clean_env(runtime)


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


FAST_DEMO = {"VOICESTREAM_DEMO_FIRST_TOKEN_S": "0", "VOICESTREAM_DEMO_TOKENS_PER_S": "5000"}


def wait_for(predicate: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def start_pulse(runtime: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start a private PulseAudio daemon with a null sink ``vs_null`` (its
    ``vs_null.monitor`` records what plays); return it and the env to reach it."""
    runtime.chmod(0o700)
    env = _clean_env(runtime)
    env["HOME"] = str(runtime)
    daemon = subprocess.Popen(
        [
            "pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "-n",
            "--load=module-null-sink sink_name=vs_null rate=22050 channels=1",
            "--load=module-native-protocol-unix",
            "--log-target=stderr",
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while subprocess.run(["pactl", "info"], env=env, capture_output=True).returncode != 0:
        if time.monotonic() > deadline or daemon.poll() is not None:
            daemon.kill()
            raise RuntimeError("the private PulseAudio daemon did not start")
        time.sleep(0.1)
    return daemon, env


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
