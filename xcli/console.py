"""The only writer to stderr: errors, warnings, notes and the progress bar.

stdout carries records and nothing else (see :mod:`xcli.io`). Everything meant for a
person goes through :data:`console`:

* ``error`` lines always print; ``warning``/``note`` lines are silenced by ``--quiet``;
* colour only when stderr is a terminal and ``NO_COLOR`` is unset;
* a rich progress bar (count and rate) only when stderr is a terminal and not ``--quiet``;
  rich is imported only then, so it costs nothing in pipelines or ``--help``;
* a write to a closed stderr is dropped: diagnostics never crash a run.

The streams are looked up in :mod:`sys` at each use, so test runners that swap
``sys.stderr`` see everything. In a run that ``xcli serve`` serves, the messages are not written:
each call goes back to the client (:mod:`xcli.invocation`), whose console replays it
(:meth:`Console.replay`), with the client's ``--quiet``, colours and counts.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from contextlib import contextmanager
from typing import IO, Any, Callable, Iterator

from .invocation import served

PROG = "xcli"
#: how many warnings of one kind print before the rest are only counted
WARNINGS_SHOWN = 3


class _NoProgress:
    def advance(self, n: int = 1) -> None:
        pass

    def describe(self, text: str) -> None:
        pass


class _LibraryHandler(logging.Handler):
    """Log records of ``xcli_models`` -> the console's warning and error lines."""

    def __init__(self, console: "Console") -> None:
        super().__init__(logging.WARNING)
        self._console = console

    def emit(self, record: logging.LogRecord) -> None:
        if self._console._library_muted:
            return
        try:
            message = " ".join(record.getMessage().split())
        except Exception:  # noqa: BLE001 - a bad format string must not stop a run
            message = str(record.msg)
        if record.levelno >= logging.ERROR:
            self._console.error(message)
        else:
            self._console.warning(message)


