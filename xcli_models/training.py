"""Fine-tuning: records become examples, examples become batches, batches train the model.

The pieces, in the order a run uses them:

* :func:`load_for_training` picks the model class for the task (from config.json's
  ``architectures``, or the family's class for a task asked for), loads it with its tokenizer and,
  for classification, sets the labels: the checkpoint's own, or new ones (``labels=``), which
  grow a fresh head.
* :func:`task_for` returns the :class:`Task` of the model's head; ``task.encode(record)`` turns one
  record (a dict) into an :class:`Example` or raises :class:`ExampleError` (a bad record is the
  caller's to count and report). The tasks, the heads that learn them, and their records:

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
  random token, 10% stay), drawn afresh every epoch.
* :class:`Trainer` runs the loop: shuffled batches (the same for the same seed), gradients
  accumulated over ``grad_accum`` batches, weighted by how many items each batch's loss counts
  so that accumulation gives the gradient of the whole batch; gradient clipping; AdamW with
  weight decay on everything but biases and norms; a linear warmup then a linear decay to zero;
  evaluation on a dev set (loss, and accuracy for classification) every ``eval_every`` steps or
  each epoch; the checkpoint saved through a ``save`` callback when the dev loss reaches a new
  best (``save="best"``) or at the end (``"last"``); optional early stopping (``patience``);
  optional mixed precision (``precision``: autocast over float32 weights). Progress goes to a
  callback as :class:`Event` objects: nothing here prints.
* :class:`CheckpointDir` writes the result beside its target and renames it into place at the
  end, so that a failed or interrupted run leaves no half-written checkpoint.

The losses are the models' own (the reference's definitions); dropout is active while training.
"""

from __future__ import annotations

import inspect
import math
import os
import random
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .auto import AutoConfig, AutoModel, family_of, model_classes
from .modeling import PreTrainedModel
from .tasks.common import length_limit, pad, pick_device

__all__ = [
    "TASKS", "CheckpointDir", "Event", "EvalResult", "Example", "ExampleError", "Task", "TrainArgs", "TrainResult",
    "Trainer", "TrainingError", "load_for_training", "set_seed", "task_for", "task_of",
]

TASKS = ("sequence-classification", "token-classification", "causal-lm", "masked-lm", "seq2seq")
CLASSIFICATION = ("sequence-classification", "token-classification")
IGNORE = -100


class TrainingError(ValueError):
    """The run cannot be set up as asked (no head for the task, labels missing, bad options)."""


class ExampleError(ValueError):
    """One record cannot become a training example. ``type`` is a short snake_case tag."""

    def __init__(self, type: str, message: str) -> None:
        super().__init__(message)
        self.type = type
        self.message = message


def set_seed(seed: int) -> None:
    """Seed Python's and torch's generators (CPU and CUDA)."""
    random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------- heads and tasks
def task_of(class_name: str, config: Any) -> str | None:
    """The task a model class learns (see the module docstring), or None when train has none for it."""
    if class_name.endswith("ForSequenceClassification"):
        return "sequence-classification"
    if class_name.endswith("ForTokenClassification"):
        return "token-classification"
    if class_name.endswith("ForConditionalGeneration"):
        return "seq2seq"
    if class_name.endswith("ForCausalLM") or class_name == "XLNetLMHeadModel":
        return "causal-lm"
    if class_name == "XLMWithLMHeadModel":
        return "causal-lm" if getattr(config, "causal", False) else "masked-lm"
    return None


def _class_for_task(path: Path, task: str, config: Any) -> type[PreTrainedModel]:
    family, data = family_of(path)
    model_type = data.get("model_type")
    classes = {
        name: cls for name, cls in sorted(model_classes(family).items())
        if cls.config_class.model_type == model_type
    }
    for name, cls in classes.items():
        if task_of(name, config) == task:
            return cls
    has = sorted({t for name in classes if (t := task_of(name, config))})
    extra = ""
    if task == "causal-lm" and "masked-lm" in has or task == "masked-lm" and "causal-lm" in has:
        extra = " (an XLM checkpoint is a causal LM when its config.json says \"causal\": true)"
    raise TrainingError(
        f"{family.name} has no {task} head{extra}; its checkpoints can learn: {', '.join(has) or 'nothing'}"
    )


@dataclass
class Loaded:
    """What :func:`load_for_training` built."""

    model: PreTrainedModel
    tokenizer: Any
    task: str
    #: head weights initialised here (not taken from the checkpoint), by reference name
    fresh: list[str] = field(default_factory=list)


