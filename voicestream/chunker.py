"""Cut a stream of text pieces into speakable chunks. Sans-IO: no trio, no I/O.

Feed it text as it arrives; it returns the chunks that piece completed::

    chunker = SentenceChunker()
    for piece in pieces:
        for chunk in chunker.feed(piece):
            speak(chunk)
    for chunk in chunker.flush():
        speak(chunk)

A sentence ends at ``.``, ``!``, ``?`` or ``…`` (with closing quotes or brackets)
once a non-space character follows the space after it, and at every line break.
Bullets, heading hashes, emphasis and backticks are dropped for the ear.
"""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*\s+(?=\S)|\n")
_LINE_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|[-*+•]\s+|\d{1,3}[.)]\s+)")
_INLINE_MARKUP = re.compile(r"\*\*|__|[*`]")


def clean(text: str) -> str:
    """``text`` as it should be said: markup removed, whitespace folded."""
    text = _INLINE_MARKUP.sub("", _LINE_MARKUP.sub("", text))
    return " ".join(text.split())


class SentenceChunker:
    def __init__(self) -> None:
        self._pending = ""

    def feed(self, text: str) -> list[str]:
        """Add ``text``; return the chunks it completed, in order."""
        self._pending += text
        chunks: list[str] = []
        while match := _SENTENCE_END.search(self._pending):
            chunks.append(self._pending[: match.end()])
            self._pending = self._pending[match.end() :]
        return [c for c in map(clean, chunks) if c]

    def flush(self) -> list[str]:
        """End of stream: everything still held, as chunks."""
        rest, self._pending = clean(self._pending), ""
        return [rest] if rest else []
