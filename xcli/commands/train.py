"""``xcli train``: fine-tune a checkpoint (or train one from scratch) on JSONL records and write a
checkpoint every command (and the ``transformers`` library) loads.

The command checks everything it can before any work (files, the output, the saved state, the
records), then hands the loop to :mod:`xcli_models.training`, reporting its events on stderr and
in ``--metrics``. Ctrl-C asks the loop to stop after the current step; the state it saves beside
the output (``OUT.xcli-state/``) is what ``--resume`` continues from.
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from ..console import console
from ..options import (
    BatchSize, Debug, Device, DeviceName, DtypeName, Field, InputFormat, InputFormatName, Lang, MaxLength, Model,
    OnErrorName, Quiet, Threads, choices,
)


TaskName = choices(
    "TaskName", "auto", "sequence-classification", "token-classification", "question-answering", "multiple-choice",
    "causal-lm", "masked-lm", "plm", "seq2seq"
)
TuneName = choices("TuneName", "all", "prompts")
SaveName = choices("SaveName", "best", "last")
MixedPrecision = choices("MixedPrecision", "no", "bf16", "fp16")


def _positive(name: str, metavar: str, help: str, *, floor: float = 1) -> Any:
    return typer.Option(name, min=floor, metavar=metavar, help=help, show_default=False)


TrainPath = Annotated[
    str,
    typer.Option("--train", metavar="PATH", help="Training records, one JSON object per line ('-' is stdin).",
                 show_default=False),
]
OutputDir = Annotated[
    Path,
    typer.Option("--output", "-o", metavar="DIR", help="Checkpoint directory to write (must not exist, "
                 "unless --force); it appears only when the run has finished.", show_default=False),
]
Dev = Annotated[
    Optional[str],
    typer.Option("--dev", metavar="PATH", help="Dev records: evaluated each epoch (or --eval-every): loss and "
                 "the task's metrics; with it, the best checkpoint is kept.", show_default=False),
]
Task = Annotated[
    TaskName,
    typer.Option("--task", case_sensitive=False, help="What to learn; auto: what the checkpoint's head does "
                 "(with --labels on a checkpoint without a classifier: sequence-classification)."),
]
Labels = Annotated[
    Optional[str],
    typer.Option("--labels", metavar="A,B,C", help="Classification: the label names, in order; labels other "
                 "than the checkpoint's grow a fresh head.", show_default=False),
]
FromScratch = Annotated[
    bool,
    typer.Option("--from-scratch", help="Ignore the checkpoint's weights: draw every weight afresh as the "
                 "reference initialises the family (seeded by --seed). A directory with config.json and "
                 "tokenizer files but no weights always starts this way."),
]
Epochs = Annotated[int, typer.Option("--epochs", min=1, metavar="N", help="Passes over the training data.")]
MaxSteps = Annotated[
    Optional[int], _positive("--max-steps", "N", "Stop after N optimizer steps (overrides --epochs).")
]
Lr = Annotated[float, typer.Option("--lr", metavar="RATE", help="Peak learning rate (AdamW).")]
GradAccum = Annotated[
    int, typer.Option("--grad-accum", min=1, metavar="N", help="Batches per optimizer step (gradient "
                      "accumulation): an effective batch of N x --batch-size (x the processes under "
                      "torchrun).")
]
WarmupRatio = Annotated[
    float, typer.Option("--warmup-ratio", min=0.0, max=1.0, metavar="R", help="Share of the steps over which "
                        "the learning rate rises from 0; then it falls linearly to 0.")
]
WeightDecay = Annotated[
    float, typer.Option("--weight-decay", min=0.0, metavar="W", help="AdamW weight decay (not on biases and "
                        "norms).")
]
MaxGradNorm = Annotated[
    float, typer.Option("--max-grad-norm", min=0.0, metavar="N", help="Clip the gradient norm to N (0: no "
                        "clipping).")
]
Seed = Annotated[int, typer.Option("--seed", metavar="N", help="Seed of the shuffling, dropout, new heads and "
                                   "--from-scratch weights: the same seed, data and options give the same "
                                   "checkpoint.")]
EvalEvery = Annotated[
    Optional[int], _positive("--eval-every", "N", "Evaluate on --dev every N steps (default: each epoch).")
]
Save = Annotated[
    Optional[SaveName],
    typer.Option("--save", case_sensitive=False, help="Which weights to write: best (by --metric-for-best; the "
                 "default with --dev) or last (the default without).", show_default=False),
]
MetricForBest = Annotated[
    Optional[str],
    typer.Option("--metric-for-best", metavar="NAME", help="What 'best' means: loss, perplexity, accuracy, "
                 "macro_f1, precision, recall, f1, exact_match, mse, pearson or spearman, as the task has them "
                 "(default: accuracy for a classifier, f1 for IOB/BIOES tags and QA, macro_f1 for multi-label, "
                 "else the dev loss).", show_default=False),
]
Patience = Annotated[
    Optional[int], _positive("--patience", "N", "Stop early after N evaluations without a better dev metric.")
]
LogEvery = Annotated[
    Optional[int], _positive("--log-every", "N", "Report the training loss every N steps (default: about ten "
                             "reports a run).")
]
MetricsFile = Annotated[
    Optional[Path],
    typer.Option("--metrics", metavar="FILE", help="Write one JSON line per step: step, epoch, lr, loss, and "
                 "dev_* metrics at the steps evaluated.", show_default=False),
]
SaveEvery = Annotated[
    Optional[int], _positive("--save-every", "N", "Save a resumable state (DIR.xcli-state) every N steps.")
]
GroupByLength = Annotated[
    bool, typer.Option("--group-by-length/--no-group-by-length", help="Batch records of similar length "
                       "together (less padding); the batches still come in a shuffled order (--seed).")
]
MixedPrecisionOption = Annotated[
    MixedPrecision, typer.Option("--mixed-precision", case_sensitive=False, help="Compute in bf16 (bfloat16 "
                                 "autocast over float32 weights: CPUs with AVX-512 BF16 or AMX, GPUs that have "
                                 "it) or fp16 (CUDA, loss scaled); the checkpoint stays float32.")
]
Resume = Annotated[
    bool, typer.Option("--resume", help="Continue the run whose state is in DIR.xcli-state (same command "
                       "line otherwise).")
]
Pack = Annotated[
    Optional[int], _positive("--pack", "N", "Causal LM: train on blocks of N tokens cut from the texts put one "
                             "after the other (end-of-sequence between them); the rest after the last full "
                             "block is dropped.", floor=2)
]
DocStride = Annotated[
    Optional[int], typer.Option("--doc-stride", min=0, metavar="N", help="Question answering: tokens shared by "
                                "consecutive windows of a long context, as in xcli qa (default: as xcli qa).",
                                show_default=False)
]
PlmPredictRatio = Annotated[
    Optional[float], typer.Option("--plm-predict-ratio", min=0.0, max=1.0, metavar="R", help="--task plm: "
                                  "the share of each text's tokens predicted (default 1/6, as XLNet).",
                                  show_default=False)
]
Tune = Annotated[
    TuneName, typer.Option("--tune", case_sensitive=False, help="Which weights learn: all, or prompts (MVP "
                           "lightweight prompt tuning: use_prompt on, every other weight frozen).")
]
FreezeBase = Annotated[
    bool, typer.Option("--freeze-base", help="Freeze the base model: only the head learns.")
]
TrainDtype = Annotated[
    DtypeName,
    typer.Option("--dtype", case_sensitive=False, help="Compute dtype; bfloat16 and float16 train in mixed "
                 "precision over float32 weights (float16 with loss scaling); the checkpoint is float32."),
]
TrainOnError = Annotated[
    OnErrorName,
    typer.Option("--on-error", case_sensitive=False, help="On a bad record: continue (skip it, name it on stderr, "
                 "exit 4 at the end) or stop (exit 1 before training)."),
]
ReplaceOutput = Annotated[bool, typer.Option("--force", "-f", help="Replace --output if it exists (and a saved "
                                             "state of an unfinished run, when not resuming).")]


@dataclass(frozen=True)
class Data:
    """The records: --train, --dev, how they are read, what a bad one does."""

    train: str
    dev: str | None
    input_format: Any
    field: str
    on_error: OnErrorName


@dataclass(frozen=True)
class Destination:
    """Where the checkpoint goes, and what may be there already."""

    output: Path
    force: bool
    resume: bool
    metrics: Path | None
    save: SaveName | None


@dataclass(frozen=True)
class Source:
    """What is trained: the model, its task and labels, which weights learn; where and with which seed."""

    model: str | None
    task: TaskName
    labels: str | None
    from_scratch: bool
    seed: int
    device: DeviceName
    threads: int | None
    max_length: int | None
    lang: str | None
    pack: int | None
    doc_stride: int | None
    plm_predict_ratio: float | None
    tune: TuneName
    freeze_base: bool

    def task_options(self) -> dict[str, Any]:
        """The options of the task's example encoder (and which weights learn)."""
        from ..errors import UsageError

        if self.freeze_base and self.tune is not TuneName.all:
            raise UsageError("--freeze-base and --tune prompts pick different weights to train: pass one")
        return {"pack": self.pack, "doc_stride": self.doc_stride, "plm_predict_ratio": self.plm_predict_ratio,
                "tune": "head" if self.freeze_base else self.tune.value}


