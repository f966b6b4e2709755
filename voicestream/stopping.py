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
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXIT_CODES = frozenset(128 + int(signum) for signum in SIGNALS)

_received = [signal.SIGINT]


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


def exit_code(signum: int | None = None) -> int:
    """The exit code for a stop by ``signum`` (default: the last one received)."""
    return 128 + int(signum if signum is not None else _received[0])
