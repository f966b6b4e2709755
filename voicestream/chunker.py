"""Cut a stream of text pieces into speakable chunks. Sans-IO: no trio, no I/O.

Feed it text as it arrives; it returns the chunks that piece completed::

    chunker = SentenceChunker()
    for piece in pieces:
        for chunk in chunker.feed(piece):
            speak(chunk)
    for chunk in chunker.flush():
        speak(chunk)

How it decides. The text is scanned left to right for candidate boundaries: line
breaks, sentence marks (``. ! ? …`` and CJK ``。！？``), and, for the first chunk
only, clause marks and, past a word count, a place where a speaker could pause
(:meth:`Boundaries.word_limit`). Each candidate is decided as soon as the text
after it settles it, and never later than the first non-space character after a
sentence mark (a line break or a ``!``/``?`` followed by a space is decided at
once). A few ambiguous cases need the next word: after an initial or a dotted
abbreviation ("J. R. R. Tolkien", "U.S. Army" but "U.S. It") and after a number
that may be an ordinal or a list marker ("am 3. Oktober", "1. download, 2. ...").
A candidate that cannot be decided yet stops the scan until more text arrives, and
every decision looks only at the text around it, so the chunks do not depend on
how the stream was cut.

For the ear: heading hashes, bullets, numbering, block quotes, table pipes (cells
are read with a pause between them), emphasis, link and image syntax (the text is
kept) and inline-code backticks are removed; list items, headings and table rows
are chunks of their own; a fenced code block is replaced by a short phrase;
emoji are dropped. Very short whole sentences are merged with the next one (never
delaying the first chunk; short in spoken length, a CJK character being a
syllable); the rest of a sentence that was cut early is said on its own. Overlong
sentences are split at a clause mark or a word boundary. A sentence may start in
lower case after a full word (see :data:`LOWER_STARTERS`).

:func:`pauses` lists where a finished chunk could be said in two parts by the
same rules (for :mod:`voicestream.pacing`, when a slow engine must start
speaking before it could say the whole chunk).
"""

from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, replace
from enum import Enum
from importlib import resources
from typing import Any

from .settings import number

