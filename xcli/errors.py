"""Exit codes, the errors xcli raises on purpose, and the exception -> one-line message table.

Two kinds of failure exist:

* a *run* failure (:class:`XcliError` and anything unexpected) ends the command with one
  line on stderr and an exit code from :class:`ExitCode`;
* a *record* failure (:class:`RecordError`, or a ``ValueError`` raised while handling one
  record) becomes that record's ``{"error": {...}}`` output line and the run goes on.

:func:`describe` turns any exception into ``(exit code, one-line message)``; the table
matches on class names so that it never has to import the model core (or torch).
"""

from __future__ import annotations

import re
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    #: a failure that stopped the run: the model could not be loaded, an I/O error,
    #: ``--on-error stop`` on a bad record
    FAILURE = 1
    #: bad option, missing model, nothing to read, output exists
    USAGE = 2
    #: the run finished but some records failed (their output lines hold the errors)
    RECORDS_FAILED = 4
    #: Ctrl-C
    INTERRUPTED = 130
    #: the reader of stdout went away (``| head``): 128 + SIGPIPE, as the shell reports it for cat
    BROKEN_PIPE = 141
    #: SIGTERM: 128 + 15
    TERMINATED = 143


class XcliError(Exception):
    """A failure xcli knows how to explain: a message, what to do about it, an exit code."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(XcliError):
    """The command line asked for something impossible (exit 2)."""

    exit_code = ExitCode.USAGE


class OutputClosed(XcliError):
    """stdout's reader closed the pipe; ends the run without a message."""

    exit_code = ExitCode.BROKEN_PIPE

    def __init__(self) -> None:
        super().__init__("output pipe closed")


class StoppedOnError(XcliError):
    """``--on-error stop`` met a bad record: the run stops (exit 1, its output is incomplete)."""

    exit_code = ExitCode.FAILURE


class RecordsFailed(XcliError):
    """The run finished, but some records failed (exit 4)."""

    exit_code = ExitCode.RECORDS_FAILED


class ServedFailure(XcliError):
    """What stopped a run that ``xcli serve`` ran (a model that cannot load ...): the exit code and
    the one-line message the run would have ended with in its own process."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = ExitCode(code) if code in ExitCode._value2member_map_ else ExitCode.FAILURE


class RecordError(ValueError):
    """One record could not be handled; the stream goes on (unless ``--on-error stop``).

    ``type`` is a short snake_case tag (``invalid_json``, ``missing_field`` ...) that lands
    in the record's output line as ``{"error": {"type": ..., "message": ...}}``.
    """

    def __init__(self, type: str, message: str) -> None:
        super().__init__(message)
        self.type = type
        self.message = message

    @classmethod
    def from_exception(cls, exc: BaseException) -> "RecordError":
        if isinstance(exc, RecordError):
            return exc
        return cls(snake_case(type(exc).__name__), str(exc) or type(exc).__name__)

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


def snake_case(name: str) -> str:
    """``TokenizerError`` -> ``tokenizer_error``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


# class name (anywhere in the exception's MRO) -> (exit code, message template)
_TABLE: dict[str, tuple[ExitCode, str]] = {
    "KeyboardInterrupt": (ExitCode.INTERRUPTED, "interrupted"),
    "TokenizerError": (ExitCode.FAILURE, "cannot load the tokenizer: {}"),
    "CheckpointError": (ExitCode.FAILURE, "cannot load the checkpoint: {}"),
    "ConfigError": (ExitCode.FAILURE, "cannot load the checkpoint: {}"),
    "OutOfMemoryError": (ExitCode.FAILURE, "out of memory: {} (try a smaller --batch-size or --max-length)"),
    "MemoryError": (ExitCode.FAILURE, "out of memory (try a smaller --batch-size or --max-length)"),
    "FileNotFoundError": (ExitCode.FAILURE, "{}"),
    "PermissionError": (ExitCode.FAILURE, "{}"),
    "OSError": (ExitCode.FAILURE, "I/O error: {}"),
}


_ALLOCATION_FAILED = re.compile(r"can't allocate memory|DefaultCPUAllocator: not enough memory")


def describe(exc: BaseException) -> tuple[ExitCode, str]:
    """The exit code and one-line message for ``exc``."""
    if isinstance(exc, XcliError):
        return exc.exit_code, str(exc)
    for klass in type(exc).__mro__:
        entry = _TABLE.get(klass.__name__)
        if entry is not None:
            code, template = entry
            return code, template.format(_one_line(_os_message(exc)))
    detail = _one_line(str(exc))
    if _ALLOCATION_FAILED.search(detail):  # torch's CPU allocator says so in a RuntimeError
        return ExitCode.FAILURE, _TABLE["MemoryError"][1]
    what = type(exc).__name__ + (f": {detail}" if detail else "")
    return ExitCode.FAILURE, f"internal error: {what} (run again with --debug for the traceback)"


def _os_message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename
        return f"{exc.strerror}: {name}" if name else exc.strerror
    return str(exc)


def _one_line(text: str) -> str:
    return " ".join(text.split())
