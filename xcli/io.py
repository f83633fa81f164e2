"""Records in, records out: the streaming I/O every record command shares.

The flow of a command::

    records = read_records(texts, inputs, input_format=..., field=...)   # 1. what to read
    with open_writer(output, force=..., fmt=..., keep=...) as writer:    # 2. where to write
        model = ...                                                      #    (load after both checks)
        summary = run_records(records, process_batch, writer,            # 3. the loop
                              prepare=prepare, batch_size=..., on_error=...)
    finish(summary)                                                      # 4. exit 4 if records failed

1. :func:`read_records` picks the source (TEXT arguments, else ``--input`` paths, else stdin
   when it is not a terminal; nothing to read is a usage error) and returns a
   :class:`RecordStream`: :class:`Record` objects, parsed lazily line by line. Each source's
   format is ``jsonl``, ``text`` or ``tsv`` (header row), or ``auto``: JSONL when its first
   non-blank line starts with ``{``. Blank lines are skipped, ``\\r\\n`` and a UTF-8 BOM are
   accepted. A line that cannot become a record is not fatal: it becomes a record that
   carries its :class:`~xcli.errors.RecordError`, whose type is one of

   - ``invalid_utf8``: **invalid UTF-8** (an error rather than silently replaced, because a
     replaced character would change what the model sees);
   - ``invalid_json``, ``not_an_object``, ``tsv_columns``, ``line_too_long`` (longer than
     :data:`MAX_LINE_BYTES`);
   - ``invalid_number``: ``NaN``, ``Infinity``, ``-Infinity`` or a number beyond a 64-bit
     float such as ``1e400``. Python's json module accepts them; RFC 8259 does not, and an
     echoed ``"id": Infinity`` would make our own output invalid JSON;
   - ``too_deep``: arrays and objects nested more than :data:`MAX_DEPTH` (100) levels, the
     record itself counting as one. Past ~1,000 levels the parser (and the writer, echoing
     ``id`` or ``--keep`` fields) would hit Python's recursion limit and stop the run.

   A string may still hold a lone surrogate (from a ``"\\ud800"`` escape): it is read as is,
   echoed escaped (below), and refused by the tokenizers (``tokenizer_error``) when it is a text.
2. :func:`open_writer` writes one line per record, in input order, to stdout or to
   ``--output PATH``. Every JSONL line is valid RFC 8259 JSON in valid UTF-8: a line holding
   a lone surrogate is written with ``\\uXXXX`` escapes (ASCII), and a NaN or Infinity in a
   result (a broken model's score) is written as ``null`` with a warning naming the record.
   A file is written to a hidden temporary file beside PATH (:class:`xcli_models.atomic.Work`,
   ``.PATH.xcli-XXXXXXXX.tmp``, locked while the run lives) and published as PATH only when
   the run succeeds or finishes with failed records. PATH is refused up front if it exists
   unless ``force``, and the final rename never replaces a file without ``force``: of two
   runs racing for one PATH, the loser fails with a usage error (exit 2). If the run stops
   (error, Ctrl-C, lost race), the lines written so far are kept in ``PATH.partial`` (PATH
   itself is untouched; no line written, nothing kept), so nothing is lost and nothing is
   half-written. Temporary files left by runs killed with SIGKILL are removed when the next
   run to the same PATH starts, with a warning each. A closed stdout pipe raises
   :class:`~xcli.errors.OutputClosed`.
3. :func:`run_records` groups records into batches of ``batch_size``, or fewer when no more
   input is ready right now (so an interactive or slow producer gets each answer at once),
   calls ``prepare(record)`` per record and ``process_batch(items)`` per batch, turns
   per-record exceptions into error lines (naming the line on stderr), writes and flushes
   each batch, and stops at the first bad record under ``on_error="stop"``.
4. :func:`finish` raises :class:`~xcli.errors.RecordsFailed` (exit 4) when records failed.

Memory stays bounded: records are read as they are needed, a batch at a time, and a
single line is capped at :data:`MAX_LINE_BYTES`.
"""

from __future__ import annotations

import glob
import json
import math
import os
import select
import stat
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, Callable, Iterable, Iterator, Sequence

from .console import console
from .errors import OutputClosed, RecordError, RecordsFailed, StoppedOnError, UsageError, XcliError

if TYPE_CHECKING:
    from xcli_models.atomic import Work