def load_for_training(
    path: str | os.PathLike,
    *,
    task: str | None = None,
    labels: Sequence[str] | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = "auto",
) -> Loaded:
    """The checkpoint's model for ``task`` (None: its own head's), its tokenizer and labels.

    ``labels`` (classification only) names the classes; when they differ from the checkpoint's
    ``id2label`` the head is initialised afresh. A classification head the checkpoint lacks
    needs ``labels``. Raises :class:`TrainingError` when the checkpoint cannot learn ``task``.
    """
    from .tokenization import AutoTokenizer

    directory = Path(path)
    config = AutoConfig.from_pretrained(directory)
    own = AutoModel.class_for(directory) if config.architectures else None
    own_task = task_of(own.__name__, config) if own is not None else None
    if task is None:
        if labels and own_task not in CLASSIFICATION:  # a base or LM checkpoint: grow a classifier
            task = "sequence-classification"
        elif own_task is None:
            have = own.__name__ if own is not None else "no head (config.json lists no architectures)"
            raise TrainingError(
                f"the checkpoint holds {have}, which train cannot fine-tune; pick a task with --task "
                f"({', '.join(TASKS)}), or pass --labels to grow a sequence classifier"
            )
        else:
            task = own_task
    if task not in TASKS:
        raise TrainingError(f"unknown task {task!r} (use one of: {', '.join(TASKS)})")
    cls = own if own is not None and own_task == task else _class_for_task(directory, task, config)

    relabel = False
    if task in CLASSIFICATION:
        current = [config.id2label[i] for i in sorted(config.id2label)]
        if labels is not None:
            labels = [str(label) for label in labels]
            if len(labels) < 2 or len(set(labels)) != len(labels):
                raise TrainingError("labels must name at least two different classes")
            relabel = own_task != task or labels != current
            config.id2label = dict(enumerate(labels))
            config.label2id = {name: i for i, name in enumerate(labels)}
        elif own_task != task:
            raise TrainingError(
                f"the checkpoint holds {own.__name__ if own else 'no head'}, not a {task} head: "
                "pass --labels a,b,c to grow one"
            )
    elif labels is not None:
        raise TrainingError(f"labels apply to classification; a {task} model learns from text")

    model = cls.from_pretrained(
        directory, config=config, dtype=dtype, device=pick_device(device), ignore_mismatched_sizes=relabel
    )
    # new labels: the whole head starts afresh (not only the part whose shape changed)
    fresh = _reset_head(model) if relabel else list(model.load_report.initialized)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    return Loaded(model, tokenizer, task, fresh)


def _reset_head(model: PreTrainedModel) -> list[str]:
    """Initialise the weights outside the base model (a classifier) afresh; their reference names."""
    if not model.base_model_prefix:
        raise TrainingError(f"{type(model).__name__} has no head apart from its base model")
    prefix = model.base_model_prefix + "."
    names = [name for name, _ in model.named_parameters() if not name.startswith(prefix)]
    for name in names:
        model._init_tensor(name, model.get_parameter(name).data)
    return [model.names.to_hf(name) for name in names]


# ------------------------------------------------------------------------ examples
@dataclass
class Example:
    """One record, encoded. ``labels``: a class (int), value (float), classes (list) or per-token ids."""

    input_ids: list[int]
    labels: Any = None
    token_type_ids: list[int] | None = None
    #: 1 for special tokens (masked LM: never hidden)
    special: list[int] | None = None
    #: the input (or target) was cut to the length limit
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)


Batch = dict[str, Any]


