"""Word marks: where each word of a chunk is heard in its audio. Sans-IO.

A chunk's words are its runs of letters and digits, with the marks inside a word
kept ("isn't", "e-mail", "U.S", "3.14"); a CJK character is a word of its own.
A :class:`Word` says that ``text[offset:offset + length]`` starts at ``sample``
of the chunk's audio.

Engines give timing in their own terms, which this module maps onto the words:

- :func:`from_positions`: espeak-ng reports, as it synthesizes, the text position
  and the exact sample where each word it says starts. Its words are not always
  ours (it says "1990" as two, skips "e-mail" after "U.S."): each of our words
  takes the earliest position that falls inside it; a word with none is
  interpolated between its neighbours and marked ``estimated``.
- :func:`from_phonemes`: Piper reports how many samples each phoneme took. Its
  phonemes come from espeak-ng for whole sentences, where words can merge
  ("for the" is one phoneme word) or split ("1990" is two): each of our words is
  phonemized alone, the sequences are aligned, and a word starts at the first
  phoneme it matched.
- :func:`estimate`: no timing at all (the silent engine, a voice without
  alignments): words spread over the audio by their length, all ``estimated``.
"""

from __future__ import annotations

import bisect
import difflib
import re
import unicodedata
from collections.abc import Iterator, Sequence
from typing import NamedTuple

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+(?:['’.\-][^\W{_CJK}]+)*")
# The same for ASCII text (most), quicker: ASCII classes, and no backtracking to try.
_ASCII_WORD = re.compile(r"(?a)\w++(?:['.\-]\w++)*+")
_STRESS = "ˈˌ"


class Word(NamedTuple):
    """``text[offset:offset + length]`` of a chunk starts at ``sample`` of its audio;
    ``estimated`` when the engine gave no timing for it. (A tuple: every chunk makes
    one per word.)"""

    offset: int
    length: int
    sample: int
    estimated: bool = False

    @property
    def end(self) -> int:
        return self.offset + self.length


Span = tuple[int, int]  # a word's offset and length in its chunk's text


def spans(text: str) -> list[Span]:
    """The words of ``text``, as ``(offset, length)``."""
    return [(a, b - a) for a, b in map(re.Match.span, _words(text))]


def _words(text: str) -> Iterator[re.Match[str]]:
    return (_ASCII_WORD if text.isascii() else _WORD).finditer(text)


def estimate(text: str, frames: int) -> list[Word]:
    """Marks spread over ``frames`` samples by the words' lengths (all estimated)."""
    found = [word.span() for word in _words(text)]
    if not found or frames <= 0:
        return []
    total = sum(end - start for start, end in found) + len(found)
    marks, before, new = [], 0, tuple.__new__  # every chunk of the silent engine: be quick
    for start, end in found:
        marks.append(new(Word, (start, end - start, before * frames // total, True)))
        before += end - start + 1
    return marks


def from_positions(text: str, positions: Sequence[tuple[int, int]], frames: int) -> list[Word]:
    """Marks from ``(character offset, sample)`` pairs an engine reported as words
    started: each word takes the earliest sample reported inside it; the others are
    interpolated by character offset (``estimated``)."""
    found = spans(text)
    starts = [offset for offset, _ in found]
    known: list[int | None] = [None] * len(found)
    for position, sample in positions:
        i = _word_at(found, starts, position)
        if i is not None and 0 <= sample < frames:
            current = known[i]
            known[i] = sample if current is None else min(current, sample)
    return _complete(text, found, known, frames)


def from_phonemes(
    text: str,
    word_phonemes: Sequence[Sequence[str]],
    said: Sequence[tuple[str, int]],
    frames: int,
) -> list[Word]:
    """Marks from the phonemes an engine said, ``(phoneme, start sample)`` in order
    (spaces between phoneme words included), given each word's phonemes said alone
    (``word_phonemes``, one list per word of :func:`spans`)."""
    found = spans(text)
    if len(word_phonemes) != len(found):
        raise ValueError("one list of phonemes per word")
    # What both sides have in common: the sounds, without stress, spaces or punctuation.
    ours = [(w, p) for w, phonemes in enumerate(word_phonemes) for p in phonemes if _sound(p)]
    theirs = []  # (sound, its sample, where its phoneme word starts)
    word_start: int | None = None
    for phoneme, sample in said:
        if phoneme.isspace() or _punctuation(phoneme):
            word_start = None  # what comes next starts a phoneme word
            continue
        if word_start is None:
            word_start = sample  # its first symbol: a sound, or the stress mark before one
        if _sound(phoneme):
            theirs.append((phoneme, sample, word_start))
    known: list[int | None] = [None] * len(found)
    group_taken: set[int] = set()
    matcher = difflib.SequenceMatcher(
        None, [p for _, p in ours], [p for p, _, _ in theirs], autojunk=False
    )
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            w, j = ours[a + k][0], b + k
            if known[w] is not None:
                continue
            # The first of our words in a phoneme word starts where that word starts
            # (with its stress mark); a word merged into it, at its first sound.
            _, sample, group = theirs[j]
            known[w] = group if group not in group_taken else sample
            group_taken.add(group)
    known = [k if k is not None and 0 <= k < frames else None for k in known]
    return _complete(text, found, known, frames)


def _sound(phoneme: str) -> bool:
    return bool(phoneme.strip()) and not _punctuation(phoneme) and phoneme not in _STRESS


def _punctuation(phoneme: str) -> bool:
    return all(unicodedata.category(c).startswith("P") for c in phoneme) or phoneme in "^$_"


def _word_at(found: list[Span], starts: list[int], position: int) -> int | None:
    i = bisect.bisect_right(starts, position) - 1
    if i >= 0 and position < found[i][0] + found[i][1]:
        return i
    return None


def _complete(text: str, found: list[Span], known: list[int | None], frames: int) -> list[Word]:
    """Marks for every word: the known ones kept (never before an earlier word's),
    the others interpolated by character offset between their known neighbours, the
    chunk's start and its end."""
    if not found or frames <= 0:
        return []
    marks: list[Word] = []
    last = 0
    for i, (offset, length) in enumerate(found):
        sample = known[i]
        if sample is not None and sample >= last:
            marks.append(Word(offset, length, sample))
            last = sample
            continue
        # Between the previous mark (or the start) and the next known one (or the end).
        left_offset, left = (marks[-1].offset, marks[-1].sample) if marks else (0, 0)
        right_offset, right = len(text), frames
        for j in range(i + 1, len(found)):
            candidate = known[j]
            if candidate is not None and candidate >= last:
                right_offset, right = found[j][0], candidate
                break
        span = max(1, right_offset - left_offset)
        guess = left + (right - left) * (offset - left_offset) // span
        sample = min(frames - 1, max(last, guess))
        marks.append(Word(offset, length, sample, True))
        last = sample
    return marks
