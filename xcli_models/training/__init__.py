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
  - ``question-answering``: the span heads (``*ForQuestionAnsweringSimple``,
    ``MvpForQuestionAnswering``) and the beam-search heads (``XLMForQuestionAnswering``,
    ``XLNetForQuestionAnswering``); ``question``, ``context``, ``answers`` (SQuAD layout), the
    context cut into windows as ``xcli qa`` cuts it (``doc_stride``)
  - ``multiple-choice``: ``*ForMultipleChoice``; ``text`` (or ``question``), ``choices``, ``label``
  - ``causal-lm``: ``*ForCausalLM``, XLM with ``causal``, ``XLNetLMHeadModel``; ``text``
  - ``masked-lm``: XLM without ``causal``; ``text``
  - ``plm``: ``XLNetLMHeadModel`` with XLNet's permutation LM objective; ``text``
  - ``seq2seq``: ``*ForConditionalGeneration`` (MVP, ProphetNet); ``text`` and ``target``

  ``pack=N`` (causal LM) trains on blocks of N tokens cut from the concatenated texts
  (``task.finish(examples)`` makes them). ``load_for_training(tune=...)`` freezes all but the
  head (``"head"``) or all but MVP's prompts (``"prompts"``).

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
* ``evaluation``: :func:`evaluate`, the loss and the task's metrics on encoded examples (and,
  on request, each example's prediction): the Trainer's dev evaluation and ``xcli evaluate``.
* ``output``: :class:`CheckpointDir` writes the result beside its target and renames it into
  place at the end, so that a failed or interrupted run leaves no half-written checkpoint;
  :class:`StateDir` keeps the resumable state in ``OUT.xcli-state/``.
* ``distributed``: :class:`World`, a process's place in a data-parallel (torchrun) job:
  ``Trainer(..., world=distributed.from_env())`` in every process trains one model on global
  batches of ``batch_size`` x the processes, each process on its slice, the gradients summed.

The losses are the models' own (the reference's definitions); dropout is active while training.
"""

from __future__ import annotations

from .common import CLASSIFICATION, IGNORE, TASKS, ExampleError, TrainingError, set_seed
from .load import TUNE, Loaded, freeze, fresh_model, has_weights, load_for_training
from .evaluation import EvalResult, evaluate
from .loop import Event, Progress, Snapshot, TrainArgs, Trainer, TrainResult
from .output import CheckpointDir, StateDir, copy_tokenizer_files, state_path
from . import distributed
from .distributed import World
from .loop import supports_precision
from .tasks import (
    Batch, CausalLM, ChoiceExample, Example, MaskedLM, MultipleChoice, PermutationLM, QuestionAnswering,
    RandomPermutationLM, Seq2Seq, SequenceClassification, SpanExample, Task, TokenClassification, answer_tokens,
    task_for, task_of,
)

__all__ = [
    "CLASSIFICATION", "IGNORE", "TASKS", "Batch", "CausalLM", "CheckpointDir", "EvalResult", "Event", "Example",
    "ExampleError", "Loaded", "MaskedLM", "PermutationLM", "Progress", "Seq2Seq", "SequenceClassification",
    "Snapshot", "StateDir", "Task", "TokenClassification", "TrainArgs", "TrainResult", "Trainer", "TrainingError",
    "TUNE", "ChoiceExample", "MultipleChoice", "QuestionAnswering", "RandomPermutationLM", "SpanExample",
    "World", "distributed", "evaluate", "supports_precision", "answer_tokens", "freeze", "copy_tokenizer_files", "fresh_model", "has_weights", "load_for_training", "set_seed", "state_path", "task_for", "task_of",
]