class Task:
    """How a head learns: records -> examples -> model inputs, and what its loss counts.

    Subclasses implement :meth:`encode` and :meth:`collate`. ``side`` is where batches are
    padded; ``group(example)``, when set, keeps examples of different keys out of one batch.
    """

    name = ""

    def __init__(self, model: PreTrainedModel, tokenizer: Any, *, max_length: int | None = None,
                 lang: str | None = None, text_field: str = "text") -> None:
        self.model, self.tokenizer, self.config = model, tokenizer, model.config
        self.limit = length_limit(model, tokenizer, max_length)
        self.side = "right"
        self.group: Callable[[Example], Any] | None = None
        self.text_field = text_field
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.lang_id = None
        if lang is not None:
            if not hasattr(tokenizer, "lang_id"):
                raise TrainingError(f"lang applies to XLM models; this is a {type(model).__name__}")
            tokenizer.lang = lang
            if getattr(self.config, "use_lang_emb", False) and getattr(self.config, "n_langs", 1) > 1:
                self.lang_id = tokenizer.lang_id(lang)
        accepted = inspect.signature(model.forward).parameters
        #: switches for training: no key/value cache, no XLNet memory
        self.flags = {name: False for name in ("use_cache", "use_mems") if name in accepted}
        self.token_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())

    # what subclasses provide
    def encode(self, record: Mapping[str, Any]) -> Example:
        raise NotImplementedError

    def collate(self, examples: Sequence[Example], rng: torch.Generator | None = None) -> Batch:
        raise NotImplementedError

    def loss_items(self, batch: Batch) -> int:
        """How many items the batch's (mean) loss averages over."""
        return int((batch["labels"] != IGNORE).sum())

    def accuracy_counts(self, logits: torch.Tensor, batch: Batch) -> tuple[int, int] | None:
        """(correct, counted) predictions of a batch, for tasks with an accuracy."""
        return None

    # shared helpers
    def _text(self, record: Mapping[str, Any], name: str, optional: bool = False) -> str | None:
        value = record.get(name)
        if value is None:
            if optional:
                return None
            found = ", ".join(sorted(record)) or "none"
            raise ExampleError("missing_field", f'no "{name}" field in the record (it has: {found})')
        if not isinstance(value, str):
            raise ExampleError("wrong_type", f'"{name}" must be a string, not {_json_type(value)}')
        if not value.strip():
            raise ExampleError("empty_text", f'"{name}" is empty')
        return value

    def _encode_text(self, text: str, pair: str | None = None, **options: Any) -> Any:
        try:
            return self.tokenizer.encode_plus(
                text, pair, truncation=self.limit is not None, max_length=self.limit, **options
            )
        except ValueError as exc:  # TokenizerError: the text cannot be encoded (or cut)
            raise ExampleError("tokenizer_error", str(exc)) from None

    def _inputs(self, examples: Sequence[Example], side: str | None = None) -> Batch:
        side = side or self.side
        device = self.model.device
        ids = [e.input_ids for e in examples]
        batch: Batch = {
            "input_ids": pad(ids, self.pad_id, side=side, device=device),
            "attention_mask": pad([[1] * len(s) for s in ids], 0, side=side, device=device),
        }
        if self.token_types and all(e.token_type_ids is not None for e in examples):
            fill = int(getattr(self.tokenizer, "pad_token_type_id", 0))
            batch["token_type_ids"] = pad([e.token_type_ids for e in examples], fill, side=side, device=device)
        if self.lang_id is not None:
            batch["langs"] = torch.full_like(batch["input_ids"], self.lang_id)
        batch.update(self.flags)
        return batch


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
             dict: "an object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _label_index(value: Any, label2id: Mapping[str, int], n: int, what: str = "label") -> int:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ExampleError("wrong_type", f'"{what}" must be a label name or index, not {_json_type(value)}')
    if isinstance(value, str):
        if value in label2id:
            return label2id[value]
        if value.strip().isdigit() and int(value) < n:  # an index written as text (TSV input)
            return int(value)
        known = ", ".join(label2id)
        raise ExampleError("unknown_label", f"label {value!r} is not one of the model's labels ({known})")
    if not 0 <= value < n:
        raise ExampleError("unknown_label", f"label index {value} is outside 0..{n - 1}")
    return value