# The word lists that are data (voicestream/data/abbreviations.toml says what each is).
_LISTS = tomllib.loads(resources.files(__package__).joinpath("data/abbreviations.toml").read_text())
# Words after which a period never ends a sentence, and abbreviations that often end
# one (an end when a capital follows), by language: English, German and French
# always (models mix them into any language), the voice's own language besides.
NEVER_END_BY_LANGUAGE = {
    language: frozenset(lists["never"].split()) for language, lists in _LISTS["languages"].items()
}
END_CAPABLE_BY_LANGUAGE = {
    language: frozenset(lists["end"].split()) for language, lists in _LISTS["languages"].items()
}
ALWAYS = ("en", "de", "fr")
NEVER_END = frozenset().union(*(NEVER_END_BY_LANGUAGE[language] for language in ALWAYS))
END_CAPABLE = frozenset().union(*(END_CAPABLE_BY_LANGUAGE[language] for language in ALWAYS))
# After "a.m."/"p.m.", a weekday, a month or a time zone goes on with the sentence.
TIMES = frozenset(_LISTS["times"]["words"].split())
CLOCK = frozenset(("a.m", "p.m"))
# Names with their own "!" or "?" ("Yahoo! News"): (the name up to and with its
# mark, lower case; the rest of it, empty when the mark ends the name).
NAMED_MARKS = tuple(
    (name[: i + 1].lower(), name[i + 1 :].lower())
    for name in _LISTS["names"]["list"]
    for i, char in enumerate(name)
    if char in "!?"
)
# Words that start sentences: after an initial or a dotted abbreviation ("U.S. It"),
# the next word decides.
STARTERS = frozenset(
    """
    I It Its The This That These Those They There Their Then We You Your He She His Her
    A An In On At As But And So If When While What How Why Who Which Here Now Yes No
    Also However Our My For To After Before Finally First Second Next Some Many Most
    Der Die Das Es Er Sie Wir Ich Dann Aber Und Le La Les Il Elle Nous Je Ce Cette Mais
    Where Could Would Can Do Does Did Is Are Was Were Will Shall Should Might Must Has
    Have Had Let Please See Note Check Try Make Use Ask Call Tell Go Get Take Keep Look
    Consider Remember Think Thanks Thank
    """.split()
)
# Lowercase words that open a sentence: after a period that follows a full word (not an
# abbreviation, an initial or a number), one of these starts a new sentence even in
# lower case, as models sometimes write ("...in lower case. it still has to be...").
LOWER_STARTERS = frozenset(
    """
    i it its the this that these those there they their we our you your he she his her
    a an and but so then now here what when while if however also yes no
    """.split()
)
# Where a first chunk with no punctuation may be cut (after first_fragment_max_words):
# just before a word that opens a clause or a phrase (a conjunction, a relative
# pronoun, a preposition), and never right after a word that needs what follows (an
# article, a preposition, an auxiliary or modal verb, a possessive, "to", a number).
CUT_BEFORE = frozenset(
    """
    and but or nor so because although though while whereas when whenever if unless
    until since after before which who whom whose where that in on at for with from by
    about into onto during without through across along around near
    und aber oder denn weil obwohl während wenn falls dass damit bis seit nachdem
    bevor der die das welche welcher welches wo in an auf mit für von bei nach aus
    et mais ou donc car parce quand lorsque si bien que qui où dont avec pour dans sur
    sans depuis pendant
    """.split()
)
NO_CUT_AFTER = frozenset(
    """
    a an the this that these those my your his her its our their to of in on at for
    with from by about into onto over under after before between through during without
    within across against among is are was were be been being am has have had do does
    did can could will would shall should may might must not very one two three four
    five six seven eight nine ten hundred thousand million each every some any all both
    many few several most much more less such another other
    der die das den dem des ein eine einen einem einer mein dein sein ihr unser zu von
    mit für bei nach aus über unter vor im am zum zur ist sind war waren hat haben wird
    werden kann können muss müssen soll sollen darf nicht sehr
    le la les un une des du au aux mon ton son ma ta sa mes tes ses notre votre leur à
    de en dans sur pour par avec sans sous chez est sont était a ont sera peut doit pas
    très
    """.split()
)
# Where a finished chunk may be cut when it has no better place (voicestream.pacing):
# before a word that opens a phrase, weaker than those above.
CUT_BEFORE_AT_A_PINCH = frozenset(
    """
    of to how what why than as like over under between against among within toward
    towards per via upon
    zu wie als über unter zwischen gegen
    de comme que entre contre vers
    """.split()
)
TAIL_WORDS = 3  # an early cut leaves at least this many words of its sentence
# After "3." these make it an ordinal, not a sentence end ("am 3. Oktober").
MONTHS = frozenset(
    """
    january february march april may june july august september october november
    december januar februar märz mai juni juli oktober dezember janvier février mars
    avril juin juillet août septembre octobre novembre décembre jahrhundert
    """.split()
)
ORDINAL_CONTEXT = frozenset("am im vom zum bis der die das den dem des ab le la du au".split())

CODE_BLOCK_PHRASE = "Here is a code block, shown on screen."

_SENTENCE_MARK = re.compile(r"[.!?…。！？।؟]+|\n")
_CLOSERS = "\"'”’»)]}*_`」』"
_OPENERS = "\"'“‘«([{*_`"
_CLAUSE_MARK = re.compile(r"[,;:](?=\s)|\s?—\s?|\s–\s")
_WORD = re.compile(r"\w+")
_LINE_MARKER = re.compile(r"[ \t]*(?:#{1,6}[ \t]+|[-*+•][ \t]+|\d{1,3}[.)][ \t]+|>[ \t]?)")
_FENCE = re.compile(r"[ \t]{0,3}(```|~~~)")
_RULE = re.compile(r"[ \t]*([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_TABLE_SEPARATOR = re.compile(r"[\s|:-]*$")
_find_mark = _SENTENCE_MARK.search
_MAYBE_MARKUP = re.compile(r"[`~#*_\-+•>|\d.) \t]*")
_NONSPACE = re.compile(r"\S+")
_DIGITS = re.compile(r"\d+")
_DOTTED = re.compile(r"(?:\w\.)+\w")
_INLINE_CODE = re.compile(r"`+([^`]*)`+")
_IMAGE_OR_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)|!?\[([^\]]*)\]\[[^\]]*\]")
# Emphasis markers at the edge of a word ("*it*", "**bold**", "_it_"); not inside
# one ("5*3", "snake_case") nor between spaces ("2 * 3").
_EMPHASIS = re.compile(
    r"~~|(?<!\w)(?:\*{1,3}|_{1,3})(?=[^\s*_])|(?<=[^\s*_])(?:\*{1,3}|_{1,3})(?!\w)"
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d\U000e0020-\U000e007f\u2300-\u23ff]"
)


