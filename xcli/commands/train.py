"""``xcli train``: fine-tune a checkpoint on JSONL records and write a checkpoint every command
(and the ``transformers`` library) loads."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..options import (
    BatchSize, Debug, Device, DeviceName, DtypeName, Field, InputFormat, InputFormatName, Lang, MaxLength,
    Model, OnErrorName, Quiet, Threads,
)


class TaskName(str, Enum):
    auto = "auto"
    sequence_classification = "sequence-classification"
    token_classification = "token-classification"
    causal_lm = "causal-lm"
    masked_lm = "masked-lm"
    seq2seq = "seq2seq"


class SaveName(str, Enum):
    best = "best"
    last = "last"


def _positive(name: str, metavar: str, help: str, *, floor: float = 1) -> Any:
    return typer.Option(name, min=floor, metavar=metavar, help=help, show_default=False)


def train(
    train_path: Annotated[
        str,
        typer.Option("--train", metavar="PATH", help="Training records, one JSON object per line ('-' is stdin).",
                     show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="DIR", help="Checkpoint directory to write (must not exist, "
                     "unless --force); it appears only when the run has finished.", show_default=False),
    ],
    model: Model = None,
    dev: Annotated[
        Optional[str],
        typer.Option("--dev", metavar="PATH", help="Dev records: evaluated each epoch (or --eval-every), loss and "
                     "accuracy; with it, the best checkpoint is kept.", show_default=False),
    ] = None,
    task: Annotated[
        TaskName,
        typer.Option("--task", case_sensitive=False, help="What to learn; auto: what the checkpoint's head does "
                     "(with --labels on a checkpoint without a classifier: sequence-classification)."),
    ] = TaskName.auto,
    labels: Annotated[
        Optional[str],
        typer.Option("--labels", metavar="A,B,C", help="Classification: the label names, in order; labels other "
                     "than the checkpoint's grow a fresh head.", show_default=False),
    ] = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, metavar="N", help="Passes over the training data.")] = 3,
    max_steps: Annotated[
        Optional[int], _positive("--max-steps", "N", "Stop after N optimizer steps (overrides --epochs).")
    ] = None,
    lr: Annotated[float, typer.Option("--lr", metavar="RATE", help="Peak learning rate (AdamW).")] = 5e-5,
    batch_size: BatchSize = 8,
    grad_accum: Annotated[
        int, typer.Option("--grad-accum", min=1, metavar="N", help="Batches per optimizer step (gradient "
                          "accumulation): an effective batch of N x --batch-size.")
    ] = 1,
    warmup_ratio: Annotated[
        float, typer.Option("--warmup-ratio", min=0.0, max=1.0, metavar="R", help="Share of the steps over which "
                            "the learning rate rises from 0; then it falls linearly to 0.")
    ] = 0.0,
    weight_decay: Annotated[
        float, typer.Option("--weight-decay", min=0.0, metavar="W", help="AdamW weight decay (not on biases and "
                            "norms).")
    ] = 0.01,
    max_grad_norm: Annotated[
        float, typer.Option("--max-grad-norm", min=0.0, metavar="N", help="Clip the gradient norm to N (0: no "
                            "clipping).")
    ] = 1.0,
    max_length: MaxLength = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the shuffling, dropout and new heads: "
                                      "the same seed, data and options give the same checkpoint.")] = 42,
    eval_every: Annotated[
        Optional[int], _positive("--eval-every", "N", "Evaluate on --dev every N steps (default: each epoch).")
    ] = None,
    save: Annotated[
        Optional[SaveName],
        typer.Option("--save", case_sensitive=False, help="Which weights to write: best (lowest dev loss; the "
                     "default with --dev) or last (the default without).", show_default=False),
    ] = None,
    patience: Annotated[
        Optional[int], _positive("--patience", "N", "Stop early after N evaluations without a better dev loss.")
    ] = None,
    log_every: Annotated[
        Optional[int], _positive("--log-every", "N", "Report the training loss every N steps (default: about ten "
                                 "reports a run).")
    ] = None,
    lang: Lang = None,
    field: Field = "text",
    input_format: InputFormat = InputFormatName.auto,
    device: Device = DeviceName.auto,
    dtype: Annotated[
        DtypeName,
        typer.Option("--dtype", case_sensitive=False, help="Compute dtype; bfloat16 and float16 train in mixed "
                     "precision over float32 weights (float16 with loss scaling); the checkpoint is float32."),
    ] = DtypeName.float32,
    threads: Threads = None,
    on_error: Annotated[
        OnErrorName,
        typer.Option("--on-error", case_sensitive=False, help="On a bad record: continue (skip it, name it on stderr, "
                     "exit 4 at the end) or stop (exit 1 before training)."),
    ] = OnErrorName.continue_,
    force: Annotated[bool, typer.Option("--force", "-f", help="Replace --output if it exists.")] = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Fine-tune a checkpoint on JSONL records; write a checkpoint the other commands load.

    What is learnt follows the checkpoint's head (config.json), or --task; the records:

    \b
      sequence-classification  {"text", "text_pair" (optional), "label": name or index}
      token-classification     {"tokens": [words], "labels": [one per word]}
      causal-lm                {"text"}: XGLM, *ForCausalLM, XLM with causal, XLNetLMHeadModel
      masked-lm                {"text"}: XLM without causal (15% of the tokens hidden)
      seq2seq                  {"text", "target"}: MVP, (XLM-)ProphetNet ForConditionalGeneration

    A bad record (invalid JSON, a missing field, an unknown label) is skipped and named on
    stderr with its line; the run goes on and exits 4 at the end (--on-error stop: exit 1 at
    once). Progress goes to stderr; stdout gets one JSON summary line (steps, train loss,
    dev loss/accuracy, output directory).

    Examples:

      xcli train -m ./xlnet-base --labels neg,pos --train sst.jsonl --dev sst-dev.jsonl -o ./xlnet-sst

      xcli train -m ./xglm --train corpus.jsonl --epochs 1 --lr 1e-4 -o ./xglm-tuned

      xcli train -m ./mvp --train pairs.jsonl --batch-size 4 --grad-accum 8 --max-steps 500 -o ./mvp-summ
    """
    import logging

    from .. import io
    from ..console import console
    from ..errors import RecordError, RecordsFailed, StoppedOnError, UsageError, XcliError
    from ..models import resolve_model

    if dev == "-":
        raise UsageError("--dev -: the dev set must be a file", "only --train can come from stdin")
    for option, path in (("--train", train_path), ("--dev", dev)):
        if path is not None and path != "-" and not Path(path).expanduser().is_file():
            raise UsageError(f"{option} {path}: no such file")
    if save is SaveName.best and dev is None:
        raise UsageError("--save best needs --dev (the best checkpoint is the one with the lowest dev loss)")
    if patience is not None and dev is None:
        raise UsageError("--patience needs --dev (it stops when the dev loss stops improving)")
    if eval_every is not None and dev is None:
        console.warning("--eval-every without --dev: nothing to evaluate, ignored")
    label_names = io.parse_field_list(labels) if labels is not None else None
    resolved = resolve_model(model)

    from xcli_models import training
    from xcli_models.tasks.common import UnsupportedModel, set_threads
    from xcli_models.tokenization import TokenizerError

    try:
        checkpoint = training.CheckpointDir(output.expanduser(), overwrite=force)
    except FileExistsError as exc:
        raise UsageError(f"--output {output}: {exc}", "pass --force to replace it") from None
    set_threads(threads)
    training.set_seed(seed)
    quiet_loader = logging.NullHandler()  # the load report is noted below, once
    logging.getLogger("xcli_models").addHandler(quiet_loader)
    try:
        loaded = training.load_for_training(
            resolved.path, task=None if task is TaskName.auto else task.value, labels=label_names,
            dtype="float32", device=device.value,
        )
    except (training.TrainingError, UnsupportedModel) as exc:
        raise UsageError(str(exc)) from None
    finally:
        logging.getLogger("xcli_models").removeHandler(quiet_loader)
    try:
        run_task = training.task_for(loaded.model, loaded.tokenizer, max_length=max_length, lang=lang,
                                     text_field=field)
    except (training.TrainingError, TokenizerError) as exc:  # --lang the model does not know
        raise UsageError(str(exc)) from None
    class_name = type(loaded.model).__name__
    if loaded.fresh:
        console.note(f"new {loaded.task} head for {class_name}, initialised here: {', '.join(loaded.fresh)}")
    if loaded.model.load_report.unexpected:
        console.note(f"checkpoint tensors left unused: {', '.join(loaded.model.load_report.unexpected)}")

    skipped = {"train": 0, "dev": 0}

    def examples(path: str, which: str) -> list[Any]:
        out = []
        for record in io.read_records(None, [path], input_format=input_format, field=field):
            error = record.error
            if error is None:
                try:
                    example = run_task.encode(record.data)
                except training.ExampleError as exc:
                    error = RecordError(exc.type, exc.message)
                else:
                    if example.truncated:
                        console.counted_warning(
                            "truncated", f"{record.where}: truncated to {run_task.limit} tokens (--max-length)"
                        )
                    out.append(example)
                    continue
            skipped[which] += 1
            console.error(f"{record.where}: {error.type}: {error.message}")
            if on_error is OnErrorName.stop:
                raise StoppedOnError(
                    f"stopped at {record.where} (--on-error stop)", "fix the record, or use --on-error continue to "
                    "skip bad records"
                )
        return out

    train_examples = examples(train_path, "train")
    dev_examples = examples(dev, "dev") if dev is not None else None
    console.summarize_warnings({"truncated": "truncated to the length limit"})
    if not train_examples:
        raise XcliError(f"--train {train_path}: no usable training records ({skipped['train']} skipped)",
                        _label_hint(loaded, run_task))
    if dev is not None and not dev_examples:
        raise XcliError(f"--dev {dev}: no usable dev records ({skipped['dev']} skipped)")

    args = training.TrainArgs(
        epochs=epochs, max_steps=max_steps, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
        warmup_ratio=warmup_ratio, weight_decay=weight_decay, max_grad_norm=max_grad_norm, seed=seed,
        eval_every=eval_every if dev is not None else None,
        save=(save.value if save is not None else ("best" if dev is not None else "last")),
        patience=patience, log_every=log_every, precision=None if dtype is DtypeName.float32 else dtype.value,
    )
    try:
        args.check()
    except training.TrainingError as exc:
        raise UsageError(str(exc)) from None
    progress = _Reporter(console, args, run_task)
    trainer = training.Trainer(loaded.model, run_task, args, callback=progress)
    total = trainer.planned_steps(train_examples)
    console.note(
        f"training {class_name} ({loaded.task}) on {len(train_examples)} records"
        + (f", {len(dev_examples)} dev records" if dev_examples else "")
        + f": {total} steps of {batch_size} x {grad_accum} records"
    )
    try:
        with console.progress(total=total, unit="steps") as bar:
            progress.bar = bar
            result = trainer.train(
                train_examples, dev_examples, save=lambda step: checkpoint.save(loaded.model, loaded.tokenizer)
            )
        written = checkpoint.commit()
    except training.TrainingError as exc:
        checkpoint.discard(keep=False)
        raise XcliError(str(exc)) from None
    except BaseException:
        kept = checkpoint.discard(keep=True)
        if kept is not None:
            console.warning(f"the run stopped: the checkpoint saved at step {progress.saved_step} is in {kept}")
        raise

    summary = {
        "output": str(written),
        "model": resolved.spec,
        "model_class": class_name,
        "task": loaded.task,
        **({"labels": [loaded.model.config.id2label[i] for i in sorted(loaded.model.config.id2label)]}
           if loaded.task in training.CLASSIFICATION else {}),
        "train_records": len(train_examples),
        "dev_records": len(dev_examples) if dev_examples is not None else None,
        "skipped": skipped["train"] + skipped["dev"],
        **{k: v for k, v in result.to_json().items() if k != "examples"},
        "saved": args.save,
    }
    import json
    import sys

    sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    failed = skipped["train"] + skipped["dev"]
    if failed:
        raise RecordsFailed(
            f"{failed} record(s) were skipped ({skipped['train']} training, {skipped['dev']} dev)",
            "stderr names their lines; the checkpoint was trained without them",
        )


