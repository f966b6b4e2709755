"""The sentence chunker: the tricky-case table, cut independence, losslessness, lookahead."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicestream.chunker import ResumedChunker, SentenceChunker
from voicestream.chunker_cases import BY_LANGUAGE, CASES


def chunks(text: str, cuts: list[int] | None = None, **options: object) -> list[str]:
    """Feed ``text`` cut at ``cuts`` (whole if None); return every chunk."""
    chunker = SentenceChunker(**options)  # type: ignore[arg-type]
    out: list[str] = []
    last = 0
    for cut in [*sorted(set(cuts or [])), len(text)]:
        out += chunker.feed(text[last:cut])
        last = cut
    return out + chunker.flush()


def llm_tokens(text: str, seed: int) -> list[int]:
    """Cut points of random 1-6 character tokens, as a model streams."""
    rng, cuts, i = random.Random(seed), [], 0
    while i < len(text):
        i += rng.randint(1, 6)
        cuts.append(min(i, len(text)))
    return cuts


@pytest.mark.parametrize(("rule", "text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_tricky_cases(rule: str, text: str, expected: list[str]) -> None:
    assert chunks(text) == expected
    assert chunks(text, list(range(len(text)))) == expected  # character by character
    for seed in range(5):
        assert chunks(text, llm_tokens(text, seed)) == expected


@pytest.mark.parametrize(
    ("language", "rule", "text", "expected"),
    BY_LANGUAGE,
    ids=[f"{c[0]}-{c[1]}" for c in BY_LANGUAGE],
)
def test_tricky_cases_of_the_voices_language(
    language: str, rule: str, text: str, expected: list[str]
) -> None:
    assert chunks(text, language=language) == expected
    assert chunks(text, list(range(len(text))), language=language) == expected
    for seed in range(5):
        assert chunks(text, llm_tokens(text, seed), language=language) == expected
    # A region's tag picks its language's list ("es-419", "pt_BR").
    assert chunks(text, language=f"{language}-XX") == expected


def test_another_languages_titles_do_not_apply() -> None:
    # "Sr." is Senior in English (an end before a capital), a title in Spanish.
    text = "The company was founded by John Smith Sr. He ran it for years."
    english = ["The company was founded by John Smith Sr.", "He ran it for years."]
    assert chunks(text) == chunks(text, language="en-us") == english
    assert chunks(text, language="es") == [text]


def released_after(chunker: SentenceChunker, text: str) -> list[tuple[int, str]]:
    """``(characters fed when released, chunk)``, feeding one character at a time."""
    return [(i + 1, c) for i, ch in enumerate(text) for c in chunker.feed(ch)]


def test_a_sentence_is_released_by_the_first_nonspace_character_after_it() -> None:
    chunker = SentenceChunker()
    chunker.feed("Here is the first part, so")  # the eager first fragment is out
    text = " it ends right here at last. Then another one begins."
    assert released_after(chunker, text) == [
        (text.index("T") + 1, "so it ends right here at last.")
    ]


def test_exclamation_and_line_breaks_are_released_at_once() -> None:
    chunker = SentenceChunker()
    chunker.feed("Here is the first part, so")
    assert chunker.feed(" what a surprise that was!") == []
    assert chunker.feed(" ") == ["so what a surprise that was!"]
    assert chunker.feed("A heading without a stop") == []
    assert chunker.feed("\n") == ["A heading without a stop"]


def test_ambiguous_abbreviation_waits_for_the_next_word_only() -> None:
    chunker = SentenceChunker()
    chunker.feed("Here is the first part, so")
    assert chunker.feed(" troops went back to the U.S. I") == []
    assert chunker.feed("t") == []
    assert chunker.feed(" ") == ["so troops went back to the U.S."]


def test_first_fragment_never_waits_for_merging_and_later_ones_are_sentences() -> None:
    assert chunks("Yes. That is all there is to say, really, my friend.")[0] == "Yes."
    later = chunks("First of all things, we begin here. Second, we go on with the rest, slowly.")
    assert later == [
        "First of all things,",
        "we begin here.",  # the rest of a cut sentence: said on its own, not merged
        "Second, we go on with the rest, slowly.",
    ]


def test_long_sentences_are_split_at_a_clause_mark_else_a_word() -> None:
    clause = "One two three four five, six seven eight nine ten eleven twelve thirteen."
    assert chunks("Start here. " + clause, max_chars=40) == [
        "Start here.",
        "One two three four five,",
        "six seven eight nine ten eleven twelve",
        "thirteen.",
    ]
    for chunk in chunks("Start here. " + "word " * 200, max_chars=60):
        assert len(chunk) <= 60


def test_options_change_the_behaviour() -> None:
    text = "Look at this, a code block:\n```\nx = 1\n```\nDone 🎉 with ellipsis approx. Ten things."
    options = {"code_block_phrase": "Code.", "drop_emoji": False}
    assert chunks(text, **options) == [
        "Look at this, a code block:",
        "Code.",
        "Done 🎉 with ellipsis approx. Ten things.",
    ]
    assert chunks("Look at it, then go.", first_fragment_words=2) == ["Look at it,", "then go."]
    address = "Meet me on the corner of Main Blvd. Seven at noon."
    assert chunks(address) == ["Meet me on the corner of Main Blvd.", "Seven at noon."]
    assert chunks(address, abbreviations=["Blvd."]) == [address]


def test_a_chunker_is_reusable_after_flush() -> None:
    chunker = SentenceChunker()
    first = chunker.feed("One answer is here. ") + chunker.flush()
    second = chunker.feed("One answer is here. ") + chunker.flush()
    assert first == second == ["One answer is here."]


# -- properties over generated text ------------------------------------------------

WORDS = [
    "the", "cat", "sat", "Hello", "world", "It", "A", "Dr.", "Mr.", "U.S.", "e.g.", "etc.",
    "J.", "3.14", "$12.50", "1,000", "7:45", "v2.14.1", "config.toml", "https://x.io/a.b?c=d",
    "a.b@c.de", "42.", "3.", "Oktober", "**bold**", "*it*", "`co.de`", "x", "Paris", "Then",
]  # fmt: skip
MARKS = ["", "", "", "", ",", ".", ".", "!", "?", "?!", "...", "…", ";", ":", " —", '."', ".)"]
SPACES = [" ", " ", " ", " ", "  ", "\nLine ", "\n\nPara "]

prose = st.lists(
    st.tuples(st.sampled_from(WORDS), st.sampled_from(MARKS), st.sampled_from(SPACES)),
    min_size=1, max_size=60,
).map(lambda parts: "Start " + "".join(w + m + s for w, m, s in parts))  # fmt: skip

# Anything at all, markdown included, to shake the state machine.
noise = st.text(alphabet="ab Z.!?,;:\n*_`#-|[]()1…。😀", max_size=200)


def alnum(text: str) -> str:
    return "".join(re.findall(r"[^\W_]", text))


@given(prose, st.lists(st.integers(0, 2000), max_size=40))
@settings(max_examples=300, deadline=None)
def test_prose_chunks_do_not_depend_on_the_cuts_and_lose_nothing(
    text: str, cuts: list[int]
) -> None:
    whole = chunks(text)
    assert chunks(text, [c % (len(text) + 1) for c in cuts]) == whole
    assert alnum(" ".join(whole)) == alnum(text)  # every word, in order, none rewritten
    assert all(c == c.strip() and c for c in whole)


@given(noise, st.lists(st.integers(0, 200), max_size=30), st.sampled_from([60, 300]))
@settings(max_examples=500, deadline=None)
def test_any_text_chunks_do_not_depend_on_the_cuts(
    text: str, cuts: list[int], max_chars: int
) -> None:
    whole = chunks(text, max_chars=max_chars)
    assert chunks(text, [c % (len(text) + 1) for c in cuts], max_chars=max_chars) == whole
    assert chunks(text, list(range(len(text))), max_chars=max_chars) == whole


def test_the_docs_show_every_tricky_case_as_it_is() -> None:
    readme = (Path(__file__).parent.parent / "docs" / "how-it-works.md").read_text()

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "↵")

    for rule, text, expected in CASES:
        row = f"| {rule} | {cell(text)} | " + " ‖ ".join(cell(c) for c in expected) + " |"
        assert row in readme, f"docs/how-it-works.md's tricky-case table is out of date: {rule}"
    for language, rule, text, expected in BY_LANGUAGE:
        row = f"| {language} | {rule} | {cell(text)} | " + " ‖ ".join(cell(c) for c in expected)
        assert row + " |" in readme, f"docs/how-it-works.md is out of date: {language} {rule}"


@given(
    prose, st.integers(0, 60), st.integers(0, 30), st.integers(0, 10_000), st.integers(0, 10_000)
)
@settings(max_examples=300, deadline=None)
def test_a_resumed_chunker_says_exactly_what_was_not_spoken(
    text: str, spoken_whole: int, spoken_more: int, seed: int, seed2: int
) -> None:
    # An answer taken over: its first chunks were spoken (and perhaps the start of
    # the next, where the chunks fall differently); the text is fed again from its
    # start in other tokens, and what comes out is the rest, each word once.
    first = chunks(text, llm_tokens(text, seed))
    spoken = first[: min(spoken_whole, len(first))]
    rest = " ".join(first[len(spoken) :])
    if spoken_more and rest:  # part of the next chunk, as a shorter chunk said it
        spoken.append(rest[: spoken_more % len(rest)].strip())
    resumed = ResumedChunker(None, spoken)
    out: list[str] = []
    last = 0
    for cut in llm_tokens(text, seed2):
        out += resumed.feed(text[last:cut])
        last = cut
    out += resumed.flush()
    assert alnum(" ".join(spoken + out)) == alnum(text)
    assert all(c == c.strip() and c for c in out)


def test_a_resumed_chunker_whose_spoken_text_differs_says_everything_after() -> None:
    # Not the text that was spoken (a model that wrote otherwise): nothing is dropped.
    resumed = ResumedChunker(None, ["Something else entirely."])
    text = "The first sentence here. The second one."
    assert resumed.feed(text) + resumed.flush() == chunks(text)
