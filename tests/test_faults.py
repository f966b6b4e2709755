"""Bad input and faults: one clear line, the right exit code, nothing already made is lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAST_DEMO, Cli, wrote
from wavcheck import read_wav, voiced_fraction

from voicestream.testing import FakeAnthropic, Script, wait_for

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


# -- every output is checked before any request ------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--out", "/dev/full"], "not a regular file"),
        (["--out", "{tmp}/fifo"], "not a regular file"),  # no reader: it must not hang
        (["--out", "{tmp}/a.wav", "--metrics", "{tmp}"], "not a regular file"),
        (["--out", "{tmp}/a.wav", "--metrics", "/proc/m.json"], "/proc/m.json"),
        (["--out", "{tmp}/a.wav", "--metrics", "{tmp}/a.wav"], "name the same file"),
        (["--out", "{tmp}/a.wav", "--metrics", "{tmp}/../{name}/a.wav"], "name the same file"),
    ],
    ids=["dev-full", "fifo", "metrics-dir", "metrics-proc", "same-file", "same-file-other-path"],
)
def test_outputs_are_opened_and_checked_before_any_request(
    cli: Cli, fake_api: FakeAnthropic, tmp_path: Path, flags: list[str], message: str
) -> None:
    os.mkfifo(tmp_path / "fifo")
    args = [f.format(tmp=tmp_path, name=tmp_path.name) for f in flags]
    result = cli.run("say", "question", *args, timeout=60, **api_env(fake_api))
    assert result.returncode == 2
    assert message in one_line(result.stderr)
    assert fake_api.requests == []


# -- malformed events are a broken stream -----------------------------------------------


@pytest.mark.parametrize(
    "fault", [{"garbage_after": 5}, {"orphan_after": 5}], ids=["json", "order"]
)
def test_a_malformed_event_is_resumed_like_a_drop(
    cli: Cli, fake_api: FakeAnthropic, fault: dict[str, int]
) -> None:
    fake_api.script = Script(text=ANSWER, piece=5, faulty_requests=1, **fault)  # type: ignore[arg-type]
    result = cli.run("say", "question", "--null", **api_env(fake_api), **FAST_RESUME)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ANSWER + "\n"  # everything, once
    assert len(fake_api.requests) == 2


def test_a_stream_that_stays_malformed_is_one_line_after_the_resumes(
    cli: Cli, fake_api: FakeAnthropic
) -> None:
    fake_api.script = Script(text=ANSWER, piece=5, garbage_after=5)
    result = cli.run(
        "say", "question", "--null", **api_env(fake_api), **FAST_RESUME,
        VOICESTREAM_ANTHROPIC_MAX_RESUMES="2",
    )  # fmt: skip
    assert result.returncode == 1
    assert "could not be read" in one_line(result.stderr)
    assert len(fake_api.requests) == 3
    assert result.stdout.startswith(ANSWER[:25])


# -- the captions' reader going away ---------------------------------------------------


def test_a_closed_caption_reader_does_not_stop_the_speech(cli: Cli, tmp_path: Path) -> None:
    out, reference = tmp_path / "p.wav", tmp_path / "r.wav"
    process = cli.popen("say", "--source", "demo", "--out", str(out), **FAST_DEMO)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(20)  # like `| head -c 20`
    process.stdout.close()
    assert process.wait(timeout=120) == 0
    said = process.stderr.read().decode()
    assert said == wrote(out, said)  # where the audio went, and nothing else
    clean = cli.run("say", "--source", "demo", "--out", str(reference), **FAST_DEMO)
    assert clean.returncode == 0
    assert len(read_wav(out)[1]) == pytest.approx(len(read_wav(reference)[1]), rel=0.01)


def test_captions_in_an_encoding_without_the_characters_do_not_stop_the_answer(
    cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "a.wav"
    result = cli.run(
        "say", "-", "--out", str(out), "--engine", "silent", input="你好，世界。Hello there.",
        PYTHONIOENCODING="ascii",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "?" * 6 + "Hello there.\n"
    assert len(read_wav(out)[1]) > 0


# -- stop signals ----------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_sigterm_and_sighup_stop_like_ctrl_c_and_keep_everything(
    cli: Cli, tmp_path: Path, signum: int
) -> None:
    out, metrics = tmp_path / "a.wav", tmp_path / "m.json"
    process = cli.popen("say", "--source", "demo", "--out", str(out), "--metrics", str(metrics))
    wait_for(lambda: out.exists() and out.stat().st_size > 44 + 22050)
    process.send_signal(signum)
    assert process.wait(timeout=30) == 128 + signum
    _, stderr = process.communicate()
    rate, samples = read_wav(out)
    # Where the audio went, and nothing else: no traceback, no error.
    assert stderr.decode() == f"voicestream: wrote {out} ({len(samples) / rate:.1f} s of speech)\n"
    figures = json.loads(metrics.read_text())
    assert len(samples) / rate == pytest.approx(figures["audio_s"], abs=1e-3)
    assert figures["audio_s"] > 0.5  # what was stored before the signal, at least
    assert figures["chunks"] >= 1 and figures["wall_s"] > 0


def our_code_runs(pid: int) -> bool:
    """Whether voicestream's own first line has run: SIGTERM is caught from then on
    (before it, only the interpreter is starting, which no program can guard)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(
        next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16
    )
    return bool(caught & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3, 0.5])