@dataclass(frozen=True)
class Schedule:
    """How the loop runs: steps, learning rate, batches, evaluation, early stopping, logging, precision."""

    epochs: int
    max_steps: int | None
    lr: float
    batch_size: int
    grad_accum: int
    warmup_ratio: float
    weight_decay: float
    max_grad_norm: float
    eval_every: int | None
    metric_for_best: str | None
    patience: int | None
    log_every: int | None
    save_every: int | None
    group_by_length: bool
    mixed_precision: MixedPrecision
    dtype: DtypeName

    def args(self, training: Any, seed: int, has_dev: bool, save: SaveName | None, device: Any) -> Any:
        """The loop's ``TrainArgs`` (a usage error where the precision cannot run on ``device``)."""
        return training.TrainArgs(
            epochs=self.epochs, max_steps=self.max_steps, lr=self.lr, batch_size=self.batch_size,
            grad_accum=self.grad_accum, warmup_ratio=self.warmup_ratio, weight_decay=self.weight_decay,
            max_grad_norm=self.max_grad_norm, seed=seed, eval_every=self.eval_every if has_dev else None,
            save=(save.value if save is not None else ("best" if has_dev else "last")),
            patience=self.patience, log_every=self.log_every,
            precision=_precision(self.dtype, self.mixed_precision, device), metric_for_best=self.metric_for_best,
            save_every=self.save_every, group_by_length=self.group_by_length,
        )