#: the longest line read; a longer one becomes a ``line_too_long`` record error
MAX_LINE_BYTES = 64 * 1024 * 1024
#: the deepest nesting of arrays and objects in a JSONL record, the record itself counting as 1;
#: a deeper one becomes a ``too_deep`` record error
MAX_DEPTH = 100
_CHUNK = 64 * 1024
_WRITE_CHUNK = 1024 * 1024
INPUT_FORMATS = ("auto", "jsonl", "text", "tsv")
OUTPUT_FORMATS = ("jsonl", "text", "tsv")
ON_ERROR = ("continue", "stop")


# --------------------------------------------------------------------------- records
@dataclass
class Record:
    """One input record: its fields, where it came from, and a read error if it has one."""

    index: int
    data: dict[str, Any]
    where: str  # "line 3", "data.jsonl line 3", "argument 2": for messages
    line: int | None = None  # line number in its source (None for TEXT arguments)
    error: RecordError | None = None

    @property
    def id(self) -> Any:
        return self.data.get("id")

    def get(self, name: str, default: Any = None) -> Any:
        return self.data.get(name, default)

    def text(self, name: str = "text", hint: str = "") -> str:
        """The string field ``name``; a missing or non-string field is a record error (``hint``: what to do)."""
        if name not in self.data:
            fields = ", ".join(sorted(self.data))
            found = f" (it has: {fields})" if fields else ""
            advice = f"; {hint}" if hint else ""
            raise RecordError("missing_field", f'no "{name}" field in the record{found}{advice}')
        return self._string(name)

    def optional_text(self, name: str) -> str | None:
        """The string field ``name``, or None when it is absent or null."""
        if self.data.get(name) is None:
            return None
        return self._string(name)

    def int_list(self, name: str) -> list[int]:
        """A list of integers: a JSON array, or a string of integers split by spaces/commas."""
        if name not in self.data:
            raise RecordError("missing_field", f'no "{name}" field in the record')
        value = self.data[name]
        if isinstance(value, str):
            try:
                return [int(part) for part in value.replace(",", " ").split()]
            except ValueError:
                raise RecordError("wrong_type", f'"{name}" must hold integers, got {value[:40]!r}') from None
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return list(value)
        raise RecordError("wrong_type", f'"{name}" must be an array of integers, not {json_type(value)}')

    def _string(self, name: str) -> str:
        value = self.data[name]
        if not isinstance(value, str):
            raise RecordError("wrong_type", f'"{name}" must be a string, not {json_type(value)}')
        return value


