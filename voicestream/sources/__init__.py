"""Text sources: async iterators of text pieces, as the model writes them.

A source's one essential method is ``stream()``, an async generator of text
pieces; the rest of :class:`Source` (a cost check before generating, notices
for the person, a usage report for the metrics) has do-nothing defaults in
:class:`BaseSource`, which every source here builds on. Sources are chosen by
name (``demo``, ``anthropic``, ``stdin``); ``auto`` means ``anthropic`` when
``ANTHROPIC_API_KEY`` is set, else ``demo``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from contextlib import aclosing
from typing import Any, Protocol

import trio

from ..config import Config
from ..errors import UsageError

SOURCES = ("auto", "demo", "anthropic", "openai", "stdin")
API_SOURCES = ("anthropic", "openai")  # the ones that need a PROMPT and an SDK


class Source(Protocol):
    notices: list[str]  # one line each, for the person, once the answer is over

    def stream(self) -> AsyncGenerator[str]:
        """The answer's text, piece by piece as the model writes it."""
        ...

    async def check_cost(self) -> None:
        """Refuse (:class:`UsageError`) before anything is generated, if it would cost
        too much; may be a request of its own."""
        ...

    def report(self) -> dict[str, Any]:
        """What the answer used and cost, for the metrics (never a key)."""
        ...


class BaseSource:
    """Do-nothing defaults for everything of a :class:`Source` but ``stream()``."""

    def __init__(self) -> None:
        self.notices: list[str] = []

    def stream(self) -> AsyncGenerator[str]:
        raise NotImplementedError

    async def check_cost(self) -> None:
        return None

    def report(self) -> dict[str, Any]:
        return {}


class TextSource(BaseSource):
    """Any text: a string, or an async iterable of pieces (an LLM stream)."""

    def __init__(self, text: str | AsyncIterable[str]) -> None:
        super().__init__()
        self.text = text

    async def stream(self) -> AsyncGenerator[str]:
        if isinstance(self.text, str):
            yield self.text
            return
        async for piece in self.text:
            yield piece


class Replayed(BaseSource):
    """``pieces`` written already, then the rest from ``source`` (made with
    ``resume_from`` those pieces): an answer taken over, read again from its start."""

    def __init__(self, pieces: list[str], source: Source) -> None:
        super().__init__()
        self.pieces = pieces
        self.source = source
        self.notices = source.notices

    async def stream(self) -> AsyncGenerator[str]:
        for piece in self.pieces:
            yield piece
        async with aclosing(self.source.stream()) as rest:
            async for piece in rest:
                yield piece

    async def check_cost(self) -> None:
        await self.source.check_cost()

    def report(self) -> dict[str, Any]:
        return self.source.report()


Causes = dict[int, tuple[str, str]]  # HTTP status: (what went wrong, what to do)


