"""Lines of a binary stream as soon as each is complete, and whether the next is ready (fd + select)."""

from __future__ import annotations

import os
import select
import stat
from typing import Any, BinaryIO, Iterator

#: the longest line read; a longer one becomes a ``line_too_long`` record error
MAX_LINE_BYTES = 64 * 1024 * 1024
_CHUNK = 64 * 1024


class _TooLong:
    """Stands for a line longer than the limit (its bytes are dropped)."""


TOO_LONG = _TooLong()


class LineReader:
    """Lines of a binary stream, without their end of line, as soon as each is complete.

    With a file descriptor, reads it directly (``os.read``) so that :meth:`ready` can tell,
    without blocking, whether another line is available: a complete line already buffered,
    or ``select`` saying the descriptor has data (regular files always do).
    """

    def __init__(self, stream: BinaryIO, max_line: int = MAX_LINE_BYTES) -> None:
        self._stream = stream
        self._max = max_line
        self._fd = _fileno(stream)
        self._always_ready = self._fd is None or stat.S_ISREG(os.fstat(self._fd).st_mode)
        self._buf = bytearray()
        self._eof = False

    def __iter__(self) -> Iterator[bytes | _TooLong]:
        lines = self._fd_lines() if self._fd is not None else self._stream_lines()
        for line in lines:
            if isinstance(line, bytes) and line.endswith(b"\r"):
                line = line[:-1]
            yield line

    def ready(self) -> bool:
        """True when the next line (or the end) can be had without waiting."""
        if self._always_ready or self._eof:
            return True
        buf, start = self._buf, 0
        while (nl := buf.find(b"\n", start)) >= 0:
            if buf[start:nl].strip():
                return True
            start = nl + 1  # a blank line: it will be skipped, look further
        try:
            readable, _, _ = select.select([self._fd], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _fd_lines(self) -> Iterator[bytes | _TooLong]:
        buf, scan, skipping = self._buf, 0, False
        while True:
            nl = buf.find(b"\n", scan)
            if nl >= 0:
                line = bytes(buf[:nl])
                del buf[: nl + 1]  # before yielding: ready() looks at what is left
                scan = 0
                if skipping:
                    skipping = False
                else:
                    yield line
                continue
            if len(buf) > self._max:
                if not skipping:
                    yield TOO_LONG
                skipping = True
                buf.clear()
            chunk = os.read(self._fd, _CHUNK)  # type: ignore[arg-type]
            if not chunk:
                self._eof = True
                if buf and not skipping:
                    yield bytes(buf)
                buf.clear()
                return
            scan = len(buf)
            buf += chunk

    def _stream_lines(self) -> Iterator[bytes | _TooLong]:
        readline = self._stream.readline
        while True:
            line = readline(self._max + 1)
            if not line:
                self._eof = True
                return
            if line.endswith(b"\n"):
                yield line[:-1]
                continue
            if len(line) <= self._max:
                yield line  # the last line, without a newline
                continue
            yield TOO_LONG
            while line and not line.endswith(b"\n"):
                line = readline(self._max)


def _fileno(stream: Any) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False
