"""The errors a person sees: one line each, with the exit code that goes with it."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

# Never printed: their values are cut out of every line a person sees.
SECRET_VARIABLES = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "VOICESTREAM_TOKEN")
_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_-]{8,}")


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` without any secret: the keys in the environment, and anything shaped
    like an API key (a server may echo a key it was sent, or another one)."""
    environ = os.environ if environ is None else environ
    for name in SECRET_VARIABLES:
        secret = environ.get(name, "")
        if len(secret) >= 8:
            text = text.replace(secret, "[redacted]")
    return _KEY_LIKE.sub("[redacted]", text)


class VoicestreamError(Exception):
    """An error worth one clear line to the person running voicestream.

    The message says what went wrong and what to do about it; the CLI prints it
    without a traceback (unless ``--debug``) and exits with :attr:`exit_code`.
    """

    exit_code = 1


class UsageError(VoicestreamError):
    """Bad usage or configuration, found before any work started (exit 2)."""

    exit_code = 2


class SourceError(VoicestreamError):
    """The text source failed while the answer was streaming (exit 1)."""


class SinkError(VoicestreamError):
    """The audio could not be played or stored any more (exit 1)."""


def root_cause(error: BaseException) -> BaseException:
    """The one error to report from a (possibly nested) exception group.

    A :class:`VoicestreamError` wins over a ``KeyboardInterrupt``, which wins over
    anything else: those are the ones with a message or an exit code for a person.
    """
    for kind in (VoicestreamError, KeyboardInterrupt, BaseException):
        leaf: BaseException | None = error
        while isinstance(leaf, BaseExceptionGroup):
            group = leaf.subgroup(lambda e, k=kind: isinstance(e, k))  # type: ignore[misc]
            leaf = group.exceptions[0] if group else None
        if leaf is not None:
            return leaf
    return error