def train(
    train_path: TrainPath, output: OutputDir, model: Model = None, dev: Dev = None, task: Task = TaskName.auto,
    labels: Labels = None, from_scratch: FromScratch = False, epochs: Epochs = 3, max_steps: MaxSteps = None,
    lr: Lr = 5e-5, batch_size: BatchSize = 8, grad_accum: GradAccum = 1, warmup_ratio: WarmupRatio = 0.0,
    weight_decay: WeightDecay = 0.01, max_grad_norm: MaxGradNorm = 1.0, max_length: MaxLength = None,
    seed: Seed = 42, eval_every: EvalEvery = None, save: Save = None, metric_for_best: MetricForBest = None,
    patience: Patience = None, log_every: LogEvery = None, metrics_file: MetricsFile = None,
    save_every: SaveEvery = None, group_by_length: GroupByLength = True,
    mixed_precision: MixedPrecisionOption = MixedPrecision.no, resume: Resume = False, pack: Pack = None,
    doc_stride: DocStride = None, plm_predict_ratio: PlmPredictRatio = None, tune: Tune = TuneName.all,
    freeze_base: FreezeBase = False, lang: Lang = None, field: Field = "text",
    input_format: InputFormat = InputFormatName.auto, device: Device = DeviceName.auto,
    dtype: TrainDtype = DtypeName.float32, threads: Threads = None, on_error: TrainOnError = OnErrorName.continue_,
    force: ReplaceOutput = False, quiet: Quiet = False, debug: Debug = False,
) -> None:
    """Fine-tune a checkpoint (or train one from scratch) on JSONL records; write a checkpoint the
    other commands load.

    What is learnt follows the checkpoint's head (config.json), or --task; the records:

    \b
      sequence-classification  {"text", "text_pair" (optional), "label": name or index}
                               (a number for a regression head, a list for a multi-label one)
      token-classification     {"tokens": [words], "labels": [one per word]}
      question-answering       {"question", "context", "answers": {"text": [...], "answer_start": [...]}}
                               (SQuAD layout; empty lists: no answer): span and beam-search heads;
                               long contexts cut into windows as xcli qa cuts them (--doc-stride)
      multiple-choice          {"text" or "question", "choices": [...], "label": index or choice}
      causal-lm                {"text"}: XGLM, *ForCausalLM, XLM with causal, XLNetLMHeadModel
                               (--pack N: blocks of N tokens cut from the texts put together)
      masked-lm                {"text"}: XLM without causal (15% of the tokens hidden; --lang)
      plm                      {"text"}: XLNetLMHeadModel, XLNet's permutation objective
                               (random factorisation orders; --plm-predict-ratio, default 1/6)
      seq2seq                  {"text", "target"}: MVP, (XLM-)ProphetNet ForConditionalGeneration

    --freeze-base trains the head only; --tune prompts trains MVP's prompts only (the result
    keeps use_prompt, so it loads with its prompts active).

    Dev metrics: accuracy and macro_f1 (classification), mse, pearson and spearman
    (regression), entity precision/recall/f1 as conlleval counts them (token labels in
    IOB1/IOB2/BIOES), exact_match and f1 as SQuAD v1.1 counts them (question answering, through
    the xcli qa path), perplexity (language models).

    A bad record (invalid JSON, a missing field, a wrong label type, an unknown label, a
    token/label count mismatch, an empty text, an answer not at its answer_start) is skipped
    and named on stderr with its line; the run goes on and exits 4 at the end (--on-error
    stop: exit 1 before training). Progress goes to stderr; stdout gets one JSON summary line.

    Ctrl-C stops after the current step, saves the run's state in DIR.xcli-state and exits 130;
    --resume continues it, ending with the same weights as an uninterrupted run.

    Under torchrun (torchrun --nproc-per-node N -m xcli train ...) the processes train one model,
    data-parallel: --batch-size is per process, so one optimizer step sees --batch-size x
    --grad-accum x N records (2 processes at -b 8 train as 1 at -b 16). Only process 0 writes
    the checkpoint, the state, --metrics and the summary; --resume needs the same N.

    Examples:

      xcli train -m ./xlnet-base --labels neg,pos --train sst.jsonl --dev sst-dev.jsonl -o ./xlnet-sst

      xcli train -m ./xglm --train corpus.jsonl --epochs 1 --lr 1e-4 --save-every 500 -o ./xglm-tuned

      xcli train -m ./xlnet-config --from-scratch --labels neg,pos --train sst.jsonl -o ./xlnet-new
    """
    console.configure(quiet=quiet, debug=debug)
    _train(
        Data(train_path, dev, input_format, field, on_error),
        Destination(output, force, resume, metrics_file, save),
        Source(model, task, labels, from_scratch, seed, device, threads, max_length, lang, pack, doc_stride,
               plm_predict_ratio, tune, freeze_base),
        Schedule(epochs, max_steps, lr, batch_size, grad_accum, warmup_ratio, weight_decay, max_grad_norm, eval_every,
                 metric_for_best, patience, log_every, save_every, group_by_length, mixed_precision, dtype),
    )