def clean(text: str, drop_emoji: bool = True) -> str:
    """Inline ``text`` as it should be said: markup removed, whitespace folded."""
    if "`" in text or "[" in text or "*" in text or "_" in text or "~" in text:
        parts = _INLINE_CODE.split(text)  # even: prose, odd: code (kept as written)
        for i in range(0, len(parts), 2):
            prose = _IMAGE_OR_LINK.sub(lambda m: m.group(1) or m.group(2) or "", parts[i])
            prose = _EMPHASIS.sub("", prose)
            parts[i] = prose.replace("`", "")
        text = "".join(parts)
    if drop_emoji and not text.isascii():
        text = _EMOJI.sub("", text)
    return " ".join(text.split())


def spoken_length(text: str) -> int:
    """How long ``text`` takes to say, in characters of alphabetic text: a CJK
    character is a syllable, and English runs about four letters to the syllable."""
    if text.isascii():
        return len(text)
    return len(text) + 3 * len(_CJK.findall(text))


def _nonspace_at(text: str, start: int) -> int:
    """Index of the first non-space character at or after ``start``, or ``len(text)``."""
    match = _NONSPACE.search(text, start)
    return match.start() if match else len(text)


@dataclass(frozen=True)
class ChunkerConfig:
    """The chunker's options, and the ``[chunker]`` table of ``config.toml``.

    ``first_fragment_words``: the words a first chunk needs before it may end at a
    clause mark (and the first part of a chunk said in two, see ``pace``);
    ``first_fragment_max_words``: after which a first chunk with no punctuation is
    cut at a word boundary; ``min_chars`` and ``max_chars``: the lengths below
    which sentences are merged and above which they are split;
    ``code_block_phrase``; ``drop_emoji``; ``abbreviations``: more words
    (lowercase, no final period) after which a period never ends a sentence;
    ``language``: whose abbreviations and titles apply besides English, German and
    French ("es", "ru"; "" the voice's own, which the answer fills in);
    ``pace``: say a chunk in two parts when the engine could not say it whole
    before the audio ahead of the listener runs out (:mod:`voicestream.pacing`).
    """

    first_fragment_words: int = number(4, 1, 100)
    first_fragment_max_words: int = number(8, 1, 1000)
    min_chars: int = number(20, 0, 1000)
    max_chars: int = number(300, 20, 100_000)
    code_block_phrase: str = CODE_BLOCK_PHRASE
    drop_emoji: bool = True
    abbreviations: tuple[str, ...] = ()
    language: str = ""
    pace: bool = True


class Cut(Enum):
    """The kind of boundary a chunk ends at."""

    LINE = "line"  # a line break: the next line starts with its own markup
    SENTENCE = "sentence"  # a sentence mark: a short sentence may be merged with the next
    FRAGMENT = "fragment"  # an early first chunk, or an overlong sentence split
    END = "end"  # the end of the stream


class LineKind(Enum):
    """What the current line is, from its block markup."""

    TEXT = "text"
    ITEM = "item"  # a list item, heading or quote: a chunk of its own
    TABLE = "table"  # a table row: its cells are read with a pause between them


class Verdict(Enum):
    """A candidate boundary, decided from the text after it."""

    YES = "yes"
    NO = "no"
    WAIT = "wait"  # the text that settles it has not arrived yet

    @classmethod
    def of(cls, yes: bool) -> Verdict:
        return cls.YES if yes else cls.NO


Found = tuple[int, Cut]  # where the chunk ends, and at what


