"""``voicestream say`` end to end, through the real espeak-ng, WAV files and the CLI."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from conftest import FAST_DEMO, Cli, wrote
from wavcheck import read_wav, voiced_fraction

from voicestream.sources.demo import demo_answer
from voicestream.testing import Terminal
from voicestream.words import spans


def words(text: str) -> int:
    return len(re.findall(r"\w+", text))


def test_demo_to_wav_is_valid_speech_at_the_configured_rate(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "demo.wav"
    result = cli.run("say", "--source", "demo", "--out", str(out), "--rate", "180", **FAST_DEMO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == demo_answer().rstrip("\n")  # captions: the answer, only
    rate, samples = read_wav(out)
    assert rate == 22050
    seconds = len(samples) / rate
    assert voiced_fraction(samples, rate) > 0.5
    spoken_wpm = words(demo_answer()) / seconds * 60
    assert 180 / 2 <= spoken_wpm <= 180 * 2, f"{spoken_wpm:.0f} words per minute"


def test_rate_flag_changes_the_length_of_speech(cli: Cli, tmp_path: Path) -> None:
    lengths = {}
    for rate in ("120", "360"):
        out = tmp_path / f"{rate}.wav"
        text = "One small step for a man, one giant leap for mankind."
        result = cli.run("say", "-", "--out", str(out), "--rate", rate, input=text)
        assert result.returncode == 0, result.stderr
        sample_rate, samples = read_wav(out)
        lengths[rate] = len(samples) / sample_rate
    assert lengths["120"] > 2 * lengths["360"]


def test_without_a_key_the_demo_is_spoken_with_a_notice(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("say", "--out", str(tmp_path / "a.wav"), "--engine", "silent", **FAST_DEMO)
    assert result.returncode == 0
    notice, closing = result.stderr.splitlines(keepends=True)
    assert "ANTHROPIC_API_KEY" in notice and closing == wrote(tmp_path / "a.wav", closing)
    assert "Sure!" in result.stdout


def test_metrics_file_has_the_figures(cli: Cli, tmp_path: Path) -> None:
    metrics = tmp_path / "m.json"
    begun = time.monotonic()
    result = cli.run(
        "say", "--source", "demo", "--out", str(tmp_path / "a.wav"), "--metrics", str(metrics),
        VOICESTREAM_DEMO_TOKENS_PER_S="2000",
    )  # fmt: skip
    process_s = time.monotonic() - begun
    assert result.returncode == 0, result.stderr
    figures = json.loads(metrics.read_text())
    # What the person waited before the request, within the whole process's time.
    assert 0 < figures["start_s"] < figures["start_s"] + figures["wall_s"] < process_s
    assert figures["ttft_s"] >= 0.4  # the demo's first-token delay
    assert figures["ttft_s"] <= figures["ttfa_s"] <= figures["wall_s"]
    assert figures["tokens"] > 100 and figures["chunks"] >= 10
    assert figures["heard_words"] == len(spans(demo_answer()))  # a file: all of it was stored
    rate, samples = read_wav(tmp_path / "a.wav")
    assert abs(figures["audio_s"] - len(samples) / rate) < 0.01
    assert set(figures["channels"]) == {"chunks", "audio"}
    for channel in figures["channels"].values():
        assert {"peak_used", "capacity", "longest_send_wait_s", "producer_timeouts"} <= set(channel)
    assert figures["channels"]["chunks"]["producer_timeouts"] == 0


def test_voices_lists_espeak_voices(cli: Cli) -> None:
    result = cli.run("voices")
    assert result.returncode == 0
    header, *rows = result.stdout.splitlines()
    assert header.split()[:2] == ["VOICE", "(--voice)"] and len(rows) > 20
    assert re.search(r"^gmw/en-us\s", result.stdout, re.M)
    (default,) = [row for row in rows if row.endswith("(the default)")]
    assert default.startswith("gmw/en ")
    chosen = cli.run("voices", VOICESTREAM_VOICE_VOICE="German")
    assert [r.split()[0] for r in chosen.stdout.splitlines() if "default" in r] == ["gmw/de"]
    # Read by a pipe that closes after a line (| head -1): no error.
    process = cli.popen("voices")
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().startswith(b"VOICE")
    process.stdout.close()
    assert process.wait(timeout=30) == 0 and process.stderr.read() == b""


def test_a_voice_may_be_named_by_its_language(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "de.wav"
    result = cli.run("say", "-", "--voice", "de", "--out", str(out), input="Guten Tag.")
    assert result.returncode == 0, result.stderr
    near = cli.run("say", "hi", "--source", "demo", "--null", "--voice", "dee")
    assert near.returncode == 2 and "(did you mean 'de'?)" in near.stderr


def test_voice_flag_takes_a_listed_voice(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "de.wav"
    result = cli.run("say", "-", "--voice", "German", "--out", str(out), input="Guten Tag.")
    assert result.returncode == 0, result.stderr
    rate, samples = read_wav(out)
    assert voiced_fraction(samples, rate) > 0.3


def test_voicestream_alone_shows_what_it_can_do(cli: Cli) -> None:
    done = cli.run()
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.startswith("usage: voicestream")
    assert all(command in done.stdout for command in ("say", "chat", "serve", "voices"))


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["say", "--engine", "piepr"], "voicestream say: argument --engine: invalid choice"),
        (["say", "--engine", "piepr"], "(did you mean 'piper'?)"),
        (["say", "--rate", "abc"], "voicestream say: argument --rate: invalid int value: 'abc'"),
        (["say", "--enigne", "piper"], "voicestream say: unrecognized arguments: --enigne"),
        (["say", "--enigne", "piper"], "(did you mean '--engine'?)"),
        (["chat", "--transcrpt", "t.json"], "voicestream chat: unrecognized arguments"),
        (["chat", "--transcrpt", "t.json"], "(did you mean '--transcript'?)"),
        (["serve", "--port", "eighty"], "voicestream serve: argument --port: invalid int"),
        (["say", "--null", "--out", "n.wav"], "voicestream say: argument --out: not allowed"),
        (["say", "--null", "--play"], "voicestream say: argument --play: not allowed"),
    ],
)
def test_a_mistake_on_the_command_line_is_one_line_from_its_command(
    cli: Cli, tmp_path: Path, argv: list[str], said: str
) -> None:
    done = cli.run(*argv)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and said in done.stderr, done.stderr
    assert not (tmp_path / "n.wav").exists()  # nothing was made before the refusal


def test_standard_input_says_what_it_waits_for_and_when_there_was_nothing(
    cli: Cli, tmp_path: Path
) -> None:
    empty = cli.run("say", "-", "--out", str(tmp_path / "e.wav"), input="")
    assert empty.returncode == 0
    assert empty.stderr == "voicestream: nothing to say: standard input was empty\n" + wrote(
        tmp_path / "e.wav", "(0.0 s of speech)"
    )
    spoken = cli.run("say", "-", "--null", input="Something to say.")
    assert spoken.returncode == 0 and "nothing to say" not in spoken.stderr
    # A person at a terminal is told what is awaited, and how to end it.
    term = Terminal([*cli.argv("say", "-", "--null")], cli.env, tmp_path)
    term.expect(rb"reading standard input; end with Ctrl-D")
    term.type(b"Hello there.\n")
    term.type(b"\x04")
    assert term.wait() == 0


def test_play_without_a_sound_device_says_to_drop_play(cli: Cli, tmp_path: Path) -> None:
    done = cli.run("say", "--source", "demo", "--out", str(tmp_path / "a.wav"), "--play")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "drop --play" in done.stderr and "a.wav" in done.stderr


def test_say_tells_where_the_audio_went(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "demo.wav"
    done = cli.run("say", "--source", "demo", "--out", str(out), **FAST_DEMO)
    assert done.returncode == 0
    rate, samples = read_wav(out)
    said = re.fullmatch(rf"voicestream: wrote {re.escape(str(out))} \((\d+\.\d) s of speech\)\n",
                        done.stderr)  # fmt: skip
    assert said is not None, done.stderr
    assert float(said[1]) == pytest.approx(len(samples) / rate, abs=0.06)
