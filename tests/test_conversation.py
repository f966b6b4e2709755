"""The conversation as data: what the history keeps of each turn (no I/O)."""

from __future__ import annotations

from voicestream.conversation import CUT_OFF, Conversation, Turn


def test_a_whole_answer_is_kept_as_written() -> None:
    talk = Conversation()
    assert talk.add(Turn("Capital of France?", "Paris.", "Paris."))
    assert talk.history == [
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]


def test_a_cut_answer_keeps_what_was_heard_and_says_it_was_cut() -> None:
    talk = Conversation()
    turn = Turn("Tell me more.", "One. Two. Three.", "One. Two", interrupted=True, heard_s=1.2)
    assert talk.add(turn)
    assert talk.history[-1]["content"] == f"One. Two {CUT_OFF}"
    _, answer = turn.transcript("now")
    assert answer["text"] == f"One. Two {CUT_OFF}" and answer["written"] == "One. Two. Three."
    assert answer["interrupted"] and answer["heard_s"] == 1.2


def test_a_failure_after_some_words_is_a_cut_turn_but_one_before_any_is_no_turn() -> None:
    talk = Conversation()
    assert talk.add(Turn("First?", "Half an", "Half", error="the stream broke"))
    assert talk.history[-1]["content"] == f"Half {CUT_OFF}"
    assert not talk.add(Turn("Second?", "", "", error="overloaded"))
    assert [m["content"] for m in talk.history if m["role"] == "user"] == ["First?"]
    talk.clear()
    assert talk.history == []


def test_an_empty_answer_is_remembered_as_no_answer() -> None:
    talk = Conversation()
    assert talk.add(Turn("Hm?", "", ""))
    assert talk.history[-1]["content"] == "[no answer]"
