"""espeak-ng through pyttsx3, synthesising to memory in a worker thread.

pyttsx3 starts espeak-ng (in retrieval mode: the samples come back through a
callback) and keeps one engine per process, which must not be used by two
threads at once, so every call goes through one process-wide lock (and, inside
trio, a limiter of one thread). pyttsx3's own callback passes on only a word's
name, location and length; ours, set through the same ctypes binding pyttsx3
uses, also reads each word event's exact sample offset, so the word marks are
espeak-ng's own (:func:`voicestream.words.from_positions`).
"""

from __future__ import annotations

import atexit
import ctypes
import difflib
import threading
from typing import Any

import numpy as np
import trio

from ..errors import UsageError
from ..words import Word, from_positions
from . import Samples, ThreadedSynthesizer

_ENGINE_LOCK = threading.Lock()
SYNTH_TIMEOUT_S = 30.0
INSTALL_HINT = "espeak-ng is not installed: run 'apt-get install libespeak-ng1'"


_engine_instance: Any = None


def _engine() -> Any:
    """The process's one pyttsx3 espeak engine (call with ``_ENGINE_LOCK`` held)."""
    global _engine_instance
    if _engine_instance is None:
        try:
            import pyttsx3

            engine = pyttsx3.init("espeak")
        except (RuntimeError, OSError, ImportError) as e:
            raise UsageError(INSTALL_HINT) from e
        from pyttsx3.drivers import _espeak

        _espeak.SetSynthCallback(_Utterance.on_synth)  # in place of pyttsx3's own
        _engine_instance = engine  # pyttsx3 only holds it weakly
        atexit.register(_release_engine)
    return _engine_instance


def _release_engine() -> None:
    # Dropped before interpreter shutdown, or pyttsx3's __del__ complains on stderr.
    global _engine_instance
    _engine_instance = None


class _Utterance:
    """What espeak-ng's thread hands back for one text: samples, and where each
    word it said starts (text offset, sample)."""

    current: _Utterance | None = None  # the one being synthesized (under _ENGINE_LOCK)

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.positions: list[tuple[int, int]] = []
        self.done = threading.Event()

    @staticmethod
    def on_synth(wav: Any, count: int, events: Any) -> int:
        """espeak-ng's synth callback: samples and the events that go with them."""
        from pyttsx3.drivers import _espeak

        utterance = _Utterance.current
        if utterance is None:
            return 0
        i = 0
        while (event := events[i]).type != _espeak.EVENT_LIST_TERMINATED:
            if event.type == _espeak.EVENT_WORD:
                utterance.positions.append((event.text_position - 1, event.sample))
            elif event.type == _espeak.EVENT_MSG_TERMINATED:
                utterance.done.set()
            i += 1
        if count > 0:
            utterance.parts.append(ctypes.string_at(wav, count * ctypes.sizeof(ctypes.c_short)))
        return 0


def _current_rate() -> int:
    """The rate espeak-ng will really use.

    pyttsx3's ``getProperty("rate")`` binds ``espeak_GetParameter`` without its
    second argument, so it returns the default or the current value at random;
    this binding asks for the current value.
    """
    from pyttsx3.drivers import _espeak

    get = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int)(
        ("espeak_GetParameter", _espeak.dll)
    )
    return int(get(_espeak.RATE, 1))


def list_voices() -> list[tuple[str, str, str]]:
    """``(id, name, languages)`` for every voice espeak-ng offers."""
    with _ENGINE_LOCK:
        voices = _engine().getProperty("voices")
    return [(v.id, v.name, ",".join(v.languages or [])) for v in voices]


def default_voice() -> str:
    """The id of the voice espeak-ng speaks with when none is chosen."""
    with _ENGINE_LOCK:
        _engine()
        from pyttsx3.drivers.espeak import EspeakDriver

        return str(EspeakDriver._defaultVoice)


def voice_language(vid: str) -> str:
    """The first language of the voice ``vid`` (the default voice's for "")."""
    vid = vid or default_voice()
    return next((languages.split(",")[0] for v, _, languages in list_voices() if v == vid), "")


