"""Classify: texts (and pairs) by a sequence head, tokens by a token head, choices by a multiple-choice head.

:func:`classifier_for` picks the classifier the checkpoint's head calls for:

* **sequence heads** (``XLMForSequenceClassification``, ``XLNetForSequenceClassification``,
  ``MvpForSequenceClassification``) give ``{"label", "score", "scores": {label: score}}`` for a
  text or a ``text``/``text_pair`` pair, as the reference text-classification pipeline scores
  it: ``function`` is ``softmax``, ``sigmoid`` or ``none``, chosen by default from the config
  (``problem_type`` regression: none; multi-label or one label: sigmoid; else softmax).
  ``scores`` holds every label best first, or the ``top_k`` best.
* **token heads** (``XLMForTokenClassification``, ``XLNetForTokenClassification``) give
  ``{"entities": [{"entity", "score", "word", "start", "end"}, ...]}`` as the reference
  token-classification pipeline does, with its ``aggregation`` strategies (``none`` adds each
  token's ``index``; ``simple`` groups adjacent tokens of one entity, B-/I- aware; ``first``,
  ``average``, ``max`` first make every word agree on one label) and its default of leaving
  out ``O`` tokens. ``start``/``end`` are character offsets into the text. XLNet's tokenizer
  reports them, and a token starts a new word, as in the reference for tokenizers without a
  subword prefix, when it is the first or follows a space. XLM's tokenizer (Moses + BPE) has
  no offsets; the reference then gives none and refuses the word strategies. xcli aligns each
  BPE piece with the text itself (case and accents folded as the tokenizer folds them) and
  takes the words from the BPE's own end-of-word marks (``</w>``), so XLM gets offsets and
  all five strategies (an entity of several words keeps the spaces between them).
* **multiple-choice heads** (``XLMForMultipleChoice``, ``XLNetForMultipleChoice``) take a text
  and its ``choices``; each choice is encoded as the pair (text, choice) and scored by the
  head, giving ``{"choice": best index, "scores": [softmax over the choices]}``. (There is no
  reference pipeline for this head.)

Inputs longer than ``max_length`` (by default the model's own limit, ``common.input_limit``) are
cut to it (in a pair, the longer text loses tokens first); ``truncated`` says so.

Batches hold inputs of one length (``common.map_by_length``), never padding: no pooling sees a
pad, and a record's scores are the same bits in any batch (batch invariance; multiple-choice
records share a batch whatever their lengths, and their rows are regrouped by length). XLNet is called with ``use_mems=False``: its
memory is for continuing a text, not for classifying one, and batches need none of it.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..registry import capabilities, heads_for
from .common import UnsupportedModel, collate, inference, input_limit, language, map_by_length

__all__ = [
    "AGGREGATIONS", "FUNCTIONS", "ChoiceClassifier",
    "ChoicesMissing", "SequenceClassifier", "TokenClassifier", "classifier_for", "default_function",
]

FUNCTIONS = ("softmax", "sigmoid", "none")
AGGREGATIONS = ("none", "simple", "first", "average", "max")


class ChoicesMissing(ValueError):
    """A multiple-choice record without a usable ``choices`` list."""


@dataclass
class _Encoded:
    """One input, tokenised."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    #: True when the text was cut to fit the length limit
    truncated: bool = False
    #: token classification: the text, special-token mask and character offsets
    text: str = ""
    special: list[int] = field(default_factory=list)
    offsets: list[tuple[int, int]] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class _Choices:
    """One multiple-choice record: one encoded pair per choice."""

    rows: list[_Encoded]
    truncated: bool = False

    def __len__(self) -> int:
        return max(len(r) for r in self.rows) * len(self.rows)


def classifier_for(model: Any, tokenizer: Any, **options: Any) -> "_Classifier":
    """The classifier for the checkpoint's head; options the head does not use are ignored."""
    name = type(model).__name__
    kinds = {"sequence": SequenceClassifier, "token": TokenClassifier, "choice": ChoiceClassifier}
    klass = kinds.get(capabilities(name).classify or "")
    if klass is None:
        raise UnsupportedModel(
            f"classify needs a sequence, token or multiple-choice classification head; the model is {name} "
            f"(heads that classify: {', '.join(heads_for('classify'))})"
        )
    return klass(model, tokenizer, **{k: v for k, v in options.items() if k in klass.options})


def default_function(config: Any) -> str:
    """The score function the reference pipeline applies when none is asked for."""
    problem = getattr(config, "problem_type", None)
    if problem == "regression":
        return "none"
    if problem == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    if problem == "single_label_classification" or config.num_labels > 1:
        return "softmax"
    return str(getattr(config, "function_to_apply", None) or "none")