def _train(data: Data, out: Destination, source: Source, schedule: Schedule) -> None:
    """Check, load, read the records, train, write the checkpoint and the summary line."""
    from ..errors import RecordsFailed, UsageError
    from ..models import resolve_model

    _check_paths(data.train, data.dev, out.output, out.save, schedule.patience, schedule.eval_every, out.force,
                 out.resume)
    if schedule.eval_every is not None and data.dev is None:
        console.warning("--eval-every without --dev: nothing to evaluate, ignored")
    label_names = _label_list(source.labels)
    resolved = resolve_model(source.model)

    from xcli_models import training
    from xcli_models.tasks.common import set_threads

    world = _join(source.device)
    target = out.output.expanduser()
    state = training.StateDir(training.state_path(target), warn=console.warning)
    _check_state(state, out.resume, out.force)
    checkpoint = training.CheckpointDir(target, overwrite=out.force, source=resolved.path, warn=console.warning)
    set_threads(source.threads)
    training.set_seed(source.seed)
    loaded, run_task = _load(training, resolved, source.task, label_names, source.from_scratch, source.seed,
                             source.device, source.max_length, source.lang, data.field, source.task_options())
    train_examples, dev_examples, skipped = _datasets(run_task, data, loaded)
    args = schedule.args(training, source.seed, data.dev is not None, out.save, loaded.model.device)
    progress = _Reporter(console, args)
    try:
        args.check()
        trainer = training.Trainer(loaded.model, run_task, args, callback=progress, world=world)
    except training.TrainingError as exc:
        raise UsageError(str(exc)) from None
    resumed_at = _resume(trainer, state, checkpoint) if out.resume else None
    total = trainer.planned_steps(train_examples)
    console.note(_plan(type(loaded.model).__name__, loaded.task, train_examples, dev_examples, total, args,
                       resumed_at, world.size))
    result, written = _run(trainer, checkpoint, state, loaded, train_examples, dev_examples, progress, out.metrics,
                           resumed_at)
    if not world.main:  # process 0 speaks for the job
        return
    from ..io import json_text

    sys.stdout.write(json_text(_summary(training, written, resolved, loaded, resumed_at, train_examples,
                                        dev_examples, skipped, result, args, world.size)))
    sys.stdout.flush()
    failed = skipped["train"] + skipped["dev"]
    if failed:
        raise RecordsFailed(
            f"{failed} record(s) were skipped ({skipped['train']} training, {skipped['dev']} dev)",
            "stderr names their lines; the checkpoint was trained without them",
        )


