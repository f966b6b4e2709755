"""A spoken conversation as data: what was asked, what was heard. No I/O.

The history the model sees holds what the listener *heard*: a whole answer as
the model wrote it, or, when it was cut off (a barge-in, a failure), the text
up to where playback stopped followed by :data:`CUT_OFF`, so the next answer
knows where the listener stopped it. A question that got no answer at all is
left out, so the model never sees a question twice in a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CUT_OFF = "[cut off: the listener interrupted here and did not hear the rest]"


@dataclass(frozen=True)
class Turn:
    """One question and its answer, as it went."""

    question: str
    written: str  # what the model wrote
    heard: str  # what was played: all of it, or up to the cut
    interrupted: bool = False
    error: str | None = None
    audio: str | None = None  # the WAV it was stored in
    audio_s: float = 0.0
    heard_s: float = 0.0
    heard_words: int = 0  # the words whose audio had started (the one in progress too)
    spoken: tuple[float, float] | None = None  # a spoken question: where its speech was

    @property
    def cut(self) -> bool:
        return self.interrupted or self.error is not None

    @property
    def answered(self) -> bool:
        """Whether anything came back (a failure before the first word is not a turn)."""
        return bool(self.written) or self.error is None

    def remembered(self) -> str:
        """The answer as the history keeps it."""
        if not self.cut:
            return self.written or "[no answer]"
        return f"{self.heard} {CUT_OFF}".strip()

    def transcript(self, now: str) -> list[dict[str, Any]]:
        """The turn as JSON-lines records: the question, then the answer."""
        question: dict[str, Any] = {"time": now, "role": "user", "text": self.question}
        if self.spoken is not None:
            question["spoken"] = {"start_s": self.spoken[0], "end_s": self.spoken[1]}
        return [
            question,
            {
                "time": now,
                "role": "assistant",
                "text": self.remembered() if self.cut else self.written,
                "written": self.written,
                "interrupted": self.interrupted,
                "error": self.error,
                "audio": self.audio,
                "audio_s": round(self.audio_s, 3),
                "heard_s": round(self.heard_s, 3),
                "heard_words": self.heard_words,
            },
        ]


class Conversation:
    """The turns so far, as Messages API history."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []

    def add(self, turn: Turn) -> bool:
        """Keep ``turn``; False (and nothing kept) when it got no answer at all."""
        if not turn.answered:
            return False
        self.history += [
            {"role": "user", "content": turn.question},
            {"role": "assistant", "content": turn.remembered()},
        ]
        return True

    def clear(self) -> None:
        self.history.clear()
