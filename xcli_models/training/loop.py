"""The training loop (see the package docstring).

A run's position lives in :class:`Progress` (step, epoch, where in the epoch, the best metric
so far) rather than in local variables, so that :meth:`Trainer.snapshot` can capture a run
between two steps and :meth:`Trainer.restore` put a fresh process exactly there: with the
weights, the optimizer and scheduler, every random generator (shuffling, masking, dropout) and
that position restored, the steps that follow are the ones an uninterrupted run makes, bit for
bit on the same machine and thread count.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..metrics import LOWER_IS_BETTER
from ..modeling import PreTrainedModel
from .common import TrainingError
from .distributed import World
from .evaluation import EvalResult, eval_batches, evaluate
from .tasks import Batch, Example, Task

#: options that do not change the weights a run ends with; a resumed run may change them
_FREE_OPTIONS = frozenset({"log_every", "save_every"})


@dataclass
class TrainArgs:
    """Settings of a run (defaults: a common choice for fine-tuning)."""

    epochs: int = 3
    #: stop after this many optimizer steps (overrides ``epochs``)
    max_steps: int | None = None
    lr: float = 5e-5
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.0
    weight_decay: float = 0.01
    #: clip the gradients' global norm to this (0: no clipping)
    max_grad_norm: float = 1.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    seed: int = 42
    #: mixed precision: compute in "bfloat16" or "float16" (autocast) over the model's float32
    #: weights; float16 scales the loss against underflow. None: the model's own dtype
    precision: str | None = None
    #: evaluate every N steps (None: at the end of each epoch)
    eval_every: int | None = None
    #: "best": save when the dev metric reaches a new best; "last": save the final model
    save: str = "last"
    #: stop after this many evaluations without a better dev metric (None: never)
    patience: int | None = None
    #: report the training loss every N steps (None: about ten times a run)
    log_every: int | None = None
    #: what "best" means: a metric of the task (see ``Task.metric_names``); None: the task's
    #: main metric, else the dev loss
    metric_for_best: str | None = None
    #: hand a resumable state to ``save_state`` every N steps (None: only when stopped)
    save_every: int | None = None
    #: batch examples of similar length together (less padding), the batches in shuffled order
    #: (``xcli train`` does by default)
    group_by_length: bool = False

    def check(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1")
        for name in ("max_steps", "eval_every", "patience", "log_every", "save_every"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise TrainingError(f"{name} must be at least 1")
        if not self.lr > 0:
            raise TrainingError("the learning rate must be positive")
        if not 0 <= self.warmup_ratio <= 1:
            raise TrainingError("warmup_ratio must be between 0 and 1")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise TrainingError("weight_decay and max_grad_norm cannot be negative")
        if self.save not in ("best", "last"):
            raise TrainingError(f"save must be 'best' or 'last', not {self.save!r}")
        if self.precision not in (None, "float32", "bfloat16", "float16"):
            raise TrainingError(f"precision must be bfloat16 or float16, not {self.precision!r}")


@dataclass
class Event:
    """Progress of a run, handed to the callback.

    ``kind``: ``"start"`` (``total_steps`` known), ``"step"`` (after each optimizer step: its
    ``loss`` and learning rate), ``"log"`` (every ``log_every`` steps: the mean ``loss`` since the
    last one, the learning rate, training examples per second over all processes, ``eta``: the
    seconds the remaining steps should take at this run's pace so far), ``"eval"`` (``dev_loss``,
    ``dev_accuracy``, every dev ``metrics``, ``best``), ``"save"`` (the model was handed to
    ``save``), ``"state"`` (a resumable state was handed to ``save_state``), ``"stop"`` (early
    stopping), ``"interrupt"`` (stopped on request, state saved), ``"end"``.
    """

    kind: str
    step: int
    total_steps: int
    epoch: int
    loss: float | None = None
    lr: float | None = None
    rate: float | None = None
    dev_loss: float | None = None
    dev_accuracy: float | None = None
    metrics: dict[str, float] | None = None
    best: bool = False
    eta: float | None = None


@dataclass
class TrainResult:
    steps: int
    epochs: int
    examples: int
    #: mean training loss over the steps of the last epoch
    train_loss: float | None
    dev_loss: float | None = None
    dev_accuracy: float | None = None
    #: the last evaluation's metrics
    dev_metrics: dict[str, float] | None = None
    #: the metric that picked the best evaluation, its best value, and the dev loss then
    metric_for_best: str | None = None
    best_metric: float | None = None
    best_step: int | None = None
    best_dev_loss: float | None = None
    #: the step whose weights were saved last (None: never saved)
    saved_step: int | None = None
    stopped_early: bool = False
    #: stopped on request (``Trainer.request_stop``) before the end, its state saved
    interrupted: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class Progress:
    """Where a run stands between two optimizer steps: everything :meth:`Trainer.snapshot`
    saves besides tensors (JSON-able)."""

    step: int = 0
    epoch: int = 0
    #: the next batch of the current epoch (None: between epochs)
    position: int | None = None
    #: the shuffling generator's state before this epoch's batches were drawn
    epoch_rng: Any = None
    best: float | None = None
    best_step: int | None = None
    best_dev_loss: float | None = None
    saved_step: int | None = None
    last_eval: dict[str, Any] | None = None
    last_eval_step: int = -1
    without_gain: int = 0
    stopped: bool = False
    epoch_losses: list[float] = field(default_factory=list)


def _no_decay(model: nn.Module) -> set[int]:
    """Ids of biases and normalisation weights: AdamW leaves them undecayed."""
    skip: set[int] = set()
    for module in model.modules():
        norm = isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or "Norm" in type(module).__name__
        for name, param in module.named_parameters(recurse=False):
            if norm or "bias" in name:
                skip.add(id(param))
    return skip


class Trainer:
    """The training loop (see the package docstring).

    ``world``: this process's place in a data-parallel job (see :mod:`.distributed`); each
    process then builds the same ``Trainer`` and calls :meth:`train` with the same examples.
    """

    def __init__(self, model: PreTrainedModel, task: Task, args: TrainArgs,
                 callback: Callable[[Event], None] | None = None, world: World | None = None) -> None:
        args.check()
        self.model, self.task, self.args = model, task, args
        self.world = world or World()
        self.callback = callback or (lambda event: None)
        self.rng = random.Random(args.seed)
        self.mask_rng = torch.Generator().manual_seed(args.seed)
        params = [p for p in model.parameters() if p.requires_grad]
        skip = _no_decay(model)
        groups = [
            {"params": [p for p in params if id(p) not in skip], "weight_decay": args.weight_decay},
            {"params": [p for p in params if id(p) in skip], "weight_decay": 0.0},
        ]
        self.optimizer = _adamw([g for g in groups if g["params"]], args)
        self.params = params
        device = model.device.type
        self.autocast = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(args.precision or "")
        if self.autocast is not None and model.dtype != torch.float32:
            raise TrainingError(f"mixed precision needs float32 weights, the model's are {model.dtype}")
        self.scaler = torch.amp.GradScaler(device) if self.autocast == torch.float16 else None
        self.total_steps = 0
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        names = task.metric_names()
        self.metric = args.metric_for_best or task.main_metric or "loss"
        if self.metric not in names:
            raise TrainingError(
                f"{task.name} has no metric {self.metric!r} to pick the best checkpoint by (it has: {', '.join(names)})"
            )
        self.lower_is_better = self.metric in LOWER_IS_BETTER
        self.progress = Progress()
        self._resumed = False
        self._stop_requested = False
        self._stop_agreed = False

    def request_stop(self) -> None:
        """Ask the run to stop after the current step, saving a resumable state (safe to call
        from a signal handler: it only sets a flag)."""
        self._stop_requested = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested

    @property
    def stopping(self) -> bool:
        """Whether the run stops after this step: a stop was requested (of any process, as they
        agreed at the last step)."""
        return self._stop_agreed if self.world.active else self._stop_requested

    # -------------------------------------------------------------- batches
    def batches(self, examples: Sequence[Example], shuffle: bool = True) -> list[list[Example]]:
        """The global batches of an epoch: ``batch_size`` x the processes' count examples each
        (each process trains on its slice), shuffled by the run's generator; a task's ``group``
        keeps examples of different keys apart.

        With ``group_by_length``, the shuffled examples are taken :data:`LENGTH_WINDOW` batches
        at a time, sorted by length within that window and cut into batches, and the order of
        the batches is shuffled: a batch holds examples of similar length (little padding) while
        the epoch stays random. The same seed gives the same batches, whatever the processes.
        """
        size = self.args.batch_size * self.world.size
        order = list(range(len(examples)))
        if shuffle:
            self.rng.shuffle(order)
        by_length = shuffle and self.args.group_by_length
        if self.task.group is None and not by_length:
            return [[examples[i] for i in order[k : k + size]] for k in range(0, len(order), size)]
        groups: dict[Any, list[int]] = {}
        for i in order:
            groups.setdefault(self.task.group(examples[i]) if self.task.group is not None else None, []).append(i)
        out = []
        for indices in groups.values():
            if by_length:
                indices = _by_length(indices, examples, size * LENGTH_WINDOW)
            out.extend([examples[i] for i in indices[k : k + size]] for k in range(0, len(indices), size))
        if shuffle:
            self.rng.shuffle(out)
        return out

    def eval_batches(self, examples: Sequence[Example]) -> list[list[Example]]:
        """Dev batches of ``batch_size``, longest first (a task's ``group`` kept apart): the
        least padding; the metrics do not depend on the order (see :func:`.evaluation.eval_batches`)."""
        return [[examples[i] for i in indices] for indices in eval_batches(self.task, examples, self.args.batch_size)]

    def steps_per_epoch(self, examples: Sequence[Example]) -> int:
        n_batches = len(self.batches(examples, shuffle=False))
        return math.ceil(n_batches / self.args.grad_accum)

    def planned_steps(self, examples: Sequence[Example]) -> int:
        """Optimizer steps a run on ``examples`` makes: ``max_steps``, else ``epochs`` epochs."""
        if self.args.max_steps is not None:
            return self.args.max_steps
        return self.steps_per_epoch(examples) * self.args.epochs

    # ------------------------------------------------------------ one step
    def accumulate(self, micro_batches: Sequence[Sequence[Example]]) -> float:
        """Add the gradient of the loss over all ``micro_batches`` (as one batch) to ``.grad``.

        Each batch's mean loss is weighted by its share of the items counted, so the sum is
        the mean over the whole set. Returns that loss.

        In a data-parallel job the ``micro_batches`` are global batches: this process takes its
        slice of each, the item counts are summed over the processes before the losses are
        weighted, and the gradients and the loss are summed after (see :mod:`.distributed`).
        """
        self.model.train()
        world = self.world
        if world.active:
            size = self.args.batch_size
            micro_batches = [b[world.rank * size : (world.rank + 1) * size] for b in micro_batches]
        collated = [self.task.collate(b, self.mask_rng) for b in micro_batches if len(b)]
        items = [self.task.loss_items(b) for b in collated]
        total = sum(items)
        if world.active:
            total = int(world.sum_(torch.tensor([float(total)], dtype=torch.float64, device=self.model.device)).item())
        loss_sum = 0.0
        for batch, n in zip(collated, items):
            if n == 0:
                continue
            loss = self._forward(batch).loss.float() * (n / total)
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            loss_sum += float(loss.detach())
        if world.active:
            loss_sum = self._share_gradients(loss_sum)
        return loss_sum

    def _share_gradients(self, loss_sum: float) -> float:
        """Sum the gradients and the loss over the processes; agree on a requested stop.

        A parameter no process has a gradient for keeps none (AdamW then leaves it alone, as one
        process would); one that only some have gets zeros on the others before the sum.
        """
        params = self.params
        head = torch.tensor([loss_sum, float(self._stop_requested)] + [float(p.grad is not None) for p in params],
                            dtype=torch.float64, device=self.model.device)
        self.world.sum_(head)
        loss_sum, self._stop_agreed = float(head[0]), bool(head[1] > 0)
        shared = []
        for param, has in zip(params, head[2:].tolist()):
            if has > 0:
                if param.grad is None:
                    param.grad = torch.zeros_like(param)
                shared.append(param.grad)
        self.world.sum_tensors(shared)
        return loss_sum

    def _forward(self, batch: Batch) -> Any:
        with torch.autocast(self.model.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            return self.model(**batch, return_dict=True)

    def optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.args.max_grad_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skipped when the scaled gradients overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _schedule(self, total: int) -> None:
        warmup = math.ceil(self.args.warmup_ratio * total)

        def factor(step: int) -> float:
            if step < warmup:
                return step / max(1, warmup)
            return max(0.0, (total - step) / max(1, total - warmup))

        self.total_steps = total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)


    # ------------------------------------------------------------ evaluate
    def evaluate(self, examples: Sequence[Example]) -> EvalResult:
        """Dev loss (mean over the items the loss counts) and the task's metrics, by
        :func:`.evaluation.evaluate` (what ``xcli evaluate`` runs too): inference mode, batches
        longest first; in a data-parallel job each process evaluates every n-th batch and the
        sums and predictions are shared, so every process gets the same result.
        """
        return evaluate(self.model, self.task, examples, batch_size=self.args.batch_size, seed=self.args.seed,
                        autocast=self.autocast, world=self.world)

    # --------------------------------------------------------------- train
    def train(
        self,
        train: Sequence[Example],
        dev: Sequence[Example] | None = None,
        save: Callable[[int], None] | None = None,
        save_state: Callable[["Snapshot"], None] | None = None,
    ) -> TrainResult:
        """Train on ``train`` (from where :meth:`restore` put the run, else from the start).

        ``save(step)`` is called when the model should be written (a new best, or the end);
        ``save_state(snapshot)`` every ``save_every`` steps and when a stop was requested.
        """
        args = self.args
        if not train:
            raise TrainingError("no training examples")
        if args.save == "best" and not dev:
            raise TrainingError("saving the best checkpoint needs a dev set")
        self._data = _fingerprint(train)
        if self._resumed:
            self._check_resumable()
        total = self.planned_steps(train)
        run = _Run(self, train, dev, save, save_state, total)
        if not self._resumed:
            torch.manual_seed(args.seed)
            self._schedule(total)
        self.world.share_weights(self.model)
        return run.loop()

    # ---------------------------------------------------------- resumable state
    def snapshot(self) -> "Snapshot":
        """The run as it stands between two steps: tensors (weights, optimizer, random states) and
        JSON (position, schedule, the shuffling generator, the options and data it trains on).

        In a data-parallel job every process must call it (it gathers their random generators,
        under ``ranks``); the weights and the rest are the same on all of them."""
        tensors = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **self._generators(),
        }
        if self.world.active:
            tensors["ranks"] = self.world.gather(self._generators())
        meta = {
            "format": 1,
            "progress": asdict(self.progress),
            "rng": _jsonable(self.rng.getstate()),
            "python_rng": _jsonable(random.getstate()),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "total_steps": self.total_steps,
            "options": _options(self.args),
            "data": getattr(self, "_data", None),
            "model_class": type(self.model).__name__,
            "world_size": self.world.size,
        }
        return Snapshot(tensors, meta)

    def _generators(self) -> dict[str, Any]:
        """This process's torch generators (dropout, hidden tokens)."""
        out = {"torch_rng": torch.get_rng_state(), "mask_rng": self.mask_rng.get_state()}
        if torch.cuda.is_available() and self.model.device.type == "cuda":
            out["cuda_rng"] = torch.cuda.get_rng_state_all()
        return out

    def restore(self, snapshot: "Snapshot") -> None:
        """Put the run where ``snapshot`` was taken (before calling :meth:`train` again)."""
        meta, tensors = snapshot.meta, snapshot.tensors
        if meta.get("model_class") != type(self.model).__name__:
            raise TrainingError(f"the saved state is of a {meta.get('model_class')}, not a {type(self.model).__name__}")
        saved_world = int(meta.get("world_size", 1))
        if saved_world != self.world.size:
            raise TrainingError(
                f"the saved run ran as {_processes(saved_world)}, this one as {_processes(self.world.size)}: "
                f"resume with {saved_world} (torchrun --nproc-per-node, --nnodes)"
            )
        if self.world.active:
            tensors = {**tensors, **tensors["ranks"][self.world.rank]}
        self._saved_options, self._saved_data = meta["options"], meta["data"]
        self.model.load_state_dict(tensors["model"])
        self._schedule(int(meta["total_steps"]))
        self.optimizer.load_state_dict(tensors["optimizer"])
        if self.scheduler is not None and meta["scheduler"] is not None:
            self.scheduler.load_state_dict(meta["scheduler"])
        if self.scaler is not None and meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        torch.set_rng_state(tensors["torch_rng"])
        self.mask_rng.set_state(tensors["mask_rng"])
        if "cuda_rng" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(tensors["cuda_rng"])
        self.rng.setstate(_rng_state(meta["rng"]))
        random.setstate(_rng_state(meta["python_rng"]))
        progress = dict(meta["progress"])
        if progress.get("epoch_rng") is not None:
            progress["epoch_rng"] = _rng_state(progress["epoch_rng"])
        self.progress = Progress(**progress)
        self._resumed = True

    def _check_resumable(self) -> None:
        """Refuse to go on with other options or data than the saved run's: the result would be
        neither run's."""
        now = _options(self.args)
        changed = sorted(k for k in set(now) | set(self._saved_options) if now.get(k) != self._saved_options.get(k))
        if changed:
            raise TrainingError(f"the saved run used other options ({', '.join(changed)}): resume with the same ones")
        if self._saved_data != self._data:
            raise TrainingError("the saved run trained on other records: resume with the same --train data")


@dataclass
class Snapshot:
    """A resumable state: ``tensors`` (for ``torch.save``; loadable with ``weights_only=True``)
    and ``meta`` (for JSON)."""

    tensors: dict[str, Any]
    meta: dict[str, Any]


class _Run:
    """One call of :meth:`Trainer.train`: the loop, split into steps, evaluations and saves."""

    def __init__(self, trainer: Trainer, train: Sequence[Example], dev: Sequence[Example] | None,
                 save: Callable[[int], None] | None, save_state: Callable[[Snapshot], None] | None,
                 total: int) -> None:
        self.trainer, self.args, self.p = trainer, trainer.args, trainer.progress
        self.train, self.dev, self.save, self.save_state, self.total = train, dev, save, save_state, total
        self.callback = trainer.callback
        self.log_every = self.args.log_every or max(1, min(50, total // 10))
        self.window_losses: list[float] = []
        self.window_examples, self.window_start, self.paused = 0, time.perf_counter(), 0.0
        #: seconds spent training (evaluation left out) and steps made by this call, for the ETA
        self.train_seconds, self.steps_made = 0.0, 0

    def event(self, kind: str, **values: Any) -> None:
        self.callback(Event(kind, self.p.step, self.total, self.p.epoch, **values))

    def loop(self) -> TrainResult:
        p, args, trainer = self.p, self.args, self.trainer
        self.event("start")
        trainer.optimizer.zero_grad(set_to_none=True)
        while p.step < self.total and not p.stopped:
            if p.position is None:  # a new epoch
                p.epoch += 1
                p.epoch_losses = []
                p.epoch_rng = trainer.rng.getstate()
                p.position = 0
            else:  # resumed inside an epoch: draw its batches again, as they were drawn
                trainer.rng.setstate(p.epoch_rng)
            batches = trainer.batches(self.train)
            while p.position < len(batches):
                chunk = batches[p.position : p.position + args.grad_accum]
                self.step(chunk)
                p.position += len(chunk)
                if self.dev and self.evaluates(epoch_done=p.position >= len(batches)):
                    self.evaluate()  # before the state is saved: a resumed run never evaluates a step again
                if args.save_every is not None and p.step % args.save_every == 0:
                    self.checkpoint()
                if trainer.stopping:
                    return self.interrupt()
                if p.step >= self.total or p.stopped:
                    break
            p.position = None
        return self.finish()

    def step(self, chunk: Sequence[Sequence[Example]]) -> None:
        p, trainer = self.p, self.trainer
        began = time.perf_counter()
        loss = trainer.accumulate(chunk)
        if not math.isfinite(loss):
            raise TrainingError(f"the loss became {loss} at step {p.step + 1} (try a lower learning rate)")
        lr = trainer.optimizer.param_groups[0]["lr"]
        trainer.optimizer_step()
        p.step += 1
        self.window_losses.append(loss)
        p.epoch_losses.append(loss)
        self.window_examples += sum(len(b) for b in chunk)
        self.train_seconds += time.perf_counter() - began
        self.steps_made += 1
        eta = self.train_seconds / self.steps_made * (self.total - p.step)
        self.event("step", loss=loss, lr=lr, eta=eta)
        if p.step % self.log_every == 0 or p.step == self.total:
            elapsed = time.perf_counter() - self.window_start - self.paused
            self.event("log", loss=sum(self.window_losses) / len(self.window_losses), lr=lr,
                       rate=self.window_examples / elapsed if elapsed > 0 else None, eta=eta)
            self.window_losses, self.window_examples = [], 0
            self.window_start, self.paused = time.perf_counter(), 0.0

    def evaluates(self, epoch_done: bool) -> bool:
        """Whether the step just made is evaluated: every ``eval_every`` steps (else at the end of
        each epoch), and the last step."""
        every = self.args.eval_every
        return self.p.step >= self.total or (epoch_done if every is None else self.p.step % every == 0)

    def evaluate(self) -> None:
        """Evaluate on dev; a new best is saved (``save="best"``); patience may stop the run."""
        p, trainer = self.p, self.trainer
        began = time.perf_counter()
        result = trainer.evaluate(self.dev or [])
        p.last_eval, p.last_eval_step = result.metrics, p.step
        value = result.metrics.get(trainer.metric, math.nan)
        if p.best is None or math.isnan(p.best):
            improved = not math.isnan(value) or p.best is None
        else:
            improved = value < p.best if trainer.lower_is_better else value > p.best
        if improved:
            p.best, p.best_step, p.best_dev_loss, p.without_gain = value, p.step, result.loss, 0
        else:
            p.without_gain += 1
        self.event("eval", dev_loss=result.loss, dev_accuracy=result.accuracy, metrics=result.metrics, best=improved)
        if improved and self.args.save == "best" and self.save is not None:
            self._save()
        self.paused += time.perf_counter() - began  # the training rate leaves evaluation out
        if self.args.patience is not None and p.without_gain >= self.args.patience:
            p.stopped = True

    def _save(self) -> None:
        """Hand the model to ``save`` (process 0 only: the others' weights are the same)."""
        if self.trainer.world.main and self.save is not None:
            self.save(self.p.step)
        self.p.saved_step = self.p.step
        self.event("save")

    def checkpoint(self) -> None:
        world = self.trainer.world
        if self.save_state is None and not world.active:
            return
        snapshot = self.trainer.snapshot()  # every process: it gathers their generators
        if self.save_state is not None and world.main:
            self.save_state(snapshot)
        world.barrier()  # the others wait until it is written: none leaves (or is stopped) before
        self.event("state")

    def interrupt(self) -> TrainResult:
        self.checkpoint()
        self.event("interrupt")
        return self.result(interrupted=True)

    def finish(self) -> TrainResult:
        p = self.p
        if self.dev and p.last_eval_step != p.step:
            self.evaluate()
        if p.stopped:
            self.event("stop")
        if self.args.save == "last" and self.save is not None:
            self._save()
        self.trainer.model.eval()
        self.event("end")
        return self.result()

    def result(self, interrupted: bool = False) -> TrainResult:
        p = self.p
        last = p.last_eval or {}
        return TrainResult(
            steps=p.step, epochs=p.epoch, examples=len(self.train),
            train_loss=sum(p.epoch_losses) / len(p.epoch_losses) if p.epoch_losses else None,
            dev_loss=last.get("loss"), dev_accuracy=last.get("accuracy"), dev_metrics=p.last_eval,
            metric_for_best=self.trainer.metric if self.dev else None, best_metric=p.best, best_step=p.best_step,
            best_dev_loss=p.best_dev_loss, saved_step=p.saved_step, stopped_early=p.stopped, interrupted=interrupted,
        )


def _adamw(groups: list[dict[str, Any]], args: TrainArgs) -> torch.optim.AdamW:
    """AdamW, fused (one kernel for all parameters: several times faster on CPU) where this
    torch has it for the parameters' device and dtype, else torch's default implementation."""
    options = dict(lr=args.lr, betas=args.adam_betas, eps=args.adam_eps)
    try:
        return torch.optim.AdamW(groups, fused=True, **options)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, **options)


#: length grouping sorts the examples of this many batches at a time
LENGTH_WINDOW = 50


def _by_length(indices: list[int], examples: Sequence[Example], window: int) -> list[int]:
    """``indices`` sorted by their example's length, longest first, ``window`` at a time."""
    out: list[int] = []
    for k in range(0, len(indices), window):
        out.extend(sorted(indices[k : k + window], key=lambda i: -len(examples[i])))
    return out


def _processes(n: int) -> str:
    return "1 process" if n == 1 else f"{n} processes"


def supports_precision(precision: str | None, device: torch.device | str) -> str | None:
    """Why mixed ``precision`` ("bfloat16", "float16") cannot run on ``device``; None when it can.

    bfloat16 needs a GPU that computes in it, or a CPU with bfloat16 instructions (oneDNN's
    check: AVX-512 BF16 or AMX); float16 needs CUDA.
    """
    kind = torch.device(device).type
    if precision in (None, "float32"):
        return None
    if kind == "cuda":
        if precision == "bfloat16" and not torch.cuda.is_bf16_supported():
            return "this GPU does not compute in bfloat16"
        return None
    if precision == "float16":
        return "float16 mixed precision needs a CUDA device (use bf16 on a CPU)"
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if not torch.backends.mkldnn.is_available() or check is None or not check():
        return "this CPU has no bfloat16 instructions (AVX-512 BF16 or AMX): bf16 would be slower, not faster"
    return None


def _options(args: TrainArgs) -> dict[str, Any]:
    """The options that decide a run's weights, as JSON values."""
    return {f.name: _jsonable(getattr(args, f.name)) for f in fields(args) if f.name not in _FREE_OPTIONS}


def _fingerprint(examples: Sequence[Example]) -> str:
    """A digest of the encoded training examples: a resumed run must see the same ones."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps([example.input_ids, example.labels, example.token_type_ids]).encode())
    return digest.hexdigest()


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _rng_state(value: Any) -> Any:
    """A ``random.Random`` state back from JSON lists: ``(version, (ints...), gauss)``."""
    version, internal, gauss = value
    return (version, tuple(internal), gauss)