# ------------------------------------------------------------------ classification
class SequenceClassification(Task):
    """``text`` (and ``text_pair``) -> ``label``."""

    name = "sequence-classification"

    def __init__(self, model: PreTrainedModel, tokenizer: Any, **options: Any) -> None:
        super().__init__(model, tokenizer, **options)
        self.label2id = {str(k): int(v) for k, v in self.config.label2id.items()}
        self.n_labels = self.config.num_labels
        problem = self.config.problem_type
        self.kind = problem or ("regression" if self.n_labels == 1 else "single_label_classification")
        # pool where the padding does not change the pooled vector (as classify pads)
        summary = getattr(getattr(model, "sequence_summary", None), "summary_type", None)
        self.side = tokenizer.padding_side
        if summary == "first":
            self.side = "right"
        elif summary in ("last", "cls_index") and type(model).__name__.startswith("XLNet"):
            self.side = "left"
        elif summary is not None:  # a mean, or absolute positions: rows of one length only
            self.group = len
        if type(model).__name__.startswith("Mvp"):  # pooled at the last </s>: rows with as many of them
            eos = self.config.eos_token_id
            self.group = lambda example: example.input_ids.count(eos)

    def encode(self, record: Mapping[str, Any]) -> Example:
        text = self._text(record, self.text_field)
        pair = self._text(record, "text_pair", optional=True)
        if "label" not in record:
            raise ExampleError("missing_field", 'no "label" field in the record')
        label = self._label(record["label"])
        encoding = self._encode_text(text, pair)
        return Example(encoding.input_ids, label, encoding.token_type_ids, truncated=bool(encoding.overflowing))

    def _label(self, value: Any) -> Any:
        if self.kind == "regression":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ExampleError(
                    "wrong_type", f'"label" must be a number (a regression head), not {_json_type(value)}'
                )
            return float(value)
        if self.kind == "multi_label_classification":
            values = value if isinstance(value, list) else [value]
            hot = [0.0] * self.n_labels
            for item in values:
                hot[_label_index(item, self.label2id, self.n_labels)] = 1.0
            return hot
        return _label_index(value, self.label2id, self.n_labels)

    def collate(self, examples: Sequence[Example], rng: torch.Generator | None = None) -> Batch:
        batch = self._inputs(examples)
        dtype = torch.long if self.kind == "single_label_classification" else torch.float
        batch["labels"] = torch.tensor([e.labels for e in examples], dtype=dtype, device=self.model.device)
        return batch

    def loss_items(self, batch: Batch) -> int:
        return int(batch["labels"].shape[0])

    def accuracy_counts(self, logits: torch.Tensor, batch: Batch) -> tuple[int, int] | None:
        if self.kind != "single_label_classification":
            return None
        return int((logits.argmax(-1) == batch["labels"]).sum()), int(batch["labels"].numel())


class TokenClassification(Task):
    """``tokens`` (words) -> ``labels`` (one per word, on its first piece)."""

    name = "token-classification"

    def __init__(self, model: PreTrainedModel, tokenizer: Any, **options: Any) -> None:
        super().__init__(model, tokenizer, **options)
        self.label2id = {str(k): int(v) for k, v in self.config.label2id.items()}
        self.n_labels = self.config.num_labels
        self.side = tokenizer.padding_side

    def encode(self, record: Mapping[str, Any]) -> Example:
        words, tags = record.get("tokens"), record.get("labels")
        for name, value in (("tokens", words), ("labels", tags)):
            if value is None:
                raise ExampleError(
                    "missing_field", f'no "{name}" field in the record (word-level "tokens" and "labels")'
                )
            if not isinstance(value, list) or not value:
                raise ExampleError("wrong_type", f'"{name}" must be a non-empty array, not {_json_type(value)}')
        if not all(isinstance(w, str) for w in words):
            raise ExampleError("wrong_type", '"tokens" must hold strings')
        if len(words) != len(tags):
            raise ExampleError("length_mismatch", f'{len(words)} "tokens" but {len(tags)} "labels"')
        pieces: list[int] = []
        piece_labels: list[int] = []
        for i, (word, tag) in enumerate(zip(words, tags)):
            label = _label_index(tag, self.label2id, self.n_labels, what="labels")
            try:
                ids = self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(word if i == 0 else " " + word))
            except ValueError as exc:
                raise ExampleError("tokenizer_error", str(exc)) from None
            pieces.extend(ids)
            piece_labels.extend([label] + [IGNORE] * (len(ids) - 1))
        truncated = False
        if self.limit is not None:
            room = self.limit - self.tokenizer.num_special_tokens_to_add()
            truncated = len(pieces) > room
            pieces, piece_labels = pieces[: max(room, 0)], piece_labels[: max(room, 0)]
        if all(label == IGNORE for label in piece_labels):
            raise ExampleError("empty_text", "no word of the record became a token")
        special = self.tokenizer.get_special_tokens_mask(pieces)
        queue = iter(piece_labels)
        labels = [IGNORE if s else next(queue) for s in special]
        types = self.tokenizer.create_token_type_ids_from_sequences(pieces) if self.token_types else None
        return Example(self.tokenizer.build_inputs_with_special_tokens(pieces), labels, types, truncated=truncated)

    def collate(self, examples: Sequence[Example], rng: torch.Generator | None = None) -> Batch:
        batch = self._inputs(examples)
        batch["labels"] = pad([e.labels for e in examples], IGNORE, side=self.side, device=self.model.device)
        return batch

    def accuracy_counts(self, logits: torch.Tensor, batch: Batch) -> tuple[int, int] | None:
        counted = batch["labels"] != IGNORE
        return int((logits.argmax(-1)[counted] == batch["labels"][counted]).sum()), int(counted.sum())