class Boundaries:
    """Where the text may be cut: pure decisions over the text not yet released
    (``buf``), knowing whether more of it will come (``final``). No state."""

    def __init__(self, config: ChunkerConfig) -> None:
        self.config = config
        language = config.language.lower().replace("_", "-").split("-")[0]
        self.never_end = (
            NEVER_END
            | NEVER_END_BY_LANGUAGE.get(language, frozenset())
            | {a.lower().rstrip(".") for a in config.abbreviations}
        )
        self.end_capable = (END_CAPABLE | END_CAPABLE_BY_LANGUAGE.get(language, frozenset())) - (
            self.never_end - END_CAPABLE  # "Sr." is a title in Spanish, "Senior" in English
        )

    def next(self, buf: str, scan: int, final: bool, eager: bool) -> tuple[Found | None, int]:
        """The next boundary at or after ``scan`` (None: wait for more text), and how
        far the text is now known to hold none. ``eager``: the first chunk, which may
        end at a clause mark or after a number of words."""
        limit = self.config.max_chars
        pos = scan
        while True:
            mark = _SENTENCE_MARK.search(buf, pos)
            at = mark.start() if mark else len(buf)
            if eager:
                clause = _CLAUSE_MARK.search(buf, pos, at)
                cut, words = self.word_limit(buf, clause.start() if clause else at, final)
                if cut is Verdict.YES:
                    return ((words, Cut.FRAGMENT) if words <= limit else self.too_long(buf)), pos
                if cut is Verdict.WAIT:
                    return self.too_long(buf, pending=True), pos
                if clause:
                    if clause.start() > limit:
                        return self.too_long(buf), pos
                    verdict = self.clause(buf, clause, final)
                    if verdict is Verdict.WAIT:
                        return self.too_long(buf, pending=True), pos
                    if verdict is Verdict.YES:
                        return (clause.end(), Cut.FRAGMENT), pos
                    pos = clause.end()
                    continue
            if mark is None or mark.start() > limit:
                if mark is None and not eager:
                    pos = len(buf)  # no candidate up to here (clauses do not count)
                return (self.too_long(buf) if len(buf) > limit else None), pos
            if mark.group() == "\n":
                return (mark.start(), Cut.LINE), pos
            end = mark.end()
            while end < len(buf) and buf[end] in _CLOSERS:
                end += 1
            verdict = self.mark(buf, mark, end, final)
            if verdict is Verdict.WAIT:
                return (self.too_long(buf, pending=True) if len(buf) > limit else None), pos
            if verdict is Verdict.YES:
                after = _nonspace_at(buf, end)
                return (end, Cut.LINE if "\n" in buf[end:after] else Cut.SENTENCE), pos
            pos = mark.end()

    def too_long(self, buf: str, pending: bool = False) -> Found | None:
        """Cut a sentence that has grown past ``max_chars`` without ending.

        While a boundary before the limit is still undecided, wait for it (unless
        the text runs on without a break far past the limit).
        """
        limit = self.config.max_chars
        if len(buf) <= (4 * limit if pending else limit):
            return None
        window = buf[: limit + 1]
        cut = max((m.end() for m in _CLAUSE_MARK.finditer(window) if m.end() <= limit), default=0)
        if cut < limit // 3:
            cut = window.rfind(" ")
        return (cut if cut > 0 else limit), Cut.FRAGMENT

    def clause(self, buf: str, clause: re.Match[str], final: bool) -> Verdict:
        """Whether the first chunk may end at this clause mark."""
        after = _nonspace_at(buf, clause.end())
        if after == len(buf) and not final:
            return Verdict.WAIT
        marker = _list_marker(buf, after, final)
        if marker is not Verdict.NO:  # "1. download, 2. install" is an inline list: not a pause
            return Verdict.WAIT if marker is Verdict.WAIT else Verdict.NO
        words = len(_WORD.findall(buf, 0, clause.start()))
        return Verdict.of(words >= self.config.first_fragment_words)

    def word_limit(self, buf: str, upto: int, final: bool) -> tuple[Verdict, int]:
        """Where a first chunk with no punctuation before ``upto`` ends, once it has
        ``first_fragment_max_words``: at the first place a speaker could pause (just
        before a word of :data:`CUT_BEFORE`, not after one of :data:`NO_CUT_AFTER`, a
        number or a list marker), leaving the sentence at least :data:`TAIL_WORDS`
        more words. ``(YES, end)``; ``WAIT`` for more text; ``NO``: not here."""
        words = list(_NONSPACE.finditer(buf, 0, upto))
        for k in range(self.config.first_fragment_max_words, len(words)):
            before, after = words[k - 1], words[k]
            if after.end() == len(buf) and not final:
                return Verdict.WAIT, 0  # the next word is not complete yet
            following = buf[after.start() : after.end() + 1]  # with what comes right after it
            if not _pause_between(before.group(), following, CUT_BEFORE):
                continue
            tail = self.tail(buf, before.end(), final)
            return tail, before.end() if tail is Verdict.YES else 0
        return Verdict.NO, 0

    def tail(self, buf: str, pos: int, final: bool) -> Verdict:
        """Whether a cut at ``pos`` leaves the sentence at least :data:`TAIL_WORDS` more
        words: a tail of one or two is better said with the rest."""
        scan = pos
        while True:
            mark = _SENTENCE_MARK.search(buf, scan)
            if len(_NONSPACE.findall(buf, pos, mark.start() if mark else len(buf))) >= TAIL_WORDS:
                return Verdict.YES
            if mark is None:
                return Verdict.NO if final else Verdict.WAIT
            if mark.group() == "\n":
                return Verdict.NO
            end = mark.end()
            while end < len(buf) and buf[end] in _CLOSERS:
                end += 1
            verdict = self.mark(buf, mark, end, final)
            if verdict is not Verdict.NO:
                return Verdict.NO if verdict is Verdict.YES else Verdict.WAIT
            scan = mark.end()

    def mark(self, buf: str, mark: re.Match[str], end: int, final: bool) -> Verdict:
        """Whether this sentence mark (with its closers up to ``end``) ends a sentence."""
        term = mark.group()
        named = self.named(buf, mark, final) if term[-1] in "!?" else None
        if named is not None:
            return named  # "Yahoo! News", "Jeopardy! tonight"
        if end == len(buf):
            return Verdict.YES if final else Verdict.WAIT
        if term[-1] in "。！？।؟":  # CJK marks, the Devanagari danda, the Arabic "?"
            return Verdict.YES
        if not buf[end].isspace():
            return Verdict.NO  # "3.14", "e.g.", "v2.1", "config.toml", "U.S."
        if "!" in term or "?" in term:
            return Verdict.YES
        nxt = _nonspace_at(buf, end)
        if nxt == len(buf):
            return Verdict.YES if final else Verdict.WAIT
        c = buf[nxt]
        if "\n" in buf[end:nxt]:
            return Verdict.YES
        if term != ".":  # an ellipsis: a sentence end only if a new sentence follows
            return Verdict.of(not c.islower())
        before = buf[: mark.start()]
        token = before.rsplit(None, 1)[-1].lstrip(_OPENERS).lower() if before.strip() else ""
        if c.islower():
            if not _plain_word(token) or token in self.never_end or token in self.end_capable:
                return Verdict.NO  # "e.g. this", "approx. ten", "p. 4", "U.S. and"
            word = next_word(buf, nxt, final)  # "...in lower case. it still has to"
            return Verdict.WAIT if word is None else Verdict.of(word in LOWER_STARTERS)
        if token in self.never_end:
            return Verdict.NO
        if token in CLOCK and token in self.end_capable:  # "9 p.m. Friday", "p.m. CET"
            word = next_word(buf, nxt, final)
            if word is None:
                return Verdict.WAIT
            if word.lower() in TIMES:
                return Verdict.NO
        if token in self.end_capable:
            return Verdict.of(c.isupper() or c in _OPENERS)
        if token.isdigit():
            return self.number(buf, mark.start() - len(token), nxt, final)
        if (len(token) == 1 and token.isalpha()) or _DOTTED.fullmatch(token):
            word = next_word(buf, nxt, final)  # "J. R. R. Tolkien", "U.S. Army" / "U.S. It"
            return Verdict.WAIT if word is None else Verdict.of(word in STARTERS)
        if c.isdigit():
            return Verdict.of(token.isalpha())
        return Verdict.YES

    def named(self, buf: str, mark: re.Match[str], final: bool) -> Verdict | None:
        """At a "!" or "?": NO when it belongs to a name of :data:`NAMED_MARKS` (the
        whole name follows it, or, for a name that ends with it, the sentence goes on
        in lower case); WAIT while that is not known yet; None: not a name's."""
        upto = buf[: mark.end()].lower()
        for name, rest in NAMED_MARKS:
            start = len(upto) - len(name)
            if not upto.endswith(name) or (start > 0 and buf[start - 1].isalnum()):
                continue
            after = buf[mark.end() :]
            if not rest:  # "Jeopardy! tonight": goes on in lower case
                nxt = _nonspace_at(buf, mark.end())
                if nxt == len(buf):
                    return None if final else Verdict.WAIT
                if buf[nxt].islower():
                    return Verdict.NO
                continue
            following = after[: len(rest) + 1].lower()
            if following.startswith(rest) and not following[len(rest) :].isalnum():
                if len(following) > len(rest) or final:
                    return Verdict.NO  # the whole name, and then not more of a word
                return Verdict.WAIT  # "Yahoo! News" or "Yahoo! Newsroom"?
            elif not final and rest.startswith(following):
                return Verdict.WAIT  # "Yahoo! Ne..."
        return None

    def number(self, buf: str, start: int, nxt: int, final: bool) -> Verdict:
        """After "N.": a list marker or an ordinal, or the end of a sentence."""
        if buf.index(".", start) - start > 3:
            return Verdict.YES  # "in 2024."
        before = buf[:start].rstrip(" \t")
        if not before or before[-1] in ",;:(":
            return Verdict.NO  # an inline numbered list: "1. download, 2. install"
        if before.rsplit(None, 1)[-1].lower() in ORDINAL_CONTEXT:
            return Verdict.NO  # "am 3. Oktober"
        word = next_word(buf, nxt, final)
        return Verdict.WAIT if word is None else Verdict.of(word.lower() not in MONTHS)


