"""Pacing a slow engine: say a chunk in two parts when it could not be said whole in
time. Sans-IO.

A chunk's audio exists only once its whole synthesis is done. While the listener
has less audio ahead (made and not yet played) than the engine needs for the next
chunk, that chunk would open a gap: with Piper at a real-time factor of 0.3, a
55-character sentence takes about a second, and the short first fragment before it
("Sure!") plays for half of one. So the synthesizer asks :class:`Pacer` before each
synthesis: the chunk whole when its estimated synthesis time fits in the audio
ahead (less a margin), else its first part, cut where a speaker could pause
(:func:`voicestream.chunker.pauses`: a clause mark, or before a word that opens a
clause), the longest part that fits, or, if none does, the shortest (the gap is
then as short as it can be). The rest comes back for the next decision, with the
first part's audio now ahead. Only where no such pause exists is a weaker one
used, before a word that opens a phrase ("of", "to", "how"); never after a word
that needs what follows (an article, a preposition, a number). A cut must save
at least a tenth of a second; a fast engine (espeak-ng, 100x real time) is never
cut: its chunks always fit, or nearly.

Memory cuts chunks too, for every engine: while audio plays in real time, the
pipeline asks for parts that fit the jitter buffer's target less a reserve
(``room_s``), at a pause if one fits, else at a weaker one, and only where no
pause comes within ``most_s``, between two words (:func:`voicestream.chunker.word_breaks`),
so that what an answer holds is its jitter target and about one part, not the
rest of a long sentence besides (:meth:`voicestream.pipeline.Pipeline.next_part`).

The engine's speed is learned as it works: seconds of synthesis per character (the
median of the last few, which overstates short texts: a safe side). Until the first
chunk is done, nothing is known, and nothing is cut; the first chunk is the
chunker's first fragment, short already.
"""

from __future__ import annotations

import statistics
from collections import deque

from .chunker import pauses, weak_pauses, word_breaks

MARGIN_S = 0.2  # the part's first block must reach the device before it runs dry
SAFETY = 1.25  # on the estimated synthesis time: the engine's speed varies
WORTH_S = 0.1  # a cut must save at least this much waiting (it costs a little prosody)
PRIOR_S_PER_CHAR = 0.06  # audio per character of English at 180 words a minute,
PRIOR_CHARS = 60  # believed as much as this many characters heard
PART_CHARS = 24  # the shortest part usually cut: four words
HOLD_MARGIN_S = 0.3  # and the next chunk's text may still be on its way
HOLD_MAX_S = 0.5
RESERVE_S = 0.5  # audio left queued while a part longer than the jitter room is made
PART_PAUSE_S = 0.12  # the most silence kept at the end of a part of a chunk


class Pacer:
    """Decides, chunk by chunk, what to synthesize next; see the module docstring."""

    def __init__(self, min_words: int = 4) -> None:
        self.min_words = min_words
        self.speeds: deque[float] = deque(maxlen=9)  # seconds of synthesis per second of audio
        self.chars = 0
        self.audio_s_made = 0.0

    def learn(self, text: str, seconds: float, audio_s: float) -> None:
        """The engine took ``seconds`` to make ``audio_s`` of ``text``."""
        if audio_s > 0:
            self.speeds.append(seconds / audio_s)
            self.chars += len(text)
            self.audio_s_made += audio_s

    def audio_s(self, chars: int) -> float:
        """Seconds of audio ``chars`` characters likely make: what the engine has made
        so far per character, starting from a typical voice's."""
        return (
            chars
            * (self.audio_s_made + PRIOR_CHARS * PRIOR_S_PER_CHAR)
            / (self.chars + PRIOR_CHARS)
        )

    def estimate(self, chars: int) -> float:
        """Seconds the engine will likely take for ``chars`` characters (0 before it is
        known): its speed, times the audio they make."""
        if not self.speeds:
            return 0.0
        return SAFETY * statistics.median(self.speeds) * self.audio_s(chars)

    def hold(self, first_s: float) -> float:
        """How long to hold back the first audio, ``first_s`` seconds of it, so that a
        part of the next chunk can be made before it has played (0 for a fast engine)."""
        needed = self.estimate(PART_CHARS) + HOLD_MARGIN_S - first_s
        return min(HOLD_MAX_S, max(0.0, needed))

    def split(
        self,
        text: str,
        ahead_s: float | None,
        room_s: float | None = None,
        most_s: float | None = None,
    ) -> tuple[str, str]:
        """``(what to synthesize now, the rest)`` with ``ahead_s`` seconds of audio
        ahead of the listener (None: nothing plays in real time, a file). With
        ``room_s``, the part's audio should fit in that many seconds too, and must
        not pass ``most_s`` if a cut between two words can help it (memory: the
        pipeline's jitter buffer; see the module docstring)."""
        timed = ahead_s is not None and bool(self.speeds)
        budget = (ahead_s or 0.0) - MARGIN_S

        def fits(chars: int, spare: float = 0.0) -> bool:
            in_time = not timed or self.estimate(chars) <= budget + spare
            return in_time and (room_s is None or self.audio_s(chars) <= room_s)

        if fits(len(text), WORTH_S):
            return text, ""  # it fits, or so nearly that a cut would not be heard
        shortest: list[int] = []
        for tier in (pauses, weak_pauses):
            cuts = tier(text, self.min_words)
            fitting = [c for c in cuts if fits(c)]
            if fitting:  # the longest part that fits, at the strongest pause that does
                return _cut(text, fitting[-1])
            shortest += cuts[:1]
            if cuts and room_s is None:
                break  # in time only: a weaker pause is no better than a pause
        if room_s is not None and (not shortest or self.audio_s(min(shortest)) > (most_s or 0)):
            words = word_breaks(text, self.min_words)  # no pause near enough: between words
            fitting = [c for c in words if fits(c)]
            if fitting:
                return _cut(text, fitting[-1])
            shortest += words[:1]
        if not shortest:
            return text, ""
        return _cut(text, min(shortest))  # none fits: the wait is as short as it can be


def _cut(text: str, at: int) -> tuple[str, str]:
    return text[:at].rstrip(), text[at:].lstrip()
