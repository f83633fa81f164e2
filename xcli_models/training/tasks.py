"""Records -> examples -> model inputs: one :class:`Task` per kind of head (see the package docstring)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from .. import metrics
from ..modeling import PreTrainedModel
from ..registry import capabilities
from ..tasks.common import UnsupportedModel, language, length_limit, pad
from .common import IGNORE, ExampleError, TrainingError

def task_of(class_name: str, config: Any) -> str | None:
    """The task a model class learns (as its head declares it), or None when train has none for it."""
    caps = capabilities(class_name)
    if caps.causal_flag and caps.train == "causal-lm" and not getattr(config, "causal", False):
        return "masked-lm"  # an LM head that config.json's "causal" makes causal or masked (XLM)
    return caps.train


def learns_plm(class_name: str) -> bool:
    """Whether a model class also learns XLNet's permutation LM objective (``plm``)."""
    return capabilities(class_name).permutation


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
        try:
            self.lang_id = language(model, tokenizer, lang)
        except UnsupportedModel as exc:
            raise TrainingError(str(exc)) from None
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

    def finish(self, examples: list[Example]) -> list[Example]:
        """The examples of a whole file, once encoded (causal LM ``pack``: cut into blocks)."""
        return examples

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
class _Labelled(Task):
    """A task whose answers are the checkpoint's labels (``label2id``, ``num_labels``)."""

    def __init__(self, model: PreTrainedModel, tokenizer: Any, **options: Any) -> None:
        super().__init__(model, tokenizer, **options)
        self.label2id = {str(k): int(v) for k, v in self.config.label2id.items()}
        self.n_labels = self.config.num_labels