def pauses(text: str, min_words: int) -> list[int]:
    """Where a finished chunk may be cut in two, as the first chunk may be: after a
    clause mark, or just before a word of :data:`CUT_BEFORE` that follows none of
    :data:`NO_CUT_AFTER` (nor a number); with at least ``min_words`` words before
    and :data:`TAIL_WORDS` after. Positions in ``text``, in order."""
    points = _before(text, CUT_BEFORE)
    for clause in _CLAUSE_MARK.finditer(text):
        if _list_marker(text, _nonspace_at(text, clause.end()), True) is Verdict.NO:
            points.add(clause.end())  # but "1. download, 2. install" is no pause
    return _with_room(text, points, min_words)


def weak_pauses(text: str, min_words: int) -> list[int]:
    """Where a finished chunk with no :func:`pauses` may be cut at a pinch: just
    before a word of :data:`CUT_BEFORE_AT_A_PINCH` ("of", "to", "how"), on the
    same terms."""
    return _with_room(text, _before(text, CUT_BEFORE_AT_A_PINCH), min_words)


def word_breaks(text: str, min_words: int) -> list[int]:
    """Where a finished chunk may be cut when there is no pause where it is needed:
    after any word that needs nothing after it (not one of :data:`NO_CUT_AFTER`,
    not a number), on the same terms as :func:`pauses`."""
    words = list(_NONSPACE.finditer(text))
    points = {
        before.end()
        for before in words[:-1]
        if (bare := _bare(before.group())).isalpha() and bare not in NO_CUT_AFTER
    }
    return _with_room(text, points, min_words)


