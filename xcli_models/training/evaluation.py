"""Evaluation on records with gold answers: the one implementation behind ``xcli train``'s dev
metrics (:meth:`Trainer.evaluate <xcli_models.training.Trainer.evaluate>`) and ``xcli evaluate``.

:func:`evaluate` runs a task's examples through the model in inference mode, batches longest
first (a task's ``group`` kept apart), and gives the mean loss over the items the loss counts and
the task's metrics (:meth:`Task.scores`, on :mod:`xcli_models.metrics`); with ``predictions``,
also each example's ``(gold, prediction)`` in input order (see :attr:`EvalResult.predictions`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from ..modeling import PreTrainedModel
from ..tasks.common import inference
from .distributed import World
from .tasks import Example, Task


@dataclass
class EvalResult:
    loss: float
    accuracy: float | None
    examples: int
    #: ``loss`` and the task's metrics (accuracy, macro_f1, precision/recall/f1, perplexity ...)
    metrics: dict[str, float] = field(default_factory=dict)
    #: with ``predictions=True``: per example, in input order, what the task gathered for it
    #: (classification: ``(gold, predicted)`` class index, label flags, or a list of such pairs
    #: per output value for regression; token classification: ``(gold tags, predicted tags)``
    #: per word; multiple choice: ``(gold, predicted)`` index; question answering:
    #: ``(gold answers, answer)``); None for an example the task predicts nothing for (language
    #: models: only their loss counts)
    predictions: list[Any] | None = None


def eval_batches(task: Task, examples: Sequence[Example], batch_size: int) -> list[list[int]]:
    """Indices of the evaluation batches: ``batch_size`` examples each, longest first (a task's
    ``group`` kept apart): the least padding; the metrics do not depend on the order."""
    groups: dict[Any, list[int]] = {}
    for i in range(len(examples)):
        groups.setdefault(task.group(examples[i]) if task.group is not None else None, []).append(i)
    out = []
    for indices in groups.values():
        indices = sorted(indices, key=lambda i: -len(examples[i]))
        out.extend(indices[k : k + batch_size] for k in range(0, len(indices), batch_size))
    return out


def evaluate(
    model: PreTrainedModel,
    task: Task,
    examples: Sequence[Example],
    *,
    batch_size: int = 8,
    seed: int = 42,
    autocast: torch.dtype | None = None,
    world: World | None = None,
    predictions: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> EvalResult:
    """The loss (mean over the items the loss counts) and the task's metrics on ``examples``.

    Inference mode, through the task commands' fast path, batches longest first. A masked LM
    hides the tokens drawn from ``seed`` + the batch's number (the same at every call). In a
    data-parallel job (``world``) each process evaluates every n-th batch and the sums and
    predictions are shared: every process gets the same result. ``autocast``: compute in that
    dtype over the model's weights. ``on_batch(n)`` is called after each batch of ``n``
    examples (progress). The model is left in the mode it was in.
    """
    world = world or World()
    was_training = model.training
    model.eval()
    loss_sum, items = 0.0, 0
    gathered: list[tuple[int | None, Any]] = []
    try:
        with inference():
            for k, indices in enumerate(eval_batches(task, examples, batch_size)):
                if k % world.size != world.rank:
                    continue
                chunk = [examples[i] for i in indices]
                # hidden tokens drawn per batch: the same at every evaluation, whatever the processes
                rng = torch.Generator().manual_seed(seed + k)
                batch = task.collate(chunk, rng)
                n = task.loss_items(batch)
                if n == 0:
                    if on_batch is not None:
                        on_batch(len(chunk))
                    continue
                with torch.autocast(model.device.type, dtype=autocast, enabled=autocast is not None):
                    out = model(**batch, return_dict=True)
                loss_sum += float(out.loss) * n
                items += n
                logits = getattr(out, "logits", None)  # QA heads have none: their task answers the records itself
                pairs = task.gather(logits.float() if logits is not None else None, batch)
                gathered.extend(zip(_owners(indices, len(pairs)), pairs))
                if on_batch is not None:
                    on_batch(len(chunk))
    finally:
        model.train(was_training)
    if world.active:
        sums = world.sum_(torch.tensor([loss_sum, float(items)], dtype=torch.float64, device=model.device))
        loss_sum, items = float(sums[0]), int(sums[1])
        gathered = [pair for part in world.gather(gathered) for pair in part]
    pairs = [pair for _, pair in gathered]
    loss = loss_sum / items if items else float("nan")
    metrics = {"loss": loss, **task.scores(pairs, loss)}
    result = EvalResult(loss=loss, accuracy=metrics.get("accuracy"), examples=len(examples), metrics=metrics)
    if predictions:
        result.predictions = _in_order(task, gathered, len(examples))
    return result


def _owners(indices: Sequence[int], n_pairs: int) -> list[int | None]:
    """The example each gathered pair belongs to: one pair per example, or (regression with
    several outputs) the same number of pairs for each."""
    if not indices or n_pairs == 0:
        return []
    if n_pairs % len(indices) == 0:
        per = n_pairs // len(indices)
        return [indices[j // per] for j in range(n_pairs)]
    return [None] * n_pairs


def _in_order(task: Task, gathered: Sequence[tuple[int | None, Any]], n: int) -> list[Any]:
    out: list[Any] = [None] * n
    counts = Counter(index for index, _ in gathered)
    answers = getattr(task, "last_answers", None)  # question answering: what its scores answered
    for position, (index, pair) in enumerate(gathered):
        if index is None:
            continue
        if isinstance(pair, Example):  # question answering gathers the examples themselves
            answer = answers[position] if answers is not None and position < len(answers) else None
            out[index] = (list(getattr(pair, "answers", [])), answer)
        elif counts[index] > 1:  # several output values (regression): a list of pairs
            out[index] = [*(out[index] or []), pair]
        else:
            out[index] = pair
    return out
