"""The Anthropic Messages API, streamed through the official SDK under trio.

``ANTHROPIC_API_KEY`` and ``ANTHROPIC_BASE_URL`` are read by the SDK itself,
exactly as it documents. Only text deltas are yielded. A failure is turned
into a :class:`SourceError` whose one line names the cause and never the key.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import anthropic
import httpx2

from ..config import AnthropicConfig
from ..errors import SourceError

STATUS_CAUSES = {
    400: "the API rejected the request",
    401: "the API key was rejected (check ANTHROPIC_API_KEY)",
    403: "the API key is not allowed to do this",
    404: "the API does not know this model or endpoint",
    413: "the request is too large",
    429: "the API rate limit was hit; wait a moment and try again",
    529: "the API is overloaded; try again in a minute",
}


def _api_message(body: Any) -> str:
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return ""


def describe(error: BaseException) -> str:
    """One line for a person, naming the cause."""
    if isinstance(error, anthropic.APIStatusError):
        status = error.status_code
        detail = _api_message(error.body)
        if status == 200:  # an `event: error` inside the stream
            kind = (
                error.body.get("error", {}).get("type", "error")
                if isinstance(error.body, dict)
                else "error"
            )
            return f"the API reported {kind} mid-answer: {detail or 'no details'}"
        cause = STATUS_CAUSES.get(status) or (
            "the API had an internal error; try again" if status >= 500 else "the API refused"
        )
        return f"{cause} ({status}){': ' + detail if detail else ''}"
    if isinstance(error, anthropic.APITimeoutError):
        return "the API did not answer in time; check the network or raise anthropic.timeout_s"
    if isinstance(error, anthropic.APIConnectionError):
        return "could not connect to the API; check the network or ANTHROPIC_BASE_URL"
    if isinstance(error, httpx2.TimeoutException):
        return "the answer stream stalled (read timeout); what arrived so far was kept"
    if isinstance(error, httpx2.HTTPError):
        return "the connection to the API dropped mid-answer; what arrived so far was kept"
    return f"the API call failed: {error}"


class AnthropicSource:
    def __init__(self, config: AnthropicConfig, prompt: str) -> None:
        self.config = config
        self.prompt = prompt

    async def stream(self) -> AsyncGenerator[str]:
        client = anthropic.AsyncAnthropic(
            max_retries=self.config.max_retries, timeout=self.config.timeout_s
        )
        try:
            async with client.messages.stream(
                model=self.config.model,
                max_tokens=self.config.max_tokens,
                system=self.config.system,
                messages=[{"role": "user", "content": self.prompt}],
            ) as stream:
                async for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield event.delta.text
                if stream.current_message_snapshot.stop_reason is None:
                    raise SourceError(
                        "the answer stream ended before the model finished; "
                        "what arrived so far was kept"
                    )
        except (anthropic.APIError, httpx2.HTTPError) as e:
            raise SourceError(describe(e)) from e
        finally:
            await client.close()
