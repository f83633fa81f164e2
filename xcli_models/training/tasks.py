"""Records -> examples -> model inputs: one :class:`Task` per kind of head (see the package docstring)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from .. import metrics
from ..modeling import PreTrainedModel
from ..tasks.common import length_limit, pad
from .common import IGNORE, ExampleError, TrainingError

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

    # dev metrics (see xcli_models.metrics)
    #: the metric that picks the best checkpoint when none is asked for (None: the dev loss)
    main_metric: str | None = None

    #: a language model: its dev perplexity is exp of the mean loss per predicted token
    perplexity = False

    def metric_names(self) -> list[str]:
        """Every metric :meth:`scores` gives, after the loss."""
        return ["loss", "perplexity"] if self.perplexity else ["loss"]

    def gather(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        """One ``(gold, prediction)`` pair per example of a batch, for :meth:`scores`."""
        return []

    def scores(self, pairs: Sequence[Any], loss: float) -> dict[str, float]:
        """The dev metrics from the gathered pairs and the mean loss."""
        return {"perplexity": metrics.perplexity(loss)} if self.perplexity else {}

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

    def metric_names(self) -> list[str]:
        return ["loss"] if self.kind == "regression" else ["loss", "accuracy", "macro_f1"]

    @property
    def main_metric(self) -> str | None:  # type: ignore[override]
        return {"single_label_classification": "accuracy", "multi_label_classification": "macro_f1"}.get(self.kind)

    def gather(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        if self.kind == "single_label_classification":
            return list(zip(batch["labels"].tolist(), logits.argmax(-1).tolist()))
        if self.kind == "multi_label_classification":  # a label is predicted where its logit is positive
            return list(zip((batch["labels"] > 0.5).tolist(), (logits > 0).tolist()))
        return []

    def scores(self, pairs: Sequence[Any], loss: float) -> dict[str, float]:
        """Single label: accuracy and macro-F1 over the classes. Multi-label: the share of
        examples whose set of labels is exactly right, and the mean over labels of each label's
        F1 as a yes/no decision."""
        if not pairs:
            return {}
        golds, predictions = [g for g, _ in pairs], [p for _, p in pairs]
        if self.kind == "single_label_classification":
            return {"accuracy": metrics.accuracy(golds, predictions), "macro_f1": metrics.macro_f1(golds, predictions)}
        if self.kind == "multi_label_classification":
            exact = metrics.accuracy([tuple(g) for g in golds], [tuple(p) for p in predictions])
            per_label = [
                metrics.binary_f1([g[k] for g in golds], [p[k] for p in predictions]) for k in range(self.n_labels)
            ]
            return {"accuracy": exact, "macro_f1": sum(per_label) / len(per_label)}
        return {}


class TokenClassification(Task):
    """``tokens`` (words) -> ``labels`` (one per word, on its first piece)."""

    name = "token-classification"

    def __init__(self, model: PreTrainedModel, tokenizer: Any, **options: Any) -> None:
        super().__init__(model, tokenizer, **options)
        self.label2id = {str(k): int(v) for k, v in self.config.label2id.items()}
        self.n_labels = self.config.num_labels
        self.side = tokenizer.padding_side
        #: the labels are IOB1/IOB2/BIOES tags: entity metrics apply
        self.entity_tags = metrics.is_entity_scheme(str(v) for v in self.config.id2label.values())

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
            if not word.strip():
                raise ExampleError("empty_text", f'word {i + 1} of "tokens" is empty')
            try:
                ids = self.tokenizer.convert_tokens_to_ids(self.tokenizer.tokenize(word if i == 0 else " " + word))
            except ValueError as exc:
                raise ExampleError("tokenizer_error", str(exc)) from None
            if not ids:  # a word the tokenizer drops entirely keeps no label (as the reference aligns)
                continue
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

    def metric_names(self) -> list[str]:
        return ["loss", "accuracy", *(["precision", "recall", "f1"] if self.entity_tags else [])]

    @property
    def main_metric(self) -> str | None:  # type: ignore[override]
        return "f1" if self.entity_tags else "accuracy"

    def gather(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        """Per example, the gold and predicted label of each word (its first piece)."""
        names = self.config.id2label
        counted = batch["labels"] != IGNORE
        predicted = logits.argmax(-1)
        pairs = []
        for row in range(counted.shape[0]):
            keep = counted[row]
            golds = [str(names[int(i)]) for i in batch["labels"][row][keep].tolist()]
            guesses = [str(names[int(i)]) for i in predicted[row][keep].tolist()]
            pairs.append((golds, guesses))
        return pairs

    def scores(self, pairs: Sequence[Any], loss: float) -> dict[str, float]:
        """Word accuracy; with IOB/BIOES labels, entity precision, recall and F1 (conlleval's)."""
        if not pairs:
            return {}
        golds = [g for g, _ in pairs]
        predictions = [p for _, p in pairs]
        flat_golds = [tag for sentence in golds for tag in sentence]
        flat_predictions = [tag for sentence in predictions for tag in sentence]
        out = {"accuracy": metrics.accuracy(flat_golds, flat_predictions)}
        if self.entity_tags:
            out.update(metrics.entity_scores(golds, predictions))
        return out


# ------------------------------------------------------------------ language models
class CausalLM(Task):
    """``text`` -> every next token. ``shifts``: the model compares logits t with label t + 1 itself
    (XGLM); otherwise the labels are shifted here (XLM, MVP and ProphetNet compare t with t)."""

    name = "causal-lm"
    perplexity = True

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
    perplexity = True
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
    perplexity = True

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