def _datasets(run_task: Any, data: Data, loaded: Any) -> tuple[list[Any], list[Any] | None, dict[str, int]]:
    """The training and dev examples (--pack: blocks cut from the texts) and how many records were skipped."""
    skipped = {"train": 0, "dev": 0}
    train_examples = _examples(run_task, data.train, "train", skipped, data.input_format, data.field, data.on_error)
    dev_examples = (_examples(run_task, data.dev, "dev", skipped, data.input_format, data.field, data.on_error)
                    if data.dev is not None else None)
    train_examples = run_task.finish(train_examples)  # --pack: blocks cut from the texts
    dev_examples = run_task.finish(dev_examples) if dev_examples is not None else None
    _check_examples(train_examples, dev_examples, data.train, data.dev, skipped, loaded, run_task)
    return train_examples, dev_examples, skipped


# --------------------------------------------------------------------- checks
def _check_paths(train_path: str, dev: str | None, output: Path, save: Any, patience: int | None,
                 eval_every: int | None, force: bool, resume: bool) -> None:
    """Usage errors found from the command line alone, before anything is loaded."""
    from ..errors import UsageError

    if dev == "-":
        raise UsageError("--dev -: the dev set must be a file", "only --train can come from stdin")
    for option, path in (("--train", train_path), ("--dev", dev)):
        if path is not None and path != "-" and not Path(path).expanduser().is_file():
            raise UsageError(f"{option} {path}: no such file")
    if save is SaveName.best and dev is None:
        raise UsageError("--save best needs --dev (the best checkpoint is the one with the best dev metric)")
    if patience is not None and dev is None:
        raise UsageError("--patience needs --dev (it stops when the dev metric stops improving)")
    target = output.expanduser()
    if target.is_symlink() or target.exists():
        if not target.is_dir():
            raise UsageError(f"--output {output} is a file: train writes a checkpoint directory",
                             "name a directory that does not exist yet")
        if not force:
            finished = " (a finished run's output?)" if resume else ""
            raise UsageError(f"--output {output} exists{finished}", "pass --force to replace it")


def _check_state(state: Any, resume: bool, force: bool) -> None:
    from ..errors import UsageError

    if resume and not state.exists():
        raise UsageError(f"--resume: no saved state in {state.path}",
                         "a run saves one every --save-every N steps, and when stopped with Ctrl-C")
    if not resume and state.exists() and not force:
        raise UsageError(f"{state.path} holds the state of an unfinished run",
                         "pass --resume to continue it, or --force to start afresh (the state is then replaced)")


def _label_list(labels: str | None) -> list[str] | None:
    from .. import io

    return io.parse_field_list(labels) if labels is not None else None


def _load(training: Any, resolved: Any, task: TaskName, labels: list[str] | None, from_scratch: bool, seed: int,
          device: DeviceName, max_length: int | None, lang: str | None, field: str,
          options: dict[str, Any] | None = None, *, other_hint: str | None = None,
          warm: bool = False, dtype: str = "float32", quantize: str | None = None) -> tuple[Any, Any]:
    """The model, its tokenizer and task, or a usage error saying why they cannot train
    (``other_hint``: the caller's advice in place of train's, e.g. to grow a head). ``warm``
    (evaluate): inside ``xcli serve``, its loaded copy (in eval mode, never trained)."""
    from ..console import console
    from ..errors import UsageError
    from ..invocation import served
    from xcli_models.tasks.common import UnsupportedModel
    from xcli_models.tokenization import TokenizerError

    def build() -> Any:
        loaded = training.load_for_training(
            resolved.path, task=None if task is TaskName.auto else task.value, labels=labels,
            dtype=dtype, device=device.value, from_scratch=from_scratch, seed=seed,
            tune=(options or {}).get("tune", "all"), inference=warm,
        )
        if quantize is not None:  # (evaluate only: int8 inference)
            from ..model_commands import quantized

            quantized(loaded.model)
        return loaded

    hooks = served() if warm else None
    try:
        with console.library_muted():  # the load report is noted below, once
            if hooks is None:
                loaded = build()
            else:
                loaded = hooks.load(resolved.path, device.value, dtype, lambda: _evaluating(build()),
                                    kind=f"evaluate:{task.value}:{seed}:{quantize or 'float'}")
    except (training.TrainingError, UnsupportedModel) as exc:
        if other_hint and getattr(exc, "hint", None):  # train's way out does not apply to the caller
            raise UsageError(exc.message, other_hint) from None
        raise UsageError(str(exc)) from None
    try:
        run_task = training.task_for(loaded.model, loaded.tokenizer, max_length=max_length, lang=lang,
                                     text_field=field, task=loaded.task,
                                     **{k: v for k, v in (options or {}).items() if k != "tune"})
    except (training.TrainingError, TokenizerError) as exc:  # --lang the model does not know
        raise UsageError(str(exc)) from None
    class_name = type(loaded.model).__name__
    if loaded.scratch:
        why = "--from-scratch" if from_scratch else f"{resolved.path} has no weights"
        console.note(f"{class_name}: every weight initialised here ({why}), seed {seed}")
    elif loaded.fresh:
        console.note(f"new {loaded.task} head for {class_name}, initialised here: {', '.join(loaded.fresh)}")
    if not loaded.scratch and loaded.model.load_report.unexpected:
        console.note(f"checkpoint tensors left unused: {', '.join(loaded.model.load_report.unexpected)}")
    return loaded, run_task