class SequenceClassification(_Labelled):
    """``text`` (and ``text_pair``) -> ``label``."""

    name = "sequence-classification"

    def __init__(self, model: PreTrainedModel, tokenizer: Any, **options: Any) -> None:
        super().__init__(model, tokenizer, **options)
        problem = self.config.problem_type
        self.kind = problem or ("regression" if self.n_labels == 1 else "single_label_classification")
        # pool where the padding does not change the pooled vector (as classify pads)
        summary = getattr(getattr(model, "sequence_summary", None), "summary_type", None)
        self.side = tokenizer.padding_side
        if summary == "first":
            self.side = "right"
        elif summary in ("last", "cls_index") and capabilities(type(model).__name__).relative_positions:
            self.side = "left"
        elif summary is not None:  # a mean, or absolute positions: rows of one length only
            self.group = len
        if capabilities(type(model).__name__).pools_at_eos:  # pooled at the last </s>: rows with as many of them
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
            if self.n_labels > 1:  # one value per output
                if not isinstance(value, list) or len(value) != self.n_labels or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
                ):
                    raise ExampleError(
                        "wrong_type", f'"label" must be an array of {self.n_labels} numbers (a regression head '
                        f"with {self.n_labels} outputs), not {_json_type(value)}"
                    )
                return [float(v) for v in value]
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
        return ["loss", "mse", "pearson", "spearman"] if self.kind == "regression" else ["loss", "accuracy", "macro_f1"]

    @property
    def main_metric(self) -> str | None:  # type: ignore[override]
        return {"single_label_classification": "accuracy", "multi_label_classification": "macro_f1"}.get(self.kind)

    def gather(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        if self.kind == "single_label_classification":
            return list(zip(batch["labels"].tolist(), logits.argmax(-1).tolist()))
        if self.kind == "multi_label_classification":  # a label is predicted where its logit is positive
            return list(zip((batch["labels"] > 0.5).tolist(), (logits > 0).tolist()))
        if self.kind == "regression":  # every output value
            return list(zip(batch["labels"].flatten().tolist(), logits.flatten().tolist()))
        return []

    def scores(self, pairs: Sequence[Any], loss: float) -> dict[str, float]:
        """Single label: accuracy and macro-F1 over the classes. Multi-label: the share of
        examples whose set of labels is exactly right, and the mean over labels of each label's
        F1 as a yes/no decision. Regression: the mean squared error, Pearson's and Spearman's
        correlations of the predicted and gold values."""
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
        if self.kind == "regression":
            return {"mse": metrics.mse(golds, predictions), "pearson": metrics.pearson(golds, predictions),
                    "spearman": metrics.spearman(golds, predictions)}
        return {}


class TokenClassification(_Labelled):
    """``tokens`` (words) -> ``labels`` (one per word, on its first piece)."""

    name = "token-classification"

    def __init__(self, model: PreTrainedModel, tokenizer: Any, **options: Any) -> None:
        super().__init__(model, tokenizer, **options)
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

    def __init__(self, model: PreTrainedModel, tokenizer: Any, *, pack: int | None = None, **options: Any) -> None:
        super().__init__(model, tokenizer, **options)
        self.shifts = capabilities(type(model).__name__).shifts_labels
        self.eos = tokenizer.eos_token_id
        self.ends = {tokenizer.eos_token_id, tokenizer.sep_token_id} - {None}
        #: blocks of this many tokens, cut from the concatenated texts (None: one example per text)
        self.pack = pack
        if pack is not None:
            if pack < 2:
                raise TrainingError("pack must be at least 2 tokens")
            if self.limit is not None and pack > self.limit:
                raise TrainingError(f"pack {pack} is longer than the model takes ({self.limit} tokens)")
            separator = self.eos if self.eos is not None else tokenizer.sep_token_id
            if separator is None:
                raise TrainingError("the tokenizer has no end-of-sequence token to put between packed texts")
            self.separator = separator

    def _piece(self, record: Mapping[str, Any]) -> Example:
        """``pack``: the text's tokens (no special tokens, not cut) and the separator after them."""
        text = self._text(record, self.text_field)
        try:
            ids = list(self.tokenizer.encode_plus(text, add_special_tokens=False).input_ids)
        except ValueError as exc:
            raise ExampleError("tokenizer_error", str(exc)) from None
        if not ids:
            raise ExampleError("empty_text", "the text gives no token")
        return Example(ids + [self.separator])

    def finish(self, examples: list[Example]) -> list[Example]:
        """``pack N``: the texts one after the other (each followed by the end-of-sequence
        token), cut into blocks of N tokens, as the reference LM scripts group texts: what is left
        after the last full block is dropped (kept as one block when there is no full block)."""
        if self.pack is None or not examples:
            return examples
        stream = [t for e in examples for t in e.input_ids]
        n = self.pack
        blocks = [stream[k : k + n] for k in range(0, len(stream) - n + 1, n)] or [stream]
        return [Example(block) for block in blocks if len(block) >= 2]

    def _ids(self, record: Mapping[str, Any], special: bool = True) -> tuple[list[int], bool]:
        encoding = self._encode_text(self._text(record, self.text_field), add_special_tokens=special)
        ids = list(encoding.input_ids)
        # end with end-of-sequence, so that the model learns where a text stops
        room = self.limit is None or len(ids) < self.limit
        if self.eos is not None and (not ids or ids[-1] not in self.ends) and room:
            ids.append(self.eos)
        return ids, bool(encoding.overflowing)

    def encode(self, record: Mapping[str, Any]) -> Example:
        if self.pack is not None:
            return self._piece(record)
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
        if self.pack is not None:
            return self._piece(record)
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

    def metric_names(self) -> list[str]:
        return [*super().metric_names(), "accuracy"]

    def gather(self, logits: torch.Tensor, batch: Batch) -> list[Any]:
        """Per text: how many of its hidden tokens the model's first guess gets right, of how many."""
        labels = batch["labels"]
        hidden = labels != IGNORE
        right = (logits.argmax(-1) == labels) & hidden
        return list(zip(right.sum(-1).tolist(), hidden.sum(-1).tolist()))

    def scores(self, pairs: Sequence[Any], loss: float) -> dict[str, float]:
        """Perplexity, and the top-1 accuracy over every hidden token (the masked, the swapped and the kept)."""
        hidden = sum(n for _, n in pairs)
        return {**super().scores(pairs, loss), "accuracy": sum(r for r, _ in pairs) / hidden if hidden else float("nan")}


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


# ------------------------------------------------------------ question answering
@dataclass
class SpanExample(Example):
    """A question and its context: one model input per window of the context (``rows``: input
    ids, token types, the labelled start and end, the CLS position, where the context sits).
    ``input_ids`` is every window's ids one after the other (what the record costs); ``labels``
    the ``[start, end]`` of each window; ``prepared`` the inference path's windows, kept for the
    dev metrics; ``answers`` the gold texts (empty: no answer)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    prepared: Any = None
    answers: list[str] = field(default_factory=list)


class QuestionAnswering(Task):
    """``question``, ``context``, ``answers`` (SQuAD layout) -> the answer's start and end token.

    The context is cut into windows by the inference path (:class:`~xcli_models.tasks.qa.QuestionAnswerer`,
    with ``doc_stride`` and ``max_length`` as its ``max_seq_len``), so that training sees the
    windows ``xcli qa`` answers from. The window that holds the whole (first) answer is labelled
    with its first and last token; every other window, and every window of a question without an
    answer, points start and end at the CLS token. Beam-search heads also get ``is_impossible``
    (1 where the labels point at CLS), ``cls_index`` and ``p_mask`` (1 on tokens that cannot be
    part of an answer: all but the context and CLS), as inference gives them. A record's windows
    travel together (``batch_size`` counts records); the loss is the mean over windows.
    Dev metrics: SQuAD exact match and F1 of the inference path's answers (a question without an
    answer scores 1 when the answer is empty, with ``handle_impossible``).
    """

    name = "question-answering"
    main_metric = "f1"

    def __init__(self, model: PreTrainedModel, tokenizer: Any, *, doc_stride: int | None = None,
                 **options: Any) -> None:
        super().__init__(model, tokenizer, **options)
        from ..tasks.qa import QAOptionError, QAOptions, QuestionAnswerer

        self.beam = capabilities(type(model).__name__).qa == "beam"
        self.side = tokenizer.padding_side
        max_length = options.get("max_length")
        self._qa_options = QAOptions(doc_stride=doc_stride, max_seq_len=max_length)
        try:
            self.qa = QuestionAnswerer(model, tokenizer, self._qa_options, lang=options.get("lang"))
        except QAOptionError as exc:
            raise TrainingError(str(exc)) from None
        self._scorer: Any = None
        self._records: list[SpanExample] = []
        self.last_answers: list[str] | None = None

    def encode(self, record: Mapping[str, Any]) -> Example:
        from ..tasks.qa import QAError

        question = self._text(record, "question")
        context = self._text(record, "context")
        golds = _squad_answers(record, context)
        try:
            prepared = self.qa.prepare(question, context)
        except QAError as exc:
            raise ExampleError(exc.kind, str(exc)) from None
        span = None
        if golds:
            text, start = golds[0]
            span = answer_tokens(prepared.spans, start, start + len(text))
            if span is None:
                raise ExampleError("answer_not_in_tokens", f"the answer {text!r} covers no token of the context")
        rows = []
        for window in prepared.windows:
            first, last = window.first, window.first + window.length - 1
            if span is not None and first <= span[0] and span[1] <= last:
                start_at, end_at = window.context_start + span[0] - first, window.context_start + span[1] - first
            else:
                start_at = end_at = window.cls
            rows.append({"input_ids": window.input_ids, "token_type_ids": window.token_type_ids, "start": start_at,
                         "end": end_at, "cls": window.cls, "context_start": window.context_start,
                         "length": window.length})
        flat = [t for row in rows for t in row["input_ids"]]
        labels = [[row["start"], row["end"]] for row in rows]
        return SpanExample(flat, labels, rows=rows, prepared=prepared, answers=[text for text, _ in golds])

    def collate(self, examples: Sequence[Example], rng: torch.Generator | None = None) -> Batch:
        self._records = list(examples)  # type: ignore[arg-type]  # for gather, which follows in evaluate
        rows = [row for e in examples for row in e.rows]  # type: ignore[attr-defined]
        batch = self._inputs([Example(r["input_ids"], None, r["token_type_ids"]) for r in rows])
        width = batch["input_ids"].shape[1]
        shift = [width - len(r["input_ids"]) if self.side == "left" else 0 for r in rows]
        device = self.model.device
        batch["start_positions"] = torch.tensor([r["start"] + s for r, s in zip(rows, shift)], device=device)
        batch["end_positions"] = torch.tensor([r["end"] + s for r, s in zip(rows, shift)], device=device)
        if self.beam:
            batch["cls_index"] = torch.tensor([r["cls"] + s for r, s in zip(rows, shift)], device=device)
            batch["is_impossible"] = torch.tensor(
                [float(r["start"] == r["cls"]) for r in rows], dtype=torch.float, device=device
            )
            p_mask = torch.ones(len(rows), width)
            for i, (r, s) in enumerate(zip(rows, shift)):
                p_mask[i, s + r["context_start"] : s + r["context_start"] + r["length"]] = 0.0
                p_mask[i, s + r["cls"]] = 0.0
            batch["p_mask"] = p_mask.to(device=device, dtype=self.model.dtype)
        return batch

    def loss_items(self, batch: Batch) -> int:
        return int(batch["start_positions"].shape[0])

    def metric_names(self) -> list[str]:
        return ["loss", "exact_match", "f1"]

    def gather(self, logits: torch.Tensor | None, batch: Batch) -> list[Any]:
        """The records of the batch (the metrics answer them through the inference path)."""
        return list(self._records)

    def scores(self, pairs: Sequence[Any], loss: float) -> dict[str, float]:
        if not pairs:
            return {}
        from ..tasks.qa import QAOptions, QuestionAnswerer

        if any(not e.answers for e in pairs):  # questions without an answer: the empty answer competes
            if self._scorer is None:
                options = QAOptions(doc_stride=self._qa_options.doc_stride, max_seq_len=self._qa_options.max_seq_len,
                                    handle_impossible=True)
                self._scorer = QuestionAnswerer(self.model, self.tokenizer, options)
                self._scorer.lang_id = self.qa.lang_id
            answerer = self._scorer
        else:
            answerer = self.qa
        results = answerer.answer([e.prepared for e in pairs])
        #: the answers given, in the order of ``pairs`` (``xcli evaluate --predictions``)
        self.last_answers = [result["answer"] for result in results]
        em = f1 = 0.0
        for example, result in zip(pairs, results):
            guess = result["answer"]
            if not example.answers:
                em += float(guess == "")
                f1 += float(guess == "")
            else:
                em += metrics.squad_exact_match(guess, example.answers)
                f1 += metrics.squad_f1(guess, example.answers)
        return {"exact_match": em / len(pairs), "f1": f1 / len(pairs)}


def _squad_answers(record: Mapping[str, Any], context: str) -> list[tuple[str, int]]:
    """``answers`` as ``(text, answer_start)`` pairs, each checked against the context."""
    answers = record.get("answers")
    if answers is None:
        raise ExampleError("missing_field", 'no "answers" field in the record ({"text": [...], "answer_start": [...]})')
    if not isinstance(answers, Mapping):
        raise ExampleError("wrong_type", f'"answers" must be an object, not {_json_type(answers)}')
    texts, starts = answers.get("text"), answers.get("answer_start")
    if not isinstance(texts, list) or not isinstance(starts, list):
        raise ExampleError("wrong_type", '"answers" must hold the arrays "text" and "answer_start"')
    if len(texts) != len(starts):
        raise ExampleError("length_mismatch", f'{len(texts)} answer "text" but {len(starts)} "answer_start"')
    out = []
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text.strip():
            raise ExampleError("wrong_type", 'an answer "text" must be a non-empty string')
        if isinstance(start, bool) or not isinstance(start, int):
            raise ExampleError("wrong_type", f'"answer_start" must hold numbers, not {_json_type(start)}')
        if start < 0 or context[start : start + len(text)] != text:
            found = context[start : start + len(text)] if 0 <= start < len(context) else ""
            raise ExampleError(
                "answer_mismatch",
                f"the answer {text!r} is not at answer_start {start} of the context (there: {found!r})",
            )
        out.append((text, start))
    return out


def answer_tokens(spans: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int] | None:
    """The first and last context token whose characters overlap ``[start, end)``; None: none does."""
    hits = [t for t, (a, b) in enumerate(spans) if a < end and b > start]
    return (hits[0], hits[-1]) if hits else None


# ------------------------------------------------------------------ multiple choice
@dataclass
class ChoiceExample(Example):
    """A question with its choices: one encoded pair per choice (``choices``, ``choice_types``);
    ``input_ids`` is all of them one after the other (what the record costs)."""

    choices: list[list[int]] = field(default_factory=list)
    choice_types: list[list[int]] | None = None


class MultipleChoice(Task):
    """``text`` (or ``question``) and ``choices`` -> ``label`` (the right choice's index, or its text).

    Each choice is encoded as a pair with the text, as ``xcli classify`` does; records with as many
    choices share a batch. Shape: input_ids (B, C, T); labels (B,). Dev metric: accuracy.
    """

    name = "multiple-choice"
    main_metric = "accuracy"

    def __init__(self, model: PreTrainedModel, tokenizer: Any, **options: Any) -> None:
        super().__init__(model, tokenizer, **options)
        self.side = tokenizer.padding_side  # XLNet pools its last token: padded on the left, as it pads
        self.group = lambda example: len(example.choices)

    def encode(self, record: Mapping[str, Any]) -> Example:
        field_name = "question" if record.get("question") is not None and self.text_field == "text" else self.text_field
        text = self._text(record, field_name)
        choices = record.get("choices")
        if choices is None:
            raise ExampleError("missing_field", 'no "choices" field in the record')
        if not isinstance(choices, list) or len(choices) < 2:
            raise ExampleError("wrong_type", '"choices" must be an array of at least two strings')
        if not all(isinstance(c, str) and c.strip() for c in choices):
            raise ExampleError("wrong_type", '"choices" must hold non-empty strings')
        if "label" not in record:
            raise ExampleError("missing_field", 'no "label" field in the record')
        value = record["label"]
        label = _label_index(value, {c: i for i, c in reversed(list(enumerate(choices)))}, len(choices))
        ids, types, truncated = [], [], False
        for choice in choices:
            encoding = self._encode_text(text, choice)
            ids.append(list(encoding.input_ids))
            types.append(encoding.token_type_ids)
            truncated = truncated or bool(encoding.overflowing)
        has_types = all(t is not None for t in types)
        return ChoiceExample([t for row in ids for t in row], label, truncated=truncated, choices=ids,
                             choice_types=types if has_types else None)

    def collate(self, examples: Sequence[Example], rng: torch.Generator | None = None) -> Batch:
        n = len(examples[0].choices)  # type: ignore[attr-defined]
        rows = [
            Example(ids, None, e.choice_types[i] if e.choice_types is not None else None)  # type: ignore[attr-defined]
            for e in examples for i, ids in enumerate(e.choices)  # type: ignore[attr-defined]
        ]
        batch = self._inputs(rows)
        for key, value in list(batch.items()):
            if isinstance(value, torch.Tensor):
                batch[key] = value.view(len(examples), n, -1)
        batch["labels"] = torch.tensor([e.labels for e in examples], device=self.model.device)
        return batch

    def loss_items(self, batch: Batch) -> int:
        return int(batch["labels"].shape[0])

    def metric_names(self) -> list[str]:
        return ["loss", "accuracy"]

    def gather(self, logits: torch.Tensor | None, batch: Batch) -> list[Any]:
        return list(zip(batch["labels"].tolist(), logits.argmax(-1).tolist())) if logits is not None else []

    def scores(self, pairs: Sequence[Any], loss: float) -> dict[str, float]:
        if not pairs:
            return {}
        return {"accuracy": metrics.accuracy([g for g, _ in pairs], [p for _, p in pairs])}


# ------------------------------------------------------------ permutation language model
class RandomPermutationLM(Task):
    """XLNet's permutation LM objective (``--task plm``), on ``text``.

    For each text a share ``predict_ratio`` of its tokens (special tokens never; at least one)
    is drawn uniformly at random to be predicted (at least one, and at least one token stays
    unpredicted), and a random factorisation order is drawn over
    them: the other tokens come first in the order (each sees every other token that is not
    predicted), then the predicted ones in random order, each seeing the context and the
    predicted tokens before it, never itself or those after it. This is the XLNet paper's
    partial prediction (predict the last 1/K of a random permutation, K = 6 for its pretraining:
    the default ratio 1/6) with single tokens rather than the span-based choice of the XLNet
    code. ``perm_mask[b, i, j] = 1``: position i may not see position j; ``target_mapping``
    (B, K, T) picks the K predicted positions; labels (B, K), -100 where a row predicts fewer.
    Drawn afresh every epoch from the run's seeded generator; the same at every evaluation.
    """

    name = "plm"
    perplexity = True

    def __init__(self, model: PreTrainedModel, tokenizer: Any, *, plm_predict_ratio: float | None = None,
                 **options: Any) -> None:
        super().__init__(model, tokenizer, **options)
        self.ratio = 1 / 6 if plm_predict_ratio is None else plm_predict_ratio
        if not 0 < self.ratio <= 1:
            raise TrainingError(f"plm_predict_ratio must be in (0, 1], not {self.ratio}")
        self.side = tokenizer.padding_side

    def encode(self, record: Mapping[str, Any]) -> Example:
        encoding = self._encode_text(self._text(record, self.text_field))
        special = list(encoding.special_tokens_mask or [0] * len(encoding.input_ids))
        if sum(1 for s in special if not s) < 2:
            raise ExampleError("too_short", "the text gives fewer than two tokens: nothing to predict from")
        return Example(encoding.input_ids, None, encoding.token_type_ids, special, bool(encoding.overflowing))

    def collate(self, examples: Sequence[Example], rng: torch.Generator | None = None) -> Batch:
        batch = self._inputs(examples)
        ids = batch["input_ids"].cpu()
        b, t = ids.shape
        special = pad([e.special or [] for e in examples], 1, side=self.side).bool()
        candidates = ~special & (batch["attention_mask"].cpu() == 1)
        perm_mask = torch.zeros(b, t, t)
        chosen: list[torch.Tensor] = []
        for row in range(b):
            places = candidates[row].nonzero().flatten()
            k = min(len(places) - 1, max(1, round(self.ratio * len(places)))) if len(places) > 1 else len(places)
            targets = places[torch.randperm(len(places), generator=rng)[:k]]  # in their factorisation order
            perm_mask[row][:, targets] = 1.0  # nobody sees a predicted token ...
            for r, i in enumerate(targets.tolist()):
                perm_mask[row, i, targets[:r]] = 0.0  # ... but those after it in the order
            chosen.append(targets)
        k_max = max(len(c) for c in chosen)
        target_mapping = torch.zeros(b, k_max, t)
        labels = torch.full((b, k_max), IGNORE, dtype=torch.long)
        for row, targets in enumerate(chosen):
            target_mapping[row, torch.arange(len(targets)), targets] = 1.0
            labels[row, : len(targets)] = ids[row, targets]
        device = self.model.device
        batch["perm_mask"] = perm_mask.to(device)
        batch["target_mapping"] = target_mapping.to(device)
        batch["labels"] = labels.to(device)
        return batch


_TASK_CLASSES: dict[str, type[Task]] = {
    "sequence-classification": SequenceClassification,
    "token-classification": TokenClassification,
    "question-answering": QuestionAnswering,
    "multiple-choice": MultipleChoice,
    "causal-lm": CausalLM,
    "masked-lm": MaskedLM,
    "plm": RandomPermutationLM,
    "seq2seq": Seq2Seq,
}

#: task options and the tasks they apply to
_TASK_OPTIONS = {"pack": ("causal-lm",), "doc_stride": ("question-answering",), "plm_predict_ratio": ("plm",)}


def task_for(model: PreTrainedModel, tokenizer: Any, *, task: str | None = None, **options: Any) -> Task:
    """The :class:`Task` of the model's head (``task``: ``"plm"`` for XLNet's permutation LM
    objective; None: the head's own). Options: ``max_length``, ``lang``, ``text_field``; ``pack``
    (causal LM), ``doc_stride`` (question answering), ``plm_predict_ratio`` (plm); an option
    left None is not used."""
    name = type(model).__name__
    kind = task_of(name, model.config)
    if kind is None:
        raise TrainingError(f"train cannot fine-tune a {name}")
    if task == "plm":
        if not learns_plm(name):
            raise TrainingError(f"the permutation LM objective (plm) is XLNet's; this is a {name}")
        kind = "plm"
    elif task is not None and task != kind:
        raise TrainingError(f"a {name} learns {kind}, not {task}")
    for option, tasks in _TASK_OPTIONS.items():
        if options.get(option) is None:
            options.pop(option, None)
        elif kind not in tasks:
            raise TrainingError(f"{option.replace('_', '-')} applies to {' and '.join(tasks)}, not {kind}")
    if kind == "causal-lm" and learns_plm(name):  # XLNet learns left to right through its permutations
        return PermutationLM(model, tokenizer, **options)
    return _TASK_CLASSES[kind](model, tokenizer, **options)
