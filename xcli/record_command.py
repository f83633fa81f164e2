"""The run every record command (tokenize, fill-mask, classify, qa, generate) makes, and the
option bundles it is given.

A record command gathers its command line into a few frozen bundles right at its top:

* :class:`RecordIO`: where records come from and go, and what a bad one does (TEXT,
  ``--input``, ``--input-format``, ``--field``; ``--output``, ``-O``, ``--force``, ``--keep``,
  ``--on-error``; ``--shard``, the share of the records this process takes);
* :class:`ModelOptions`: which model and how it runs (``--model``, ``--device``, ``--dtype``,
  ``--threads``, ``--batch-size``, ``--max-length``, ``--quantize``);
* its own options, in a bundle of its own module (generate's sampling and search settings ...),

then hands :func:`run_record_command` a ``start`` function that loads what it needs and returns
a :class:`Job` (in process, or in ``xcli serve`` when one runs: the same function). The run is
always the same:

    read the records -> open the output -> start (load the model, build the task)
    -> run the batches, writing each record's line in input order -> finish (exit 4 if some failed)

so a command module holds only what is its own: its options, how a record becomes an item
(``Job.prepare``), how a batch of items becomes results (``Job.process``), its text/tsv columns.
Only the standard library is imported here; :mod:`xcli.io` and the model core come in at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Sequence

if TYPE_CHECKING:
    from .io import Record, RecordStream, RecordWriter, Shard

#: the hint a record without its text field gets
FIELD_HINT = "pick the text field with --field"


@dataclass(frozen=True)
class RecordIO:
    """Where the records come from and where their lines go; what a bad record does."""

    texts: Sequence[str] | None
    inputs: Sequence[str] | None
    input_format: Any
    field: str
    output: Path | None
    output_format: Any
    force: bool
    keep: str | None
    on_error: Any
    shard: str | None = None

    @cached_property
    def sharding(self) -> "Shard | None":
        """``--shard`` K/N (``auto``: from the launcher's environment); a usage error when it is no shard."""
        from . import io

        return io.parse_shard(self.shard)

    def read(self) -> "RecordStream":
        """TEXT arguments, else the ``--input`` paths, else stdin (a usage error when none is there);
        under ``--shard``, only this shard's records."""
        from . import io

        return io.read_records(self.texts, self.inputs, input_format=self.input_format, field=self.field,
                               shard=self.sharding)

    def open(self, *, text_of: Callable[[dict[str, Any]], Any] | None = None,
             columns: Sequence[str] | None = None) -> ContextManager["RecordWriter"]:
        """The writer on stdout or ``--output`` (refused, before any work, if it exists without ``--force``)."""
        from . import io

        return io.open_writer(self.output, force=self.force, fmt=self.output_format, keep=self.keep,
                              text_of=text_of, columns=columns, shard=self.sharding)


@dataclass(frozen=True)
class ModelOptions:
    """Which model, and how it runs."""

    model: str | None
    device: Any
    dtype: Any
    threads: int | None
    batch_size: int
    max_length: int | None = None
    quantize: Any = None

    def load(self, accept: Sequence[str], what: str, **extra: Any) -> Any:
        """The task model with its tokenizer (a head not in ``accept`` is a usage error saying ``what``
        the command needs); a ``--max-length`` beyond the model's positions is a usage error."""
        from .model_commands import check_length, load_task_model

        task = load_task_model(self.model, self.device, self.dtype, self.threads, accept=accept, what=what,
                               quantize=self.quantize, **extra)
        check_length(task, self.max_length)
        return task

    @property
    def window(self) -> int:
        """Records read per round (many batches' worth, for length-sorted batching)."""
        from .model_commands import window

        return window(self.batch_size)


@dataclass(frozen=True)
class Job:
    """What a command does to the records: ``prepare(record)`` makes one record's item (raising a
    ``RecordError`` for a bad record), ``process(items)`` one result per item of a round of
    ``batch_size`` records."""

    prepare: Callable[["Record"], Any]
    process: Callable[[list[Any]], Sequence[Any]]
    batch_size: int


def run_record_command(
    streams: RecordIO,
    start: Callable[[Callable[[str | None], None]], Job],
    *,
    text_of: Callable[[dict[str, Any]], Any] | None = None,
    columns: Sequence[str] | None = None,
    on_piece: Callable[["RecordWriter", str | None], None] | None = None,
    server: bool = True,
) -> None:
    """Read -> open the output -> ``start(emit)`` -> run -> write -> finish.

    The records are opened first and the output next, so that nothing to read or an output
    that exists is reported before a model is loaded; ``start`` loads the model and builds the
    :class:`Job`. ``emit(piece)`` is for output that cannot wait for a whole line (``generate
    --stream``): it hands ``on_piece(writer, piece)`` a piece of text (``None``: a new record's
    text begins). Bad records get an error line and the run ends with exit status 4
    (``--on-error stop``: exit 1 at the first); whatever stops the run keeps the lines written.

    With ``server`` (no ``--no-server``) and an ``xcli serve`` there, the server runs the job
    with a warm model (:mod:`xcli.serving.client`); the lines are the same bytes. Inside the
    server, this only hands it ``start`` and the parsed options (:mod:`xcli.invocation`).
    """
    from .invocation import served

    hooks = served()
    if hooks is not None:
        hooks.captured.update(start=start, params=_parsed_options(), streams=streams, text_of=text_of,
                              columns=columns)
        return
    from . import io

    records = streams.read()
    with streams.open(text_of=text_of, columns=columns) as writer:

        def emit(piece: str | None) -> None:
            if on_piece is not None:
                on_piece(writer, piece)

        job = None
        if server:
            from .serving.client import served_job

            job = served_job(start, emit)
        if job is None:
            job = start(emit)
        summary = io.run_records(records, job.process, writer, prepare=job.prepare, batch_size=job.batch_size,
                                 on_error=streams.on_error)
    io.finish(summary)


def _parsed_options() -> dict[str, Any]:
    """The options of the command being run, as parsed (name -> value)."""
    try:  # typer >= 0.20 carries its own copy of click
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - older typer on top of click
        from click import get_current_context  # type: ignore[no-redef]
    return dict(get_current_context().params)


def captured_by_server(measure: Callable[[Any], Any]) -> bool:
    """Inside ``xcli serve`` (parsing a client's ``evaluate``): hand it ``measure(records)``, the
    command's model side, and say True (the command stops there); False in a command's own process."""
    from .invocation import served

    hooks = served()
    if hooks is None:
        return False
    hooks.captured.update(measure=measure, params=_parsed_options())
    return True
