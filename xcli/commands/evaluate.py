"""``xcli evaluate``: a model's metrics on records that carry gold answers (``xcli train``'s layouts).

The metrics are ``xcli train``'s dev metrics, computed by the same function
(:func:`xcli_models.training.evaluate`) on examples encoded by the same tasks.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..console import console
from ..options import Field, Force, Input, InputFormat, InputFormatName, Lang, OnError, OnErrorName
from ..record_command import ModelOptions, captured_by_server, command_line
from ..errors import RecordError
from .train import TaskName

#: tasks whose evaluation predicts nothing per record (only their loss counts)
_LOSS_ONLY = ("causal-lm", "masked-lm", "plm", "seq2seq")


EvalTask = Annotated[
    TaskName,
    typer.Option("--task", case_sensitive=False, help="Which evaluation; auto: what the checkpoint's head does "
                 "(plm: XLNet's permutation objective instead of left-to-right causal-lm)."),
]
Predictions = Annotated[
    Optional[Path],
    typer.Option("--predictions", metavar="PATH", help="Also write each record's prediction (and gold answer) "
                 "as JSONL, in input order (bad records: their error).", show_default=False),
]
DocStride = Annotated[
    Optional[int],
    typer.Option("--doc-stride", min=1, metavar="N", help="Question answering: tokens shared by two windows of "
                 "a long context (as xcli qa and train).", show_default=False),
]
Seed = Annotated[int, typer.Option("--seed", metavar="N", help="Masked LM: seed of the hidden tokens (as "
                                   "train's --seed).")]


@command_line()
def evaluate(
    input: Input = None,
    task: EvalTask = TaskName.auto,
    predictions: Predictions = None,
    force: Force = False,
    lang: Lang = None,
    doc_stride: DocStride = None,
    seed: Seed = 42,
    field: Field = "text",
    input_format: InputFormat = InputFormatName.auto,
    on_error: OnError = OnErrorName.continue_,
    *,
    run: ModelOptions,
    server: bool,
) -> None:
    """Evaluate a model on records with gold answers; print one JSON object of metrics.

    The records are xcli train's (see xcli train --help): {"text", "text_pair"?, "label"}
    (classification, multi-label, regression), {"tokens", "labels"} (token classification),
    SQuAD {"question", "context", "answers"}, {"question"/"text", "choices", "label"} (multiple
    choice), {"text"} (language models), {"text", "target"} (seq2seq). The metrics are train's
    dev metrics, by the same code: accuracy and macro_f1; mse, pearson, spearman (regression);
    entity precision/recall/f1 as seqeval counts them; SQuAD exact_match and f1; perplexity;
    and the loss.

    A bad record is skipped and named on stderr with its line; the metrics are printed and the
    exit status is 4 (--on-error stop: exit 1 at the first one).

    Examples:

      xcli evaluate -m ./xlnet-sst2 -i sst2-dev.jsonl

      xcli evaluate -m ./xlm-ner -i eng.testb.jsonl --predictions ner-predictions.jsonl
    """
    import functools

    from .. import io
    from ..errors import RecordsFailed, UsageError
    from ..serving.client import measured

    if not input:
        raise UsageError("evaluate needs records with gold answers: --input/-i PATH ('-' for stdin)")
    measure = functools.partial(_measure, run=run, task=task, lang=lang, doc_stride=doc_stride, seed=seed,
                                field=field, on_error=on_error, predictions=predictions is not None)
    if captured_by_server(measure):
        return
    records = io.read_records(None, input, input_format=input_format, field=field)
    writer_context = (io.open_writer(predictions, force=force) if predictions is not None
                      else contextlib.nullcontext(None))
    with writer_context as writer:
        summary, outputs = measured(records, measure, server=server)
        if writer is not None:
            for record, output in outputs:
                writer.write(record, output)
    sys.stdout.write(io.json_text(summary))
    sys.stdout.flush()
    if summary["skipped"]:
        raise RecordsFailed(f"{summary['skipped']} record(s) were skipped",
                            "stderr names their lines; the metrics leave them out")


def _measure(records: Any, *, run: ModelOptions, task: TaskName, lang: str | None, doc_stride: int | None, seed: int,
             field: str, on_error: OnErrorName, predictions: bool) -> tuple[dict[str, Any], list[tuple[Any, Any]]]:
    """The model side: the metrics summary, and each record with its prediction (or its error) when
    ``predictions``. Run in process, or by ``xcli serve`` on the records the client read."""
    from xcli_models import training
    from xcli_models.tasks.common import set_threads

    from ..invocation import served
    from ..model_commands import precision, quantize_mode, stored_quantization
    from ..models import resolve_model
    from .train import _load

    resolved = resolve_model(run.model)
    if served() is None:
        set_threads(run.threads)
    stored = stored_quantization(resolved.path)
    quantize = quantize_mode(stored, run.quantize, "evaluate", resolved.path)
    dtype = precision(run.device.value, run.dtype.value, quantize, stored=stored is not None)
    loaded, run_task = _load(training, resolved, task, None, False, seed, run.device, run.max_length, lang, field,
                             {"doc_stride": doc_stride}, other_hint="evaluate needs a checkpoint trained for the task",
                             warm=True, dtype=dtype, quantize=quantize)
    _check_loaded(loaded, resolved, predictions)
    seen, examples, skipped = _examples(run_task, records, on_error, predictions)
    with console.progress(total=len(examples), unit="records") as bar:
        result = training.evaluate(loaded.model, run_task, examples, batch_size=run.batch_size, seed=seed,
                                   predictions=predictions, on_batch=bar.advance)
    outputs = [(record, where if isinstance(where, RecordError)
                else _prediction(loaded.task, run_task, result.predictions[where])) for record, where in seen]
    metrics = {k: v for k, v in result.metrics.items() if k != "loss"}
    summary = {"model": resolved.spec, "task": loaded.task, "records": len(examples), "skipped": skipped, **metrics,
               "loss": result.loss}
    return summary, outputs


def _check_loaded(loaded: Any, resolved: Any, predictions: bool) -> None:
    """A checkpoint without weights has nothing to evaluate; a loss-only task nothing to predict."""
    from ..errors import UsageError

    if loaded.scratch:
        raise UsageError(f"{resolved.path} has no weights: nothing to evaluate")
    if predictions and loaded.task in _LOSS_ONLY:
        raise UsageError(f"--predictions: a {loaded.task} evaluation predicts nothing per record (only the loss "
                         "and perplexity count)")


def _examples(run_task: Any, records: Any, on_error: Any, keep_seen: bool) -> tuple[list[Any], list[Any], int]:
    """The usable records' examples; each record with its example's index or its error (``keep_seen``,
    for --predictions); how many were skipped. None usable is a failure."""
    from ..errors import XcliError
    from .train import encoded

    seen: list[tuple[Any, int | RecordError]] = []  # each record and its example's index, or its error
    examples: list[Any] = []
    skipped = 0
    for record, item in encoded(run_task, records, on_error):
        if isinstance(item, RecordError):
            skipped += 1
            entry: int | RecordError = item
        else:
            entry = len(examples)
            examples.append(item)
        if keep_seen:
            seen.append((record, entry))
    console.summarize_warnings({"truncated": "truncated to the length limit"})
    if not examples:
        raise XcliError(f"no usable records to evaluate ({skipped} skipped)",
                        "the records need the gold answers of the model's task (see xcli evaluate --help)")
    return seen, examples, skipped


def _prediction(task: str, run_task: Any, gathered: Any) -> dict[str, Any]:
    """One record's prediction and gold answer, as JSON."""
    if gathered is None:
        return {"prediction": None}
    names = run_task.config.id2label

    def name(i: Any) -> Any:
        return str(names[int(i)]) if names and int(i) in names else int(i)

    if task == "question-answering":
        gold, answer = gathered
        return {"answer": answer, "gold": gold}
    if task == "token-classification":
        gold, guess = gathered
        return {"labels": guess, "gold": gold}
    if task == "multiple-choice":
        gold, guess = gathered
        return {"choice": int(guess), "gold": int(gold)}
    kind = getattr(run_task, "kind", None)
    if kind == "multi_label_classification":
        gold, guess = gathered
        return {"labels": [name(k) for k, on in enumerate(guess) if on],
                "gold": [name(k) for k, on in enumerate(gold) if on]}
    if kind == "regression":
        if isinstance(gathered, list):
            return {"value": [p for _, p in gathered], "gold": [g for g, _ in gathered]}
        gold, guess = gathered
        return {"value": guess, "gold": gold}
    gold, guess = gathered
    return {"label": name(guess), "gold": name(gold)}