def test_ctrl_c_at_any_moment_is_exit_130_without_a_traceback(
    cli: Cli, tmp_path: Path, delay: float
) -> None:
    process = cli.popen("say", "--source", "demo", "--out", str(tmp_path / "a.wav"))
    wait_for(lambda: our_code_runs(process.pid), seconds=60)
    time.sleep(delay)  # the moment (imports, set-up, speech), not a wait for something
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert b"Traceback" not in stderr and stderr.count(b"\n") <= 1


# Python 3.11 turns a KeyboardInterrupt raised while a class is created (a
# descriptor's __set_name__) into a RuntimeError caused by it: Ctrl-C 10 ms into the
# imports of `say` once hit the standard library's platform module there.
INTERRUPTED_CLASS = """
import sys
from voicestream import cli
from voicestream.__main__ import main

class Interrupted:
    def __set_name__(self, owner, name):
        raise KeyboardInterrupt  # as a Ctrl-C landing there would

def load():
    class Late:  # a module's class, loaded as the signal comes
        attribute = Interrupted()

async def command(*args):
    load()

if sys.argv[1] == "imports":
    cli.run = load  # while voicestream loads, before the command runs
else:
    cli._say = command  # while the command runs
sys.argv[1:] = ["say", "hello"]
main()
"""


@pytest.mark.parametrize("where", ["imports", "command"])
def test_ctrl_c_while_a_class_is_created_is_exit_130_without_a_traceback(
    cli: Cli, where: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_CLASS, where],
        capture_output=True, text=True, env=cli.env, cwd=cli.cwd, timeout=60,
    )  # fmt: skip
    assert done.returncode == 130, done.stderr
    assert done.stderr == ""