def _evaluating(loaded: Any) -> Any:
    loaded.model.eval()
    return loaded


def _summary(training: Any, written: Any, resolved: Any, loaded: Any, resumed_at: int | None, train_examples: list,
             dev_examples: list | None, skipped: dict[str, int], result: Any, args: Any,
             processes: int) -> dict[str, Any]:
    """The one JSON object train prints: what was trained on what, and how it went."""
    config = loaded.model.config
    summary = {
        "output": str(written),
        "model": resolved.spec,
        "model_class": type(loaded.model).__name__,
        "task": loaded.task,
        **({"labels": [config.id2label[i] for i in sorted(config.id2label)]}
           if loaded.task in training.CLASSIFICATION else {}),
        "from_scratch": loaded.scratch,
        "resumed_at": resumed_at,
        "train_records": len(train_examples),
        "dev_records": len(dev_examples) if dev_examples is not None else None,
        "skipped": skipped["train"] + skipped["dev"],
        **{k: v for k, v in result.to_json().items() if k not in ("examples", "interrupted")},
        "saved": args.save,
    }
    if processes > 1:
        summary["processes"] = processes
    return summary


def _examples(run_task: Any, path: str, which: str, skipped: dict[str, int], input_format: Any, field: str,
              on_error: OnErrorName) -> list[Any]:
    """The records of ``path`` as examples; bad ones named on stderr and counted (or stop the run)."""
    from .. import io
    from ..errors import RecordError

    out = []
    records = io.read_records(None, [path], input_format=input_format, field=field)
    for _, item in encoded(run_task, records, on_error):
        if isinstance(item, RecordError):
            skipped[which] += 1
        else:
            out.append(item)
    return out


def encoded(run_task: Any, records: Any, on_error: OnErrorName) -> Iterator[tuple[Any, Any]]:
    """Each record with its training example, or its ``RecordError`` (named on stderr by process 0;
    ``--on-error stop`` stops at the first). ``xcli evaluate`` reads its records through this too."""
    from ..console import console
    from ..errors import RecordError, StoppedOnError
    from xcli_models.training import ExampleError

    for record in records:
        error = record.error
        if error is None:
            try:
                example = run_task.encode(record.data)
            except ExampleError as exc:
                error = RecordError(exc.type, exc.message)
            else:
                if example.truncated:
                    console.counted_warning(
                        "truncated", f"{record.where}: truncated to {run_task.limit} tokens (--max-length)"
                    )
                yield record, example
                continue
        if _MAIN[0]:  # every process reads every record: process 0 names the bad ones
            console.error(f"{record.where}: {error.type}: {error.message}")
        if on_error is OnErrorName.stop:
            raise StoppedOnError(
                f"stopped at {record.where} (--on-error stop)", "fix the record, or use --on-error continue to "
                "skip bad records"
            )
        yield record, error


def _check_examples(train_examples: list[Any], dev_examples: list[Any] | None, train_path: str, dev: str | None,
                    skipped: dict[str, int], loaded: Any, run_task: Any) -> None:
    from ..console import console
    from ..errors import XcliError

    console.summarize_warnings({"truncated": "truncated to the length limit"})
    if not train_examples:
        raise XcliError(f"--train {train_path}: no usable training records ({skipped['train']} skipped)",
                        _label_hint(loaded, run_task))
    if dev is not None and not dev_examples:
        raise XcliError(f"--dev {dev}: no usable dev records ({skipped['dev']} skipped)",
                        _label_hint(loaded, run_task))


