"""The public API: the README's example as it is, and what `import voicestream` offers."""

from __future__ import annotations

import random
import re
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from conftest import Cli
from wavcheck import read_wav, voiced_fraction

import voicestream
from voicestream.synthesizers.silent import silence

REPO = Path(__file__).parent.parent


def readme_example() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"<!-- api-example:.*?-->\n```python\n(.*?)```", readme, re.S)
    assert match, "the README has no API example"
    return match.group(1)


def test_the_readme_example_speaks_a_stream_into_a_wav(cli: Cli, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", readme_example()], capture_output=True, text=True,
        env=cli.env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    same, audio_s, chunks = result.stdout.split()
    assert same == "True"  # the result's text is the stream, exactly
    rate, samples = read_wav(tmp_path / "answer.wav")
    assert float(audio_s) == pytest.approx(len(samples) / rate, abs=0.01)
    assert int(chunks) >= 2 and voiced_fraction(samples, rate) > 0.4


def test_every_public_name_is_importable_and_listed() -> None:
    assert sorted(voicestream.__all__) == sorted(voicestream._HOME)  # one list, kept as two
    for name in voicestream.__all__:
        assert getattr(voicestream, name) is not None, name
    assert "speak" in voicestream.__all__ and "Answer" in dir(voicestream)
    with pytest.raises(AttributeError):
        _ = voicestream.no_such_name  # type: ignore[attr-defined]


def test_say_without_out_or_play_synthesizes_and_discards() -> None:
    config = voicestream.load_config(voice={"engine": "silent"})
    spoken = voicestream.say("One sentence. And another one.", play=False, config=config)
    assert spoken.text == "One sentence. And another one."
    assert spoken.metrics["chunks"] >= 1 and spoken.metrics["audio_s"] > 0
    assert spoken.metrics["underruns"] == 0 and not spoken.stopped


def test_load_config_checks_overrides_like_the_command_line() -> None:
    with pytest.raises(voicestream.UsageError, match=r"load_config\(\): 'voice.rate' must be"):
        voicestream.load_config(voice={"rate": 5})
    with pytest.raises(voicestream.UsageError, match=r"unknown key 'voice\.rat'"):
        voicestream.load_config(voice={"rat": 200})


def traced_peak(words: int) -> tuple[int, int]:
    """The peak of traced memory while the public API speaks an answer of ``words``
    words (the silent engine, audio discarded), and the length of its text."""
    config = voicestream.load_config(voice={"engine": "silent"})

    async def stream(count: int) -> AsyncIterator[str]:
        rng = random.Random(count)
        for n in range(count):  # made as it goes: the test holds none of it
            word = rng.choice(WORDS)
            end = "." if n % 13 == 12 else "," if n % 7 == 6 else ""
            text = f"{word}{end} "
            for i in range(0, len(text), 4):
                yield text[i : i + 4]

    async def run(count: int) -> int:
        return len((await voicestream.speak(stream(count), play=False, config=config)).text)

    trio.run(run, 200)  # imports and first-use caches, outside the measure
    silence(60 * 22050)  # the silent engine's one buffer, as long as any chunk: not the answer's
    tracemalloc.start()
    try:
        length = trio.run(run, words)
        return tracemalloc.get_traced_memory()[1], length
    finally:
        tracemalloc.stop()


WORDS = "the model writes and the voice speaks every word while it is still coming".split()


def test_an_answers_memory_does_not_grow_with_its_length() -> None:
    # Played chunks collapse to counts; the text is kept once, as text. Before: 290 bytes a
    # word (every word's mark and every piece kept to the end): x4.75 for x10 the words.
    short, short_length = traced_peak(2_000)
    long, long_length = traced_peak(20_000)
    assert long_length > 9 * short_length  # the answer really was ten times as long
    # The text is kept once (and decoded once at the end): 2 bytes a character. The
    # constant: trio keeps up to 1,000 expired timers (the channels' patience) before it
    # prunes them, ~60 KB here, whatever the length.
    assert long <= 1.5 * short + 2 * (long_length - short_length) + 256_000, (short, long)
