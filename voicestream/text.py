"""Text from a model made safe to print and to speak. Sans-IO.

A model (or whatever is piped into ``voicestream say -``) can write anything:
NUL, which ends the text for espeak-ng's C API ("Hello\\0 world." would say only
"Hello"), and terminal escape sequences (``ESC]0;title BEL`` retitles the
window, ``ESC[2J`` clears the screen). :class:`ControlFilter` removes escape
sequences whole and turns every other control character (C0, DEL, C1) into a
space, keeping line breaks and tabs; so captions never carry a sequence from
the model and the synthesizer speaks around what was removed. It works on a
stream cut anywhere: a sequence split across pieces is held until it is
complete (at most :data:`MAX_SEQUENCE` characters, then it is dropped).
"""

from __future__ import annotations

import re

MAX_SEQUENCE = 256

# Control characters other than tab and line feed; ESC is handled first.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SEQUENCE = re.compile(
    r"""
      \x1b\[ [0-?]* [ -/]* [@-~]             # CSI: ESC [ params intermediates final
    | \x1b[\]PX^_] [^\x07\x1b]* (?:\x07|\x1b\\)  # OSC, DCS, ...: a string up to BEL or ST
    | \x1b (?![\[\]PX^_]) [ -/]* [0-~]       # any other: ESC intermediates final
    """,
    re.VERBOSE,
)
# What a sequence may look like before its end has arrived.
_UNFINISHED = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|[\]PX^_][^\x07\x1b]*\x1b?|[ -/]*)\Z")


class ControlFilter:
    """``feed(text) -> text`` without escape sequences or control characters;
    ``flush()`` at the end of the stream (an unfinished sequence is dropped)."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, text: str) -> str:
        if not self._held and _CONTROL.search(text) is None:
            return text  # the common case: nothing to do
        text, self._held = self._held + text, ""
        out = []
        while (esc := text.find("\x1b")) >= 0:
            out.append(text[:esc])
            sequence = _SEQUENCE.match(text, esc)
            if sequence is not None:
                text = text[sequence.end() :]
            elif _UNFINISHED.match(text, esc) and len(text) - esc < MAX_SEQUENCE:
                self._held = text[esc:]
                text = ""
            else:
                text = text[esc + 1 :]  # a lone ESC, or a sequence too long to be one
        out.append(text)
        return _CONTROL.sub(" ", "".join(out))

    def flush(self) -> str:
        self._held = ""
        return ""