def test_ctrl_c_stops_also_when_started_with_it_ignored(cli: Cli, tmp_path: Path) -> None:
    # A background job of a shell without job control starts with SIGINT ignored.
    process = subprocess.Popen(
        cli.argv("say", "--source", "demo", "--out", str(tmp_path / "a.wav")),
        env=cli.env, cwd=cli.cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    time.sleep(0.2)  # while it is still starting
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr


def test_a_wav_killed_mid_answer_has_a_header_that_matches_its_data(
    cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "a.wav"
    process = cli.popen("say", "--source", "demo", "--out", str(out))
    wait_for(lambda: out.exists() and out.stat().st_size > 44 + 3 * 22050)
    process.kill()  # SIGKILL: no handler, no close, no flush
    process.wait(timeout=30)
    rate, samples = read_wav(out)  # fails unless the header counts exactly the data
    assert len(samples) / rate > 1


# -- the disk filling up ---------------------------------------------------------------


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_disk_full_mid_answer_is_one_line_with_a_valid_wav_and_metrics(
    cli: Cli, tmp_path: Path
) -> None:
    full, kept, metrics = tmp_path / "full", tmp_path / "kept.wav", tmp_path / "m.json"
    full.mkdir()
    command = " ".join(
        cli.argv("say", "--source", "demo", "--out", f"{full}/a.wav", "--metrics", str(metrics))
    )
    # A private 1 MB tmpfs (about 23 s of audio): the answer (56 s) cannot fit.
    script = (
        f"mount -t tmpfs -o size=1m tmpfs {full} && {{ {command}; code=$?; "
        f"cp {full}/a.wav {kept}; exit $code; }}"
    )
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True,
        env=cli.env | FAST_DEMO, cwd=cli.cwd, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"no space left on device writing {full}/a.wav" in one_line(result.stderr)
    rate, samples = read_wav(kept)
    figures = json.loads(metrics.read_text())
    assert len(samples) / rate == pytest.approx(figures["audio_s"], abs=1e-3)
    assert figures["audio_s"] > 5
    assert figures["chunks"] > 1 and figures["tokens"] > 100


# -- input that is not there, or not clean ---------------------------------------------------


@pytest.mark.parametrize("args", [["say", "-"], ["chat", "--out", "."]], ids=["say", "chat"])
def test_closed_stdin_is_a_usage_error(cli: Cli, args: list[str]) -> None:
    command = " ".join(cli.argv(*args))
    result = subprocess.run(
        ["sh", "-c", f"exec {command} <&-"], capture_output=True, text=True,
        env=cli.env, cwd=cli.cwd, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "standard input is closed" in one_line(result.stderr)


def test_a_prompt_with_the_stdin_source_is_refused(cli: Cli) -> None:
    result = cli.run("say", "a question", "--source", "stdin", "--null", input="text")
    assert result.returncode == 2
    assert "--source stdin" in one_line(result.stderr)


def test_nul_is_spoken_around_not_the_end_of_the_text(cli: Cli, tmp_path: Path) -> None:
    lengths = {}
    for name, text in (("nul", "Hello\0 world."), ("clean", "Hello world."), ("cut", "Hello")):
        out = tmp_path / f"{name}.wav"
        result = cli.run("say", "-", "--out", str(out), input=text)
        assert result.returncode == 0, result.stderr
        lengths[name] = len(read_wav(out)[1])
    assert lengths["nul"] == pytest.approx(lengths["clean"], rel=0.05)
    assert lengths["nul"] > 1.3 * lengths["cut"]


def test_escape_sequences_from_the_model_never_reach_the_terminal(
    cli: Cli, fake_api: FakeAnthropic
) -> None:
    text = "Look\x1b]0;pwned\x07 here.\x1b[2J Cleared?\x1b[31m Red. The end."
    fake_api.script = Script(text=text, piece=3)
    result = cli.run("say", "question", "--null", **api_env(fake_api))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Look here. Cleared? Red. The end.\n"


def test_a_key_echoed_by_the_server_is_redacted(cli: Cli, fake_api: FakeAnthropic) -> None:
    fake_api.script = Script(
        status=401, error_type="authentication_error", error_message=f"invalid x-api-key {KEY}"
    )
    result = cli.run("say", "question", "--null", **api_env(fake_api))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert KEY not in line and "invalid x-api-key [redacted]" in line


def test_tools_off_from_the_environment_sends_no_tools(cli: Cli, fake_api: FakeAnthropic) -> None:
    for raw, sent in (("0", False), ("false", False), ("1", True)):
        result = cli.run(
            "say", "question", "--null", **api_env(fake_api), VOICESTREAM_ANTHROPIC_TOOLS=raw
        )
        assert result.returncode == 0, result.stderr
        assert ("tools" in fake_api.requests[-1].body) is sent, raw
