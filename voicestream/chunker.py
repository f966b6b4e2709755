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
only, clause marks and a word count. Each candidate is decided as soon as the text
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
emoji are dropped. Very short sentences are merged with the next one (never
delaying the first chunk), and overlong ones are split at a clause mark or a
word boundary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from .settings import number

# Abbreviations that are followed by more of the same sentence: never a sentence end.
NEVER_END = frozenset(
    """
    mr mrs ms mx dr prof rev hon st mt ft capt cpt lt col gen gov sen rep sgt maj adm
    cmdr pres supt fig figs no nos vol vols p pp ch chap sec art para eq eqs ref refs
    ed eds tab op approx ca cf vs v e.g i.e viz resp esp incl excl est dept univ assn
    bros jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun
    z.b z.t u.a d.h bzw vgl hr fr frl nr str bspw evtl ggf inkl zzgl geb gest abs
    mme mlle mm env p.ex av bd boul
    """.split()
)
# Abbreviations that often end a sentence: an end when a capital follows.
END_CAPABLE = frozenset("etc inc ltd co corp jr sr llc plc a.m p.m usw u.s.w al ff".split())
# Words that start sentences: after an initial or a dotted abbreviation ("U.S. It"),
# the next word decides.
STARTERS = frozenset(
    """
    I It Its The This That These Those They There Their Then We You Your He She His Her
    A An In On At As But And So If When While What How Why Who Which Here Now Yes No
    Also However Our My For To After Before Finally First Second Next Some Many Most
    Der Die Das Es Er Sie Wir Ich Dann Aber Und Le La Les Il Elle Nous Je Ce Cette Mais
    """.split()
)
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

_SENTENCE_MARK = re.compile(r"[.!?…。！？]+|\n")
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


def _nonspace_at(text: str, start: int) -> int:
    """Index of the first non-space character at or after ``start``, or ``len(text)``."""
    match = _NONSPACE.search(text, start)
    return match.start() if match else len(text)


@dataclass(frozen=True)
class ChunkerConfig:
    """The chunker's options, and the ``[chunker]`` table of ``config.toml``.

    ``first_fragment_words``: the words a first chunk needs before it may end at a
    clause mark; ``first_fragment_max_words``: after which a first chunk with no
    punctuation is cut at a word boundary; ``min_chars`` and ``max_chars``: the
    lengths below which sentences are merged and above which they are split;
    ``code_block_phrase``; ``drop_emoji``; ``abbreviations``: more words
    (lowercase, no final period) after which a period never ends a sentence.
    """

    first_fragment_words: int = number(4, 1, 100)
    first_fragment_max_words: int = number(12, 1, 1000)
    min_chars: int = number(20, 0, 1000)
    max_chars: int = number(300, 20, 100_000)
    code_block_phrase: str = CODE_BLOCK_PHRASE
    drop_emoji: bool = True
    abbreviations: tuple[str, ...] = ()


