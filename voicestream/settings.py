"""The valid values of a setting, declared next to its default.

``number(default, low, high)`` and ``one_of(default, choices)`` are dataclass
fields that carry their rule as metadata; :func:`voicestream.config.check`
enforces them when the configuration is loaded. Standard library only, so the
component that owns a table of settings (the chunker, for one) can declare it
without importing anything else of voicestream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypeVar

Number = TypeVar("Number", int, float)


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric key: ``low`` to ``high``; ``low`` itself
    excluded when ``open_low`` (a duration that must not be zero)."""

    low: float
    high: float
    open_low: bool = False

    def admits(self, value: float) -> bool:
        if not math.isfinite(value) or value > self.high:
            return False
        return value > self.low if self.open_low else value >= self.low

    def __str__(self) -> str:
        low, high = plain(self.low), plain(self.high)
        return f"above {low} and at most {high}" if self.open_low else f"from {low} to {high}"


def plain(x: float) -> str:
    return str(int(x)) if x == int(x) else f"{x:g}"


def number(default: Number, low: float, high: float, *, open_low: bool = False) -> Number:
    return field(default=default, metadata={"range": Range(low, high, open_low)})


def one_of(default: str, choices: tuple[str, ...]) -> str:
    return field(default=default, metadata={"choices": choices})