def _before(text: str, openers: frozenset[str]) -> set[int]:
    """The ends of words that need nothing after them (not one of
    :data:`NO_CUT_AFTER`, not a number) followed by one of ``openers``."""
    words = list(_NONSPACE.finditer(text))
    return {
        before.end()
        for before, after in itertools.pairwise(words)
        if _pause_between(before.group(), after.group(), openers)
    }


def _list_marker(buf: str, at: int, final: bool) -> Verdict:
    """Whether an inline list's marker ("2.", "3)") starts at ``at``; ``WAIT``: not
    enough text yet to tell "2. install" from "2024"."""
    digits = _DIGITS.match(buf, at)
    if not digits:
        return Verdict.NO
    end = digits.end()
    if end + 2 > len(buf) and not final:
        return Verdict.WAIT
    marker = end - at <= 3 and buf[end : end + 1] in (".", ")")
    return Verdict.of(marker and (end + 1 == len(buf) or buf[end + 1].isspace()))


def _pause_between(before: str, after: str, openers: frozenset[str]) -> bool:
    """Whether a speaker may pause between two words: ``before`` needs nothing after
    it (not one of :data:`NO_CUT_AFTER`, not a number) and ``after`` opens a clause
    or a phrase (one of ``openers``)."""
    bare = _bare(before)
    return bare.isalpha() and bare not in NO_CUT_AFTER and _opens(after, openers)


def _opens(word: str, openers: frozenset[str]) -> bool:
    """Whether ``word`` opens a clause or a phrase: one of ``openers`` with more to
    come ("plug it in, then" ends its phrase with "in": no pause before it)."""
    word = word.rstrip()
    return _bare(word) in openers and word[-1:] not in ",;:.!?…"


def _with_room(text: str, points: set[int], min_words: int) -> list[int]:
    return [
        p
        for p in sorted(points)
        if len(_WORD.findall(text, 0, p)) >= min_words
        and len(_NONSPACE.findall(text, p)) >= TAIL_WORDS
    ]


def _bare(word: str) -> str:
    """A word as the word lists hold it: lower case, without quotes or punctuation."""
    return word.strip(_OPENERS + _CLOSERS + ".,;:!?…").lower()


def _plain_word(token: str) -> bool:
    """A full word: letters only, three or more, with a vowel (abbreviations are short
    or vowel-less: "st", "dept", "mgmt")."""
    return len(token) >= 3 and token.isalpha() and any(v in token for v in "aeiouyäöüéèà")


def next_word(buf: str, start: int, final: bool) -> str | None:
    """The word starting at ``start`` once it is complete, else None."""
    match = _WORD.match(buf, start)
    if match is None:
        return ""
    if match.end() == len(buf) and not final:
        return None
    return match.group()


