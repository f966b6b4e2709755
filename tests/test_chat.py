"""`voicestream chat` driven through a real pseudo-terminal, as a person types."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path
from typing import Any, ClassVar

import pytest
import trio
import trio.testing
from conftest import FAST_DEMO, Cli

from voicestream import chat as chat_module
from voicestream.audio import Audio
from voicestream.config import load as load_config
from voicestream.conversation import CUT_OFF
from voicestream.sinks import NullSink
from voicestream.sources.demo import demo_chat_answer
from voicestream.testing import FakeAnthropic, Terminal, wait_for
from voicestream.words import spans

KEY = "sk-ant-chat-test-key"
SENTENCES = " ".join(f"This is sentence number {n} of a long spoken answer." for n in range(1, 61))


def wav_frames(path: Path) -> int:
    with wave.open(str(path)) as w:
        return w.getnframes()


def test_barge_in_keeps_what_was_heard(cli: Cli, fake_api: FakeAnthropic, tmp_path: Path) -> None:
    out, transcript = tmp_path / "answers", tmp_path / "chat.jsonl"
    env = cli.env | {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake_api.base_url}
    argv = [sys.executable, "-m", "voicestream", "chat", "--out", str(out)]
    term = Terminal([*argv, "--transcript", str(transcript)], env, tmp_path)
    term.expect(rb"> ")

    fake_api.script.text, fake_api.script.delay_s = "Paris is the capital of France.", 0.0
    term.type(b"What is the capital of France?\r")
    term.expect(rb"Paris is the capital of France\.")
    term.expect(rb"> ")

    fake_api.script.text, fake_api.script.delay_s = SENTENCES, 0.02  # ~10 s to write
    term.type(b"Tell me something long.\r")
    term.expect(rb"sentence number 4 ")
    term.type(b"\r")  # Enter: stop
    term.expect(rb"stopped after")
    term.expect(rb"> ")  # the prompt is back, before the model finished writing

    second = fake_api.requests[-1]
    wait_for(lambda: second.outcome != "open")
    assert second.outcome == "closed by client"

    # No audio frame reaches the sink once the interrupt was handled.
    wav = out / "answer-002.wav"
    frames = wav_frames(wav)
    time.sleep(1.0)
    assert wav_frames(wav) == frames > 0
    turn = json.loads(transcript.read_text().splitlines()[-1])
    assert turn["interrupted"] and turn["audio_s"] == pytest.approx(frames / 22050, abs=1e-3)

    fake_api.script.text, fake_api.script.delay_s = "You stopped me at a sentence.", 0.0
    term.type(b"Where did you stop?\r")
    term.expect(rb"You stopped me at a sentence\.")
    term.expect(rb"> ")
    messages = fake_api.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2 + ["user"]
    assert messages[1]["content"] == "Paris is the capital of France."
    cut = messages[3]["content"]
    assert cut.endswith(CUT_OFF) and cut.startswith("This is sentence number 1 of")
    heard = cut.removesuffix(CUT_OFF).strip()
    assert SENTENCES.startswith(heard) and len(heard) < len(SENTENCES)
    assert heard == turn["text"].removesuffix(CUT_OFF).strip()
    assert turn["heard_words"] == len(spans(heard))
    assert messages[4]["content"] == "Where did you stop?"
    assert [p.name for p in sorted(out.iterdir())] == [f"answer-00{n}.wav" for n in (1, 2, 3)]

    term.type(b"/quit\r")
    assert term.wait() == 0
    assert KEY.encode() not in term.everything and b"Traceback" not in term.everything


def test_ctrl_c_stops_the_answer_then_quits_at_the_prompt(
    pulse: dict[str, Any], fake_api: FakeAnthropic, tmp_path: Path
) -> None:
    # Through the real speaker this time: PortAudio into the null sink.
    env = pulse["env"] | {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake_api.base_url}
    fake_api.script.text, fake_api.script.delay_s = SENTENCES, 0.02
    transcript = tmp_path / "chat.jsonl"
    argv = [sys.executable, "-m", "voicestream", "chat", "--transcript", str(transcript)]
    term = Terminal(argv, env, tmp_path)
    term.expect(rb"> ")
    term.type(b"Speak for a while.\r")
    term.expect(rb"\xe2\x96\xb6 ")  # the status line: the sentence being spoken,
    term.expect(rb"\x1b\[1;4m(is|sentence|number)\x1b\[22;24m")  # its word being heard
    term.type(b"\x03")  # Ctrl-C during the answer: stop it, keep the chat
    term.expect(rb"stopped after")
    term.expect(rb"> ")
    turn = json.loads(transcript.read_text().splitlines()[-1])
    heard = turn["text"].removesuffix(CUT_OFF).strip()
    assert SENTENCES.startswith(heard) and turn["heard_words"] == len(spans(heard)) >= 2
    wait_for(lambda: fake_api.requests[-1].outcome != "open")
    assert fake_api.requests[-1].outcome == "closed by client"
    term.type(b"\x03")  # Ctrl-C at the prompt: quit
    assert term.wait() == 0
    assert b"Traceback" not in term.everything


def test_commands_at_the_prompt(cli: Cli, tmp_path: Path) -> None:
    commands = "\n".join([
        "/help", "/rate 9000", "/rate 0", "/rate 220", "/voice nosuchvoice", "/save none.wav",
        "/nope", "Tell me something.", "/save last.wav", "/history", "/clear", "/history", "/quit",
    ])  # fmt: skip
    result = cli.run("chat", "--out", "answers", input=commands + "\n", **FAST_DEMO)
    assert result.returncode == 0, result.stderr
    assert "/voice NAME" in result.stdout and "Enter or Esc" in result.stdout
    lines = result.stderr.splitlines()
    assert lines[0].startswith("voicestream: ANTHROPIC_API_KEY is not set") and "demo" in lines[0]
    assert "'voice.rate' must be from 80 to 500, not 9000" in lines[1]
    assert "'voice.rate' must be from 80 to 500, not 0" in lines[2]  # and the answer still comes
    assert "220 words per minute" in lines[3]
    assert "unknown voice" in lines[4]
    assert "no answer to save yet" in lines[5]
    assert "unknown command /nope" in lines[6]
    assert lines[7].startswith("voicestream: saved")
    assert "you: Tell me something." in result.stdout
    assert result.stdout.count("you: ") == 1  # the second /history came after /clear
    with (
        wave.open(str(tmp_path / "last.wav")) as saved,
        wave.open(str(tmp_path / "answers" / "answer-001.wav")) as answer,
    ):
        assert saved.getnframes() == answer.getnframes() > 0


def test_chat_without_an_audio_device_suggests_out_dir(cli: Cli) -> None:
    result = cli.run("chat", input="hello\n")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "voicestream: no audio output device found; use --out DIR to write each answer to a "
        "WAV file"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "stdin"], "chat reads questions from stdin"),
        (["--out", "file.wav"], "is a file"),
        (["--out", "no/such/dir"], "does not exist"),
    ],
)
def test_chat_usage_errors_are_one_line(
    cli: Cli, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "file.wav").write_bytes(b"")
    result = cli.run("chat", *args, input="")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_a_failed_answer_is_one_line_and_the_chat_goes_on(
    cli: Cli, fake_api: FakeAnthropic
) -> None:
    fake_api.script.status, fake_api.script.faulty_requests = 529, 1
    fake_api.script.error_type, fake_api.script.text = "overloaded_error", "Second answer."
    result = cli.run(
        "chat", "--out", "answers", input="First question?\nSecond question?\n",
        ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=fake_api.base_url,
        VOICESTREAM_ANTHROPIC_MAX_RETRIES="0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "voicestream: the API is overloaded (529): something went wrong; try again in a minute"
    ]
    assert result.stdout == "Second answer.\n"
    # The failed question is not part of the conversation the model sees next.
    assert fake_api.requests[-1].body["messages"] == [
        {"role": "user", "content": "Second question?"}
    ]


def test_a_malformed_stream_fails_one_answer_not_the_chat(
    cli: Cli, fake_api: FakeAnthropic, tmp_path: Path
) -> None:
    fake_api.script.text, fake_api.script.piece = "Both answers say this sentence.", 5
    fake_api.script.garbage_after, fake_api.script.faulty_requests = 2, 1
    transcript = tmp_path / "t.jsonl"
    result = cli.run(
        "chat", "--out", "answers", "--transcript", str(transcript),
        input="First question?\nSecond question?\n",
        ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=fake_api.base_url,
        VOICESTREAM_ANTHROPIC_MAX_RESUMES="0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    assert "could not be read" in line and "Traceback" not in result.stderr
    assert result.stdout.endswith("Both answers say this sentence.\n")
    turns = [json.loads(t) for t in transcript.read_text().splitlines()]
    assert [t["role"] for t in turns] == ["user", "assistant"] * 2
    assert turns[1]["error"] and turns[1]["written"] == "Both answe"  # two deltas of five
    assert turns[3]["text"] == "Both answers say this sentence." and not turns[3]["error"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["TERM", "HUP"])
def test_a_stop_signal_ends_the_answer_keeps_its_transcript_and_quits(
    fake_api: FakeAnthropic, cli: Cli, tmp_path: Path, signum: int
) -> None:
    out, transcript = tmp_path / "answers", tmp_path / "chat.jsonl"
    env = cli.env | {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake_api.base_url}
    argv = [sys.executable, "-m", "voicestream", "chat", "--out", str(out)]
    term = Terminal([*argv, "--transcript", str(transcript)], env, tmp_path)
    term.expect(rb"> ")
    fake_api.script.text, fake_api.script.delay_s = SENTENCES, 0.02
    term.type(b"Tell me something long.\r")
    term.expect(rb"sentence number 3 ")
    os.kill(term.pid, signum)
    assert term.wait() == 128 + signum
    wait_for(lambda: fake_api.requests[-1].outcome != "open")
    assert fake_api.requests[-1].outcome == "closed by client"
    turn = json.loads(transcript.read_text().splitlines()[-1])
    assert turn["interrupted"] and turn["audio_s"] > 0
    assert wav_frames(out / "answer-001.wav") / 22050 == pytest.approx(turn["audio_s"], abs=1e-3)


async def test_no_audio_reaches_the_sink_once_the_answer_is_stopped(
    clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    events: list[str] = []

    class Speaker(NullSink):
        async def write(self, audio: Audio) -> None:
            events.append("write")
            await trio.sleep(audio.seconds)  # plays in real time

        def close(self) -> None:
            events.append("close")

    class Keys:
        tty = False
        questions: ClassVar = ["Tell me something.", None]

        async def line(self) -> str | None:
            return self.questions.pop(0)

        async def stop_key(self) -> None:
            await trio.sleep(4.0)  # the listener presses Enter 4 s into the answer
            events.append("stop")

        def keys(self) -> contextlib.nullcontext[None]:
            return contextlib.nullcontext()

    monkeypatch.setattr(chat_module, "open_sink", lambda *args: Speaker())
    monkeypatch.setattr(chat_module, "check_device", lambda device: None, raising=False)
    config = load_config(None, {}, {"voice": {"engine": "silent"}}, cwd=tmp_path)
    chat = chat_module.Chat(config, "demo", Keys(), io.StringIO(), io.StringIO(), tmp_path)
    assert await chat.run() == 0
    stop = events.index("stop")
    assert "write" in events[:stop] and set(events[stop + 1 :]) == {"close"}  # may close twice


PRELOAD_SCRIPT = """
import contextlib, io, pathlib, sys, trio
from voicestream import chat, config

