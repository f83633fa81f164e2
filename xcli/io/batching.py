"""The batch loop: records -> batches -> results -> ordered lines, past bad records; the exit summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..console import console
from ..errors import RecordError, RecordsFailed, StoppedOnError, UsageError
from .records import Record
from .writer import RecordWriter

ON_ERROR = ("continue", "stop")


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
            results = handle(batch, prepare, process_batch, record_errors)
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


def handle(
    batch: Sequence[Record],
    prepare: Callable[[Record], Any] | None,
    process_batch: Callable[[list[Any]], Sequence[Any]],
    record_errors: tuple[type[BaseException], ...] = (ValueError,),
) -> list[Any]:
    """One result per record of ``batch``, as :func:`run_records` makes them: a record's read error,
    else ``prepare``'s error, else ``process_batch``'s result (a batch that raises a record error
    is run again one item at a time, to find the culprit). ``xcli serve`` handles a client's round so."""
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
        for slot, result in zip(slots, _process(process_batch, items, record_errors), strict=True):
            results[slot] = result
    return results


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