class Merger:
    """Turns what is cut into what is said: markup cleaned for the ear, and a short
    sentence held back to be said together with the next one."""

    def __init__(self, config: ChunkerConfig) -> None:
        self.config = config
        self.held = ""  # a short sentence waiting to be merged with the next
        self.emitted = 0
        self.cut_short = False  # the last chunk ended mid-sentence (a FRAGMENT)

    def emit(self, raw: str, cut: Cut, kind: LineKind) -> list[str]:
        """The chunks for ``raw``, which ends at a boundary of ``cut``."""
        drop_emoji = self.config.drop_emoji
        if kind is LineKind.TABLE:
            cells = [clean(c, drop_emoji) for c in raw.strip().strip("|").split("|")]
            text = ", ".join(c for c in cells if c)
        else:
            text = clean(raw, drop_emoji)
        if self.held:
            joint = "" if self.held[-1] in "。！？」』" else " "
            text = f"{self.held}{joint}{text}".strip()
            self.held = ""
        if not text:
            return []
        # Only a whole short sentence waits for the next; the rest of a sentence that
        # was cut is said on its own, so the next sentence's start is not delayed.
        whole = not self.cut_short
        self.cut_short = cut is Cut.FRAGMENT
        if (
            cut is Cut.SENTENCE
            and whole
            and self.emitted
            and spoken_length(text) < self.config.min_chars
        ):
            self.held = text
            return []
        self.emitted += 1
        return [text]

    def flush_held(self) -> list[str]:
        held, self.held = self.held, ""
        if not held:
            return []
        self.emitted += 1
        return [held]

    def say_instead(self, phrase: str) -> list[str]:
        """What is held, then ``phrase`` (said instead of a code block)."""
        chunks = self.flush_held()
        self.emitted += 1
        return [*chunks, phrase]


