"""Text sources: async iterators of text pieces, as the model writes them.

A source has one method, ``stream()``, an async generator of text pieces.
Sources are chosen by name (``demo``, ``anthropic``, ``stdin``); ``auto``
means ``anthropic`` when ``ANTHROPIC_API_KEY`` is set, else ``demo``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol

import trio

from ..config import Config
from ..errors import UsageError

SOURCES = ("auto", "demo", "anthropic", "stdin")


class Source(Protocol):
    def stream(self) -> AsyncGenerator[str]: ...


def resolve_name(name: str, environ: Mapping[str, str]) -> str:
    if name not in SOURCES:
        raise UsageError(f"unknown source '{name}': choose one of {', '.join(SOURCES)}")
    if name == "auto":
        return "anthropic" if environ.get("ANTHROPIC_API_KEY") else "demo"
    return name


async def preload(name: str) -> None:
    """Import the named source's module in a worker thread: the Anthropic SDK takes
    seconds to import, and whatever else is getting ready can do it side by side."""
    if name == "anthropic":
        await trio.to_thread.run_sync(importlib.import_module, f"{__name__}.anthropic")


def check_source(
    name: str, config: Config, prompt: str, environ: Mapping[str, str] | None = None
) -> None:
    """Refuse settings the named (already resolved) source cannot work with; cheap,
    imports nothing, so it runs before anything is opened."""
    environ = os.environ if environ is None else environ
    if name == "anthropic":
        if not environ.get("ANTHROPIC_API_KEY"):
            raise UsageError(
                "the anthropic source needs ANTHROPIC_API_KEY: set it, or use --source demo"
            )
        if not prompt:
            raise UsageError('the anthropic source needs a PROMPT: voicestream say "your question"')
    elif name not in SOURCES:
        raise UsageError(f"unknown source '{name}': choose one of {', '.join(SOURCES)}")


def open_source(
    name: str,
    config: Config,
    prompt: str,
    environ: Mapping[str, str] | None = None,
    history: list[dict[str, Any]] | None = None,
) -> Source:
    """Build the named (already resolved) source; checks its settings but sends nothing.

    ``history`` holds the earlier turns of a conversation, as Messages API messages.
    """
    check_source(name, config, prompt, environ)
    if name == "demo":
        from .demo import DemoSource

        return DemoSource(config.demo)
    if name == "stdin":
        from .stdin import StdinSource

        return StdinSource()
    from .anthropic import AnthropicSource

    return AnthropicSource(config.anthropic, prompt, history)