def _label_hint(loaded: Any, task: Any) -> str | None:
    from xcli_models.training import CLASSIFICATION

    if loaded.task not in CLASSIFICATION:
        return None
    names = ", ".join(str(task.config.id2label[i]) for i in sorted(task.config.id2label))
    return f"the model's labels are {names}; pass --labels a,b,c to define others"


class _Reporter:
    """Turns the trainer's events into a progress bar and note lines on stderr."""

    def __init__(self, console: Any, args: Any, task: Any) -> None:
        self.console, self.args, self.task = console, args, task
        self.bar: Any = None
        self.saved_step: int | None = None

    def __call__(self, event: Any) -> None:
        note = self.console.note
        if event.kind == "step" and self.bar is not None:
            self.bar.advance(1)
        elif event.kind == "log":
            rate = f", {event.rate:,.1f} records/s" if event.rate else ""
            note(f"step {event.step}/{event.total_steps} (epoch {event.epoch}): loss {event.loss:.4f}, "
                 f"lr {event.lr:.3g}{rate}")
        elif event.kind == "eval":
            accuracy = f", accuracy {event.dev_accuracy:.4f}" if event.dev_accuracy is not None else ""
            best = " (best so far)" if event.best else ""
            note(f"step {event.step}: dev loss {event.dev_loss:.4f}{accuracy}{best}")
        elif event.kind == "save":
            self.saved_step = event.step
        elif event.kind == "stop":
            note(f"stopping early at step {event.step}: no better dev loss in {self.args.patience} evaluations")
