"""The run every record command (tokenize, fill-mask, classify, qa, generate) makes, and the
option bundles it is given.

A record command declares only its own options; :func:`command_line` adds the shared ones,
each written once here, and hands them over gathered into frozen bundles, by the name of the
parameter that asks for one:

* ``streams``, a :class:`RecordIO`: where records come from and go, and what a bad one does
  (TEXT, ``--input``, ``--input-format``, ``--field``; ``--output``, ``-O``, ``--force``,
  ``--keep``, ``--on-error``; ``--shard``, the share of the records this process takes);
* ``run``, a :class:`ModelOptions`: which model and how it runs (``--model``, ``--device``,
  ``--dtype``, ``--threads``, ``--batch-size``, ``--max-length``, ``--quantize``);
* ``server``: whether an ``xcli serve`` may run it (not ``--no-server``), with ``--quiet`` and
  ``--debug`` already handed to the console;
* its own options, in a bundle of its own module (generate's sampling and search settings ...),

then it hands :func:`run_record_command` a ``start`` function that loads what it needs and returns
a :class:`Job` (in process, or in ``xcli serve`` when one runs: the same function). The run is
always the same:

    read the records -> open the output -> start (load the model, build the task)
    -> run the batches, writing each record's line in input order -> finish (exit 4 if some failed)

so a command module holds only what is its own: its options, how a record becomes an item
(``Job.prepare``), how a batch of items becomes results (``Job.process``), its text/tsv columns.
Only typer and the standard library are imported here; :mod:`xcli.io` and the model core come in
at run time.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, NamedTuple, Sequence

from .options import (
    BatchSize, Debug, Device, DeviceName, Dtype, Field, Force, Input, InputFormat, InputFormatName, Keep, MaxLength,
    Model, NoServer, OnError, OnErrorName, Output, OutputFormat, OutputFormatName, Quantize, Quiet, RunDtypeName,
    Shard, Texts, Threads,
)

if TYPE_CHECKING:
    from . import io
    from .io import Record, RecordStream, RecordWriter

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
    def sharding(self) -> "io.Shard | None":
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


# ------------------------------------------------------------- the shared options
def _streams(
    texts: Texts = None,
    field: Field = "text",
    input: Input = None,
    input_format: InputFormat = InputFormatName.auto,
    output: Output = None,
    output_format: OutputFormat = OutputFormatName.jsonl,
    force: Force = False,
    keep: Keep = None,
    on_error: OnError = OnErrorName.continue_,
    shard: Shard = None,
) -> RecordIO:
    return RecordIO(texts, input, input_format, field, output, output_format, force, keep, on_error, shard)


def _run(
    model: Model = None,
    max_length: MaxLength = None,
    batch_size: BatchSize = 8,
    device: Device = DeviceName.auto,
    dtype: Dtype = RunDtypeName.float32,
    quantize: Quantize = None,
    threads: Threads = None,
) -> ModelOptions:
    return ModelOptions(model, device, dtype, threads, batch_size, max_length, quantize)


def _server(quiet: Quiet = False, debug: Debug = False, no_server: NoServer = False) -> bool:
    from .console import console

    console.configure(quiet=quiet, debug=debug)
    return not no_server


#: bundle parameter name -> the function whose parameters are its options and which builds it from them
_BUNDLES: dict[str, Callable[..., Any]] = {"run": _run, "streams": _streams, "server": _server}
#: the shared options listed before a command's own (the rest come after them)
_FIRST = ("texts", "model")


class Option(NamedTuple):
    """A shared option as one command declares it instead (another help text, default or type)."""

    annotation: Any
    default: Any


#: :func:`command_line`'s mark for a shared option a command goes without
DROP = object()


def command_line(**changes: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the shared options of the bundles it asks for (parameters named ``streams``,
    ``run``, ``server``; see the module docstring) and call it with the bundles built.

    ``changes`` adjusts a shared option for this command, by name: a value is its default
    (``batch_size=32``), an :class:`Option` replaces its declaration, :data:`DROP` leaves it out
    (its bundle gets the default written here). The command line is the decorated function's
    signature, which typer reads: TEXT and ``--model`` first, then the command's own options, then
    the rest of the shared ones (those of ``run``, then ``streams``, then ``server``)."""

    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(func, eval_str=True).parameters
        asked = {name: _shared_options(builder, changes) for name, builder in _BUNDLES.items() if name in own}
        shared = [param for params in asked.values() for param in params if param.default is not DROP]
        mine = [param for name, param in own.items() if name not in _BUNDLES]
        first = sorted((p for p in shared if p.name in _FIRST), key=lambda p: _FIRST.index(p.name))
        params = first + mine + [p for p in shared if p.name not in _FIRST]

        @functools.wraps(func)
        def command(**values: Any) -> None:
            bundles = {}
            for name, options in asked.items():
                given = {p.name: values.pop(p.name) for p in options if p.default is not DROP}
                bundles[name] = _BUNDLES[name](**given)
            func(**values, **bundles)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


def _shared_options(builder: Callable[..., Any], changes: dict[str, Any]) -> list[inspect.Parameter]:
    """``builder``'s parameters as this command declares them (see :func:`command_line`)."""
    params = []
    for param in inspect.signature(builder, eval_str=True).parameters.values():
        change = changes.get(param.name, param.default)
        if change is DROP:
            param = param.replace(default=DROP)
        elif isinstance(change, Option):
            param = param.replace(annotation=change.annotation, default=change.default)
        else:
            param = param.replace(default=change)
        params.append(param)
    return params


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