def _label_hint(loaded: Any, task: Any) -> str | None:
    from xcli_models.training import CLASSIFICATION

    if loaded.task not in CLASSIFICATION:
        return None
    names = ", ".join(str(task.config.id2label[i]) for i in sorted(task.config.id2label))
    return f"the model's labels are {names}; pass --labels a,b,c to define others"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _plan(class_name: str, task: str, train_examples: list[Any], dev_examples: list[Any] | None, total: int,
          args: Any, resumed_at: int | None, processes: int = 1) -> str:
    per_step = args.batch_size * args.grad_accum * processes
    parts = [str(args.batch_size)]
    if args.grad_accum > 1:
        parts.append(f"{args.grad_accum} accumulated")
    if processes > 1:
        parts.append(f"{processes} processes")
    batch = _plural(per_step, "record") + (f" ({' x '.join(parts)})" if len(parts) > 1 else "")
    dev = f", {_plural(len(dev_examples), 'dev record')}" if dev_examples else ""
    resumed = f", resuming after step {resumed_at}" if resumed_at is not None else ""
    return (f"training {class_name} ({task}) on {_plural(len(train_examples), 'record')}{dev}: "
            f"{_plural(total, 'step')} of {batch}{resumed}")


#: whether this process speaks for the job (process 0 of a torchrun job, or alone)
_MAIN = [True]


def _join(device: DeviceName) -> Any:
    """This process's place in a torchrun job (alone without one); the others keep quiet."""
    import atexit

    from ..console import console
    from ..errors import UsageError
    from xcli_models.training import distributed

    try:
        world = distributed.from_env(device.value)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"cannot join the torchrun job: {str(exc).splitlines()[0]}") from None
    _MAIN[0] = world.main
    if world.active:
        atexit.register(world.close)
        if not world.main:
            console.quiet = True
    return world


def _precision(dtype: DtypeName, mixed: MixedPrecision, device: Any) -> str | None:
    """The autocast dtype asked for by --mixed-precision (or --dtype), or a usage error where it cannot run."""
    from ..errors import UsageError
    from xcli_models.training import supports_precision

    wanted = {"bf16": "bfloat16", "fp16": "float16"}.get(mixed.value)
    given = None if dtype is DtypeName.float32 else dtype.value
    if wanted is not None and given is not None and wanted != given:
        raise UsageError(f"--mixed-precision {mixed.value} and --dtype {given} ask for different precisions: pass one")
    precision = wanted or given
    if wanted is not None:
        why = supports_precision(precision, device)
        if why is not None:
            raise UsageError(f"--mixed-precision {mixed.value}: {why}", "leave --mixed-precision out (float32)")
    return precision


# ------------------------------------------------------------------ the run
def _resume(trainer: Any, state: Any, checkpoint: Any) -> int:
    """Put the trainer (and the best checkpoint so far) where the saved state left them; its step."""
    from ..errors import UsageError
    from xcli_models.training import TrainingError

    try:
        snapshot, best = state.read(trainer.model.device)
        trainer.restore(snapshot)
    except TrainingError as exc:
        raise UsageError(str(exc)) from None
    except (RuntimeError, ValueError) as exc:  # weights or optimizer groups do not fit
        raise UsageError(f"{state.path}: the saved state does not fit this model ({str(exc).splitlines()[0]})",
                         "resume with the same --model, --task, --labels, --tune and --freeze-base") from None
    if best is not None and trainer.world.main:
        checkpoint.restore(best)
    return trainer.progress.step


def _run(trainer: Any, checkpoint: Any, state: Any, loaded: Any, train_examples: list[Any],
         dev_examples: list[Any] | None, progress: "_Reporter", metrics_file: Path | None,
         resumed_at: int | None) -> tuple[Any, Path]:
    """Train, publish the checkpoint, remove the state; Ctrl-C saves the state and exits 130."""
    from ..console import console
    from ..errors import UsageError, XcliError
    from xcli_models.training import TrainingError

    main = trainer.world.main  # only process 0 writes: the checkpoint, the state, --metrics
    if main:
        checkpoint.begin()
    metrics = _MetricsFile(metrics_file, resumed_at) if metrics_file is not None and main else None
    progress.metrics = metrics

    def save_state(snapshot: Any) -> None:
        if metrics is not None:  # the --metrics lines a resumed run keeps are on disk before the state is
            metrics.flush()
        state.write(snapshot, checkpoint.path if checkpoint.saved else None)

    previous = _on_interrupt(trainer)
    try:
        with console.progress(total=trainer.planned_steps(train_examples), unit="steps", detail=True) as bar:
            progress.bar = bar
            result = trainer.train(train_examples, dev_examples,
                                   save=lambda step: checkpoint.save(loaded.model, loaded.tokenizer),
                                   save_state=save_state)
        if result.interrupted:
            checkpoint.discard(keep=False)
            trainer.world.barrier()  # torchrun stops the job when one process exits non-zero
            console.warning(f"stopped after step {result.steps}: the run's state is in {state.path}; "
                            "the same command with --resume continues it")
            raise KeyboardInterrupt
        written = checkpoint.commit() if main else checkpoint.target
    except TrainingError as exc:
        checkpoint.discard(keep=False)
        raise XcliError(str(exc)) from None
    except FileExistsError:
        kept = checkpoint.discard(keep=True)
        raise UsageError(f"--output {checkpoint.target} was written by another run meanwhile",
                         f"this run's checkpoint is in {kept}") from None
    except BaseException:
        kept = checkpoint.discard(keep=True)
        if kept is not None:
            console.warning(f"the run stopped: the checkpoint saved at step {progress.saved_step} is in {kept}")
        raise
    finally:
        _restore_interrupt(previous)
        if metrics is not None:
            metrics.close()
    if main:
        state.remove()
    return result, written


