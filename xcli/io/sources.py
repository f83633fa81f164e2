"""Where records come from: TEXT arguments, ``--input`` files and patterns, or stdin, each read
line by line in one format (``auto``, ``jsonl``, ``text``, ``tsv``) into :class:`Record` objects."""

from __future__ import annotations

import glob
import os
import sys
from typing import Any, BinaryIO, Iterator, Sequence

from ..console import console
from ..errors import RecordError, UsageError, XcliError
from .jsonl import parse_json
from .reader import MAX_LINE_BYTES, TOO_LONG, LineReader, isatty
from .records import Record, json_type
from .shards import Shard

INPUT_FORMATS = ("auto", "jsonl", "text", "tsv")


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
            index = stream.next_index()
            if not stream.skips(index):
                yield Record(index, {self.field: text}, f"argument {number}")


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
        """A record per non-blank line (a TSV source's header row aside), numbered before it is
        decoded or parsed, so that a shard (``--shard``) parses only its own lines."""
        fmt, header = self.fmt, None
        for number, raw in enumerate(reader, 1):
            if isinstance(raw, bytes):
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]
                if not raw.strip():
                    continue
                if fmt == "auto":
                    fmt = "jsonl" if raw.lstrip().startswith(b"{") else "text"
                if fmt == "tsv" and header is None:
                    header = self._header(raw)
                    continue
            index = stream.next_index()
            if stream.skips(index):
                continue
            where = self._where(number)
            try:
                record = Record(index, self._data(raw, fmt, header), where, number)
            except RecordError as exc:
                record = Record(index, {}, where, number, exc)
            yield record

    def _header(self, raw: bytes) -> list[str]:
        try:
            return raw.decode("utf-8").split("\t")
        except UnicodeDecodeError as exc:
            raise XcliError(f"{self.name}: the TSV header is not valid UTF-8") from exc

    def _data(self, raw: bytes | object, fmt: str, header: list[str] | None) -> dict[str, Any]:
        """One line's record fields; a :class:`RecordError` when the line cannot be a record."""
        if raw is TOO_LONG:
            raise RecordError("line_too_long", f"the line is longer than {MAX_LINE_BYTES:,} bytes")
        assert isinstance(raw, bytes)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad = raw[exc.start : exc.start + 1].hex()
            raise RecordError("invalid_utf8", f"not valid UTF-8 (byte 0x{bad} at offset {exc.start})") from None
        if fmt == "jsonl":
            data = parse_json(raw, text)
            if not isinstance(data, dict):
                raise RecordError("not_an_object", f"expected a JSON object, got {json_type(data)}")
            return data
        if fmt == "tsv":
            assert header is not None
            cells = text.split("\t")
            if len(cells) != len(header):
                raise RecordError("tsv_columns", f"{len(cells)} columns where the header has {len(header)}")
            return dict(zip(header, cells))
        return {self.field: text}


class RecordStream:
    """The records of all sources, in order, numbered from 0; knows whether more are ready.

    With a :class:`~.shards.Shard`, only that shard's records come out (numbered as in the whole
    stream), and ``total`` counts only them."""

    def __init__(self, sources: Sequence[_Source], total: int | None = None, shard: Shard | None = None) -> None:
        self.sources = list(sources)
        self.shard = shard
        #: how many records will come out, when known in advance (TEXT arguments)
        self.total = total if total is None or shard is None else shard.share(total)
        self._count = 0
        self._current: _Source | None = None

    def next_index(self) -> int:
        index = self._count
        self._count += 1
        return index

    def skips(self, index: int) -> bool:
        """True when record ``index`` is another shard's (it is then neither decoded nor parsed)."""
        return self.shard is not None and not self.shard.takes(index)

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
    shard: Shard | None = None,
) -> RecordStream:
    """The records a command reads: TEXT arguments, else ``--input`` paths, else stdin (only
    ``shard``'s share of them, when given).

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
        return RecordStream([_Arguments(texts, field)], total=len(texts), shard=shard)
    paths = _expand_inputs(inputs or [])
    if not paths:
        stdin = sys.stdin
        if stdin is None or isatty(stdin):
            raise UsageError(
                "nothing to read",
                "give TEXT arguments, --input PATH, or pipe records on stdin; see --help",
            )
        paths = ["-"]
    return RecordStream([_Lines(p, fmt, field) for p in paths], shard=shard)


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
