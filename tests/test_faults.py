"""Bad input and faults: one clear line, the right exit code, nothing already made is lost."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import FAST_DEMO, Cli, wait_for
from fake_anthropic import FakeAnthropic, Script
from wavcheck import read_wav, voiced_fraction

KEY = "sk-ant-test-DO-NOT-PRINT-0123456789"


def one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1, f"expected one line on stderr, got: {stderr!r}"
    assert "Traceback" not in stderr
    return stderr


def api_env(fake: FakeAnthropic) -> dict[str, str]:
    return {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake.base_url}


def test_no_audio_device_without_out_is_exit_2_before_any_request(
    cli: Cli, fake_api: FakeAnthropic
) -> None:
    result = cli.run("say", "hello", **api_env(fake_api))
    assert result.returncode == 2
    assert "no audio output device" in one_line(result.stderr) and "--out" in result.stderr
    assert fake_api.requests == []


@pytest.mark.parametrize("out", ["/nonexistent-dir/answer.wav", "/proc/answer.wav"])
def test_unwritable_out_is_exit_2_before_any_request(
    cli: Cli, fake_api: FakeAnthropic, out: str
) -> None:
    result = cli.run("say", "hello", "--out", out, **api_env(fake_api))
    assert result.returncode == 2
    assert out in one_line(result.stderr)
    assert fake_api.requests == []


def test_anthropic_without_a_key_names_the_variable(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("say", "hello", "--source", "anthropic", "--out", str(tmp_path / "a.wav"))
    assert result.returncode == 2
    assert "ANTHROPIC_API_KEY" in one_line(result.stderr)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_missing_espeak_library_names_the_package(cli: Cli, tmp_path: Path) -> None:
    library = subprocess.run(
        ["sh", "-c", "ldconfig -p | grep -m1 'libespeak-ng.so.1 ' | sed 's/.*=> //'"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert library, "libespeak-ng1 should be installed for this test"
    # Hide the real library behind an empty file, in a private mount namespace.
    command = " ".join(cli.argv("say", "--source", "demo", "--out", str(tmp_path / "a.wav")))
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", f"mount --bind /dev/null {library} && exec {command}"],
        capture_output=True,
        text=True,
        env=cli.env | FAST_DEMO,
        cwd=cli.cwd,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "apt-get install libespeak-ng1" in one_line(result.stderr)


def test_unknown_key_in_config_file_names_file_key_and_closest(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "my.toml"
    config.write_text("[voice]\nrat = 200\n")
    result = cli.run("say", "--config", str(config), "--out", str(tmp_path / "a.wav"))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert str(config) in line and "'voice.rat'" in line and "did you mean 'voice.rate'" in line


def test_wrong_type_in_config_file_names_key_and_type(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "my.toml"
    config.write_text('[voice]\nrate = "fast"\n')
    result = cli.run("say", "--config", str(config), "--out", str(tmp_path / "a.wav"))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert str(config) in line and "'voice.rate' must be int" in line


def test_config_toml_in_the_working_directory_is_checked_too(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[buffer]\naudio = 3\n")
    result = cli.run("say", "--out", str(tmp_path / "a.wav"))
    assert result.returncode == 2
    assert "config.toml" in result.stderr and "did you mean 'buffers'" in one_line(result.stderr)


def test_unknown_environment_variable_names_the_closest(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("say", "--out", str(tmp_path / "a.wav"), VOICESTREAM_VOICE_RAT="200")
    assert result.returncode == 2
    assert "did you mean 'VOICESTREAM_VOICE_RATE'" in one_line(result.stderr)


def test_bad_flag_is_exit_2(cli: Cli) -> None:
    result = cli.run("say", "--rate", "fast")
    assert result.returncode == 2


def test_ctrl_c_during_speech_exits_130_and_keeps_a_valid_wav(cli: Cli, tmp_path: Path) -> None:
    sentences = [
        "This is the first sentence of the answer.",
        "And here is a second one.",
        "A third sentence follows.",
    ]
    out, metrics = tmp_path / "a.wav", tmp_path / "m.json"
    process = cli.popen("say", "-", "--out", str(out), "--metrics", str(metrics))
    assert process.stdin is not None
    process.stdin.write((" ".join(sentences) + " And then").encode())
    process.stdin.flush()
    wait_for(lambda: out.exists() and out.stat().st_size > 44 + 22050)  # some speech is stored
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    stdout, stderr = process.communicate()
    assert stdout.decode().startswith(sentences[0])
    assert b"Traceback" not in stderr
    rate, samples = read_wav(out)  # header matches data
    figures = json.loads(metrics.read_text())
    assert len(samples) / rate == pytest.approx(figures["audio_s"], abs=1e-3)
    # Everything synthesized before Ctrl-C is in the file: as long as a clean run
    # of the same sentences.
    spoken = sentences[: figures["chunks"]]
    reference = tmp_path / "reference.wav"
    assert cli.run("say", "-", "--out", str(reference), input=" ".join(spoken)).returncode == 0
    _, expected = read_wav(reference)
    assert len(samples) == pytest.approx(len(expected), rel=0.02)


ANSWER = (
    "The first sentence arrives whole. The second one goes on for a while, so that "
    "the stream can break in the middle of it. A third sentence follows, and a fourth "
    "one closes the answer after all of that has been said."
)
FAULTS = [
    {"drop_after": 12},  # the connection drops (chunked): RemoteProtocolError
    {"drop_after": 12, "chunked": False},  # the response just ends: no exception at all
    {"error_after": 12, "error_type": "overloaded_error", "error_message": "Overloaded"},
    {"error_after": 12, "error_type": "api_error", "error_message": "Internal", "chunked": False},
]
FAULT_IDS = ["dropped", "cut-short", "error-event", "error-event-close-delimited"]
FAST_RESUME = {"VOICESTREAM_ANTHROPIC_RESUME_BACKOFF_S": "0.01"}


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
def test_stream_failing_on_every_resume_keeps_what_was_said(
    cli: Cli, fake_api: FakeAnthropic, tmp_path: Path, fault: dict[str, object]
) -> None:
    fake_api.script = Script(text=ANSWER, piece=5, **fault)  # type: ignore[arg-type]
    out, metrics = tmp_path / "a.wav", tmp_path / "m.json"
    result = cli.run(
        "say", "question", "--out", str(out), "--metrics", str(metrics), **api_env(fake_api),
        **FAST_RESUME, VOICESTREAM_ANTHROPIC_MAX_RESUMES="1",
    )  # fmt: skip
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert KEY not in line + result.stdout + metrics.read_text()
    # 12 deltas of 5 characters, then 12 more after one resume: each printed once.
    resumed_at = len(ANSWER[:60].rstrip())
    assert result.stdout == ANSWER[: resumed_at + 60] + "\n"
    assert len(fake_api.requests) == 2
    rate, samples = read_wav(out)
    assert voiced_fraction(samples, rate) > 0.4


def test_api_refusal_before_the_first_token_is_one_line(
    cli: Cli, fake_api: FakeAnthropic, tmp_path: Path
) -> None:
    fake_api.script = Script(
        status=401, error_type="authentication_error", error_message="invalid x-api-key"
    )
    result = cli.run("say", "question", "--out", str(tmp_path / "a.wav"), **api_env(fake_api))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "401" in line and "invalid x-api-key" in line and KEY not in line
    read_wav(tmp_path / "a.wav")  # still a valid (empty) file


def test_buffer_settings_that_cannot_work_are_refused(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("say", "-", "--null", input="Hi.", VOICESTREAM_BUFFERS_TEXT_HARD_CAP="100")
    assert result.returncode == 2
    assert "text_hard_cap" in one_line(result.stderr)
