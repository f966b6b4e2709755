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
import trio

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


class _Cut(Exception):
    """The response ended without ``message_stop`` (no exception from the SDK)."""


def resumable(error: BaseException) -> bool:
    """Whether a failure mid-answer is worth resuming: the stream broke, not the request."""
    if isinstance(error, _Cut | httpx2.TransportError):
        return True  # dropped, cut short, or a read timeout
    if isinstance(error, anthropic.APIStatusError):
        return error.status_code in (200, 429) or error.status_code >= 500  # 200: event: error
    return False


class AnthropicSource:
    """One answer from the Messages API, resumed where it broke off if the stream fails.

    On a mid-answer failure (the connection drops, the response ends without
    ``message_stop``, a read times out, an ``event: error`` arrives), the request
    is sent again with the answer so far as an assistant prefill -- without its
    trailing whitespace, which the API refuses -- and the continuation is spliced
    on, so nothing is said twice or skipped. At most ``max_resumes`` times, with
    exponential backoff; then the last cause is raised.
    """

    def __init__(self, config: AnthropicConfig, prompt: str) -> None:
        self.config = config
        self.prompt = prompt
        self.notices: list[str] = []  # one-line notices for stderr, after the answer
        self.resumes = 0

    async def stream(self) -> AsyncGenerator[str]:
        config = self.config
        client = anthropic.AsyncAnthropic(max_retries=config.max_retries, timeout=config.timeout_s)
        answer = ""
        try:
            while True:
                prefill = answer.rstrip()
                skip = answer[len(prefill) :]  # whitespace already said, not in the prefill
                messages: list[dict[str, str]] = [{"role": "user", "content": self.prompt}]
                if prefill:
                    messages.append({"role": "assistant", "content": prefill})
                try:
                    async with client.messages.stream(
                        model=config.model,
                        max_tokens=config.max_tokens,
                        system=config.system,
                        messages=messages,  # type: ignore[arg-type]
                    ) as stream:
                        async for event in stream:
                            if event.type != "content_block_delta":
                                continue  # pings, tool use, thinking: never read aloud
                            if event.delta.type != "text_delta":
                                continue
                            text = event.delta.text
                            while skip and text and text[0] == skip[0]:
                                text, skip = text[1:], skip[1:]
                            skip = skip if not text else ""
                            if text:
                                answer += text
                                yield text
                        stop_reason = stream.current_message_snapshot.stop_reason
                    if stop_reason is None:
                        raise _Cut
                except (anthropic.APIError, httpx2.HTTPError, _Cut) as e:
                    if not (answer and resumable(e)) or self.resumes >= config.max_resumes:
                        raise
                    self.resumes += 1
                    await trio.sleep(config.resume_backoff_s * 2 ** (self.resumes - 1))
                    continue
                if stop_reason == "max_tokens":
                    self.notices.append(
                        f"the answer was cut at anthropic.max_tokens = {config.max_tokens}; "
                        "raise it (or --max-tokens) for longer answers"
                    )
                return
        except _Cut:
            raise SourceError(
                "the answer stream ended before the model finished, and resuming did not "
                "complete it; what arrived so far was kept"
            ) from None
        except (anthropic.APIError, httpx2.HTTPError) as e:
            raise SourceError(describe(e)) from e
        finally:
            await client.close()
