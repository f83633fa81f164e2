"""The ordered record writer and its output formats (``jsonl``, ``text``, ``tsv``)."""

from __future__ import annotations

import json
from typing import Any, BinaryIO, Callable, Sequence

from ..console import console
from ..errors import OutputClosed, RecordError, UsageError
from .jsonl import json_default, json_line, nulled
from .reader import isatty
from .records import Record
from .shards import Shard

OUTPUT_FORMATS = ("jsonl", "text", "tsv")
_WRITE_CHUNK = 1024 * 1024


class LineWriter:
    """Lines to a binary sink, gathered and handed over in one write per :meth:`flush` (or per
    megabyte); a closed pipe raises :class:`~xcli.errors.OutputClosed`. ``written`` counts the lines."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.written = 0
        self._out: list[bytes] = []
        self._out_bytes = 0

    @property
    def to_terminal(self) -> bool:
        """True when the lines go to a terminal (a person reads them as they come)."""
        return isatty(getattr(self.sink, "target", self.sink))

    def write_line(self, data: bytes) -> None:
        """One line (or lines) ending with a newline; counted as one in ``written``."""
        self._emit(data)
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
        self.flush()

    def _emit(self, data: bytes) -> None:
        # our own buffer: one write per batch even where stdout is unbuffered (PYTHONUNBUFFERED)
        self._out.append(data)
        self._out_bytes += len(data)
        if self._out_bytes >= _WRITE_CHUNK:
            self.flush()


class RecordWriter(LineWriter):
    """Writes one line per record to a binary sink, in record order.

    Results may arrive in any order (``write`` is keyed by ``Record.index``); each line is
    written once all earlier records' lines are. Each output object starts with the
    input's ``id`` and the fields named in ``keep``, then the command's result, or
    ``"error": {"type", "message", "line"}`` for a failed record.

    ``fmt="text"`` writes only ``text_of(result)`` (default: the result's first value), one
    line per record (an empty line for a failed one); ``fmt="tsv"`` writes a header row
    then one row per record, with ``columns`` (default: the first result's keys) and an
    ``error`` column. In both, lists are joined by spaces and newlines/tabs are escaped.

    With a ``shard`` (``--shard K/N``), the records are K, K+N, K+2N ... and each line carries
    its record number for ``xcli merge``, in front of exactly the line an unsharded run writes:
    ``{"record": 12, `` then the rest of the JSON object; ``12<TAB>`` then the text or TSV row (the
    TSV header gets a ``record`` column).
    """

    def __init__(
        self,
        sink: BinaryIO,
        *,
        fmt: str = "jsonl",
        keep: Sequence[str] | str | None = None,
        text_of: Callable[[dict[str, Any]], Any] | None = None,
        columns: Sequence[str] | None = None,
        shard: Shard | None = None,
    ) -> None:
        super().__init__(sink)
        self.fmt = str(getattr(fmt, "value", fmt))
        if self.fmt not in OUTPUT_FORMATS:
            raise UsageError(f"unknown output format {self.fmt!r} (use one of: {', '.join(OUTPUT_FORMATS)})")
        self.keep = parse_field_list(keep)
        self.text_of = text_of
        self.columns = list(columns) if columns else None
        self.shard = shard
        self._next = shard.k if shard else 0
        self._step = shard.n if shard else 1
        self._pending: dict[int, bytes] = {}
        self._header: list[str] | None = None

    def write(self, record: Record, result: dict[str, Any] | RecordError) -> None:
        self._pending[record.index] = self._format(record, result)
        while self._next in self._pending:
            self.write_line(self._pending.pop(self._next))
            self._next += self._step

    def close(self) -> None:
        if self._pending:
            raise RuntimeError(f"records {sorted(self._pending)[:5]}... were never followed by record {self._next}")
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
        if self.fmt == "tsv":
            header, row = self._tsv(record, result)
            return self._numbered(header, "record") + self._numbered(row, record.index)
        line = self._jsonl(record, result) if self.fmt == "jsonl" else self._text(result)
        return self._numbered(line, record.index)

    def _numbered(self, line: bytes, number: int | str) -> bytes:
        """``line`` as it is, or under ``--shard`` with ``number`` in front: ``{"record": 12, `` and
        the rest of the JSON object, or ``12<TAB>`` and the text or TSV row (``record<TAB>`` and
        the TSV header)."""
        if self.shard is None or not line:
            return line
        if self.fmt != "jsonl":
            return f"{number}\t".encode("utf-8") + line
        if line.startswith(b"{}"):  # an empty object
            return b'{"record": %d}' % number + line[2:]
        return b'{"record": %d, ' % number + line[1:]

    def _jsonl(self, record: Record, result: dict[str, Any] | RecordError) -> bytes:
        out = self.compose(record, result)
        try:
            return json_line(out)
        except ValueError:  # NaN or Infinity in a result: JSON has no such numbers
            safe = nulled(out)
            message = f"{record.where}: NaN or Infinity in the result, written as null"
            console.counted_warning("results held NaN or Infinity, written as null", message)
            return json_line(safe)

    def _text(self, result: dict[str, Any] | RecordError) -> bytes:
        if isinstance(result, RecordError):
            return b"\n"
        value = self.text_of(result) if self.text_of else next(iter(result.values()), "")
        return (cell(value) + "\n").encode("utf-8", "replace")

    def _tsv(self, record: Record, result: dict[str, Any] | RecordError) -> tuple[bytes, bytes]:
        """The header row (the first record's only, else empty) and the record's row."""
        out = self.compose(record, result)
        header = b""
        if self._header is None:
            names = [n for n in out if n != "error"] if self.columns is None else [
                *(["id"] if "id" in out else []),
                *(n for n in self.keep if n != "id"),
                *self.columns,
            ]
            self._header = [*names, "error"]
            header = ("\t".join(cell(n) for n in self._header) + "\n").encode("utf-8", "replace")
        error = out.pop("error", None)
        cells = [cell(out.get(n)) for n in self._header[:-1]]
        cells.append(f"{error['type']}: {cell(error['message'])}" if error else "")
        return header, ("\t".join(cells) + "\n").encode("utf-8", "replace")


def parse_field_list(value: Sequence[str] | str | None) -> list[str]:
    """``"a,b"`` or ``["a", "b,c"]`` -> ``["a", "b", "c"]``."""
    if not value:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [name.strip() for item in items for name in item.split(",") if name.strip()]



_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def cell(value: Any) -> str:
    """A value as one line of text: lists joined by spaces, escapes for \\n, \\r, \\t, \\\\."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        return " ".join(str(v).translate(_ESCAPES) for v in value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=json_default)
    return str(value).translate(_ESCAPES)
