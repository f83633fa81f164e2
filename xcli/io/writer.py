"""The ordered record writer and its output formats (``jsonl``, ``text``, ``tsv``)."""

from __future__ import annotations

import json
from typing import Any, BinaryIO, Callable, Sequence

from ..console import console
from ..errors import OutputClosed, RecordError, UsageError
from .jsonl import json_default, json_line, nulled
from .reader import isatty
from .records import Record

OUTPUT_FORMATS = ("jsonl", "text", "tsv")
_WRITE_CHUNK = 1024 * 1024


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
        return isatty(getattr(self.sink, "target", self.sink))

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
                return json_line(out)
            except ValueError:  # NaN or Infinity in a result: JSON has no such numbers
                safe = nulled(out)
                message = f"{record.where}: NaN or Infinity in the result, written as null"
                console.counted_warning("results held NaN or Infinity, written as null", message)
                return json_line(safe)
        if self.fmt == "text":
            if isinstance(result, RecordError):
                return b"\n"
            value = self.text_of(result) if self.text_of else next(iter(result.values()), "")
            return (cell(value) + "\n").encode("utf-8", "replace")
        out = self.compose(record, result)
        prefix = b""
        if self._header is None:
            names = [n for n in out if n != "error"] if self.columns is None else [
                *(["id"] if "id" in out else []),
                *(n for n in self.keep if n != "id"),
                *self.columns,
            ]
            self._header = [*names, "error"]
            prefix = ("\t".join(cell(n) for n in self._header) + "\n").encode("utf-8", "replace")
        error = out.pop("error", None)
        cells = [cell(out.get(n)) for n in self._header[:-1]]
        cells.append(f"{error['type']}: {cell(error['message'])}" if error else "")
        return prefix + ("\t".join(cells) + "\n").encode("utf-8", "replace")


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