# ------------------------------------------------------------------ language models
class CausalLM(Task):
    """``text`` -> every next token. ``shifts``: the model compares logits t with label t + 1 itself
    (XGLM); otherwise the labels are shifted here (XLM, MVP and ProphetNet compare t with t)."""

    name = "causal-lm"

    def __init__(self, model: PreTrainedModel, tokenizer: Any, **options: Any) -> None:
        super().__init__(model, tokenizer, **options)
        self.shifts = type(model).__name__.startswith("XGLM")
        self.eos = tokenizer.eos_token_id
        self.ends = {tokenizer.eos_token_id, tokenizer.sep_token_id} - {None}

    def _ids(self, record: Mapping[str, Any], special: bool = True) -> tuple[list[int], bool]:
        encoding = self._encode_text(self._text(record, self.text_field), add_special_tokens=special)
        ids = list(encoding.input_ids)
        # end with end-of-sequence, so that the model learns where a text stops
        room = self.limit is None or len(ids) < self.limit
        if self.eos is not None and (not ids or ids[-1] not in self.ends) and room:
            ids.append(self.eos)
        return ids, bool(encoding.overflowing)

    def encode(self, record: Mapping[str, Any]) -> Example:
        ids, truncated = self._ids(record)
        if len(ids) < 2:
            raise ExampleError("too_short", "the text gives fewer than two tokens: nothing to predict")
        return Example(ids, truncated=truncated)

    def collate(self, examples: Sequence[Example], rng: torch.Generator | None = None) -> Batch:
        batch = self._inputs(examples, side="right")
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE)
        if not self.shifts:
            labels = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE)], dim=1)  # label t = token t + 1
        batch["labels"] = labels
        return batch

    def loss_items(self, batch: Batch) -> int:
        labels = batch["labels"][:, 1:] if self.shifts else batch["labels"]
        return int((labels != IGNORE).sum())


class PermutationLM(CausalLM):
    """XLNet, left to right: token t is predicted by the query stream from tokens before t.

    ``perm_mask[b, i, j] = 1`` for j >= i hides token i and those after it from position i;
    ``target_mapping`` is the identity, so that every position is predicted. The first token
    has nothing before it (its query would see every position), so it is not counted.
    Shape: perm_mask and target_mapping (B, T, T); labels (B, T).
    """

    def encode(self, record: Mapping[str, Any]) -> Example:
        ids, truncated = self._ids(record, special=False)
        if len(ids) < 2:
            raise ExampleError("too_short", "the text gives fewer than two tokens: nothing to predict")
        return Example(ids, truncated=truncated)

    def collate(self, examples: Sequence[Example], rng: torch.Generator | None = None) -> Batch:
        batch = self._inputs(examples, side=self.tokenizer.padding_side)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        b, t = ids.shape
        labels = ids.masked_fill(mask == 0, IGNORE)
        first = (mask.cumsum(-1) == 1) & (mask == 1)  # each row's first real token
        batch["labels"] = labels.masked_fill(first, IGNORE)
        hidden = torch.ones(t, t, device=ids.device).triu()  # (T, T): 1 where j >= i
        batch["perm_mask"] = hidden.expand(b, t, t).contiguous()
        batch["target_mapping"] = torch.eye(t, device=ids.device).expand(b, t, t).contiguous()
        return batch

    def loss_items(self, batch: Batch) -> int:
        return int((batch["labels"] != IGNORE).sum())


class MaskedLM(Task):
    """``text`` -> its hidden tokens (XLM). Shape: labels (B, T), -100 where nothing is hidden."""

    name = "masked-lm"
    probability = 0.15

    def __init__(self, model: PreTrainedModel, tokenizer: Any, **options: Any) -> None:
        super().__init__(model, tokenizer, **options)
        self.mask_id = tokenizer.mask_token_id
        if self.mask_id is None:
            raise TrainingError("the tokenizer has no mask token: this model cannot learn as a masked LM")
        self.vocab = self.config.vocab_size

    def encode(self, record: Mapping[str, Any]) -> Example:
        encoding = self._encode_text(self._text(record, self.text_field))
        special = list(encoding.special_tokens_mask or [0] * len(encoding.input_ids))
        if all(special):
            raise ExampleError("too_short", "the text gives no token to hide")
        return Example(encoding.input_ids, None, encoding.token_type_ids, special, bool(encoding.overflowing))

    def collate(self, examples: Sequence[Example], rng: torch.Generator | None = None) -> Batch:
        batch = self._inputs(examples)
        ids = batch["input_ids"].cpu()
        special = pad([e.special or [] for e in examples], 1, side=self.side).bool()
        candidates = ~special & (batch["attention_mask"].cpu() == 1)
        draw = torch.rand(ids.shape, generator=rng)
        hidden = candidates & (draw < self.probability)
        for row in range(ids.shape[0]):  # at least one hidden token per text
            if not hidden[row].any():
                places = candidates[row].nonzero().flatten()
                pick = torch.randint(len(places), (1,), generator=rng)
                hidden[row, places[pick]] = True
        how = torch.rand(ids.shape, generator=rng)
        random_ids = torch.randint(self.vocab, ids.shape, generator=rng)
        inputs = torch.where(hidden & (how < 0.8), torch.full_like(ids, self.mask_id), ids)
        inputs = torch.where(hidden & (how >= 0.8) & (how < 0.9), random_ids, inputs)
        device = self.model.device
        batch["input_ids"] = inputs.to(device)
        batch["labels"] = ids.masked_fill(~hidden, IGNORE).to(device)
        return batch