class Keys:
    tty = False

    async def line(self):
        # The person is still typing: the SDK must be loading meanwhile, not after Enter.
        with trio.fail_after(60):
            while "anthropic" not in sys.modules:
                await trio.sleep(0.01)
        return None

    async def stop_key(self):
        await trio.sleep_forever()

    def keys(self):
        return contextlib.nullcontext()

cfg = config.load(None, {}, {"voice": {"engine": "silent"}})
print("anthropic" in sys.modules)
talk = chat.Chat(cfg, "anthropic", Keys(), io.StringIO(), io.StringIO(), pathlib.Path("."))
print(trio.run(talk.run))
"""


def test_chat_loads_the_sdk_while_the_first_question_is_typed(cli: Cli) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PRELOAD_SCRIPT], capture_output=True, text=True,
        env=cli.env | {"ANTHROPIC_API_KEY": KEY}, cwd=cli.cwd, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "0"]  # not loaded at start; loaded while typing


def test_piped_questions_get_answers_apart_and_a_chosen_demo_needs_no_notice(
    cli: Cli, tmp_path: Path
) -> None:
    result = cli.run(
        "chat", "--source", "demo", "--out", "answers", input="First?\nSecond?\n", **FAST_DEMO
    )
    assert result.returncode == 0, result.stderr
    assert "ANTHROPIC_API_KEY" not in result.stderr  # the demo was asked for
    first, second = demo_chat_answer(0), demo_chat_answer(1)
    assert result.stdout == f"{first}\n\n{second}\n"  # a blank line between the answers
    unchosen = cli.run("chat", "--out", "answers", input="First?\n", **FAST_DEMO)
    assert "ANTHROPIC_API_KEY is not set" in unchosen.stderr  # the demo by default: said why
