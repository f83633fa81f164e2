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

Sharding (``--shard K/N``): ``read_records(..., shard=Shard(k, n))`` numbers every line as usual
but decodes, parses and yields only the records whose index ``i`` has ``i % n == k``;
``open_writer(..., shard=...)`` expects those indices and puts each record's number in front of
the line an unsharded run writes. :func:`merge_shards` (``xcli merge``) merges the shards' files
by those numbers and cuts them off again, as text: the bytes of one unsharded run.

Memory stays bounded: records are read as they are needed, a batch at a time, and a
single line is capped at :data:`MAX_LINE_BYTES`.

One idea per module; this package re-exports what commands use:

- :mod:`.records`: :class:`Record` (one input object, its origin, its read error);
- :mod:`.reader`: :class:`LineReader` (lines of a file descriptor as they come, ``ready()`` by ``select``);
- :mod:`.jsonl`: RFC 8259 JSON both ways (strict, depth-limited parse; valid-JSON lines, :func:`json_text`);
- :mod:`.shards`: :class:`Shard` and :func:`parse_shard` (``--shard K/N|auto``: which records this process takes);
- :mod:`.sources`: :func:`read_records` and :class:`RecordStream` (arguments, files, stdin; the formats);
- :mod:`.writer`: :class:`RecordWriter` (input order, ``id``/``--keep`` echo, jsonl/text/tsv, record numbers
  under ``--shard``) on :class:`LineWriter` (buffered lines, EPIPE-safe);
- :mod:`.output`: :func:`open_writer` and :func:`open_output` (stdout, or a file published atomically,
  ``.partial`` on failure);
- :mod:`.merging`: :func:`merge_shards` (``xcli merge``: shards' outputs back into input order);
- :mod:`.batching`: :func:`batches`, :func:`run_records`, :func:`finish` (the loop and its exit status).
"""

from __future__ import annotations

from .batching import ON_ERROR, Summary, batches, finish, handle, run_records
from .jsonl import MAX_DEPTH, json_text
from .merging import merge_shards
from .output import open_output, open_writer
from .reader import MAX_LINE_BYTES, TOO_LONG, LineReader
from .records import Record, json_type
from .shards import Shard, parse_shard
from .sources import INPUT_FORMATS, RecordStream, read_records
from .writer import OUTPUT_FORMATS, LineWriter, RecordWriter, cell, parse_field_list

__all__ = [
    "INPUT_FORMATS", "MAX_DEPTH", "MAX_LINE_BYTES", "ON_ERROR", "OUTPUT_FORMATS", "TOO_LONG", "LineReader",
    "LineWriter", "Record", "RecordStream", "RecordWriter", "Shard", "Summary", "batches", "cell", "finish", "handle",
    "json_text", "json_type", "merge_shards", "open_output", "open_writer", "parse_field_list", "parse_shard",
    "read_records", "run_records",
]
