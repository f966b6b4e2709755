"""Where speech is, in a stream of 32 ms frames (sans-IO).

:class:`Speech` takes each frame with the voice activity detector's probability
that it is speech, and says when an utterance begins (its first voiced frame, with
a little of what came before, so its first consonant is kept) and when it ends:
after ``end_silence_s`` without a voiced frame, the end of speech that sends a
spoken question (endpointing). Once speech has begun, a lower probability keeps it
going (hysteresis), so a soft syllable does not cut a question in two.

:func:`echo_likeness` tells the listener's own voice from a person's: how much a
frame of the microphone looks like some stretch of the audio the speaker has just
played (normalized cross-correlation at the best lag). The answer's own audio
coming back through a microphone (or a loopback) matches it closely; a person
speaking over it does not.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RATE = 16000  # what the detector and the speech model take
FRAME = 512  # samples: the detector's window, 32 ms
FRAME_S = FRAME / RATE
PAD_S = 0.2  # kept before the first voiced frame
KEEP = 0.15  # of the threshold: speech goes on while the probability is above threshold - this
LONGEST_S = 30.0  # an utterance is cut here (the speech model's window)
# The echo check compares the last 256 ms heard with what was played: shorter
# stretches of one voice match another stretch of it by chance (measured on espeak-ng
# against itself: 0.97 at 32 ms, 0.49 at 256 ms; its own echo 0.99).
ECHO_WINDOW = 8 * FRAME
ECHO = 0.85  # above this likeness, what is heard is the speaker's own voice

Frame = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Began:
    """Speech began ``at_s`` into the stream."""

    at_s: float


@dataclass(frozen=True)
class Ended:
    """An utterance: its samples (from a little before it began), where its speech
    began and ended in the stream, and how much of it was voiced."""

    samples: Frame
    start_s: float
    end_s: float
    voiced_s: float


class Speech:
    """Utterances in a stream of frames; see the module docstring."""

    def __init__(self, end_silence_s: float, threshold: float = 0.5) -> None:
        self.end_silence_s = end_silence_s
        self.threshold = threshold
        self.frames = 0  # frames fed so far
        self._before: deque[Frame] = deque(maxlen=max(1, round(PAD_S / FRAME_S)))
        self._utterance: list[Frame] | None = None
        self._start = self._last_voiced = self._voiced = 0

    @property
    def speaking(self) -> bool:
        return self._utterance is not None

    @property
    def voiced_s(self) -> float:
        """Voiced time in the utterance under way (0 between utterances)."""
        return self._voiced * FRAME_S if self._utterance is not None else 0.0

    @property
    def voiced(self) -> int:
        """Voiced frames in the utterance under way."""
        return self._voiced if self._utterance is not None else 0

    def so_far(self) -> Frame:
        """The samples of the utterance under way."""
        return np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.float32)

    @property
    def silent_s(self) -> float:
        """Time since the last voiced frame of the utterance under way (infinite
        between utterances)."""
        if self._utterance is None:
            return float("inf")
        return (self.frames - 1 - self._last_voiced) * FRAME_S

    @property
    def start_s(self) -> float:
        """Where the utterance under way began."""
        return self._start * FRAME_S

    def feed(self, frame: Frame, probability: float) -> Began | Ended | None:
        i = self.frames
        self.frames += 1
        if self._utterance is None:
            if probability < self.threshold:
                self._before.append(frame)
                return None
            self._utterance = [*self._before, frame]
            self._before.clear()
            self._start = self._last_voiced = i
            self._voiced = 1
            return Began(i * FRAME_S)
        self._utterance.append(frame)
        if probability >= self.threshold - KEEP:
            self._last_voiced = i
            self._voiced += 1
        silent_s = (i - self._last_voiced) * FRAME_S
        if silent_s >= self.end_silence_s or len(self._utterance) * FRAME_S >= LONGEST_S:
            return self.end()
        return None

    def end(self) -> Ended | None:
        """End the utterance under way now (the stream ended); None if there is none."""
        if self._utterance is None:
            return None
        ended = Ended(
            np.concatenate(self._utterance),
            self._start * FRAME_S,
            (self._last_voiced + 1) * FRAME_S,
            self._voiced * FRAME_S,
        )
        self._utterance = None
        return ended


def echo_likeness(frame: Frame, played: Frame) -> float:
    """How closely ``frame`` matches some stretch of ``played`` (both at RATE): the
    largest normalized cross-correlation over every lag, 0-1 (0 when either is
    silent or ``played`` is shorter than the frame)."""
    n = len(frame)
    if len(played) < n:
        return 0.0
    frame = frame - frame.mean()
    norm = float(np.dot(frame, frame))
    if norm < 1e-8:
        return 0.0
    size = 1 << (len(played) + n - 1).bit_length()
    spectrum = np.fft.rfft(played, size) * np.conj(np.fft.rfft(frame, size))
    products = np.fft.irfft(spectrum, size)[: len(played) - n + 1]
    energy = np.concatenate(([0.0], np.cumsum(played.astype(np.float64) ** 2)))
    windows = energy[n:] - energy[:-n]
    loud = windows > 1e-6 * n
    if not loud.any():
        return 0.0
    likeness = np.abs(products[loud]) / np.sqrt(windows[loud] * norm)
    return float(min(1.0, likeness.max()))
