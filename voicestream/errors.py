"""The errors a person sees: one line each, with the exit code that goes with it."""


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
