"""Where the lines go: stdout (EPIPE-safe), or a file published atomically (``.partial`` on failure)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator, Sequence, TypeVar

from ..console import console
from ..errors import UsageError, XcliError
from .shards import Shard
from .writer import LineWriter, RecordWriter

if TYPE_CHECKING:
    from xcli_models.atomic import Work

W = TypeVar("W", bound=LineWriter)


class _StdoutSink:
    """stdout's binary stream, looked up when ``sys.stdout`` changes (test runners swap it)."""

    def __init__(self) -> None:
        self._text: Any = None
        self._bytes: Any = None

    @property
    def target(self) -> IO[str]:
        return sys.stdout

    def _stream(self) -> IO[bytes]:
        stdout = sys.stdout
        if stdout is not self._text:
            try:
                stdout.flush()  # anything written as text before keeps its place
            except (OSError, ValueError):
                pass
            self._text, self._bytes = stdout, getattr(stdout, "buffer", stdout)
        return self._bytes

    def write(self, data: bytes) -> int:
        return self._stream().write(data)

    def flush(self) -> None:
        self._stream().flush()


@contextmanager
def open_writer(
    output: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    fmt: str = "jsonl",
    keep: Sequence[str] | str | None = None,
    text_of: Callable[[dict[str, Any]], Any] | None = None,
    columns: Sequence[str] | None = None,
    shard: Shard | None = None,
) -> Iterator[RecordWriter]:
    """A :class:`RecordWriter` on stdout (``output`` None or ``-``) or on a file, atomically
    (see :func:`open_output`); with ``shard``, its lines carry their record numbers."""

    def make(sink: Any) -> RecordWriter:
        return RecordWriter(sink, fmt=fmt, keep=keep, text_of=text_of, columns=columns, shard=shard)

    with open_output(output, make, force=force) as writer:
        yield writer


@contextmanager
def open_output(output: str | os.PathLike[str] | None, make: Callable[[Any], W], *, force: bool = False) -> Iterator[W]:
    """The writer ``make(sink)`` (a :class:`LineWriter`) on stdout (``output`` None or ``-``) or on a
    file, atomically.

    A file is refused (usage error) if it exists and ``force`` is false, or if its folder
    does not exist; both are checked on entry, before any work. The lines go to a hidden
    temporary file beside it (:class:`xcli_models.atomic.Work`), published as PATH when the
    block ends normally: without ``force`` by a rename that never replaces, so of two runs
    racing for one PATH the loser fails (usage error) and keeps its lines in ``PATH.partial``.
    When the block raises (including Ctrl-C), the lines written so far are kept as
    ``PATH.partial`` and the exception goes on; with no line written, nothing is kept.
    What killed runs left beside PATH is removed first, with a warning for each.
    """
    if output is None or str(output) == "-":
        writer = make(_StdoutSink())
        ok = False
        try:
            yield writer
            ok = True
        finally:
            if ok:
                writer.close()
            else:
                _flush_quietly(writer)
        return

    target = Path(output).expanduser()
    folder = target.parent
    if target.is_dir():
        raise UsageError(f"--output {output}: is a directory")
    if not folder.is_dir():
        raise UsageError(f"--output {output}: the folder {folder} does not exist")
    if target.exists() and not force:
        raise UsageError(f"--output {output}: the file exists", "pass --force to overwrite it")
    from xcli_models.atomic import Work  # noqa: F811 - not at the top: only runs writing a file pay for it

    work = Work(target)
    try:
        handle = open(work.begin(), "wb")
    except BaseException:
        work.discard()
        raise
    for sentence in work.swept:
        console.warning(sentence)
    writer = make(handle)
    try:
        try:
            yield writer
            writer.close()
        finally:
            _flush_quietly(writer)
            handle.close()
        try:
            work.publish(replace=force)
        except FileExistsError:  # without force: another run published PATH after our check on entry
            raise UsageError(
                f"--output {output}: another run wrote the file while this one ran", "pass --force to overwrite it"
            ) from None
    except BaseException:
        kept = _keep_partial(work, writer.written)
        if kept:
            console.warning(f"the run stopped: the {writer.written} record(s) it wrote are in {kept}")
        raise


def _flush_quietly(writer: LineWriter) -> None:
    try:
        writer.flush()
    except (OSError, XcliError, ValueError):
        pass


def _keep_partial(work: Work, written: int) -> Path | None:
    """Keep the lines written so far as ``PATH.partial`` (``.partial.1`` ... if taken); none written, nothing kept."""
    if written == 0:
        work.discard()
        return None
    return work.keep_partial()
