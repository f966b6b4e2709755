"""OpenAI-compatible servers (OpenAI, Ollama, llama.cpp, vLLM, LM Studio) through the
official ``openai`` SDK under trio: streamed Chat Completions.

``OPENAI_API_KEY`` and ``OPENAI_BASE_URL`` are read by the SDK itself (a local
server needs no key: a placeholder is sent when only the URL is set). Only
``delta.content`` is spoken: reasoning fields and tool-call deltas never are.
The same promises as the Anthropic source: bounded retries before the first
token, then one line; a stream that breaks mid-answer (a drop, no
``finish_reason``, a read timeout, an error object) is resumed, bounded, with
backoff. Chat Completions has no standard prefill, so how is a setting:

- ``instruct``: the text so far as the assistant's turn, then a request to go
  on exactly after it;
- ``prefill``: the text so far as a final assistant message for the server to
  continue (with vLLM's ``continue_final_message`` when asked).

Either way the continuation goes through :class:`Splice`, which drops any
beginning of it that repeats the end of what was said (a model that repeats a
few words, a server that ignores the prefill and starts over), so the listener
hears nothing twice and nothing skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator
from typing import Any

import httpx2
import openai
import trio

from ..config import OpenAIConfig
from ..errors import SourceError
from ..tools import TOOLS, run_tool
from . import STREAM_CUT, BaseSource, Causes, max_tokens_notice, status_line, tool_rounds_notice
from . import price as prices

STATUS_CAUSES: Causes = {
    400: ("the server rejected the request", "check openai.model and the settings"),
    401: ("the API key was rejected", "check OPENAI_API_KEY"),
    403: ("the API key is not allowed to do this", "check the key's permissions"),
    404: (
        "the server does not know this model or endpoint",
        "check openai.model and OPENAI_BASE_URL",
    ),
    413: ("the request is too large", "shorten the prompt"),
    429: ("the server's rate limit was hit", "wait a moment and try again"),
}

CONTINUE = (
    "Your answer above was cut off. Continue it exactly where it stops, without "
    "repeating anything and without any preamble."
)
FUNCTIONS = [
    {
        "type": "function",
        "function": {
            "name": tool["name"],
            "description": tool["description"],
            "parameters": tool["input_schema"],
        },
    }
    for tool in TOOLS
]


def describe(error: BaseException) -> str:
    """One line for a person, naming the cause."""
    if isinstance(error, openai.APIStatusError):
        return status_line(error.status_code, error.body, STATUS_CAUSES, "the server")
    if isinstance(error, openai.APITimeoutError):
        return "the server did not answer in time; check it or raise openai.timeout_s"
    if isinstance(error, openai.APIConnectionError):
        return "could not connect to the server; check OPENAI_BASE_URL and that it is running"
    if isinstance(error, openai.APIError):  # an error object inside the stream
        return f"the server reported an error mid-answer: {error.message}"
    return f"the server call failed: {error}"


def resumable(error: BaseException) -> bool:
    """Whether a failure mid-answer is worth resuming: the stream broke, not the request."""
    if isinstance(error, _Cut | openai.APIConnectionError | httpx2.TransportError):
        return True
    if isinstance(error, openai.APIStatusError):
        return error.status_code == 429 or error.status_code >= 500
    return isinstance(error, openai.APIError)  # an error object in the stream


class _Cut(Exception):
    """The stream ended without a finish_reason."""


def price(config: OpenAIConfig) -> tuple[float, float]:
    """USD per million (input, output) tokens of the configured model; 0 if unlisted."""
    return prices(config.prices, config.model, "openai") or (0.0, 0.0)


class Splice:
    """Joins a continuation onto what was said, dropping any beginning of it that
    repeats the end of what was said (from a word start on). Streaming: text is held
    only while it may still turn out to be such a repeat."""

    def __init__(self, said: str) -> None:
        self.said = said
        self.pending = ""
        self.decided = not said

    def feed(self, text: str) -> str:
        if self.decided:
            return text
        self.pending += text
        if any(self.said.startswith(self.pending, i) for i in self._word_starts()):
            return ""  # still possibly a repeat: wait for more
        return self._decide()

    def flush(self) -> str:
        return "" if self.decided else self._decide()

    def _word_starts(self) -> list[int]:
        said = self.said
        return [i for i in range(len(said)) if i == 0 or said[i - 1].isspace()]

    def _decide(self) -> str:
        self.decided = True
        pending, said = self.pending, self.said
        overlap = max(
            (len(said) - i for i in self._word_starts() if pending.startswith(said[i:])),
            default=0,
        )
        return pending[overlap:]


class OpenAISource(BaseSource):
    """One answer streamed from a Chat Completions server; see the module docstring."""

    def __init__(
        self,
        config: OpenAIConfig,
        prompt: str,
        history: list[dict[str, Any]] | None = None,
        resume_from: str = "",
    ) -> None:
        super().__init__()
        self.resume_from = resume_from  # the answer so far, written elsewhere
        self.config = config
        self.prompt = prompt
        self.history = list(history or [])
        self.resumes = 0
        self.usage = {"input_tokens": 0, "output_tokens": 0}

    def report(self) -> dict[str, Any]:
        pin, pout = price(self.config)
        cost = (self.usage["input_tokens"] * pin + self.usage["output_tokens"] * pout) / 1e6
        return {
            "model": self.config.model,
            "resumes": self.resumes,
            **self.usage,
            "cost_usd": round(cost, 6),
        }

    def _client(self) -> openai.AsyncOpenAI:
        key = None if os.environ.get("OPENAI_API_KEY") else "unused-by-local-servers"
        return openai.AsyncOpenAI(
            api_key=key, max_retries=self.config.max_retries, timeout=self.config.timeout_s
        )

    def _resume(self, turn: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The messages (and extra body) that ask for the rest after ``turn``."""
        if not turn:
            return [], {}
        assistant = {"role": "assistant", "content": turn}
        if self.config.resume == "instruct":
            return [assistant, {"role": "user", "content": CONTINUE}], {}
        extra = (
            {"continue_final_message": True, "add_generation_prompt": False}
            if self.config.continue_final_message
            else {}
        )
        return [assistant], extra

    async def stream(self) -> AsyncGenerator[str]:
        config = self.config
        client = self._client()
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": config.system},
            *self.history,
            {"role": "user", "content": self.prompt},
        ]
        turn = self.resume_from  # the assistant turn being streamed, kept whole across resumes
        said = self.resume_from
        rounds = 0
        try:
            while True:
                more, extra = self._resume(turn)
                splice = Splice(turn)
                if not turn and said and not said[-1].isspace():
                    said += " "  # a new turn after a tool call: keep the words apart
                    yield " "
                calls: dict[int, dict[str, str]] = {}
                finish: str | None = None
                try:
                    stream = await client.chat.completions.create(  # type: ignore[call-overload]
                        model=config.model,
                        messages=[*messages, *more],
                        max_tokens=config.max_tokens,
                        stream=True,
                        stream_options={"include_usage": True},
                        tools=FUNCTIONS if config.tools else openai.omit,
                        extra_body=extra or None,
                    )
                    async with stream:
                        async for chunk in stream:
                            if chunk.usage is not None:
                                self.usage["input_tokens"] += chunk.usage.prompt_tokens or 0
                                self.usage["output_tokens"] += chunk.usage.completion_tokens or 0
                            for choice in chunk.choices[:1]:
                                _collect(calls, choice.delta.tool_calls)
                                finish = choice.finish_reason or finish
                                text = splice.feed(choice.delta.content or "")
                                if text:
                                    turn += text
                                    said += text
                                    yield text
                    text = splice.flush()
                    if text:
                        turn += text
                        said += text
                        yield text
                    if finish is None:
                        raise _Cut
                except (openai.APIError, httpx2.HTTPError, _Cut) as e:
                    if not (said and resumable(e)) or self.resumes >= config.max_resumes:
                        raise
                    self.resumes += 1
                    await trio.sleep(config.resume_backoff_s * 2 ** (self.resumes - 1))
                    continue
                if finish == "tool_calls" and calls and rounds < config.max_tool_rounds:
                    rounds += 1
                    messages += _tool_round(turn, calls)
                    turn = ""
                    continue
                if finish == "tool_calls":
                    self.notices.append(tool_rounds_notice("openai", rounds))
                if finish == "length":
                    self.notices.append(max_tokens_notice("openai", config.max_tokens))
                return
        except _Cut:
            raise SourceError(STREAM_CUT) from None
        except (openai.APIError, httpx2.HTTPError) as e:
            raise SourceError(describe(e)) from e
        finally:
            with trio.move_on_after(2, shield=True):
                await client.close()


def _collect(calls: dict[int, dict[str, str]], deltas: Any) -> None:
    """Assemble streamed tool-call deltas (an id and a name once, arguments in pieces)."""
    for delta in deltas or []:
        call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
        call["id"] = delta.id or call["id"]
        if delta.function is not None:
            call["name"] = delta.function.name or call["name"]
            call["arguments"] += delta.function.arguments or ""


def _tool_round(turn: str, calls: dict[int, dict[str, str]]) -> list[dict[str, Any]]:
    """The assistant's turn with its tool calls, then one tool message per call."""
    assistant: dict[str, Any] = {
        "role": "assistant",
        "content": turn.strip() or None,
        "tool_calls": [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
            for call in calls.values()
        ],
    }
    results = []
    for call in calls.values():
        try:
            arguments = json.loads(call["arguments"] or "{}")
        except json.JSONDecodeError:
            arguments = None
        output, _ = run_tool(call["name"], arguments)
        results.append({"role": "tool", "tool_call_id": call["id"], "content": output})
    return [assistant, *results]
