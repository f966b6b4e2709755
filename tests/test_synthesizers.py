"""The speech engines, through the real espeak-ng."""

from __future__ import annotations

import numpy as np
import pytest

from voicestream.audio import QUIET, Audio, trim_end
from voicestream.config import VoiceConfig
from voicestream.errors import UsageError
from voicestream.synthesizers import open_synthesizer
from voicestream.synthesizers.espeak import EspeakSynthesizer
from voicestream.synthesizers.silent import spoken_seconds


async def test_each_call_returns_the_audio_of_its_own_text() -> None:
    engine = await EspeakSynthesizer.open("", 180)
    short, long = "Yes.", "This sentence is a good deal longer than the other one, by far."
    lengths = [(await engine.synthesize(t)).seconds for t in (short, long, short, long, short)]
    # espeak-ng carries some prosody from earlier texts into a text's body (its tail is
    # cut to the voice's own end pause): up to ~5% for "Yes." after other tests' questions.
    assert lengths[0] == pytest.approx(lengths[2], rel=0.08) == pytest.approx(lengths[4], rel=0.08)
    assert lengths[1] == pytest.approx(lengths[3], rel=0.05)
    assert lengths[1] > 3 * lengths[0]


async def test_rate_is_applied_whatever_was_used_before() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    slow, fast = await EspeakSynthesizer.open("", 100), await EspeakSynthesizer.open("", 300)
    durations = [(await e.synthesize(text)).seconds for e in (slow, fast, slow, fast)]
    assert durations[0] == pytest.approx(durations[2], rel=0.05)
    assert durations[0] > 2 * durations[1]


async def test_text_without_words_gives_empty_audio() -> None:
    engine = await EspeakSynthesizer.open()
    for text in ("", "   ", "...", "— *"):
        assert len((await engine.synthesize(text)).samples) == 0


async def test_unknown_voice_is_a_usage_error_naming_the_closest() -> None:
    with pytest.raises(UsageError, match="did you mean 'German'"):
        await EspeakSynthesizer.open("Germann", 180)


async def test_silent_engine_lasts_about_as_long_as_espeak(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = "Speech is much slower than text, about four tokens per second for a typical voice."
    espeak = await open_synthesizer(VoiceConfig(engine="espeak", rate=180))
    silent = await open_synthesizer(VoiceConfig(engine="silent", rate=180))
    real, fake = (await espeak.synthesize(text)).seconds, (await silent.synthesize(text)).seconds
    assert 0.5 < fake / real < 2
    assert not (await silent.synthesize(text)).samples.any()
    assert fake == pytest.approx(spoken_seconds(text, 180), abs=1e-3)
    assert capsys.readouterr().out == ""  # pyttsx3's "Audio saved to ..." stays off stdout


async def test_each_synthesizer_speaks_with_its_own_voice() -> None:
    text = "Guten Tag, wie geht es Ihnen heute?"
    default = await EspeakSynthesizer.open("", 180)
    english = (await default.synthesize(text)).seconds
    german = await EspeakSynthesizer.open("German", 180)
    in_german = (await german.synthesize(text)).seconds
    assert abs(in_german - english) > 0.06 * english  # the voice took effect
    # Another synthesizer chose German; the default one still speaks with the default.
    assert (await default.synthesize(text)).seconds == pytest.approx(english, rel=0.02)
    assert (await german.synthesize(text)).seconds == pytest.approx(in_german, rel=0.02)


async def test_the_same_text_gets_the_same_audio_whatever_was_said_before() -> None:
    # espeak-ng is one engine per process and carries prosody from text to text (a
    # question used to leave every later text ~40 ms longer): another synthesizer's
    # question must not change this one's audio.
    mine, other = await EspeakSynthesizer.open("", 180), await EspeakSynthesizer.open("", 180)
    before = len((await mine.synthesize("Yes.")).samples)
    for question in ("Is it?", "Isn't that the rate for the café?", "No!"):
        await other.synthesize(question)
        assert len((await mine.synthesize("Yes.")).samples) == pytest.approx(before, abs=60)


async def test_a_part_of_a_sentence_ends_in_a_short_pause_and_keeps_its_sound() -> None:
    engine = await EspeakSynthesizer.open("", 180)
    part = await engine.synthesize("Here is a short overview")
    trimmed = trim_end(part, 0.12)
    loud = np.flatnonzero(np.abs(part.samples) > QUIET)
    assert (len(part.samples) - loud[-1]) / part.rate > 0.25  # alone, it ends as a sentence
    assert len(trimmed.samples) == loud[-1] + 1 + round(0.12 * part.rate)
    assert np.array_equal(trimmed.samples, part.samples[: len(trimmed.samples)])
    assert trimmed.words == part.words and trimmed.text == part.text
    silent = Audio(np.zeros(4410, dtype=np.int16), 22050, "silence")
    assert trim_end(silent, 0.12) is silent  # the silent engine's audio is all pause