class Console:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Back to the defaults (each invocation starts here)."""
        self.quiet = False
        self.debug = os.environ.get("XCLI_DEBUG", "") not in ("", "0")
        self._live = None  # the rich Progress while a bar is shown
        self._counted: dict[str, int] = {}
        self._library_muted = 0

    def configure(self, *, quiet: bool = False, debug: bool = False) -> None:
        """What this run's ``--quiet``/``--debug`` ask for; each command calls it first, with its
        own parsed options (``XCLI_DEBUG=1`` also turns the tracebacks on). A served run leaves
        the server's console as it is (the client's console has its options)."""
        if served() is not None:
            return
        self.quiet = quiet
        self.debug = debug or os.environ.get("XCLI_DEBUG", "") not in ("", "0")

    # ----------------------------------------------------- the model core
    def hear_library(self) -> None:
        """Show the model core's log warnings as ``xcli: warning:`` lines (once per process).

        ``xcli_models`` never prints: it logs to the ``xcli_models`` logger, as a library should.
        In the command line those records are warnings like any other: prefixed, silenced by
        ``--quiet``, printed above a progress bar rather than through it.
        """
        logger = logging.getLogger("xcli_models")
        if not any(isinstance(h, _LibraryHandler) for h in logger.handlers):
            logger.addHandler(_LibraryHandler(self))  # found, so logging's last resort stays silent

    @contextmanager
    def library_muted(self) -> Iterator[None]:
        """Drop the model core's warnings inside the block (the caller reports the matter itself)."""
        self._library_muted += 1
        try:
            yield
        finally:
            self._library_muted -= 1

    # ------------------------------------------------------------ streams
    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    def is_terminal(self) -> bool:
        try:
            return self.stream is not None and self.stream.isatty()
        except (AttributeError, ValueError, OSError):
            return False

    def use_color(self) -> bool:
        return self.is_terminal() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"

    def _write(self, label: str | None, color: str, message: str) -> None:
        if label and self.use_color():
            label = f"\033[{color}m{label}\033[0m"
        line = f"{PROG}: {label}: {message}" if label else f"{PROG}: {message}"
        if self._live is not None:
            self._live.console.print(line, markup=False, highlight=False, soft_wrap=True)
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError, AttributeError):
            pass  # stderr is gone; nothing sensible is left to do

    # ----------------------------------------------------------- messages
    def error(self, message: str) -> None:
        if not _sent("error", message):
            self._write("error", "1;31", message)

    def warning(self, message: str) -> None:
        if not self.quiet and not _sent("warning", message):
            self._write("warning", "33", message)

    def note(self, message: str) -> None:
        if not self.quiet and not _sent("note", message):
            self._write(None, "", message)

    def counted_warning(self, kind: str, message: str) -> None:
        """A warning that may repeat per record: the first few print, the rest are counted."""
        if _sent("counted_warning", kind, message):
            return
        seen = self._counted.get(kind, 0) + 1
        self._counted[kind] = seen
        if seen <= WARNINGS_SHOWN:
            self.warning(message)

    def summarize_warnings(self, describe: dict[str, str] | None = None) -> None:
        """One closing line per kind of counted warning that repeated past the first few."""
        if _sent("summarize_warnings", describe):
            return
        for kind, seen in self._counted.items():
            if seen > WARNINGS_SHOWN:
                what = (describe or {}).get(kind, kind)
                self.warning(f"{seen} records in all: {what}")
        self._counted.clear()

    def replay(self, method: str, *args: Any) -> None:
        """A console call a served run sent back (see :mod:`xcli.serving`); unknown ones are dropped."""
        if method in _REPLAYED:
            getattr(self, method)(*args)

    def exception(self, exc: BaseException, message: str) -> None:
        """An error line for ``exc``, with its traceback first under ``--debug``/``XCLI_DEBUG=1``."""
        if self.debug:
            try:
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=self.stream)
            except (OSError, ValueError, AttributeError):
                pass
        self.error(message)

    # ----------------------------------------------------------- progress
    @contextmanager
    def progress(self, total: int | None = None, unit: str = "records", enabled: bool = True,
                 detail: bool = False) -> Iterator[object]:
        """A bar with a count and a rate on a terminal; a no-op anywhere else (or when not ``enabled``).

        ``detail``: a text after the bar that ``bar.describe(text)`` sets (train: epoch, loss,
        learning rate, time left)."""
        if not enabled or self.quiet or not self.is_terminal() or self._live is not None or served() is not None:
            yield _NoProgress()
            return
        from rich.console import Console as RichConsole
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = [SpinnerColumn(), TextColumn(unit)]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        else:
            columns += [TextColumn("{task.completed:,}")]
        columns += [TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
        if detail:
            columns.append(TextColumn("{task.fields[detail]}"))
        rich_console = RichConsole(file=self.stream, no_color="NO_COLOR" in os.environ)
        # records go to stdout's bytes directly: rich must not wrap sys.stdout/sys.stderr
        bar = Progress(*columns, console=rich_console, transient=False, redirect_stdout=False, redirect_stderr=False)

        class _Task:
            def __init__(self) -> None:
                self.id = bar.add_task(unit, total=total, rate="", detail="")

            def advance(self, n: int = 1) -> None:
                bar.advance(self.id, n)
                speed = bar.tasks[0].speed
                if speed:
                    bar.update(self.id, rate=f"{speed:,.1f}/s")

            def describe(self, text: str) -> None:
                bar.update(self.id, detail=text)

        self._live = bar
        try:
            with bar:
                yield _Task()
        finally:
            self._live = None


_REPLAYED = ("error", "warning", "note", "counted_warning", "summarize_warnings")


def _sent(method: str, *args: Any) -> bool:
    """In a served run, hand the call to the server (for its client); False in a command's own process."""
    hooks = served()
    if hooks is None:
        return False
    say: Callable[..., None] = hooks.say
    say(method, *args)
    return True


#: the process-wide console
console = Console()
