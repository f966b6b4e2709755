"""Word marks: the engines' own timing (espeak-ng's word events, Piper's phoneme
alignments) mapped onto the words, checked against the audio itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from voicestream.audio import Audio
from voicestream.synthesizers import Synthesizer
from voicestream.synthesizers import piper as piper_engine
from voicestream.synthesizers.espeak import EspeakSynthesizer
from voicestream.synthesizers.piper import PiperSynthesizer
from voicestream.words import Word, estimate, from_phonemes, from_positions, spans

PAUSED = "One. Two. Three. Four, five, six."
HARD = "In 1990, Dr. Smith's e-mail cost $3.50 — isn't that the U.S. rate for the café?"
BEFORE_S, AFTER_S = 0.06, 0.1  # a stop consonant ("t") opens with a silent closure


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if len(samples) else 0.0


def lands_on_sound(audio: Audio, mark: Word) -> bool:
    """A word after a pause starts where the sound does: quiet just before its mark,
    loud just after."""
    before = rms(audio.samples[max(0, mark.sample - int(BEFORE_S * audio.rate)) : mark.sample])
    after = rms(audio.samples[mark.sample : mark.sample + int(AFTER_S * audio.rate)])
    return after > 300 and after > 4 * before


def check_marks(audio: Audio) -> None:
    text = audio.text
    assert [(w.offset, w.length) for w in audio.words] == spans(text)  # every word, once
    samples = [w.sample for w in audio.words]
    assert samples == sorted(samples) and len(set(samples)) == len(samples)  # in order
    assert samples[0] >= 0 and samples[-1] < len(audio.samples)  # inside the chunk's audio


@pytest.fixture(scope="module")
def piper_voice() -> Any:
    return piper_engine._load(piper_engine.bundled_voice())  # loaded once: 1-2 s


@pytest.fixture
def piper(piper_voice: Any) -> PiperSynthesizer:
    return PiperSynthesizer(piper_voice, 180)


@pytest.fixture(params=["espeak", "piper"])
async def engine(request: pytest.FixtureRequest, piper: PiperSynthesizer) -> Synthesizer:
    return piper if request.param == "piper" else await EspeakSynthesizer.open("", 180)


async def test_each_word_after_a_pause_is_marked_where_its_sound_starts(
    engine: Synthesizer,
) -> None:
    audio = await engine.synthesize(PAUSED)
    check_marks(audio)
    assert not any(w.estimated for w in audio.words)  # the engine's own timing
    for mark in audio.words[1:]:  # every word here follows a full stop or a comma
        assert lands_on_sound(audio, mark), PAUSED[mark.offset : mark.end]
    # The check can tell: marks spread by length (as an engine without timing gets)
    # miss the sounds.
    guessed = estimate(PAUSED, len(audio.samples))
    assert not all(lands_on_sound(audio, mark) for mark in guessed[1:])


async def test_numbers_abbreviations_and_merged_words_all_get_marks_in_order(
    engine: Synthesizer,
) -> None:
    audio = await engine.synthesize(HARD)
    check_marks(audio)
    # espeak-ng reports no word event for some of ours ("e-mail" after "U.S."): those
    # are interpolated and say so; most come from the engine.
    assert sum(w.estimated for w in audio.words) <= 3
    # A word said as several ("1990", "$3.50") is one mark, and what follows is
    # later: "cost" is after the whole of "1990, Dr. Smith's e-mail".
    marks = {HARD[w.offset : w.end]: w.sample for w in audio.words}
    assert marks["1990"] < marks["Dr"] < marks["cost"] < marks["3.50"] < marks["rate"]


async def test_a_text_without_words_has_no_marks(piper: PiperSynthesizer) -> None:
    for synthesizer in (await EspeakSynthesizer.open("", 180), piper):
        for text in ("", "...", "— *"):
            assert (await synthesizer.synthesize(text)).words == ()


def test_positions_map_onto_our_words_and_fill_the_gaps() -> None:
    text = "In 1990 U.S. e-mail isn't"
    # As espeak-ng reports them: "1990" twice (two spoken words), nothing for "e-mail".
    positions = [(0, 0), (3, 1000), (4, 3000), (8, 5000), (20, 9000)]
    marks = from_positions(text, positions, 12000)
    assert [(text[m.offset : m.end], m.sample, m.estimated) for m in marks] == [
        ("In", 0, False),
        ("1990", 1000, False),
        ("U.S", 5000, False),
        ("e-mail", 5000 + (9000 - 5000) * (13 - 8) // (20 - 8), True),
        ("isn't", 9000, False),
    ]


def test_positions_out_of_order_or_outside_the_audio_are_not_trusted() -> None:
    text = "one two three"
    marks = from_positions(text, [(0, 0), (4, 9000), (8, 500)], 4000)
    assert [m.sample for m in marks] == sorted(m.sample for m in marks)
    assert all(m.sample < 4000 for m in marks)
    assert [m.estimated for m in marks] == [False, True, False]


def test_phonemes_of_merged_and_split_words_are_aligned() -> None:
    text = "for the 1990 party"
    alone = [["f", "ɔː", "ɹ"], ["ð", "ə"], ["n", "ˈ", "aɪ", "n", "t", " ", "n", "aɪ"], ["p", "ɑː"]]
    # Said together: "for the" as one phoneme word, "1990" as two, a stress mark.
    said = [("^", 0), ("f", 100), ("ɚ", 200), ("ð", 300), ("ə", 400), (" ", 500),
            ("n", 600), ("ˈ", 700), ("aɪ", 800), ("n", 900), ("t", 1000), (" ", 1100),
            ("n", 1200), ("aɪ", 1300), (" ", 1400), ("ˈ", 1500), ("p", 1600), ("ɑː", 1700),
            (".", 1800), ("$", 1900)]  # fmt: skip
    marks = from_phonemes(text, alone, said, 2000)
    assert [(text[m.offset : m.end], m.sample) for m in marks] == [
        ("for", 100),
        ("the", 300),  # inside the phoneme word it merged into
        ("1990", 600),
        ("party", 1500),  # with its stress mark
    ]
    assert not any(m.estimated for m in marks)


def test_estimates_are_spread_by_length_and_say_so() -> None:
    marks = estimate("a bb cccc", 100)
    assert [m.sample for m in marks] == [0, 2 * 100 // 10, 5 * 100 // 10]
    assert all(m.estimated for m in marks)
    assert estimate("...", 100) == [] and estimate("word", 0) == []


def test_a_position_just_after_a_word_is_not_that_word() -> None:
    # espeak-ng reported a word at offset 3: the space after "one", inside no word.
    first, second = from_positions("one two", [(3, 100), (4, 600)], 1000)
    assert first.estimated and first.sample == 0  # not timed at 100 by the space
    assert (second.sample, second.estimated) == (600, False)
