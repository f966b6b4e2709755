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

The engine's speed is learned as it works: seconds of synthesis per character (the
median of the last few, which overstates short texts: a safe side). Until the first
chunk is done, nothing is known, and nothing is cut; the first chunk is the
chunker's first fragment, short already.
"""

from __future__ import annotations

import statistics
from collections import deque

from .chunker import pauses, weak_pauses

MARGIN_S = 0.2  # the part's first block must reach the device before it runs dry
SAFETY = 1.25  # on the estimated synthesis time: the engine's speed varies
WORTH_S = 0.1  # a cut must save at least this much waiting (it costs a little prosody)
PRIOR_S_PER_CHAR = 0.06  # audio per character of English at 180 words a minute,
PRIOR_CHARS = 60  # believed as much as this many characters heard
PART_CHARS = 24  # the shortest part usually cut: four words
HOLD_MARGIN_S = 0.3  # and the next chunk's text may still be on its way
HOLD_MAX_S = 0.5


class Pacer:
    """Decides, chunk by chunk, what to synthesize next; see the module docstring."""

    def __init__(self, min_words: int = 4) -> None:
        self.min_words = min_words
        self.speeds: deque[float] = deque(maxlen=9)  # seconds of synthesis per second of audio
        self.chars = 0
        self.audio_s = 0.0

    def learn(self, text: str, seconds: float, audio_s: float) -> None:
        """The engine took ``seconds`` to make ``audio_s`` of ``text``."""
        if audio_s > 0:
            self.speeds.append(seconds / audio_s)
            self.chars += len(text)
            self.audio_s += audio_s

    def estimate(self, chars: int) -> float:
        """Seconds the engine will likely take for ``chars`` characters (0 before it is
        known): its speed, times the audio they make (what it has made so far per
        character, starting from a typical voice's)."""
        if not self.speeds:
            return 0.0
        per_char = (self.audio_s + PRIOR_CHARS * PRIOR_S_PER_CHAR) / (self.chars + PRIOR_CHARS)
        return SAFETY * statistics.median(self.speeds) * per_char * chars

    def hold(self, first_s: float) -> float:
        """How long to hold back the first audio, ``first_s`` seconds of it, so that a
        part of the next chunk can be made before it has played (0 for a fast engine)."""
        needed = self.estimate(PART_CHARS) + HOLD_MARGIN_S - first_s
        return min(HOLD_MAX_S, max(0.0, needed))

    def split(self, text: str, ahead_s: float | None) -> tuple[str, str]:
        """``(what to synthesize now, the rest)`` with ``ahead_s`` seconds of audio
        ahead of the listener (None: nothing plays in real time, a file)."""
        if ahead_s is None or not self.speeds:
            return text, ""
        budget = ahead_s - MARGIN_S
        if self.estimate(len(text)) <= budget + WORTH_S:
            return text, ""  # it fits, or so nearly that a cut would not be heard
        cuts = pauses(text, self.min_words) or weak_pauses(text, self.min_words)
        if not cuts:
            return text, ""
        fitting = [c for c in cuts if self.estimate(c) <= budget]
        cut = fitting[-1] if fitting else cuts[0]
        return text[:cut].rstrip(), text[cut:].lstrip()
