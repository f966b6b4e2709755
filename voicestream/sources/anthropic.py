"""The Anthropic Messages API, streamed through the official SDK under trio.

``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` are read by the SDK itself,
exactly as it documents. Only text deltas are yielded. A failure is turned
into a :class:`SourceError` whose one line names the cause and never the key.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import anthropic
import httpx2
import trio

from ..config import AnthropicConfig
from ..errors import SourceError, UsageError
from ..tools import TOOLS, run_tool
from . import (
    STREAM_CUT,
    BaseSource,
    Causes,
    api_message,
    max_tokens_notice,
    status_line,
    tool_rounds_notice,
)
from . import price as prices

STATUS_CAUSES: Causes = {
    400: ("the API rejected the request", "check the model name and the settings"),
    401: ("the API key was rejected", "check ANTHROPIC_API_KEY"),
    403: ("the API key is not allowed to do this", "check the key's permissions"),
    404: ("the API does not know this model or endpoint", "check anthropic.model"),
    413: ("the request is too large", "shorten the prompt"),
    429: ("the API rate limit was hit", "wait a moment and try again"),
    529: ("the API is overloaded", "try again in a minute"),
}


def describe(error: BaseException) -> str:
    """One line for a person, naming the cause."""
    if isinstance(error, anthropic.APIStatusError):
        status = error.status_code
        detail = api_message(error.body)
        if status == 200:  # an `event: error` inside the stream
            kind = (
                error.body.get("error", {}).get("type", "error")
                if isinstance(error.body, dict)
                else "error"
            )
            return f"the API reported {kind} mid-answer: {detail or 'no details'}"
        return status_line(status, error.body, STATUS_CAUSES, "the API")
    if isinstance(error, anthropic.APITimeoutError):
        return "the API did not answer in time; check the network or raise anthropic.timeout_s"
    if isinstance(error, anthropic.APIConnectionError):
        return "could not connect to the API; check the network or ANTHROPIC_BASE_URL"
    if isinstance(error, httpx2.TimeoutException):
        return "the answer stream stalled (read timeout); what arrived so far was kept"
    if isinstance(error, httpx2.HTTPError):
        return "the connection to the API dropped mid-answer; what arrived so far was kept"
    return f"the API call failed: {error}"


CACHEABLE_CHARS = 4096  # about the 1,024 tokens below which a prompt is not cached


def price(config: AnthropicConfig) -> tuple[float, float] | None:
    """USD per million (input, output) tokens of the configured model, if known."""
    return prices(config.prices, config.model, "anthropic")


class _Cut(Exception):
    """The response ended without ``message_stop`` (no exception from the SDK)."""


class _BadEvent(Exception):
    """The server sent an event the SDK could not read: not JSON, or out of order
    (a delta before its block started). A broken stream like any other."""


def resumable(error: BaseException) -> bool:
    """Whether a failure mid-answer is worth resuming: the stream broke, not the request."""
    if isinstance(error, _Cut | _BadEvent | httpx2.TransportError):
        return True  # dropped, cut short, or a read timeout
    if isinstance(error, anthropic.APIConnectionError):
        return True  # the same, as anthropic 2.17 reports it mid-stream (timeouts too)
    if isinstance(error, anthropic.APIStatusError):
        return error.status_code in (200, 429) or error.status_code >= 500  # 200: event: error
    return False


class AnthropicSource(BaseSource):
    """One answer from the Messages API, resumed where it broke off if the stream fails.

    On a mid-answer failure (the connection drops, the response ends without
    ``message_stop``, a read times out, an ``event: error`` arrives), the request
    is sent again with the answer so far as an assistant prefill -- without its
    trailing whitespace, which the API refuses -- and the continuation is spliced
    on, so nothing is said twice or skipped. At most ``max_resumes`` times, with
    exponential backoff; then the last cause is raised.
    """

    def __init__(
        self,
        config: AnthropicConfig,
        prompt: str,
        history: list[dict[str, Any]] | None = None,
        resume_from: str = "",
    ) -> None:
        super().__init__()
        self.resume_from = resume_from  # the answer so far, written elsewhere
        self.config = config
        self.prompt = prompt
        self.history = list(history or [])  # earlier turns of a conversation
        self.resumes = 0
        self.stop_reason: str | None = None
        self.usage: dict[str, int] = {
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }

    def _system(self) -> Any:
        """The system prompt; marked for prompt caching when it is long enough to cache."""
        system = self.config.system
        if len(system) >= CACHEABLE_CHARS:
            return [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
        return system

    def report(self) -> dict[str, Any]:
        """Usage and cost of the answer, for --metrics (never the key)."""
        report: dict[str, Any] = {"model": self.config.model, "resumes": self.resumes}
        if self.stop_reason is not None:
            report["stop_reason"] = self.stop_reason
        report.update(self.usage)
        prices = price(self.config)
        if prices is not None:
            report["cost_usd"] = round(
                (self.usage["input_tokens"] * prices[0] + self.usage["output_tokens"] * prices[1])
                / 1e6,
                6,
            )
        return report

    async def check_cost(self) -> None:
        """Refuse, before any generation, a request whose worst case costs too much."""
        config = self.config
        if config.max_cost_usd <= 0:
            return
        prices = price(config)
        if prices is None:
            raise UsageError(
                f"no price for {config.model} in anthropic.prices; add one to use the cost guard"
            )
        client = anthropic.AsyncAnthropic(max_retries=config.max_retries, timeout=config.timeout_s)
        try:
            counted = await client.messages.count_tokens(
                model=config.model,
                system=self._system(),
                messages=[*self.history, {"role": "user", "content": self.prompt}],  # type: ignore[list-item]
            )
        except (anthropic.APIError, httpx2.HTTPError) as e:
            raise SourceError(f"counting the input tokens failed: {describe(e)}") from e
        finally:
            await client.close()
        tokens = counted.input_tokens
        worst = (tokens * prices[0] + config.max_tokens * prices[1]) / 1e6
        if worst > config.max_cost_usd:
            raise UsageError(
                f"this request could cost ${worst:.4f} ({tokens} input tokens at ${prices[0]:g}/M "
                f"+ up to {config.max_tokens} output tokens at ${prices[1]:g}/M), over the "
                f"--max-cost of ${config.max_cost_usd:g}; lower --max-tokens or raise --max-cost"
            )

    async def _texts(self, stream: Any) -> AsyncGenerator[str]:
        """The text of one response as it streams: pings, tool use and thinking are never
        read aloud. Its usage is added to the answer's however the response ends (a broken
        one was billed too)."""
        events = aiter(stream)
        try:
            while True:
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    return
                except (ValueError, LookupError) as e:  # the SDK could not parse an event
                    raise _BadEvent(f"{type(e).__name__}: {e}") from e
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    yield event.delta.text
        finally:
            try:
                usage = stream.current_message_snapshot.usage
            except (AssertionError, AttributeError):  # not even message_start arrived
                usage = None
            for key in self.usage:
                self.usage[key] += getattr(usage, key, None) or 0

    async def stream(self) -> AsyncGenerator[str]:
        config = self.config
        client = anthropic.AsyncAnthropic(max_retries=config.max_retries, timeout=config.timeout_s)
        history = [*self.history, {"role": "user", "content": self.prompt}]
        turn = self.resume_from  # the assistant turn being streamed (prefilled on resume)
        said = self.resume_from  # everything said so far, across turns
        rounds = 0
        try:
            while True:
                prefill = turn.rstrip()
                skip = turn[len(prefill) :]  # whitespace already said, not in the prefill
                if not turn and said and not said[-1].isspace():
                    skip = " "  # a new turn after a tool call: keep the words apart
                    said += " "
                    yield " "
                messages = history + (
                    [{"role": "assistant", "content": prefill}] if prefill else []
                )
                try:
                    async with client.messages.stream(
                        model=config.model,
                        max_tokens=config.max_tokens,
                        system=self._system(),
                        messages=messages,  # type: ignore[arg-type]
                        **({"tools": TOOLS} if config.tools else {}),  # type: ignore[arg-type]
                    ) as stream:
                        async with aclosing(self._texts(stream)) as texts:
                            async for text in texts:
                                while skip and text and text[0] == skip[0]:
                                    text, skip = text[1:], skip[1:]
                                skip = skip if not text else ""
                                if text:
                                    turn += text
                                    said += text
                                    yield text
                        snapshot = stream.current_message_snapshot
                        stop_reason = snapshot.stop_reason
                    if stop_reason is None:
                        raise _Cut
                except (anthropic.APIError, httpx2.HTTPError, _Cut, _BadEvent) as e:
                    if not (said and resumable(e)) or self.resumes >= config.max_resumes:
                        raise
                    self.resumes += 1
                    await trio.sleep(config.resume_backoff_s * 2 ** (self.resumes - 1))
                    continue
                if stop_reason == "tool_use" and rounds < config.max_tool_rounds:
                    rounds += 1
                    history += self._tool_round(turn, snapshot.content)
                    turn = ""
                    continue
                if stop_reason == "tool_use":
                    self.notices.append(tool_rounds_notice("anthropic", rounds))
                if stop_reason == "max_tokens":
                    self.notices.append(max_tokens_notice("anthropic", config.max_tokens))
                self.stop_reason = stop_reason
                return
        except _Cut:
            raise SourceError(STREAM_CUT) from None
        except _BadEvent as e:
            raise SourceError(
                f"the API sent an event that could not be read ({e}); what arrived so far was kept"
            ) from e
        except (anthropic.APIError, httpx2.HTTPError) as e:
            raise SourceError(describe(e)) from e
        finally:
            # Shielded: when the listener interrupts, the connection must really
            # close now, so the API stops generating (and billing) the answer.
            with trio.move_on_after(2, shield=True):
                await client.close()

    def _tool_round(self, turn: str, content: Any) -> list[dict[str, Any]]:
        """The assistant's turn with its tool calls, and the user's turn with the results."""
        calls = [block for block in content if block.type == "tool_use"]
        said = [{"type": "text", "text": turn.rstrip()}] if turn.strip() else []
        assistant = said + [
            {"type": "tool_use", "id": c.id, "name": c.name, "input": c.input} for c in calls
        ]
        results = []
        for call in calls:
            output, is_error = run_tool(call.name, call.input)
            results.append(
                {
                    "type": "tool_result",
                    "tool_use_id": call.id,
                    "content": output,
                    "is_error": is_error,
                }
            )
        return [{"role": "assistant", "content": assistant}, {"role": "user", "content": results}]