class Seq2Seq(Task):
    """``text`` -> ``target``; the model makes its decoder inputs from the labels."""

    name = "seq2seq"

    def encode(self, record: Mapping[str, Any]) -> Example:
        source = self._encode_text(self._text(record, self.text_field))
        target = self._encode_text(self._text(record, "target"))
        truncated = bool(source.overflowing or target.overflowing)
        return Example(source.input_ids, list(target.input_ids), truncated=truncated)

    def collate(self, examples: Sequence[Example], rng: torch.Generator | None = None) -> Batch:
        batch = self._inputs(examples)
        batch.pop("token_type_ids", None)
        batch["labels"] = pad([e.labels for e in examples], IGNORE, side="right", device=self.model.device)
        return batch


_TASK_CLASSES: dict[str, type[Task]] = {
    "sequence-classification": SequenceClassification,
    "token-classification": TokenClassification,
    "causal-lm": CausalLM,
    "masked-lm": MaskedLM,
    "seq2seq": Seq2Seq,
}


def task_for(model: PreTrainedModel, tokenizer: Any, **options: Any) -> Task:
    """The :class:`Task` of the model's head. Options: ``max_length``, ``lang``, ``text_field``."""
    name = type(model).__name__
    kind = task_of(name, model.config)
    if kind is None:
        raise TrainingError(f"train cannot fine-tune a {name}")
    if name == "XLNetLMHeadModel":
        return PermutationLM(model, tokenizer, **options)
    return _TASK_CLASSES[kind](model, tokenizer, **options)


# --------------------------------------------------------------------------- the loop
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
    #: "best": save when the dev loss reaches a new best; "last": save the final model
    save: str = "last"
    #: stop after this many evaluations without a better dev loss (None: never)
    patience: int | None = None
    #: report the training loss every N steps (None: about ten times a run)
    log_every: int | None = None

    def check(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1")
        for name in ("max_steps", "eval_every", "patience", "log_every"):
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
    last one, the learning rate, training examples per second), ``"eval"`` (``dev_loss``,
    ``dev_accuracy``, ``best``), ``"save"``, ``"stop"`` (early stopping), ``"end"``.
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
    best: bool = False


@dataclass
class EvalResult:
    loss: float
    accuracy: float | None
    examples: int