def api_message(body: Any) -> str:
    """The message in an API's error body (``{"error": {"message": ...}}``), or ""."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
    return ""


def status_line(status: int, body: Any, causes: Causes, who: str) -> str:
    """One line for a refused request: the cause, the status, the server's own words,
    what to do. ``who`` is "the API" or "the server"."""
    detail = api_message(body)
    cause, advice = causes.get(status) or (
        (f"{who} had an internal error", "try again")
        if status >= 500
        else (f"{who} refused the request", "check the settings")
    )
    return f"{cause} ({status}){': ' + detail if detail else ''}; {advice}"


def price(prices: tuple[str, ...], model: str, table: str) -> tuple[float, float] | None:
    """USD per million (input, output) tokens of ``model`` in ``prices``
    ("model:input:output" entries of the ``table`` settings), if listed."""
    for entry in prices:
        name, _, rest = entry.partition(":")
        if name == model:
            pin, _, pout = rest.partition(":")
            try:
                return float(pin), float(pout)
            except ValueError:
                raise UsageError(f"{table}.prices: '{entry}' is not model:input:output") from None
    return None


STREAM_CUT = (
    "the answer stream ended before the model finished, and resuming did not complete it; "
    "what arrived so far was kept"
)


def tool_rounds_notice(table: str, rounds: int) -> str:
    return f"the model kept calling tools; stopped after {rounds} rounds ({table}.max_tool_rounds)"


def max_tokens_notice(table: str, max_tokens: int) -> str:
    return (
        f"the answer was cut at {table}.max_tokens = {max_tokens}; raise it (or --max-tokens) "
        "for longer answers"
    )


def resolve_name(name: str, environ: Mapping[str, str]) -> str:
    if name not in SOURCES:
        raise UsageError(f"unknown source '{name}': choose one of {', '.join(SOURCES)}")
    if name == "auto":
        if environ.get("ANTHROPIC_API_KEY"):
            return "anthropic"
        if environ.get("OPENAI_BASE_URL") or environ.get("OPENAI_API_KEY"):
            return "openai"
        return "demo"
    return name


async def preload(name: str) -> None:
    """Import the named source's module in a worker thread: an SDK takes a second or
    two to import, and whatever else is getting ready can do it side by side."""
    if name in API_SOURCES:
        await trio.to_thread.run_sync(importlib.import_module, f"{__name__}.{name}")


def check_text(text: str, what: str) -> None:
    """Refuse text that cannot be sent as UTF-8 (a lone surrogate: from JSON's
    ``"\\ud800"``, or a command-line argument that was not valid UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UsageError(
            f"{what} is not valid Unicode text (character {e.start + 1} is a lone "
            "surrogate): send it as UTF-8"
        ) from None


def check_source(
    name: str, config: Config, prompt: str, environ: Mapping[str, str] | None = None
) -> None:
    """Refuse settings the named (already resolved) source cannot work with; cheap,
    imports nothing, so it runs before anything is opened."""
    environ = os.environ if environ is None else environ
    check_text(prompt, "the prompt")
    check_text(config.anthropic.system, "anthropic.system")
    check_text(config.openai.system, "openai.system")
    if name in API_SOURCES and not prompt:
        raise UsageError(f'the {name} source needs a PROMPT: voicestream say "your question"')
    if name == "anthropic":
        if not environ.get("ANTHROPIC_API_KEY"):
            raise UsageError(
                "the anthropic source needs ANTHROPIC_API_KEY: set it, or use --source demo"
            )
    elif name == "openai":
        if not (environ.get("OPENAI_API_KEY") or environ.get("OPENAI_BASE_URL")):
            raise UsageError(
                "the openai source needs OPENAI_API_KEY, or OPENAI_BASE_URL for a local "
                "server (e.g. http://localhost:11434/v1 for Ollama); or use --source demo"
            )
    elif name not in SOURCES:
        raise UsageError(f"unknown source '{name}': choose one of {', '.join(SOURCES)}")


def open_source(
    name: str,
    config: Config,
    prompt: str,
    environ: Mapping[str, str] | None = None,
    history: list[dict[str, Any]] | None = None,
    resume_from: str = "",
) -> Source:
    """Build the named (already resolved) source; checks its settings but sends nothing.

    ``history`` holds the earlier turns of a conversation, as Messages API messages.
    ``resume_from``: the answer so far, written to someone else: the source goes on
    after it (with its resume, as after a dropped stream) and yields only the rest.
    """
    check_source(name, config, prompt, environ)
    for i, turn in enumerate(history or ()):
        check_text(str(turn.get("content", "")), f"turn {i + 1} of the history")
    if name == "demo":
        from .demo import DemoSource

        return DemoSource(config.demo, resume_from=resume_from)
    if name == "stdin":
        from .stdin import StdinSource

        return StdinSource()
    if name == "openai":
        from .openai import OpenAISource

        return OpenAISource(config.openai, prompt, history, resume_from)
    from .anthropic import AnthropicSource

    return AnthropicSource(config.anthropic, prompt, history, resume_from)