class SentenceChunker:
    """Turns a token stream into speakable chunks; see the module docstring.

    ``SentenceChunker(config)`` with a :class:`ChunkerConfig`, or options by name
    (``SentenceChunker(max_chars=200)``) over the defaults.
    """

    def __init__(self, config: ChunkerConfig | None = None, /, **options: Any) -> None:
        config = replace(config or ChunkerConfig(), **options)
        self.config = config
        self.first_fragment_words = config.first_fragment_words
        self.first_fragment_max_words = config.first_fragment_max_words
        self.min_chars = config.min_chars
        self.max_chars = config.max_chars
        self.code_block_phrase = config.code_block_phrase
        self.drop_emoji = config.drop_emoji
        self.never_end = NEVER_END | {a.lower().rstrip(".") for a in config.abbreviations}
        self._reset()

    def _reset(self) -> None:
        self._buf = ""  # text not yet released
        self._scan = 0  # candidates before this index of _buf were decided "no boundary"
        self._final = False
        self._line_start = True
        self._line_kind = "text"  # text | item | table
        self._in_code = False
        self._code_opening = False  # the rest of the fence line (its language) is dropped
        self._emitted = 0
        self._held = ""  # a short sentence waiting to be merged with the next
        self._idle = False  # see _run

    def feed(self, text: str) -> list[str]:
        """Add ``text``; return the chunks it completed, in order."""
        self._buf = buf = self._buf + text
        if self._idle and len(buf) <= self.max_chars:
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
        chunks += self._emit(self._buf, "end")
        if self._held:
            chunks.append(self._held)
        self._reset()
        return chunks

    # -- the scan -------------------------------------------------------------

    def _run(self) -> list[str]:
        chunks = self._scan_text()
        # Nothing undecided is waiting for more text: the next piece may take the fast path.
        self._idle = self._scan == len(self._buf) and not (
            self._line_start or self._in_code or self._line_kind == "table"
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
            cut = self._table_row() if self._line_kind == "table" else self._next_boundary()
            if cut is None:
                return chunks
            end, kind = cut
            chunks += self._emit(self._buf[:end], kind)
            self._consume(end)
            if kind == "line":
                self._line_start = True

    def _consume(self, n: int) -> None:
        self._buf = self._buf[n:]
        self._scan = 0

    def _emit(self, raw: str, kind: str) -> list[str]:
        """The chunks for ``raw``, which ends at a boundary of ``kind``."""
        if self._line_kind == "table":
            cells = [clean(c, self.drop_emoji) for c in raw.strip().strip("|").split("|")]
            text = ", ".join(c for c in cells if c)
        else:
            text = clean(raw, self.drop_emoji)
        if self._held:
            joint = "" if self._held[-1] in "。！？」』" else " "
            text = f"{self._held}{joint}{text}".strip()
            self._held = ""
        if not text:
            return []
        if kind == "sentence" and self._emitted and len(text) < self.min_chars:
            self._held = text
            return []
        self._emitted += 1
        return [text]

    def _flush_held(self) -> list[str]:
        held, self._held = self._held, ""
        if not held:
            return []
        self._emitted += 1
        return [held]

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
            self._line_kind = "text"
            self._line_start = False
            return []
        newline = buf.find("\n", start)
        line_done = newline >= 0 or self._final
        line = buf[start:] if newline < 0 else buf[start:newline]
        # Too little of the line to tell a fence, a rule or a marker from text?
        if not line_done and len(line) < 5 and _MAYBE_MARKUP.fullmatch(line):
            return None
        self._line_kind = "text"
        fence = _FENCE.match(buf, start)
        if fence:
            self._consume(fence.end())
            self._in_code = self._code_opening = True
            chunks = self._flush_held()
            self._emitted += 1
            return [*chunks, self.code_block_phrase]
        if line[:1] in "-*_" and line[:1] * 3 == line.replace(" ", "")[:3]:
            if not line_done:
                return None
            if _RULE.match(line):
                self._consume(start + len(line))
                return []
        if line.startswith("|"):
            self._line_kind = "table"
            if not line_done:
                return None
            self._consume(start + len(line) if _TABLE_SEPARATOR.match(line) else start)
            self._line_start = self._buf[:1] != "|"
            return self._flush_held()
        marker = _LINE_MARKER.match(buf, start)
        self._consume(marker.end() if marker else start)
        self._line_start = False
        if marker:
            self._line_kind = "item"
            return self._flush_held()
        return []

    def _table_row(self) -> tuple[int, str] | None:
        newline = self._buf.find("\n")
        if newline < 0:
            return (len(self._buf), "line") if self._final else None
        return newline, "line"

    def _next_boundary(self) -> tuple[int, str] | None:
        """``(end of the chunk, kind)`` of the next boundary, or None to wait for text."""
        buf, limit = self._buf, self.max_chars
        eager = not self._emitted and not self._held
        pos = self._scan
        while True:
            mark = _SENTENCE_MARK.search(buf, pos)
            at = mark.start() if mark else len(buf)
            if eager:
                clause = _CLAUSE_MARK.search(buf, pos, at)
                words = self._word_limit(clause.start() if clause else at)
                if words is not None:
                    return (words, "fragment") if words <= limit else self._too_long()
                if clause:
                    if clause.start() > limit:
                        return self._too_long()
                    decided = self._decide_clause(clause)
                    if decided is None:
                        return self._too_long(pending=True)
                    if decided:
                        return clause.end(), "fragment"
                    pos = self._scan = clause.end()
                    continue
            if mark is None or mark.start() > limit:
                if mark is None and not eager:
                    self._scan = len(buf)  # no candidate up to here (clauses do not count)
                return self._too_long() if len(buf) > limit else None
            if mark.group() == "\n":
                return mark.start(), "line"
            end = mark.end()
            while end < len(buf) and buf[end] in _CLOSERS:
                end += 1
            decided = self._decide_mark(mark, end)
            if decided is None:
                return self._too_long(pending=True) if len(buf) > limit else None
            if decided:
                after = _nonspace_at(buf, end)
                return end, "line" if "\n" in buf[end:after] else "sentence"
            pos = self._scan = mark.end()

    def _too_long(self, pending: bool = False) -> tuple[int, str] | None:
        """Cut a sentence that has grown past ``max_chars`` without ending.

        While a boundary before the limit is still undecided, wait for it (unless
        the text runs on without a break far past the limit).
        """
        buf, limit = self._buf, self.max_chars
        if len(buf) <= (4 * limit if pending else limit):
            return None
        window = buf[: limit + 1]
        cut = max((m.end() for m in _CLAUSE_MARK.finditer(window) if m.end() <= limit), default=0)
        if cut < limit // 3:
            cut = window.rfind(" ")
        return (cut if cut > 0 else limit), "fragment"

    def _decide_clause(self, clause: re.Match[str]) -> bool | None:
        """Whether the first chunk may end at this clause mark."""
        buf = self._buf
        final, after = self._final, _nonspace_at(buf, clause.end())
        if after == len(buf) and not final:
            return None
        digits = _DIGITS.match(buf, after)
        if digits:  # "1. download, 2. install" is an inline list: not a pause
            end = digits.end()
            if end + 2 > len(buf) and not final:
                return None  # not enough text yet to tell "2. install" from "2024"
            marker = end - after <= 3 and buf[end : end + 1] in (".", ")")
            if marker and (end + 1 == len(buf) or buf[end + 1].isspace()):
                return False
        return len(_WORD.findall(buf, 0, clause.start())) >= self.first_fragment_words

    def _word_limit(self, upto: int) -> int | None:
        """Where a first chunk with no punctuation ends (its last word), if before ``upto``."""
        n = self.first_fragment_max_words
        words = _NONSPACE.finditer(self._buf, 0, upto)
        for i, word in enumerate(words, 1):
            if i == n:
                end = word.end()
            elif i > n:
                return end
        return None

    def _decide_mark(self, mark: re.Match[str], end: int) -> bool | None:
        """Whether this sentence mark (with its closers up to ``end``) ends a sentence;
        None until the text after it settles that."""
        buf, final = self._buf, self._final
        term = mark.group()
        if end == len(buf):
            return True if final else None
        if term[-1] in "。！？":
            return True
        if not buf[end].isspace():
            return False  # "3.14", "e.g.", "v2.1", "config.toml", "U.S."
        if "!" in term or "?" in term:
            return True
        nxt = _nonspace_at(buf, end)
        if nxt == len(buf):
            return True if final else None
        c = buf[nxt]
        if "\n" in buf[end:nxt]:
            return True
        if term != ".":  # an ellipsis: a sentence end only if a new sentence follows
            return not c.islower()
        if c.islower():
            return False
        before = buf[: mark.start()]
        token = before.rsplit(None, 1)[-1].lstrip(_OPENERS).lower() if before.strip() else ""
        if token in self.never_end:
            return False
        if token in END_CAPABLE:
            return c.isupper() or c in _OPENERS
        if token.isdigit():
            return self._decide_number(mark.start() - len(token), nxt)
        if (len(token) == 1 and token.isalpha()) or _DOTTED.fullmatch(token):
            word = self._next_word(nxt)  # "J. R. R. Tolkien", "U.S. Army" / "U.S. It"
            return None if word is None else word in STARTERS
        if c.isdigit():
            return token.isalpha()
        return True

    def _decide_number(self, start: int, nxt: int) -> bool | None:
        """After "N.": a list marker or an ordinal, or the end of a sentence."""
        buf = self._buf
        if buf.index(".", start) - start > 3:
            return True  # "in 2024."
        before = buf[:start].rstrip(" \t")
        if not before or before[-1] in ",;:(":
            return False  # an inline numbered list: "1. download, 2. install"
        if before.rsplit(None, 1)[-1].lower() in ORDINAL_CONTEXT:
            return False  # "am 3. Oktober"
        word = self._next_word(nxt)
        return None if word is None else word.lower() not in MONTHS

    def _next_word(self, start: int) -> str | None:
        """The word starting at ``start`` once it is complete, else None."""
        match = _WORD.match(self._buf, start)
        if match is None:
            return ""
        if match.end() == len(self._buf) and not self._final:
            return None
        return match.group()
