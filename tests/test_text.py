"""Text from the model made safe to print and to speak (voicestream.text)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from voicestream.text import MAX_SEQUENCE, ControlFilter


def filtered(*pieces: str) -> str:
    controls = ControlFilter()
    return "".join(controls.feed(p) for p in pieces) + controls.flush()


def test_escape_sequences_are_removed_whole() -> None:
    text = "Title\x1b]0;owned\x07 clear\x1b[2J\x1b[1;31mred\x1b[0m, st\x1b]8;;http://x\x1b\\link."
    assert filtered(text) == "Title clearred, stlink."


def test_control_characters_become_spaces_so_words_stay_apart() -> None:
    assert filtered("Hello\0world.\r\n\tNext\x7f\x9bline\x08.") == "Hello world. \n\tNext  line ."


def test_a_sequence_split_across_pieces_is_held_until_complete() -> None:
    assert filtered("ab\x1b", "]0;ti", "tle\x07", "cd") == "abcd"
    assert filtered("ab\x1b[", "2", "J cd") == "ab cd"


def test_a_lone_escape_or_an_endless_sequence_does_not_swallow_the_text() -> None:
    assert filtered("a\x1b\nb") == "a\nb"  # ESC then a line break: no sequence
    endless = "\x1b]" + "x" * (2 * MAX_SEQUENCE)
    assert filtered(endless, " and the rest.").endswith(" and the rest.")
    assert filtered("unfinished \x1b[12") == "unfinished "  # dropped at the end


def test_plain_text_passes_unchanged() -> None:
    text = "Plain text, with Ünïcödé, 中文 and emoji 🎉.\nA new line."
    assert filtered(text) == text


NASTY = st.text(alphabet=st.sampled_from(list("ab .\n\t\x00\x07\x1b[]0;J\\m\x9b\x7f")), max_size=60)


@given(NASTY, st.lists(st.integers(0, 60), max_size=8))
def test_the_result_does_not_depend_on_how_the_stream_is_cut(text: str, cuts: list[int]) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    whole = filtered(text)
    assert filtered(*pieces) == whole
    assert not any(c in whole for c in "\x00\x07\x1b\x9b\x7f")