class _Classifier:
    """What the three classifiers share: the model call and its inputs."""

    #: the keyword options this classifier takes (``classifier_for`` passes only these)
    options: tuple[str, ...] = ("batch_size", "max_length", "lang")
    kind = ""

    def __init__(
        self, model: Any, tokenizer: Any, *, batch_size: int = 32, max_length: int | None = None,
        lang: str | None = None,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.config = model.config
        self.name = type(model).__name__
        self.capabilities = capabilities(self.name)
        self.batch_size = batch_size
        self.limit = input_limit(model, tokenizer, max_length)
        self.id2label = {int(k): v for k, v in self.config.id2label.items()}
        # batches hold inputs of one length (map_by_length): padding never enters a pooled vector
        self.side = getattr(tokenizer, "padding_side", "right")
        self.lang_id = language(model, tokenizer, lang)

    def _encode(self, text: str, pair: str | None = None, offsets: bool = False) -> _Encoded:
        encoding = self.tokenizer.encode_plus(
            text, pair, truncation=True, max_length=self.limit, return_offsets=offsets
        )
        return _Encoded(
            encoding.input_ids, encoding.token_type_ids, truncated=bool(encoding.overflowing), text=text,
            special=list(encoding.special_tokens_mask or []), offsets=encoding.offsets,
        )

    def _logits(self, rows: Sequence[_Encoded]) -> torch.Tensor:
        """The model's logits for padded rows (first dimension: the rows)."""
        batch = collate(rows, self.tokenizer, device=self.model.device, side=self.side)
        with inference():
            return self.model(**self._inputs(batch)).logits.float()

    def _inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The model's keyword arguments for a collated batch: what its head declares it takes."""
        inputs: dict[str, Any] = {**batch, **dict(self.capabilities.forward_options)}
        if not self.capabilities.token_types:
            inputs.pop("token_type_ids", None)
        if self.lang_id is not None:
            inputs["langs"] = torch.full_like(batch["input_ids"], self.lang_id)
        return inputs

    def run(self, items: Sequence[Any]) -> list[dict[str, Any]]:
        """Results of prepared items, in order."""
        return map_by_length(list(items), self._run_batch, self.batch_size, group=self._group, padded=self._padded)

    _group = None
    _padded = False

    def _run_batch(self, items: list[Any]) -> list[dict[str, Any]]:
        raise NotImplementedError


# ------------------------------------------------------------------- sequences
class SequenceClassifier(_Classifier):
    """A label for each text or pair (see the module docstring)."""

    options = _Classifier.options + ("top_k", "function")
    kind = "sequence"

    def __init__(self, model: Any, tokenizer: Any, *, top_k: int | None = None, function: str | None = None,
                 **common: Any) -> None:
        super().__init__(model, tokenizer, **common)
        if function is not None and function not in FUNCTIONS:
            raise ValueError(f"unknown function {function!r} (use {', '.join(FUNCTIONS)})")
        if top_k is not None and top_k < 1:
            raise ValueError("top_k must be at least 1")
        self.function = function or default_function(self.config)
        self.top_k = top_k
        if self.capabilities.pools_at_eos:
            # MVP pools at the last </s>: every row of a batch must hold as many of them
            eos = self.config.eos_token_id
            self._group = lambda item: item.input_ids.count(eos)  # type: ignore[assignment]

    def prepare(self, text: str, text_pair: str | None = None) -> _Encoded:
        return self._encode(text, text_pair)

    def __call__(self, texts: Sequence[str], pairs: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
        pairs = pairs if pairs is not None else [None] * len(texts)
        return self.run([self.prepare(t, p) for t, p in zip(texts, pairs)])

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        if self.function == "softmax":
            return logits.softmax(dim=-1)
        if self.function == "sigmoid":
            return logits.sigmoid()
        return logits

    def _run_batch(self, items: list[_Encoded]) -> list[dict[str, Any]]:
        results = []
        for row in self.scores(self._logits(items)).tolist():
            ranked = sorted(range(len(row)), key=lambda i: row[i], reverse=True)
            best = max(range(len(row)), key=lambda i: row[i])  # the first of equal maxima, as argmax
            shown = ranked if self.top_k is None else ranked[: self.top_k]
            results.append({
                "label": self._label(best),
                "score": row[best],
                "scores": {self._label(i): row[i] for i in shown},
            })
        return results

    def _label(self, index: int) -> str:
        return self.id2label.get(index, f"LABEL_{index}")


# ---------------------------------------------------------------------- tokens
class TokenClassifier(_Classifier):
    """Entities in each text (see the module docstring)."""

    options = _Classifier.options + ("aggregation", "ignore_labels")
    kind = "token"

    def __init__(self, model: Any, tokenizer: Any, *, aggregation: str = "none",
                 ignore_labels: Sequence[str] = ("O",), **common: Any) -> None:
        super().__init__(model, tokenizer, **common)
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r} (use {', '.join(AGGREGATIONS)})")
        self.aggregation = aggregation
        self.ignore_labels = set(ignore_labels)
        self.own_offsets = not _has_offsets(tokenizer)

    def prepare(self, text: str) -> _Encoded:
        item = self._encode(text, offsets=not self.own_offsets)
        if self.own_offsets:
            pieces = [self.tokenizer.convert_ids_to_tokens(i) for i, s in zip(item.input_ids, item.special) if not s]
            spans = iter(align_pieces(self.tokenizer, text, pieces))
            item.offsets = [(0, 0) if s else next(spans) for s in item.special]
        return item

    def __call__(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        return self.run([self.prepare(t) for t in texts])

    def _run_batch(self, items: list[_Encoded]) -> list[dict[str, Any]]:
        logits = self._logits(items)  # (B, T, L)
        probs = logits.softmax(dim=-1)
        left = self.side == "left"
        width = probs.shape[1]
        results = []
        for row, item in enumerate(items):
            start = width - len(item) if left else 0
            scores = probs[row, start : start + len(item)].tolist()
            results.append({"entities": self._entities(item, scores)})
        return results

    # the reference's post-processing, on plain lists
    def _entities(self, item: _Encoded, scores: list[list[float]]) -> list[dict[str, Any]]:
        pre = self._pre_entities(item, scores)
        if self.aggregation in ("none", "simple"):
            entities = []
            for p in pre:
                best = _argmax(p["scores"])
                entities.append({
                    "entity": self.id2label[best], "score": p["scores"][best], "index": p["index"],
                    "word": p["word"], "start": p["start"], "end": p["end"],
                })
        else:
            entities = self._aggregate_words(pre)
        if self.aggregation != "none":
            entities = self._group_entities(entities)
        return [e for e in entities if e["entity"] not in self.ignore_labels]

    def _pre_entities(self, item: _Encoded, scores: list[list[float]]) -> list[dict[str, Any]]:
        tok, text = self.tokenizer, item.text
        offsets = item.offsets or [(0, 0)] * len(item)
        unk = tok.unk_token_id
        out = []
        previous: str | None = None
        for index, (token_id, special) in enumerate(zip(item.input_ids, item.special)):
            if special:
                continue
            word = tok.convert_ids_to_tokens(token_id)
            start, end = offsets[index]
            if self.own_offsets:  # BPE pieces: a word ends where a piece carries "</w>"
                is_subword = previous is not None and not previous.endswith("</w>")
            else:  # the reference's rule for tokenizers without a subword prefix
                is_subword = start > 0 and " " not in text[start - 1 : start + 1]
            previous = word
            if token_id == unk:
                word, is_subword = text[start:end], False
            out.append({"word": word, "scores": scores[index], "start": start, "end": end,
                        "index": index, "is_subword": is_subword})
        return out

    def _aggregate_words(self, pre: list[dict[str, Any]]) -> list[dict[str, Any]]:
        words: list[list[dict[str, Any]]] = []
        for p in pre:
            if words and p["is_subword"]:
                words[-1].append(p)
            else:
                words.append([p])
        return [self._aggregate_word(group) for group in words]

    def _aggregate_word(self, group: list[dict[str, Any]]) -> dict[str, Any]:
        if self.aggregation == "first":
            scores = group[0]["scores"]
        elif self.aggregation == "max":
            scores = max(group, key=lambda p: max(p["scores"]))["scores"]
        else:  # average
            scores = [_nanmean(column) for column in zip(*(p["scores"] for p in group))]
        best = _argmax(scores)
        word = {
            "entity": self.id2label[best],
            "score": scores[best],
            "word": self.tokenizer.convert_tokens_to_string([p["word"] for p in group]),
            "start": group[0]["start"],
            "end": group[-1]["end"],
        }
        if self.own_offsets:  # XLM: an entity of several words joins their pieces, not their joined texts
            word["pieces"] = [p["word"] for p in group]
        return word

    def _group_entities(self, entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
        groups: list[list[dict[str, Any]]] = []
        for entity in entities:
            bi, tag = _tag(entity["entity"])
            if groups and bi != "B" and tag == _tag(groups[-1][-1]["entity"])[1]:
                groups[-1].append(entity)
            else:
                groups.append([entity])
        return [
            {
                "entity": group[0]["entity"].split("-", 1)[-1],
                "score": _nanmean([e["score"] for e in group]),
                "word": self.tokenizer.convert_tokens_to_string([t for e in group for t in e.get("pieces", [e["word"]])]),
                "start": group[0]["start"],
                "end": group[-1]["end"],
            }
            for group in groups
        ]


def _tag(name: str) -> tuple[str, str]:
    if name.startswith("B-"):
        return "B", name[2:]
    if name.startswith("I-"):
        return "I", name[2:]
    return "I", name


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else float("nan")


def _has_offsets(tokenizer: Any) -> bool:
    from ..tokenization.base import Tokenizer

    method = getattr(type(tokenizer), "_tokenize_with_offsets", None)
    custom = getattr(type(tokenizer), "tokenize_with_offsets", None)
    return method is not Tokenizer._tokenize_with_offsets or custom is not Tokenizer.tokenize_with_offsets


def align_pieces(tokenizer: Any, text: str, pieces: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of a BPE tokenizer's pieces in ``text``, for tokenizers that give none.

    Each piece (``</w>`` dropped) is looked for from where the previous one ended, in the text
    folded as the tokenizer folds it (lower case, accents removed, when it does); only
    whitespace may lie between two pieces. A piece that cannot be found there (characters the
    tokenizer rewrote, such as "—" to "-") takes as many characters as it has, up to the next
    space; at the end of the text it gets an empty span.
    """
    fold = bool(getattr(tokenizer, "do_lower_case", False))
    special = set(getattr(tokenizer, "all_special_tokens", ()))
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        folded = _fold(ch) if fold else ch
        for c in folded or "":
            chars.append(c)
            origin.append(i)
    folded_text = "".join(chars)
    spans: list[tuple[int, int]] = []
    cursor = 0  # in folded_text
    for piece in pieces:
        target = piece if piece in special else piece.replace("</w>", "")
        if fold and piece not in special:
            target = _fold(target)
        found = folded_text.find(target, cursor) if target else -1
        if found >= 0 and not folded_text[cursor:found].strip():
            start = origin[found]
            end = origin[found + len(target) - 1] + 1
            spans.append((start, end))
            cursor = found + len(target)
        else:  # rewritten characters ("—" became "-"): take as many, up to the next space
            while cursor < len(folded_text) and folded_text[cursor].isspace():
                cursor += 1
            end = cursor
            while end < len(folded_text) and end - cursor < len(target) and not folded_text[end].isspace():
                end += 1
            if end > cursor:
                spans.append((origin[cursor], origin[end - 1] + 1))
            else:
                at = origin[cursor] if cursor < len(origin) else len(text)
                spans.append((at, at))
            cursor = end
    return spans


def _fold(text: str) -> str:
    """Lower case without accents (combining marks), as XLM's tokenizer folds text."""
    return "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")


# --------------------------------------------------------------------- choices
class ChoiceClassifier(_Classifier):
    """The best of each record's choices (see the module docstring)."""

    kind = "choice"

    def prepare(self, text: str, choices: Sequence[str]) -> _Choices:
        if not isinstance(choices, (list, tuple)) or not choices:
            raise ChoicesMissing('"choices" must be a non-empty array of strings')
        if not all(isinstance(c, str) for c in choices):
            raise ChoicesMissing('"choices" must hold strings only')
        rows = [self._encode(text, choice) for choice in choices]
        return _Choices(rows, truncated=any(r.truncated for r in rows))

    def __call__(self, texts: Sequence[str], choices: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
        return self.run([self.prepare(t, c) for t, c in zip(texts, choices)])

    _padded = True  # records of any length share a batch: their rows are regrouped below

    def _logits(self, rows: Sequence[_Encoded]) -> torch.Tensor:
        # rows of one length at a time: no padding, so a choice scores the same in any batch
        parts = map_by_length(list(rows), lambda same: list(self._rows_logits(same)), len(rows))
        return torch.stack(parts)

    def _rows_logits(self, rows: Sequence[_Encoded]) -> torch.Tensor:
        """All choices of a batch as the choices of one record: one score per row. Shape: (N,)."""
        batch = collate(rows, self.tokenizer, device=self.model.device, side=self.side)
        inputs = self._inputs({k: v[None] for k, v in batch.items()})  # (1, N, T)
        with inference():
            return self.model(**inputs).logits.float()[0]  # (N,)

    def _run_batch(self, items: list[_Choices]) -> list[dict[str, Any]]:
        logits = self._logits([row for item in items for row in item.rows]).tolist()
        results = []
        at = 0
        for item in items:
            mine = torch.tensor(logits[at : at + len(item.rows)]).softmax(dim=-1).tolist()
            at += len(item.rows)
            results.append({"choice": _argmax(mine), "scores": mine})
        return results