@dataclass
class TrainResult:
    steps: int
    epochs: int
    examples: int
    #: mean training loss over the steps of the last epoch
    train_loss: float | None
    dev_loss: float | None = None
    dev_accuracy: float | None = None
    best_step: int | None = None
    best_dev_loss: float | None = None
    #: the step whose weights were saved last (None: never saved)
    saved_step: int | None = None
    stopped_early: bool = False

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


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
    """The training loop (see the module docstring)."""

    def __init__(self, model: PreTrainedModel, task: Task, args: TrainArgs,
                 callback: Callable[[Event], None] | None = None) -> None:
        args.check()
        self.model, self.task, self.args = model, task, args
        self.callback = callback or (lambda event: None)
        self.rng = random.Random(args.seed)
        self.mask_rng = torch.Generator().manual_seed(args.seed)
        params = [p for p in model.parameters() if p.requires_grad]
        skip = _no_decay(model)
        groups = [
            {"params": [p for p in params if id(p) not in skip], "weight_decay": args.weight_decay},
            {"params": [p for p in params if id(p) in skip], "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.AdamW(
            [g for g in groups if g["params"]], lr=args.lr, betas=args.adam_betas, eps=args.adam_eps
        )
        self.params = params
        device = model.device.type
        self.autocast = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(args.precision or "")
        if self.autocast is not None and model.dtype != torch.float32:
            raise TrainingError(f"mixed precision needs float32 weights, the model's are {model.dtype}")
        self.scaler = torch.amp.GradScaler(device) if self.autocast == torch.float16 else None
        self.total_steps = 0
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None

    # -------------------------------------------------------------- batches
    def batches(self, examples: Sequence[Example], shuffle: bool = True) -> list[list[Example]]:
        """Batches of ``batch_size`` (shuffled by the run's generator); a task's ``group`` keeps
        examples of different keys apart."""
        size = self.args.batch_size
        order = list(range(len(examples)))
        if shuffle:
            self.rng.shuffle(order)
        if self.task.group is None:
            return [[examples[i] for i in order[k : k + size]] for k in range(0, len(order), size)]
        groups: dict[Any, list[int]] = {}
        for i in order:
            groups.setdefault(self.task.group(examples[i]), []).append(i)
        out = [[examples[i] for i in g[k : k + size]] for g in groups.values() for k in range(0, len(g), size)]
        if shuffle:
            self.rng.shuffle(out)
        return out

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
        """
        self.model.train()
        collated = [self.task.collate(b, self.mask_rng) for b in micro_batches]
        items = [self.task.loss_items(b) for b in collated]
        total = sum(items)
        loss_sum = 0.0
        for batch, n in zip(collated, items):
            if n == 0:
                continue
            loss = self._forward(batch).loss.float() * (n / total)
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            loss_sum += float(loss.detach())
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
    @torch.no_grad()
    def evaluate(self, examples: Sequence[Example]) -> EvalResult:
        """Dev loss (mean over the items the loss counts) and accuracy where the task has one."""
        was_training = self.model.training
        self.model.eval()
        rng = torch.Generator().manual_seed(self.args.seed)  # the same hidden tokens at every evaluation
        loss_sum, items, correct, counted = 0.0, 0, 0, 0
        has_accuracy = False
        try:
            for chunk in self.batches(examples, shuffle=False):
                batch = self.task.collate(chunk, rng)
                n = self.task.loss_items(batch)
                if n == 0:
                    continue
                out = self._forward(batch)
                loss_sum += float(out.loss) * n
                items += n
                counts = self.task.accuracy_counts(out.logits.float(), batch)
                if counts is not None:
                    has_accuracy = True
                    correct += counts[0]
                    counted += counts[1]
        finally:
            self.model.train(was_training)
        return EvalResult(
            loss=loss_sum / items if items else float("nan"),
            accuracy=(correct / counted if counted else None) if has_accuracy else None,
            examples=len(examples),
        )

    # --------------------------------------------------------------- train
    def train(
        self,
        train: Sequence[Example],
        dev: Sequence[Example] | None = None,
        save: Callable[[int], None] | None = None,
    ) -> TrainResult:
        """Fine-tune on ``train``; ``save(step)`` is called when the model should be written."""
        args = self.args
        if not train:
            raise TrainingError("no training examples")
        if args.save == "best" and not dev:
            raise TrainingError("saving the best checkpoint needs a dev set")
        torch.manual_seed(args.seed)
        total = self.planned_steps(train)
        self._schedule(total)
        log_every = args.log_every or max(1, min(50, total // 10))
        step, epoch = 0, 0
        window_losses: list[float] = []
        epoch_losses: list[float] = []
        window_examples, window_start, paused = 0, time.perf_counter(), 0.0
        best: float | None = None
        best_step: int | None = None
        saved_step: int | None = None
        last_eval: EvalResult | None = None
        last_eval_step = -1
        without_gain = 0
        stopped = False
        self.callback(Event("start", 0, total, 0))

        def evaluate() -> bool:
            """Evaluate on dev (save a new best); True when early stopping says stop."""
            nonlocal best, best_step, saved_step, last_eval, last_eval_step, without_gain, paused
            began = time.perf_counter()
            result = self.evaluate(dev or [])
            last_eval, last_eval_step = result, step
            improved = best is None or result.loss < best
            if improved:
                best, best_step, without_gain = result.loss, step, 0
            else:
                without_gain += 1
            self.callback(Event("eval", step, total, epoch, dev_loss=result.loss, dev_accuracy=result.accuracy,
                                best=improved))
            if improved and args.save == "best" and save is not None:
                save(step)
                saved_step = step
                self.callback(Event("save", step, total, epoch))
            paused += time.perf_counter() - began  # the training rate leaves evaluation out
            return args.patience is not None and without_gain >= args.patience

        self.optimizer.zero_grad(set_to_none=True)
        while step < total and not stopped:
            epoch += 1
            epoch_losses = []
            batches = self.batches(train)
            for k in range(0, len(batches), args.grad_accum):
                chunk = batches[k : k + args.grad_accum]
                loss = self.accumulate(chunk)
                if not math.isfinite(loss):
                    raise TrainingError(f"the loss became {loss} at step {step + 1} (try a lower learning rate)")
                lr = self.optimizer.param_groups[0]["lr"]
                self.optimizer_step()
                step += 1
                window_losses.append(loss)
                epoch_losses.append(loss)
                window_examples += sum(len(b) for b in chunk)
                self.callback(Event("step", step, total, epoch, loss=loss, lr=lr))
                if step % log_every == 0 or step == total:
                    elapsed = time.perf_counter() - window_start - paused
                    self.callback(Event(
                        "log", step, total, epoch, loss=sum(window_losses) / len(window_losses), lr=lr,
                        rate=window_examples / elapsed if elapsed > 0 else None,
                    ))
                    window_losses, window_examples, window_start, paused = [], 0, time.perf_counter(), 0.0
                if dev and args.eval_every is not None and step % args.eval_every == 0:
                    stopped = evaluate()
                if step >= total or stopped:
                    break
            if dev and args.eval_every is None and not stopped and last_eval_step != step:
                stopped = evaluate()
        if dev and last_eval_step != step:
            evaluate()
        if stopped:
            self.callback(Event("stop", step, total, epoch))
        if args.save == "last" and save is not None:
            save(step)
            saved_step = step
            self.callback(Event("save", step, total, epoch))
        self.model.eval()
        self.callback(Event("end", step, total, epoch))
        return TrainResult(
            steps=step,
            epochs=epoch,
            examples=len(train),
            train_loss=sum(epoch_losses) / len(epoch_losses) if epoch_losses else None,
            dev_loss=last_eval.loss if last_eval else None,
            dev_accuracy=last_eval.accuracy if last_eval else None,
            best_step=best_step,
            best_dev_loss=best,
            saved_step=saved_step,
            stopped_early=stopped,
        )


# ------------------------------------------------------------------------ the output
class CheckpointDir:
    """A checkpoint directory written beside ``target`` and renamed into place by :meth:`commit`.

    ``save`` may run many times (a new best); each overwrites the last. An existing ``target``
    is refused unless ``overwrite``, and then replaced only when the new one is complete.
    :meth:`discard` removes the work, or keeps what was saved as ``TARGET.partial``.
    """

    def __init__(self, target: str | os.PathLike, *, overwrite: bool = False) -> None:
        self.target = Path(target)
        if self.target.exists() or self.target.is_symlink():
            if not self.target.is_dir():
                raise FileExistsError(f"{self.target} exists and is not a directory")
            if not overwrite:
                raise FileExistsError(f"{self.target} exists")
        self.work: Path | None = None
        self.saved = False

    def save(self, model: PreTrainedModel, tokenizer: Any) -> Path:
        if self.work is None:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            self.work = self.target.parent / f".{self.target.name}.xcli-{uuid.uuid4().hex[:8]}.tmp"
            self.work.mkdir()
        model.save_pretrained(self.work)
        tokenizer.save_pretrained(self.work)
        self.saved = True
        return self.work

    def commit(self) -> Path:
        """Move the saved checkpoint to ``target`` (replacing an old one only now)."""
        if self.work is None or not self.saved:
            raise RuntimeError("nothing was saved")
        for entry in self.work.iterdir():
            try:
                with open(entry, "rb") as handle:
                    os.fsync(handle.fileno())
            except OSError:
                pass
        backup = None
        if self.target.exists():
            backup = self.target.parent / f".{self.target.name}.xcli-{uuid.uuid4().hex[:8]}.old"
            os.replace(self.target, backup)
        try:
            os.replace(self.work, self.target)
        except BaseException:
            if backup is not None:
                os.replace(backup, self.target)
            raise
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        self.work = None
        return self.target

    def discard(self, keep: bool = True) -> Path | None:
        """Remove the work directory; with ``keep`` and something saved, keep it as ``TARGET.partial``."""
        if self.work is None:
            return None
        if not (keep and self.saved):
            shutil.rmtree(self.work, ignore_errors=True)
            self.work = None
            return None
        kept = self.target.with_name(self.target.name + ".partial")
        number = 1
        while kept.exists():
            kept = self.target.with_name(f"{self.target.name}.partial.{number}")
            number += 1
        os.replace(self.work, kept)
        self.work = None
        return kept
