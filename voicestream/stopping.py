"""Stop signals: Ctrl-C (SIGINT), SIGTERM and SIGHUP all stop an answer the same way.

While an answer runs, trio's signal receiver gets them and the answer is stopped
like a barge-in: audio already synthesized is kept, the file is closed, the
metrics are written. Before that (while Python starts and the modules load)
:func:`install` makes SIGTERM and SIGHUP raise :class:`KeyboardInterrupt` the
way Ctrl-C does, through trio's own SIGINT handling when trio runs, so every
path ends in the same place. The exit code is 128 + the signal's number: 130,
143, 129. Standard library only: this is imported before anything else.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXIT_CODES = frozenset(128 + int(signum) for signum in SIGNALS)

_received = [signal.SIGINT]
_swallowed = [False]  # a stop signal landed where Python could not raise it


def _as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    _received[0] = signal.Signals(signum)
    signal.raise_signal(signal.SIGINT)


def install() -> None:
    """Make SIGTERM and SIGHUP interrupt like Ctrl-C until trio receives them.

    Ctrl-C is handled even when the parent started us with it ignored (a background
    job of a shell without job control): trio's signal receiver handles it once an
    answer runs anyway, and a stop signal must mean the same at every moment.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in SIGNALS[1:]:
        signal.signal(signum, _as_ctrl_c)
    default_hook = sys.unraisablehook

    def unraisable(what: sys.UnraisableHookArgs) -> None:
        # A KeyboardInterrupt raised inside a callback (an import lock's weakref, seen
        # under load with Ctrl-C 30 ms after start) is "ignored" by Python with a
        # traceback, and the program would go on: note it, print nothing.
        if isinstance(what.exc_value, KeyboardInterrupt):
            _swallowed[0] = True
        else:
            default_hook(what)

    sys.unraisablehook = unraisable


def check() -> None:
    """Raise the KeyboardInterrupt that Python swallowed, if it did."""
    if _swallowed[0]:
        raise KeyboardInterrupt


def interrupted(error: BaseException) -> bool:
    """Whether ``error`` came of a stop signal: Python 3.11 turns a KeyboardInterrupt
    raised while a class is created (a descriptor's ``__set_name__``; seen with
    Ctrl-C 10 ms into the imports) into a RuntimeError caused by it."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def exit_code(signum: int | None = None) -> int:
    """The exit code for a stop by ``signum`` (default: the last one received)."""
    return 128 + int(signum if signum is not None else _received[0])
