"""``xcli merge``: the outputs of ``--shard`` runs back into input order, byte for byte.

A shard's output line is an unsharded run's line with the record number in front (see
:class:`~.writer.RecordWriter`): ``{"record": 12, `` then the rest of the JSON object, or
``12<TAB>`` then the text or TSV row, after a TSV header ``record<TAB>...``. Each file is read
a line at a time and the files are merged by record number (``heapq.merge``: one line per file
in memory); the number is cut off as text, never by parsing and writing the JSON again, so the
merged lines are exactly those of one unsharded run.

A line without a record number, numbers that do not increase within a file, a number found in
two files, files of different formats or TSV headers are errors (:class:`~xcli.errors.XcliError`,
exit 1; what was merged so far stays written). Numbers missing from 0 up to the last one
(a shard's output left out) are counted in the :class:`Merged` summary.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator, Sequence

from ..errors import RecordsFailed, XcliError
from .writer import LineWriter

_JSONL = re.compile(rb'\{"record": (0|[1-9][0-9]*)(, |\})')
_TAB = re.compile(rb"(0|[1-9][0-9]*)\t")
_TSV_HEADER = b"record\t"
#: how many missing record numbers the message names
_SHOWN = 5


@dataclass
class Merged:
    """What :func:`merge_shards` wrote, and which record numbers it did not find."""

    records: int = 0
    missing: int = 0
    first_missing: list[int] = field(default_factory=list)

    def note(self, number: int) -> None:
        """Record ``number`` was written, after all lower numbers found."""
        expected = self.records + self.missing
        if number > expected:
            self.missing += number - expected
            room = _SHOWN - len(self.first_missing)
            self.first_missing.extend(range(expected, min(number, expected + room)))
        self.records += 1

    def finish(self) -> None:
        """Raise :class:`~xcli.errors.RecordsFailed` (exit 4) when record numbers were missing."""
        if self.missing:
            shown = ", ".join(map(str, self.first_missing)) + (", ..." if self.missing > _SHOWN else "")
            raise RecordsFailed(
                f"{self.missing} record(s) missing from the merge ({shown}): was a shard's output left out?",
                f"the {self.records} record(s) found are written in order",
            )


class _ShardOutput:
    """One shard's output file: its format, from its first line (``jsonl``, ``text`` or ``tsv``
    with its header; None when empty), and its numbered lines."""

    def __init__(self, name: str, handle: BinaryIO) -> None:
        self.name = name
        self._lines = iter(handle)
        self._first = next(self._lines, None)
        self._start = 1
        self.header: bytes | None = None
        self.kind: str | None = None
        if self._first is None:
            return
        if self._first.startswith(b'{"record": '):
            self.kind = "jsonl"
        elif self._first.startswith(_TSV_HEADER):
            self.kind, self.header, self._first, self._start = "tsv", self._first, next(self._lines, None), 2
        elif _TAB.match(self._first):
            self.kind = "text"
        else:
            raise self._no_number(1)

    def numbered(self, keep_record: bool) -> Iterator[tuple[int, str, int, bytes]]:
        """(record number, file name, line number, the line to write) for each line, in order."""
        pattern, previous = (_JSONL if self.kind == "jsonl" else _TAB), -1
        lines = self._lines if self._first is None else _chain(self._first, self._lines)
        for number, line in enumerate(lines, self._start):
            match = pattern.match(line)
            if match is None:
                raise self._no_number(number)
            record = int(match.group(1))
            if record <= previous:
                raise XcliError(f"{self.name} line {number}: record {record} after record {previous}",
                                "a shard's output lists its records in increasing order: is the file whole?")
            previous = record
            if not line.endswith(b"\n"):
                line += b"\n"
            yield record, self.name, number, line if keep_record else _unnumbered(line, match)

    def _no_number(self, number: int) -> XcliError:
        return XcliError(f"{self.name} line {number}: no record number",
                         "merge takes what record commands write with --shard K/N")


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _unnumbered(line: bytes, match: re.Match[bytes]) -> bytes:
    """The line an unsharded run writes: the record number cut off the front."""
    if match.re is _TAB:
        return line[match.end():]
    return (b"{" if match.group(2) == b", " else b"{}") + line[match.end():]


def merge_shards(sources: Sequence[tuple[str, BinaryIO]], writer: LineWriter, *, keep_record: bool = False) -> Merged:
    """Write the lines of the ``(name, binary stream)`` shard outputs to ``writer`` in record
    order, without their record numbers unless ``keep_record``; the TSV header once."""
    shards = [_ShardOutput(name, handle) for name, handle in sources]
    _check_formats(shards)
    header = next((shard.header for shard in shards if shard.header is not None), b"")
    if header and not keep_record:
        header = header[len(_TSV_HEADER):]
    merged, previous = Merged(), None
    for number, name, line_number, line in heapq.merge(*(s.numbered(keep_record) for s in shards if s.kind)):
        if previous is not None and previous[0] == number:
            raise XcliError(f"record {number} is in both {previous[1]} (line {previous[2]}) and {name} "
                            f"(line {line_number})", "was a shard's output given twice?")
        merged.note(number)
        writer.write_line(header + line)  # the TSV header goes with the first line, as a record command writes it
        header, previous = b"", (number, name, line_number)
    return merged


def _check_formats(shards: list[_ShardOutput]) -> None:
    """One format for all (empty files aside), and one TSV header."""
    filled = [shard for shard in shards if shard.kind is not None]
    for shard in filled[1:]:
        first = filled[0]
        if shard.kind != first.kind:
            raise XcliError(f"{first.name} holds {first.kind} lines but {shard.name} {shard.kind}",
                            "merge the outputs of one command, all with one -O")
        if shard.header != first.header:
            raise XcliError(f"{shard.name}: its TSV header differs from {first.name}'s (the columns would not line up)",
                            "a shard's header comes from its first record: when only some records have an "
                            '"id", use -O jsonl')
