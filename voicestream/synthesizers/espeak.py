"""espeak-ng through pyttsx3, synthesising to memory in a worker thread.

pyttsx3 keeps one espeak engine per process and it must not be used by two
threads at once, so every call goes through one process-wide lock (and, inside
trio, a limiter of one thread). pyttsx3 prints "Audio saved to ..." on stdout
after each save; that print is swallowed so stdout carries only captions.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import difflib
import io
import threading
import wave
from typing import Any

import numpy as np
import trio

from ..errors import UsageError
from . import ThreadedSynthesizer

_ENGINE_LOCK = threading.Lock()
_FINISHED = threading.Event()  # set by espeak-ng's thread when an utterance is done
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
        engine.connect("finished-utterance", lambda **_: _FINISHED.set())
        _engine_instance = engine  # pyttsx3 only holds it weakly
        atexit.register(_release_engine)
    return _engine_instance


def _release_engine() -> None:
    # Dropped before interpreter shutdown, or pyttsx3's __del__ complains on stderr.
    global _engine_instance
    _engine_instance = None


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


def _resolve_voice(wanted: str) -> str:
    voices = list_voices()
    for vid, name, _ in voices:
        if wanted.lower() in (vid.lower(), name.lower()):
            return vid
    names = [v[1] for v in voices] + [v[0] for v in voices]
    match = difflib.get_close_matches(wanted, names, n=1)
    hint = f" (did you mean '{match[0]}'?)" if match else ""
    raise UsageError(f"unknown voice '{wanted}'{hint}; 'voicestream voices' lists them")


class EspeakSynthesizer(ThreadedSynthesizer):
    sample_rate = 22050

    def __init__(self, voice: str, words_per_minute: int) -> None:
        self.voice = voice
        self.words_per_minute = words_per_minute
        super().__init__()

    @classmethod
    async def open(cls, voice: str = "", words_per_minute: int = 180) -> EspeakSynthesizer:
        """Load espeak-ng and check the voice; raises :class:`UsageError` if either fails."""
        vid = await trio.to_thread.run_sync(_resolve_voice, voice) if voice else ""
        return cls(vid, words_per_minute)

    def _synthesize(self, text: str) -> np.ndarray[Any, np.dtype[np.int16]]:
        with _ENGINE_LOCK:
            engine = _engine()
            # Set on every call: the engine is shared by the whole process. In
            # retrieval mode espeak-ng applies settings from its command queue, so
            # they can lag behind (pyttsx3's own queued setter lags further): set
            # them on the driver, wait for the queue to drain, and check.
            from pyttsx3.drivers import _espeak
            from pyttsx3.drivers.espeak import EspeakDriver

            EspeakDriver.setProperty("rate", self.words_per_minute)
            # Always, the default too: another synthesizer may have chosen a voice.
            EspeakDriver.setProperty("voice", self.voice or EspeakDriver._defaultVoice)
            _espeak.Synchronize()
            if _current_rate() != self.words_per_minute:
                raise RuntimeError(f"espeak-ng did not accept the rate {self.words_per_minute}")
            out = io.BytesIO()
            _FINISHED.clear()
            with contextlib.redirect_stdout(io.StringIO()):
                engine.save_to_file(text, out)
                engine.runAndWait()
                # In retrieval mode espeak-ng synthesises in its own thread, and
                # runAndWait can return before it is done: wait for the end.
                if not _FINISHED.wait(SYNTH_TIMEOUT_S):
                    raise RuntimeError("espeak-ng did not finish synthesising")
        with wave.open(io.BytesIO(out.getvalue())) as w:
            if w.getframerate() != self.sample_rate or w.getsampwidth() != 2:
                raise RuntimeError("espeak-ng returned audio in an unexpected format")
            return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