def resolve_voice(wanted: str) -> str:
    """The id of a voice named by its id ("gmw/en-us"), its name ("English (America)"),
    or its language ("en-us", "de"); :class:`UsageError` with the closest otherwise."""
    voices = list_voices()
    key = wanted.strip().lower()
    for vid, name, _ in voices:
        if key in (vid.lower(), name.lower(), vid.lower().rsplit("/", 1)[-1]):
            return vid
    for vid, _, languages in voices:
        if key in languages.lower().split(","):
            return vid
    names = [v[1] for v in voices] + [v[0] for v in voices] + [v[2] for v in voices]
    match = difflib.get_close_matches(wanted, names, n=1)
    hint = f" (did you mean '{match[0]}'?)" if match else ""
    raise UsageError(f"unknown voice '{wanted}'{hint}; 'voicestream voices' lists them")


class EspeakSynthesizer(ThreadedSynthesizer):
    sample_rate = 22050

    def __init__(self, voice: str, words_per_minute: int, language: str = "") -> None:
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.language = language
        super().__init__()

    @classmethod
    async def open(cls, voice: str = "", words_per_minute: int = 180) -> EspeakSynthesizer:
        """Load espeak-ng and check the voice; raises :class:`UsageError` if either fails."""
        vid = await trio.to_thread.run_sync(resolve_voice, voice) if voice else ""
        return cls(vid, words_per_minute, await trio.to_thread.run_sync(voice_language, vid))

    def _synthesize(self, text: str) -> tuple[Samples, list[Word]]:
        with _ENGINE_LOCK:
            _engine()  # first: it says what to install when espeak-ng is missing
            from pyttsx3.drivers import _espeak
            from pyttsx3.drivers.espeak import EspeakDriver

            # Set on every call: the engine is shared by the whole process. In
            # retrieval mode espeak-ng applies settings from its command queue, so
            # they can lag behind: set them, wait for the queue to drain, and check.
            EspeakDriver.setProperty("rate", self.words_per_minute)
            # Always, the default too: another synthesizer may have chosen a voice.
            EspeakDriver.setProperty("voice", self.voice or EspeakDriver._defaultVoice)
            _espeak.Synchronize()
            if _current_rate() != self.words_per_minute:
                raise RuntimeError(f"espeak-ng did not accept the rate {self.words_per_minute}")
            if _espeak.dll.espeak_ng_GetSampleRate() != self.sample_rate:
                raise RuntimeError("espeak-ng returned audio in an unexpected format")
            key = (self.voice, self.words_per_minute)
            if key not in _END_PAUSES:
                _END_PAUSES[key] = _trailing_zeros(_speak(END_PAUSE_TEXT)[0])
            samples, positions = _speak(text)
        # espeak-ng carries prosody from one text to the next: after a question, every
        # text ends with ~40 ms more silence, until something resets it. The same text
        # always gets the same audio: its trailing silence is cut to this voice's own.
        extra = _trailing_zeros(samples) - _END_PAUSES[key]
        if extra > 0:
            samples = samples[:-extra]
        return samples, from_positions(text, positions, len(samples))


END_PAUSE_TEXT = "and then"  # no final mark: the silence espeak-ng ends any text with
_END_PAUSES: dict[tuple[str, int], int] = {}  # (voice, rate) -> samples (under the lock)


def _speak(text: str) -> tuple[Samples, list[tuple[int, int]]]:
    """espeak-ng's samples and word positions for ``text`` (``_ENGINE_LOCK`` held)."""
    from pyttsx3.drivers import _espeak

    utterance = _Utterance.current = _Utterance()
    try:
        # espeak-ng synthesizes in its own thread: wait for the end of the text.
        _espeak.Synth(text.encode("utf-8"), flags=_espeak.ENDPAUSE | _espeak.CHARS_UTF8)
        if not utterance.done.wait(SYNTH_TIMEOUT_S):
            _espeak.Cancel()
            raise RuntimeError("espeak-ng did not finish synthesising")
    finally:
        _Utterance.current = None
    return np.frombuffer(b"".join(utterance.parts), dtype=np.int16), utterance.positions


def _trailing_zeros(samples: Samples) -> int:
    sounding = np.flatnonzero(samples)
    return len(samples) - 1 - int(sounding[-1]) if len(sounding) else len(samples)