class SentenceChunker:
    """Turns a token stream into speakable chunks; see the module docstring.

    ``SentenceChunker(config)`` with a :class:`ChunkerConfig`, or options by name
    (``SentenceChunker(max_chars=200)``) over the defaults. It keeps the text not
    yet released and where each line stands; :class:`Boundaries` decides where to
    cut, :class:`Merger` what is said.
    """

    def __init__(self, config: ChunkerConfig | None = None, /, **options: Any) -> None:
        self.config = replace(config or ChunkerConfig(), **options)
        self.boundaries = Boundaries(self.config)
        self._reset()

    def _reset(self) -> None:
        self._buf = ""  # text not yet released
        self._scan = 0  # candidates before this index of _buf were decided "no boundary"
        self._final = False
        self._line_start = True
        self._line_kind = LineKind.TEXT
        self._in_code = False
        self._code_opening = False  # the rest of the fence line (its language) is dropped
        self._merger = Merger(self.config)
        self._idle = False  # see _run

    def feed(self, text: str) -> list[str]:
        """Add ``text``; return the chunks it completed, in order."""
        self._buf = buf = self._buf + text
        if self._idle and len(buf) <= self.config.max_chars:
            # The common cases, most tokens: no boundary can be in or before this
            # text, or its only mark is its last character and needs what follows.
            mark = _find_mark(text)
            if mark is None:
                self._scan = len(buf)
                return []
            if mark.end() == len(text) and text[-1] != "\n":
                self._scan = len(buf) - len(text) + mark.start()
                self._idle = False
                return []
        return self._run()

    def flush(self) -> list[str]:
        """End of stream: everything still held, as chunks. Then ready for a new stream."""
        self._final = True
        chunks = self._run()
        chunks += self._merger.emit(self._buf, Cut.END, self._line_kind)
        chunks += self._merger.flush_held()
        self._reset()
        return chunks

    # -- the scan -------------------------------------------------------------

    def _run(self) -> list[str]:
        chunks = self._scan_text()
        # Nothing undecided is waiting for more text: the next piece may take the fast path.
        self._idle = self._scan == len(self._buf) and not (
            self._line_start or self._in_code or self._line_kind is LineKind.TABLE
        )
        return chunks

    def _scan_text(self) -> list[str]:
        chunks: list[str] = []
        while True:
            if self._in_code:
                if not self._skip_code():
                    return chunks
                continue
            if self._line_start:
                step = self._start_line()
                if step is None:
                    return chunks
                chunks += step
                continue
            if self._line_kind is LineKind.TABLE:
                found = self._table_row()
            else:
                merger = self._merger
                eager = not merger.emitted and not merger.held
                found, self._scan = self.boundaries.next(self._buf, self._scan, self._final, eager)
            if found is None:
                return chunks
            end, cut = found
            chunks += self._merger.emit(self._buf[:end], cut, self._line_kind)
            self._consume(end)
            if cut is Cut.LINE:
                self._line_start = True

    def _consume(self, n: int) -> None:
        self._buf = self._buf[n:]
        self._scan = 0

    def _skip_code(self) -> bool:
        """Drop code lines through the closing fence; False when more text is needed."""
        while True:
            newline = self._buf.find("\n")
            if newline < 0:
                if self._final:
                    self._consume(len(self._buf))  # an unclosed block ends with the answer
                return False
            line, opening = self._buf[:newline], self._code_opening
            self._consume(newline + 1)
            self._code_opening = False
            if not opening and _FENCE.match(line):
                self._in_code = False
                self._line_start = True
                return True

    def _start_line(self) -> list[str] | None:
        """Classify a new line and drop its block markup; None when more text is needed."""
        buf = self._buf
        start = 0
        while start < len(buf) and buf[start] in " \t\n":
            start += 1
        if start == len(buf):
            if self._final:
                self._consume(start)
            return None
        if buf[start].isalpha():  # plain prose, the common case: no block markup
            self._consume(start)
            self._line_kind = LineKind.TEXT
            self._line_start = False
            return []
        newline = buf.find("\n", start)
        line_done = newline >= 0 or self._final
        line = buf[start:] if newline < 0 else buf[start:newline]
        # Too little of the line to tell a fence, a rule or a marker from text?
        if not line_done and len(line) < 5 and _MAYBE_MARKUP.fullmatch(line):
            return None
        self._line_kind = LineKind.TEXT
        fence = _FENCE.match(buf, start)
        if fence:
            self._consume(fence.end())
            self._in_code = self._code_opening = True
            return self._merger.say_instead(self.config.code_block_phrase)
        if line[:1] in "-*_" and line[:1] * 3 == line.replace(" ", "")[:3]:
            if not line_done:
                return None
            if _RULE.match(line):
                self._consume(start + len(line))
                return []
        if line.startswith("|"):
            self._line_kind = LineKind.TABLE
            if not line_done:
                return None
            self._consume(start + len(line) if _TABLE_SEPARATOR.match(line) else start)
            self._line_start = self._buf[:1] != "|"
            return self._merger.flush_held()
        marker = _LINE_MARKER.match(buf, start)
        self._consume(marker.end() if marker else start)
        self._line_start = False
        if marker:
            self._line_kind = LineKind.ITEM
            return self._merger.flush_held()
        return []

    def _table_row(self) -> Found | None:
        newline = self._buf.find("\n")
        if newline < 0:
            return (len(self._buf), Cut.LINE) if self._final else None
        return newline, Cut.LINE


class ResumedChunker(SentenceChunker):
    """A :class:`SentenceChunker` for an answer taken over mid-way: fed the answer's
    text again from its start, it leaves out what was ``spoken`` already (the texts
    of its chunks, in order) and returns only the rest. The chunks need not fall
    where they fell the first time: what was spoken is matched character by
    character, whitespace aside, and a chunk spoken in part gives its unspoken end.
    """

    def __init__(self, config: ChunkerConfig | None, spoken: list[str]) -> None:
        super().__init__(config)
        self._spoken = "".join("".join(text.split()) for text in spoken)

    def feed(self, text: str) -> list[str]:
        return self._unspoken(super().feed(text))

    def flush(self) -> list[str]:
        return self._unspoken(super().flush())

    def _unspoken(self, chunks: list[str]) -> list[str]:
        out: list[str] = []
        for chunk in chunks:
            if not self._spoken:
                out.append(chunk)
                continue
            bare = "".join(chunk.split())
            if self._spoken.startswith(bare):  # spoken whole
                self._spoken = self._spoken[len(bare) :]
            elif bare.startswith(self._spoken):  # spoken in part: its end
                out.append(_after(chunk, len(self._spoken)))
                self._spoken = ""
            else:  # not what was spoken: say everything from here on
                self._spoken = ""
                out.append(chunk)
        return [chunk for chunk in out if chunk.strip()]


def _after(text: str, count: int) -> str:
    """``text`` after its first ``count`` characters that are not whitespace."""
    for i, char in enumerate(text):
        if count == 0:
            return text[i:].lstrip()
        if not char.isspace():
            count -= 1
    return ""
