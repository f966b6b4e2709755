"""The chat's terminal: keys that never block trio, and live captions.

:class:`Keyboard` reads standard input by waiting for it to be readable in
trio's I/O loop (the file description stays blocking, so a terminal's shared
stdout is unaffected); files, which cannot be polled, are read in a worker
thread. At the prompt a terminal is in its normal line mode (the terminal
edits the line); during an answer it is in cbreak mode, so Enter or Esc
arrive as single keys and stop the answer.

:class:`Captions` prints the answer's text as the model writes it. On a
terminal that understands ANSI, a status line below the text shows the
sentence being spoken right now, highlighted, with the word being heard in bold
and underlined; it follows playback, which lags far behind the text. A dumb
terminal or a pipe gets the text only.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import termios
import tty
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import trio

from .words import Word

STOP_KEYS = (b"\r", b"\n", b"\x1b")  # Enter, Esc (and any escape sequence)


class Keyboard:
    def __init__(self, fd: int = 0) -> None:
        self.fd = fd
        self.tty = os.isatty(fd)
        self._buffer = b""
        self._pollable = True
        self._limiter = trio.CapacityLimiter(1)

    async def _read(self) -> bytes:
        if self._pollable:
            try:
                await trio.lowlevel.wait_readable(self.fd)
            except OSError:  # a regular file: always readable, never pollable
                self._pollable = False
            else:
                return os.read(self.fd, 4096)
        return await trio.to_thread.run_sync(os.read, self.fd, 4096, limiter=self._limiter)

    async def line(self) -> str | None:
        """The next line typed (without its end), or None at end of input."""
        while b"\n" not in self._buffer:
            data = await self._read()
            if not data:
                rest, self._buffer = self._buffer, b""
                return rest.decode("utf-8", "replace") if rest else None
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace").rstrip("\r")

    async def stop_key(self) -> None:
        """Return when Enter or Esc is pressed (a terminal only; else never)."""
        if not self.tty:
            await trio.sleep_forever()
        while True:
            data = await self._read()
            if not data:
                await trio.sleep_forever()
            if any(key in data for key in STOP_KEYS):
                return

    @contextmanager
    def keys(self) -> Iterator[None]:
        """Single keys, not echoed, for the time of an answer; typed-ahead keys are
        dropped at the end so a stray Enter does not send an empty question."""
        if not self.tty:
            yield
            return
        saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd, termios.TCSANOW)
        try:
            yield
        finally:
            termios.tcflush(self.fd, termios.TCIFLUSH)
            termios.tcsetattr(self.fd, termios.TCSANOW, saved)


class SafeOutput:
    """A text stream for captions that never stops the speech.

    When the reader goes away (``| head``: a broken pipe) or the stream cannot be
    written any more, captions stop quietly
    and the stream's descriptor is pointed at /dev/null, so nothing fails at exit
    either; a character the stream cannot encode (``PYTHONIOENCODING=ascii``) is
    written as ``?``.
    """

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.gone = False

    def isatty(self) -> bool:
        return not self.gone and self.out.isatty()

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                try:
                    self.out.write(text)
                except UnicodeEncodeError:
                    encoding = self.out.encoding or "ascii"
                    self.out.write(text.encode(encoding, "replace").decode(encoding))
            except OSError:
                self._lost()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.out.flush()
            except OSError:
                self._lost()

    def _lost(self) -> None:
        """The reader is gone (or the disk full): no more captions, and nothing
        left in the stream's buffer to fail when Python exits."""
        self.gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.out.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass


def _fold(text: str) -> str:
    """Runs of whitespace as one space."""
    return re.sub(r"\s+", " ", text)


def _width(char: str) -> int:
    if unicodedata.combining(char) or unicodedata.category(char) in ("Cc", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


class Captions:
    """Live captions on ``out``; ``ansi`` adds the status line of what is being spoken."""

    def __init__(self, out: TextIO | SafeOutput, ansi: bool | None = None) -> None:
        self.out = out
        if ansi is None:
            ansi = out.isatty() and os.environ.get("TERM", "dumb") not in ("", "dumb")
        self.ansi = ansi
        self.column = 0  # where the text's cursor is, so the status line can be left
        self.parts = ("", "", "")  # the status line: before the word being heard, it, after it

    @property
    def status(self) -> str:
        """The sentence shown below the text ("" for none)."""
        return "".join(self.parts)

    def _columns(self) -> int:
        return max(20, shutil.get_terminal_size().columns)

    def _hide(self) -> str:
        if not self.status:
            return ""
        return f"\n\x1b[2K\x1b[1A\x1b[{self.column + 1}G"

    def _show(self) -> str:
        if not self.status:
            return ""
        before, word, after = self.parts
        width = self._columns() - 3
        if not word:
            line = before[:width]
        else:
            if len(before) + len(word) > width:  # keep the word being heard in sight
                keep = max(0, width - len(word) - 1 - min(len(after), width // 4))
                before = "…" + before[len(before) - keep :] if keep else "…"
            after = after[: max(0, width - len(before) - len(word))]
            line = f"{before}\x1b[1;4m{word}\x1b[22;24m{after}"
        return f"\n\x1b[2K\x1b[7m ▶ {line}\x1b[0m\x1b[1A\x1b[{self.column + 1}G"

    def write(self, text: str) -> int:
        if not self.ansi:
            return self.out.write(text)
        columns, shown = self._columns(), [self._hide()]  # before the column moves on
        for char in text:
            if char == "\n":
                self.column = 0
            elif char == "\t":
                self.column = min(columns, (self.column // 8 + 1) * 8)
            else:
                self.column += _width(char)
            shown.append(char)
            if self.column >= columns:  # wrap ourselves, so the column is always known
                shown.append("\r\n")
                self.column = 0
        return self.out.write("".join(shown) + self._show())

    def flush(self) -> None:
        self.out.flush()

    def speaking(self, sentence: str, word: Word | None = None) -> None:
        """Show ``sentence`` as the one being spoken ("" to clear), ``word`` of it as
        the word being heard."""
        if not self.ansi:
            return
        cut = (word.offset, word.end) if word is not None else (len(sentence), len(sentence))
        parts = (
            _fold(sentence[: cut[0]]).lstrip(),
            _fold(sentence[cut[0] : cut[1]]),
            _fold(sentence[cut[1] :]).rstrip(),
        )
        if parts == self.parts:
            return
        hide = self._hide()
        self.parts = parts
        self.out.write(hide + self._show())
        self.out.flush()

    def end(self, footer: str = "") -> None:
        """The answer is over: clear the status line, end the text's line, add ``footer``
        (dimmed; on a plain stream the caller puts it elsewhere, stdout being the text's)."""
        self.speaking("")
        if self.column:
            self.out.write("\n")
            self.column = 0
        if footer and self.ansi:
            self.out.write(f"\x1b[2m{footer}\x1b[0m\n")
        self.out.flush()