def _on_interrupt(trainer: Any) -> Any:
    """Ctrl-C asks the trainer to stop after its step (and save its state); a second one stops at once."""
    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.request_stop()
        from ..console import console

        console.warning("stopping after this step to save the run's state (Ctrl-C again to stop at once)")

    try:
        return signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        return None


def _restore_interrupt(previous: Any) -> None:
    if previous is not None:
        try:
            signal.signal(signal.SIGINT, previous)
        except ValueError:
            pass


class _MetricsFile:
    """``--metrics FILE``: one JSON line per step, dev metrics on the lines of evaluated steps.

    A resumed run keeps the lines up to the step it resumes after and appends; the lines a
    killed run wrote past its saved state are dropped (the resumed run writes them again).
    """

    def __init__(self, path: Path, resumed_at: int | None) -> None:
        kept: list[str] = []
        if resumed_at is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line)["step"] <= resumed_at:
                        kept.append(line + "\n")
                except (ValueError, KeyError, TypeError):
                    continue
        self.handle = path.open("w", encoding="utf-8")
        self.handle.writelines(kept)
        self.pending: dict[str, Any] | None = None

    def event(self, event: Any) -> None:
        if event.kind == "step":
            self.flush()
            self.pending = {"step": event.step, "epoch": event.epoch, "lr": event.lr, "loss": event.loss}
        elif event.kind == "eval" and event.metrics:
            line = self.pending if self.pending is not None and self.pending["step"] == event.step else None
            if line is None:  # evaluated before any step of this run (a resumed run's epoch end)
                self.flush()
                line = self.pending = {"step": event.step, "epoch": event.epoch}
            line.update({f"dev_{k}": v for k, v in event.metrics.items()})
        elif event.kind in ("state", "interrupt", "end", "stop"):
            self.flush()

    def flush(self) -> None:
        if self.pending is not None:
            from ..io import json_text

            self.handle.write(json_text(self.pending))
            self.handle.flush()
            self.pending = None

    def close(self) -> None:
        self.flush()
        self.handle.close()


class _Reporter:
    """Turns the trainer's events into a progress bar, note lines on stderr and ``--metrics`` lines."""

    def __init__(self, console: Any, args: Any) -> None:
        self.console, self.args = console, args
        self.bar: Any = None
        self.metrics: _MetricsFile | None = None
        self.saved_step: int | None = None

    def __call__(self, event: Any) -> None:
        if self.metrics is not None:
            self.metrics.event(event)
        note = self.console.note
        if event.kind == "step" and self.bar is not None:
            self.bar.advance(1)
            self.bar.describe(f"epoch {event.epoch}  loss {event.loss:.4f}  lr {event.lr:.3g}  "
                              f"ETA {_duration(event.eta)}")
        elif event.kind == "log":
            rate = f", {event.rate:,.1f} records/s" if event.rate else ""
            eta = f", ETA {_duration(event.eta)}" if event.eta is not None and event.step < event.total_steps else ""
            note(f"step {event.step}/{event.total_steps} (epoch {event.epoch}): loss {event.loss:.4f}, "
                 f"lr {event.lr:.3g}{rate}{eta}")
        elif event.kind == "eval":
            shown = ", ".join(f"{k} {v:.4f}" for k, v in (event.metrics or {}).items() if k != "loss")
            best = " (best so far)" if event.best else ""
            note(f"step {event.step}: dev loss {event.dev_loss:.4f}{', ' + shown if shown else ''}{best}")
        elif event.kind == "save":
            self.saved_step = event.step
        elif event.kind == "stop":
            note(f"stopping early at step {event.step}: no better dev metric in {self.args.patience} evaluations")


def _duration(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
