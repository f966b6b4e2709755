"""The voices ``serve`` speaks with: chosen by name, loaded within a bound.

Over HTTP a voice is a *name* from :meth:`Voices.listing` (``GET /v1/voices``),
never a path: a request cannot make the server open a file, or learn whether one
exists. The rate is a parameter of each synthesis (:func:`at_rate`), so every
rate of a voice shares one loaded model, and its pool: ``[server] engines_per_voice``
syntheses at once where the engine allows it (Piper; by default as many as fill the
cores, :func:`default_pool`), so answers in the same voice are synthesized in
parallel until the CPU is full. At
most ``max_loaded`` voices are loaded (a Piper voice holds ~100 MB); to load
another, the least recently used one that no answer is speaking with is let go,
and when every one is speaking the request is refused (:class:`Busy`). An
unknown name is a :class:`UsageError` and loads nothing.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from .config import VoiceConfig
from .errors import UsageError
from .synthesizers import Synthesizer, ThreadedSynthesizer, at_rate, open_synthesizer


def default_pool(config: VoiceConfig) -> int:
    """Syntheses at once per voice that fill the cores: each Piper synthesis runs on
    ``piper_threads`` of them (more at once only share the cores, and each answer's
    next part comes later: measured, 4 Piper answers without a gap at a pool of one
    and two threads on 2 cores, 2 at a pool of two)."""
    threads = config.piper_threads if config.engine == "piper" else 1
    return max(1, (os.cpu_count() or 1) // threads)


class Busy(Exception):
    """Every loaded voice is speaking and no other may be loaded now."""


@dataclass
class _Loaded:
    synthesizer: Synthesizer
    users: int = 0


class Voices:
    """The engine's voices by name, and the ones loaded (see the module docstring)."""

    def __init__(self, config: VoiceConfig, max_loaded: int, pool: int = 1) -> None:
        self.config = config
        self.max_loaded = max_loaded
        self.pool = pool  # syntheses at once per voice, where the engine allows it
        self.default = ""
        self._names: dict[str, str] = {}  # a name in any case, or an alias -> the name
        self._opens: dict[str, str] = {}  # the name -> what the engine opens (voice.voice)
        self._described: list[dict[str, str]] = []
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()
        self._loading = trio.Lock()

    async def start(self) -> Synthesizer:
        """List the engine's voices and load the configured one; its synthesizer."""
        engine = self.config.engine
        if engine == "espeak":
            from .synthesizers.espeak import default_voice, list_voices

            for vid, name, languages in await trio.to_thread.run_sync(list_voices):
                self._add(vid, vid, name, languages=languages, alias=name)
            default = self.config.voice or await trio.to_thread.run_sync(default_voice)
        elif engine == "piper":
            from .synthesizers.piper import voice_paths

            directory = Path(self.config.piper_dir).expanduser() if self.config.piper_dir else None
            for path in voice_paths(directory):
                self._add(path.stem, str(path), "Piper voice")
            default = Path(self.config.voice).stem if self.config.voice else ""
        else:
            self._add(engine, "", "silence, as long as speech would take")
            default = engine
        default = self._names.get(default.lower(), default) or self._described[0]["name"]
        if default not in self._opens:  # configured by path: speaks, but only as the default
            self._add(default, self.config.voice, "the configured voice")
        synthesizer = await open_synthesizer(self.config)  # as configured
        self.default = default
        self._loaded[default] = _Loaded(self._pooled(synthesizer))
        return synthesizer

    def _pooled(self, synthesizer: Synthesizer) -> Synthesizer:
        if isinstance(synthesizer, ThreadedSynthesizer):
            synthesizer.pool(self.pool)
        return synthesizer

    def _add(self, name: str, opens: str, description: str, **more: str) -> None:
        alias = more.pop("alias", name)
        self._described.append({"name": name, "description": description, **more})
        self._names[name.lower()] = self._names[alias.lower()] = name
        self._opens[name] = opens

    def listing(self) -> dict[str, Any]:
        return {"engine": self.config.engine, "default": self.default, "voices": self._described}

    def resolve(self, name: str | None) -> str:
        """The voice's key for a name from the listing (None: the default)."""
        if name is None:
            return self.default
        key = self._names.get(name.strip().lower())
        if key is None:
            raise UsageError(f"unknown voice '{name[:64]}': GET /v1/voices lists the voices")
        return key

    async def acquire(self, name: str | None, rate: int | None) -> tuple[str, Synthesizer]:
        """``(key, synthesizer)`` for a voice at a rate; :meth:`release` the key after."""
        key = self.resolve(name)
        loaded = self._loaded.get(key)
        if loaded is None:
            async with self._loading:
                loaded = self._loaded.get(key)
                if loaded is None:
                    loaded = await self._load(key)
        self._loaded.move_to_end(key)
        loaded.users += 1
        return key, at_rate(loaded.synthesizer, self.config.rate if rate is None else rate)

    def release(self, key: str) -> None:
        loaded = self._loaded.get(key)
        if loaded is not None:
            loaded.users -= 1

    async def _load(self, key: str) -> _Loaded:
        if len(self._loaded) >= self.max_loaded:
            idle = [k for k, v in self._loaded.items() if not v.users and k != self.default]
            if not idle:
                raise Busy(
                    f"all {len(self._loaded)} loaded voices are speaking (server.max_voices); "
                    "ask again soon, or with one of them"
                )
            del self._loaded[idle[0]]  # the least recently used
        config = dataclasses.replace(self.config, voice=self._opens[key])
        loaded = _Loaded(self._pooled(await open_synthesizer(config)))
        self._loaded[key] = loaded
        return loaded

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)
