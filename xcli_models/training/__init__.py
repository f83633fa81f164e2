"""Fine-tuning (or training from scratch): records become examples, examples become batches,
batches train the model.

The pieces, in the order a run uses them (one module each):

* ``load``: :func:`load_for_training` picks the model class for the task (from config.json's
  ``architectures``, or the family's class for a task asked for), loads it with its tokenizer
  and, for classification, sets the labels: the checkpoint's own, or new ones (``labels=``),
  which grow a fresh head. A directory without weights, or ``from_scratch=True``, gives a model
  whose every weight is drawn as the reference initialises that family, seeded by ``seed``.
* ``tasks``: :func:`task_for` returns the :class:`Task` of the model's head;
  ``task.encode(record)`` turns one record (a dict) into an :class:`Example` or raises
  :class:`ExampleError` (a bad record is the caller's to count and report). The tasks, the
  heads that learn them, and their records:

  - ``sequence-classification``: ``*ForSequenceClassification``; ``text`` (``text_pair``) ``label``
  - ``token-classification``: ``*ForTokenClassification``; ``tokens`` and ``labels``, one per word
  - ``causal-lm``: ``*ForCausalLM``, XLM with ``causal``, ``XLNetLMHeadModel``; ``text``
  - ``masked-lm``: XLM without ``causal``; ``text``
  - ``seq2seq``: ``*ForConditionalGeneration`` (MVP, ProphetNet); ``text`` and ``target``

  A classification label is a name from ``id2label`` or its index (a number for a one-label
  regression head, a list for a multi-label head). Word labels go to each word's first piece;
  the other pieces and the special tokens get -100 (not counted). A causal LM learns every next
  token of the text, end-of-sequence included; XLNet learns it left to right through its
  permutation masks (each token predicted from the ones before it, as it generates). A masked
  LM hides 15% of the tokens (at least one per text; 80% of them become the mask token, 10% a
  random token, 10% stay), drawn afresh every epoch. Each task names its dev metrics
  (``metric_names``, computed with :mod:`xcli_models.metrics`) and its main one.
* ``loop``: :class:`Trainer` runs the loop: shuffled batches (the same for the same seed),
  gradients accumulated over ``grad_accum`` batches, weighted by how many items each batch's
  loss counts so that accumulation gives the gradient of the whole batch; gradient clipping;
  AdamW with weight decay on everything but biases and norms; a linear warmup then a linear
  decay to zero; evaluation on a dev set (loss and the task's metrics) every ``eval_every``
  steps or each epoch; the checkpoint saved through a ``save`` callback when the dev metric
  (``metric_for_best``) reaches a new best (``save="best"``) or at the end (``"last"``);
  optional early stopping (``patience``); optional mixed precision (``precision``: autocast
  over float32 weights); a resumable :class:`Snapshot` handed to ``save_state`` every
  ``save_every`` steps and when :meth:`Trainer.request_stop` was called, which
  :meth:`Trainer.restore` continues bit for bit. Progress goes to a callback as :class:`Event`
  objects: nothing here prints.
* ``output``: :class:`CheckpointDir` writes the result beside its target and renames it into
  place at the end, so that a failed or interrupted run leaves no half-written checkpoint;
  :class:`StateDir` keeps the resumable state in ``OUT.xcli-state/``.

The losses are the models' own (the reference's definitions); dropout is active while training.
"""

from __future__ import annotations

from .common import CLASSIFICATION, IGNORE, TASKS, ExampleError, TrainingError, set_seed
from .load import Loaded, fresh_model, has_weights, load_for_training
from .loop import EvalResult, Event, Progress, Snapshot, TrainArgs, Trainer, TrainResult
from .output import CheckpointDir, StateDir, copy_tokenizer_files, state_path
from .tasks import (
    Batch, CausalLM, Example, MaskedLM, PermutationLM, Seq2Seq, SequenceClassification, Task, TokenClassification,
    task_for, task_of,
)

__all__ = [
    "CLASSIFICATION", "IGNORE", "TASKS", "Batch", "CausalLM", "CheckpointDir", "EvalResult", "Event", "Example",
    "ExampleError", "Loaded", "MaskedLM", "PermutationLM", "Progress", "Seq2Seq", "SequenceClassification",
    "Snapshot", "StateDir", "Task", "TokenClassification", "TrainArgs", "TrainResult", "Trainer", "TrainingError",
    "copy_tokenizer_files", "fresh_model", "has_weights", "load_for_training", "set_seed", "state_path", "task_for", "task_of",
]