def json_type(value: Any) -> str:
    """The JSON name of a Python value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# ------------------------------------------------------------------------ line reading
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


# ------------------------------------------------------------------------- sources
class _Source:
    """One place records come from."""

    name: str

    def records(self, stream: "RecordStream") -> Iterator[Record]:
        raise NotImplementedError

    def ready(self) -> bool:
        return True


class _Arguments(_Source):
    def __init__(self, texts: Sequence[str], field_name: str) -> None:
        self.name = "arguments"
        self.texts = list(texts)
        self.field = field_name

    def records(self, stream: "RecordStream") -> Iterator[Record]:
        for number, text in enumerate(self.texts, 1):
            yield Record(stream.next_index(), {self.field: text}, f"argument {number}")


class _Lines(_Source):
    """Stdin (``-``) or a file, read line by line in one format."""

    def __init__(self, path: str, fmt: str, field_name: str) -> None:
        self.path = path
        self.name = "<stdin>" if path == "-" else path
        self.fmt = fmt
        self.field = field_name
        self._reader: LineReader | None = None

    def ready(self) -> bool:
        return self._reader is None or self._reader.ready()

    def _open(self) -> tuple[BinaryIO, bool]:
        if self.path == "-":
            stdin = sys.stdin
            return (getattr(stdin, "buffer", stdin), False)
        try:
            return open(self.path, "rb", buffering=0), True
        except OSError as exc:
            raise XcliError(f"cannot read {self.path}: {exc.strerror}") from exc

    def records(self, stream: "RecordStream") -> Iterator[Record]:
        handle, owned = self._open()
        try:
            self._reader = LineReader(handle)
            yield from self._parse(self._reader, stream)
        finally:
            self._reader = None
            if owned:
                handle.close()

    def _where(self, number: int) -> str:
        return f"line {number}" if self.path == "-" else f"{self.name} line {number}"

    def _parse(self, reader: LineReader, stream: "RecordStream") -> Iterator[Record]:
        fmt, header = self.fmt, None
        for number, raw in enumerate(reader, 1):
            where = self._where(number)

            def failed(kind: str, message: str) -> Record:
                return Record(stream.next_index(), {}, where, number, RecordError(kind, message))

            if raw is TOO_LONG:
                yield failed("line_too_long", f"the line is longer than {MAX_LINE_BYTES:,} bytes")
                continue
            assert isinstance(raw, bytes)
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            if fmt == "auto":
                fmt = "jsonl" if raw.lstrip().startswith(b"{") else "text"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if fmt == "tsv" and header is None:
                    raise XcliError(f"{self.name}: the TSV header is not valid UTF-8") from exc
                bad = raw[exc.start : exc.start + 1].hex()
                yield failed("invalid_utf8", f"not valid UTF-8 (byte 0x{bad} at offset {exc.start})")
                continue
            if fmt == "jsonl":
                try:
                    data = _parse_json(raw, text)
                except RecordError as exc:
                    yield failed(exc.type, exc.message)
                    continue
                if not isinstance(data, dict):
                    yield failed("not_an_object", f"expected a JSON object, got {json_type(data)}")
                    continue
            elif fmt == "tsv":
                cells = text.split("\t")
                if header is None:
                    header = cells
                    continue
                if len(cells) != len(header):
                    yield failed("tsv_columns", f"{len(cells)} columns where the header has {len(header)}")
                    continue
                data = dict(zip(header, cells))
            else:
                data = {self.field: text}
            yield Record(stream.next_index(), data, where, number)


def _out_of_range(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        shown = literal if len(literal) <= 24 else literal[:20] + "..."
        raise RecordError("invalid_number", f"the number {shown} is out of range (a 64-bit float ends near 1.8e308)")
    return value


def _not_a_number(name: str) -> Any:
    raise RecordError("invalid_number", f"{name} is not a JSON number (JSON has no NaN or Infinity)")


#: RFC 8259 JSON only: Python's json module also takes NaN, Infinity and -Infinity, and turns a
#: literal like 1e400 into inf; either would come back out, echoed in "id", as invalid JSON
_DECODER = json.JSONDecoder(parse_float=_out_of_range, parse_constant=_not_a_number)


def _parse_json(raw: bytes, text: str) -> Any:
    """A JSONL line's value; a :class:`RecordError` when it is not standard JSON or nests too deep.

    Depth is limited so that no record can exhaust the parser's (or the writer's) recursion:
    past ~1,000 levels ``json`` raises RecursionError, which would stop the whole run.
    """
    try:
        data = _DECODER.decode(text)
    except RecursionError:
        raise _too_deep() from None
    except RecordError:
        raise
    except json.JSONDecodeError as exc:
        raise RecordError("invalid_json", f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError:  # the only other one: int() refusing more digits than Python converts (3.10.7+)
        limit = sys.get_int_max_str_digits()  # type: ignore[attr-defined]
        raise RecordError("invalid_number", f"a number has more than {limit:,} digits") from None
    # fewer brackets than the limit (the usual case) cannot nest deeper than it: no walk needed
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(data, MAX_DEPTH):
        raise _too_deep()
    return data


def _too_deep() -> RecordError:
    return RecordError("too_deep", f"the JSON nests arrays and objects deeper than {MAX_DEPTH} levels")


def _deeper_than(value: Any, limit: int) -> bool:
    """True when ``value`` nests lists and dicts more than ``limit`` deep (walked without recursion)."""
    stack = [(value, 1)] if isinstance(value, (list, dict)) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return False


class RecordStream:
    """The records of all sources, in order, numbered from 0; knows whether more are ready."""

    def __init__(self, sources: Sequence[_Source], total: int | None = None) -> None:
        self.sources = list(sources)
        #: how many records there will be, when known in advance (TEXT arguments)
        self.total = total
        self._count = 0
        self._current: _Source | None = None

    def next_index(self) -> int:
        index = self._count
        self._count += 1
        return index

    def __iter__(self) -> Iterator[Record]:
        for source in self.sources:
            self._current = source
            yield from source.records(self)
        self._current = None

    def ready(self) -> bool:
        """True when the next record (or the end) can be had without waiting for input."""
        return self._current is None or self._current.ready()


def read_records(
    texts: Sequence[str] | None = None,
    inputs: Sequence[str] | None = None,
    *,
    input_format: str = "auto",
    field: str = "text",
) -> RecordStream:
    """The records a command reads: TEXT arguments, else ``--input`` paths, else stdin.

    ``inputs`` may hold ``-`` (stdin) and glob patterns. Raises
    :class:`~xcli.errors.UsageError` for a path that does not exist, a pattern that matches
    nothing, or nothing to read at all (no arguments, no inputs, stdin a terminal).
    """
    fmt = str(getattr(input_format, "value", input_format))
    if fmt not in INPUT_FORMATS:
        raise UsageError(f"unknown input format {fmt!r} (use one of: {', '.join(INPUT_FORMATS)})")
    if texts:
        if inputs:
            console.warning("TEXT arguments given: --input is ignored")
        return RecordStream([_Arguments(texts, field)], total=len(texts))
    paths = _expand_inputs(inputs or [])
    if not paths:
        stdin = sys.stdin
        if stdin is None or _isatty(stdin):
            raise UsageError(
                "nothing to read",
                "give TEXT arguments, --input PATH, or pipe records on stdin; see --help",
            )
        paths = ["-"]
    return RecordStream([_Lines(p, fmt, field) for p in paths])


def _expand_inputs(inputs: Sequence[str]) -> list[str]:
    paths: list[str] = []
    for item in inputs:
        if item == "-":
            paths.append(item)
            continue
        path = os.path.expanduser(item)
        if os.path.isdir(path):
            raise UsageError(f"--input {item}: is a directory", "pass files, or a pattern such as 'DIR/*.jsonl'")
        if os.path.exists(path):
            paths.append(path)
            continue
        if glob.has_magic(path):
            matches = sorted(p for p in glob.glob(path) if os.path.isfile(p))
            if not matches:
                raise UsageError(f"--input {item}: no file matches")
            paths.extend(matches)
            continue
        raise UsageError(f"--input {item}: no such file")
    return paths


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


# --------------------------------------------------------------------------- writing
class RecordWriter:
    """Writes one line per record to a binary sink, in record order.

    Results may arrive in any order (``write`` is keyed by ``Record.index``); each line is
    written once all earlier records' lines are. Each output object starts with the
    input's ``id`` and the fields named in ``keep``, then the command's result, or
    ``"error": {"type", "message", "line"}`` for a failed record.

    ``fmt="text"`` writes only ``text_of(result)`` (default: the result's first value), one
    line per record (an empty line for a failed one); ``fmt="tsv"`` writes a header row
    then one row per record, with ``columns`` (default: the first result's keys) and an
    ``error`` column. In both, lists are joined by spaces and newlines/tabs are escaped.
    """

    def __init__(
        self,
        sink: BinaryIO,
        *,
        fmt: str = "jsonl",
        keep: Sequence[str] | str | None = None,
        text_of: Callable[[dict[str, Any]], Any] | None = None,
        columns: Sequence[str] | None = None,
    ) -> None:
        self.fmt = str(getattr(fmt, "value", fmt))
        if self.fmt not in OUTPUT_FORMATS:
            raise UsageError(f"unknown output format {self.fmt!r} (use one of: {', '.join(OUTPUT_FORMATS)})")
        self.sink = sink
        self.keep = parse_field_list(keep)
        self.text_of = text_of
        self.columns = list(columns) if columns else None
        self.written = 0
        self._next = 0
        self._pending: dict[int, bytes] = {}
        self._header: list[str] | None = None
        self._out: list[bytes] = []
        self._out_bytes = 0

    @property
    def to_terminal(self) -> bool:
        """True when the lines go to a terminal (a person reads them as they come)."""
        return _isatty(getattr(self.sink, "target", self.sink))

    def write(self, record: Record, result: dict[str, Any] | RecordError) -> None:
        self._pending[record.index] = self._format(record, result)
        while self._next in self._pending:
            self._emit(self._pending.pop(self._next))
            self._next += 1
            self.written += 1

    def flush(self) -> None:
        """Hand the lines written so far to the sink and flush it (once per batch)."""
        try:
            if self._out:
                data = b"".join(self._out)
                self._out.clear()
                self._out_bytes = 0
                self.sink.write(data)
            self.sink.flush()
        except BrokenPipeError:
            raise OutputClosed() from None

    def close(self) -> None:
        if self._pending:
            raise RuntimeError(f"records {sorted(self._pending)[:5]}... were never followed by record {self._next}")
        self.flush()

    def _emit(self, data: bytes) -> None:
        # our own buffer: one write per batch even where stdout is unbuffered (PYTHONUNBUFFERED)
        self._out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= _WRITE_CHUNK:
            self.flush()

    # ---------------------------------------------------------------- formats
    def compose(self, record: Record, result: dict[str, Any] | RecordError) -> dict[str, Any]:
        """The output object of one record."""
        out: dict[str, Any] = {}
        if "id" in record.data:
            out["id"] = record.data["id"]
        for name in self.keep:
            if name in record.data and name != "id":
                out[name] = record.data[name]
        if isinstance(result, RecordError):
            error: dict[str, Any] = result.to_json()
            if record.line is not None:
                error["line"] = record.line
            out["error"] = error
        else:
            out.update(result)
        return out

    def _format(self, record: Record, result: dict[str, Any] | RecordError) -> bytes:
        if self.fmt == "jsonl":
            out = self.compose(record, result)
            try:
                return _json_line(out)
            except ValueError:  # NaN or Infinity in a result: JSON has no such numbers
                nulled = _nulled(out)
                message = f"{record.where}: NaN or Infinity in the result, written as null"
                console.counted_warning("results held NaN or Infinity, written as null", message)
                return _json_line(nulled)
        if self.fmt == "text":
            if isinstance(result, RecordError):
                return b"\n"
            value = self.text_of(result) if self.text_of else next(iter(result.values()), "")
            return (_cell(value) + "\n").encode("utf-8", "replace")
        out = self.compose(record, result)
        prefix = b""
        if self._header is None:
            names = [n for n in out if n != "error"] if self.columns is None else [
                *(["id"] if "id" in out else []),
                *(n for n in self.keep if n != "id"),
                *self.columns,
            ]
            self._header = [*names, "error"]
            prefix = ("\t".join(_cell(n) for n in self._header) + "\n").encode("utf-8", "replace")
        error = out.pop("error", None)
        cells = [_cell(out.get(n)) for n in self._header[:-1]]
        cells.append(f"{error['type']}: {_cell(error['message'])}" if error else "")
        return prefix + ("\t".join(cells) + "\n").encode("utf-8", "replace")


def parse_field_list(value: Sequence[str] | str | None) -> list[str]:
    """``"a,b"`` or ``["a", "b,c"]`` -> ``["a", "b", "c"]``."""
    if not value:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [name.strip() for item in items for name in item.split(",") if name.strip()]


def _json_default(value: Any) -> Any:
    for method in ("tolist", "item"):  # tensors and numpy values
        if hasattr(value, method):
            return getattr(value, method)()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)


def _json_line(obj: dict[str, Any]) -> bytes:
    """One line of RFC 8259 JSON in UTF-8; ValueError for NaN or Infinity (see :func:`_nulled`)."""
    try:
        return (json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_json_default) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \ud800 escape: escaped, the line stays valid UTF-8
        return (json.dumps(obj, allow_nan=False, default=_json_default) + "\n").encode("ascii")


def json_text(obj: dict[str, Any]) -> str:
    """``obj`` as one line of RFC 8259 JSON (with its newline), NaN and Infinity as null: for the
    one-object summaries of ``info``, ``convert`` and ``train``, which no record writer formats."""
    try:
        return _json_line(obj).decode("utf-8")
    except ValueError:
        return _json_line(_nulled(obj)).decode("utf-8")


def _nulled(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with each NaN, Infinity and -Infinity (anywhere inside it) replaced by None."""
    text = json.dumps(obj, ensure_ascii=False, default=_json_default)  # writes them as NaN, Infinity ...
    return json.loads(text, parse_constant=lambda name: None)  # ... which read back as null


_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _cell(value: Any) -> str:
    """A value as one line of text: lists joined by spaces, escapes for \\n, \\r, \\t, \\\\."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        return " ".join(str(v).translate(_ESCAPES) for v in value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return str(value).translate(_ESCAPES)


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
) -> Iterator[RecordWriter]:
    """A :class:`RecordWriter` on stdout (``output`` None or ``-``) or on a file, atomically.

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
        sink: Any = _StdoutSink()
        writer = RecordWriter(sink, fmt=fmt, keep=keep, text_of=text_of, columns=columns)
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
    writer = RecordWriter(handle, fmt=fmt, keep=keep, text_of=text_of, columns=columns)
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


def _flush_quietly(writer: RecordWriter) -> None:
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


# ------------------------------------------------------------------------ the loop
@dataclass
class Summary:
    """What :func:`run_records` did."""

    records: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    """Lists of up to ``size`` records; a shorter one whenever no more input is ready."""
    ready = getattr(records, "ready", None) or (lambda: True)
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size or not ready():
            yield batch
            batch = []
    if batch:
        yield batch


def run_records(
    records: Iterable[Record],
    process_batch: Callable[[list[Any]], Sequence[dict[str, Any] | RecordError]],
    writer: RecordWriter,
    *,
    prepare: Callable[[Record], Any] | None = None,
    batch_size: int = 32,
    on_error: str = "continue",
    record_errors: tuple[type[BaseException], ...] = (ValueError,),
) -> Summary:
    """Map records to output lines, a batch at a time, keeping order and going on past bad records.

    ``prepare(record)`` (default: the record itself) runs per record and makes the item
    ``process_batch`` receives; ``process_batch(items)`` returns one result per item, in
    the same order: an output dict, or a :class:`~xcli.errors.RecordError` for an item
    that failed. An exception of a type in ``record_errors`` (``RecordError`` and
    ``TokenizerError`` are ``ValueError``s) fails only its record: raised by
    ``process_batch``, the batch is retried one item at a time to find the culprit. Any
    other exception stops the run. ``on_error="stop"`` writes the first failed record's
    error line, then raises :class:`~xcli.errors.StoppedOnError`.
    """
    on_error = str(getattr(on_error, "value", on_error))
    if on_error not in ON_ERROR:
        raise UsageError(f"unknown --on-error {on_error!r} (use one of: {', '.join(ON_ERROR)})")
    summary = Summary()
    # a bar on the terminal that also shows the records would mix with them
    with console.progress(total=getattr(records, "total", None), enabled=not writer.to_terminal) as bar:
        for batch in batches(records, batch_size):
            results: list[Any] = [None] * len(batch)
            items: list[Any] = []
            slots: list[int] = []
            for slot, record in enumerate(batch):
                if record.error is not None:
                    results[slot] = record.error
                    continue
                try:
                    items.append(prepare(record) if prepare else record)
                    slots.append(slot)
                except record_errors as exc:
                    results[slot] = RecordError.from_exception(exc)
            if items:
                for slot, result in zip(slots, _process(process_batch, items, record_errors)):
                    results[slot] = result
            for record, result in zip(batch, results):
                summary.records += 1
                writer.write(record, result)
                if isinstance(result, RecordError):
                    summary.failed += 1
                    summary.errors[result.type] = summary.errors.get(result.type, 0) + 1
                    console.error(f"{record.where}: {result.type}: {result.message}")
                    if on_error == "stop":
                        writer.flush()
                        raise StoppedOnError(
                            f"stopped at {record.where} (--on-error stop)",
                            "use --on-error continue to write an error line for it and go on",
                        )
            writer.flush()
            bar.advance(len(batch))  # type: ignore[attr-defined]
    console.summarize_warnings()
    return summary


def _process(
    process_batch: Callable[[list[Any]], Sequence[Any]],
    items: list[Any],
    record_errors: tuple[type[BaseException], ...],
) -> list[Any]:
    try:
        results = list(process_batch(items))
    except record_errors as exc:
        if len(items) == 1:
            return [RecordError.from_exception(exc)]
        return [_process(process_batch, [item], record_errors)[0] for item in items]
    if len(results) != len(items):
        raise RuntimeError(f"process_batch returned {len(results)} results for {len(items)} records")
    return [RecordError.from_exception(r) if isinstance(r, BaseException) else r for r in results]


def finish(summary: Summary) -> None:
    """Raise :class:`~xcli.errors.RecordsFailed` (exit 4) when some records failed."""
    if summary.failed:
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(summary.errors.items()))
        raise RecordsFailed(
            f"{summary.failed} of {summary.records} records failed ({kinds})",
            "their output lines hold the errors",
        )
