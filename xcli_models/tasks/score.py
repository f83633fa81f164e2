"""Scoring texts under a language model: the log-probability of each record's text.

A :class:`Scorer` wraps a loaded language model and its tokenizer. ``prepare(text, ...)`` turns
one record into a :class:`Scoring` (one sequence, or one per choice); ``run(items)`` scores a
list of them, batched, and gives per record ``{"logprob", "mean_logprob", "tokens",
"perplexity"}``, or, for a record with choices, ``{"choice", "scores", "logprobs", "tokens"}``.

Every value is a sum of log-softmax values of the model's logits (natural logarithm), computed
in float32 and summed in float64. Which tokens count, per kind of model:

* **causal** (``XGLMForCausalLM``, ``XLMWithLMHeadModel`` with ``causal: true``,
  ``MvpForCausalLM``, ``(XLM)ProphetNetForCausalLM``): the text is tokenised with the tokenizer's
  special tokens and every token after the first is scored, each from the ones before it (the
  usual ``labels = input_ids`` recipe). The first token is the condition: XGLM's ``</s>`` (so
  every text token counts), XLM's ``</s>`` (the text and the closing ``</s>`` count), MVP's
  ``<s>`` (the text and ``</s>``); (XLM-)ProphetNet adds no start token, so its first text
  token is not scored, its ``[SEP]`` is.
* **XLNet** (``XLNetLMHeadModel``), left to right: the text with its ``<sep> <cls>``; token
  ``i`` is predicted by the query stream from the tokens before it only: ``perm_mask[b, i, j] = 1``
  for ``j >= i`` (a causal permutation), ``target_mapping`` picks the scored positions. Every
  token after the first is scored, as for causal models.
* **encoder-decoder** (``MvpForConditionalGeneration``, ``(XLM)ProphetNetForConditionalGeneration``):
  the record's text goes to the encoder; its target (``<s> target </s>`` for MVP, ``target [SEP]``
  for ProphetNet) is scored token by token, every token (the end token too), the decoder reading
  it shifted right behind ``decoder_start_token_id``.
* **pseudo-log-likelihood** (``pll=True``; the masked LMs ``XLMWithLMHeadModel``,
  ``XLNetLMHeadModel``, ``MvpForConditionalGeneration``): every token of the text that is not a
  special token is masked in turn (one batch row each) and scored from all the others: the
  logits at the mask (MVP: the decoder's, reading the masked text shifted right, as fill-mask
  does; XLNet: the token hidden from all positions through ``perm_mask`` and predicted by
  ``target_mapping``, as fill-mask does).

Choices (multiple choice by likelihood): for a causal model or with ``pll``, each choice
continues the text (after a space, unless the text ends with whitespace or the choice starts
with it) and only the choice's tokens are scored, given the text: the tokens of the joined text
past those it shares with the text alone. For an encoder-decoder model each choice is a target
for the text. The best choice has the highest sum (``by="mean"``: mean per token).

Lengths: a sequence (text, text with its choice, target) longer than the limit
(``common.input_limit``: the model's positions, 512 tokens for XLNet, or ``max_length``) is
refused with :class:`TooLong`; nothing is ever truncated, since a score of part of a text would
not be the text's score.

Batching: only sequences of the same lengths (source and target) share a batch, without padding,
so a score is the same bits in any batch (``common.map_by_length``). Padding would also change
(XLM-)ProphetNet's decoder logits at the real tokens, the reference's as much as xcli's.

Nothing here prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..registry import capabilities, heads_for
from .common import UnsupportedModel, inference, input_limit, language, map_by_length, pad, position_limit

__all__ = [
    "ChoicesError", "EmptyText", "MissingTarget", "ScoreOptionError", "Scorer", "Scoring",
    "TooLong",
]

BY = ("sum", "mean")


class ScoreOptionError(ValueError):
    """Scoring options that cannot work (the message names the option)."""


class EmptyText(ValueError):
    """A text (or choice, or target) that gives no token to score."""


class TooLong(ValueError):
    """A sequence longer than the model takes."""


class MissingTarget(ValueError):
    """An encoder-decoder record without a target to score."""


class ChoicesError(ValueError):
    """A ``choices`` field that is not a non-empty list of strings."""


@dataclass
class _Sequence:
    """One sequence to score: what the model reads and which of its tokens count."""

    #: decoder-only models: the whole sequence; encoder-decoder models: the encoder's input
    input_ids: list[int]
    #: positions whose tokens are scored: of ``input_ids``, or of ``labels`` (encoder-decoder)
    scored: list[int]
    #: encoder-decoder models: the target's tokens (what the decoder predicts)
    labels: list[int] | None = None


@dataclass
class Scoring:
    """One record, ready to score: its text's sequence, or one per choice."""

    sequences: list[_Sequence]
    choices: bool = False

    def __len__(self) -> int:
        return max(len(s.input_ids) + len(s.labels or ()) for s in self.sequences)


@dataclass
class _Row:
    """One batch row: a sequence, or (pll) a sequence with one token masked."""

    input_ids: list[int]
    #: (position, token id) pairs: the token the logits predict at that position
    targets: list[tuple[int, int]]
    labels: list[int] | None = None
    #: pll: the masked position
    masked: int | None = None
    #: the (item, sequence) the row belongs to
    owner: tuple[int, int] = (0, 0)

    def __len__(self) -> int:
        return len(self.input_ids) + len(self.labels or ())


class Scorer:
    """Score texts (or targets, or choices) under a language model (see the module docstring).

    ``pll``: pseudo-log-likelihood (masked LMs); ``by``: how choices are ranked ("sum" or
    "mean" log-probability per token); ``max_length``: the longest sequence accepted.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        pll: bool = False,
        by: str = "sum",
        lang: str | None = None,
        batch_size: int = 8,
        max_length: int | None = None,
    ) -> None:
        name = type(model).__name__
        self.capabilities = caps = capabilities(name)
        if "score" not in caps.commands:
            raise UnsupportedModel(
                f"score needs a language-modelling head ({', '.join(heads_for('score'))}); the checkpoint is a {name}"
            )
        if by not in BY:
            raise ScoreOptionError(f"unknown ranking {by!r} (use one of: {', '.join(BY)})")
        if batch_size < 1:
            raise ScoreOptionError("batch_size must be at least 1")
        self.model, self.tokenizer = model, tokenizer
        self.class_name = name
        self.by = by
        self.batch_size = batch_size
        self.kind = self._kind(name, pll)
        self.limit = input_limit(model, tokenizer, max_length)
        if max_length is not None:
            self._limit_reason = "max_length"
        elif position_limit(model.config) is None:
            self._limit_reason = "the default where positions are relative; a longer max_length may be asked for"
        else:
            self._limit_reason = "its positions"
        self.lang_id = language(model, tokenizer, lang)

    def _kind(self, name: str, pll: bool) -> str:
        """"pll", "seq2seq", "xlnet" (left to right) or "causal"; a masked LM without ``pll`` is refused."""
        if pll:
            if not self.capabilities.fill_mask:
                raise UnsupportedModel(
                    f"pll masks tokens in turn: it needs a masked-LM head ({', '.join(heads_for('fill-mask'))}); "
                    f"the checkpoint is a {name}"
                )
            if self.tokenizer.mask_token_id is None:
                tokenizer = type(self.tokenizer).__name__
                raise UnsupportedModel(f"pll needs a mask token; the tokenizer ({tokenizer}) has none")
            return "pll"
        if self.capabilities.generate == "seq2seq":
            if getattr(self.model.config, "decoder_start_token_id", None) is None:
                raise ScoreOptionError(f"{name}'s config has no decoder_start_token_id: its targets cannot be scored")
            return "seq2seq"
        if self.capabilities.permutation:
            return "xlnet"
        if self.capabilities.causal_flag and not getattr(self.model.config, "causal", False):
            raise UnsupportedModel(
                "the checkpoint is a masked LM (XLMWithLMHeadModel with causal: false): it has no left-to-right "
                "likelihood; score it with pll (pseudo-log-likelihood)"
            )
        return "causal"

    @property
    def needs_target(self) -> bool:
        """Whether a record without choices needs a target (encoder-decoder models)."""
        return self.kind == "seq2seq"

    # ------------------------------------------------------------ inputs
    def prepare(self, text: str, target: str | None = None, choices: Any = None) -> Scoring:
        """Tokenise one record: its text, with its ``target`` (encoder-decoder) or its ``choices``."""
        content = self._encode(text, "the text")
        if choices is not None:
            choices = _choice_list(choices)
            if self.kind == "seq2seq":
                source = self._checked(self.tokenizer.build_inputs_with_special_tokens(content), "the text")
                sequences = [self._target(source, choice, f"choice {k}") for k, choice in enumerate(choices)]
            else:
                sequences = [self._continuation(text, content, choice, k) for k, choice in enumerate(choices)]
            return Scoring(sequences, choices=True)
        if self.kind == "seq2seq":
            if target is None:
                raise MissingTarget(
                    f'no "target" field: {self.class_name} scores a target given the text (or give "choices")'
                )
            source = self._checked(self.tokenizer.build_inputs_with_special_tokens(content), "the text")
            return Scoring([self._target(source, target, "the target")])
        ids = self._checked(self.tokenizer.build_inputs_with_special_tokens(content), "the text")
        if self.kind == "pll":
            scored = [i for i, special in enumerate(self._layout(content)) if not special]
        else:
            scored = list(range(1, len(ids)))
        if not scored:
            raise EmptyText("the text is one token: nothing follows it to score (a causal model scores each token "
                            "from the ones before it)")
        return Scoring([_Sequence(ids, scored)])

    def _encode(self, text: str, what: str) -> list[int]:
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if not ids:
            raise EmptyText(f"{what} gives no token to score" + (" (it is empty)" if not text else ""))
        return list(ids)

    def _layout(self, content: list[int]) -> list[int]:
        """1 for each special token the tokenizer puts around ``content``, 0 for its own tokens."""
        return list(self.tokenizer.get_special_tokens_mask(content))

    def _checked(self, ids: list[int], what: str) -> list[int]:
        if len(ids) > self.limit:
            raise TooLong(
                f"{what} is {len(ids)} tokens: {self.class_name} takes at most {self.limit} ({self._limit_reason}); "
                "a text is never truncated, its score would not be the text's"
            )
        return ids

    def _target(self, source: list[int], target: str, what: str) -> _Sequence:
        labels = self._checked(self.tokenizer.build_inputs_with_special_tokens(self._encode(target, what)), what)
        return _Sequence(source, list(range(len(labels))), labels)

    def _continuation(self, text: str, context: list[int], choice: str, k: int) -> _Sequence:
        """``choice`` after ``text``: the joined sequence, only the choice's tokens scored."""
        self._encode(choice, f"choice {k}")  # refuses an empty choice
        joiner = "" if text[-1:].isspace() or choice[:1].isspace() else " "
        content = self._encode(text + joiner + choice, f"the text with choice {k}")
        shared = 0
        while shared < min(len(context), len(content)) and context[shared] == content[shared]:
            shared += 1
        ids = self._checked(self.tokenizer.build_inputs_with_special_tokens(content), f"the text with choice {k}")
        lead = self._layout(content).index(0)
        scored = [p for p in range(lead + shared, lead + len(content)) if p > 0 or self.kind == "pll"]
        if not scored:
            raise EmptyText(f"choice {k} gives no token of its own after the text")
        return _Sequence(ids, scored)

    # ------------------------------------------------------------- model
    def __call__(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        return self.run([self.prepare(t) for t in texts])

    def run(self, items: Sequence[Scoring]) -> list[dict[str, Any]]:
        """One result per prepared record, in order (see the module docstring)."""
        rows = [row for i, item in enumerate(items) for row in self._rows(i, item)]
        # only rows of one shape share a batch: no padding, so a score is the same bits in any batch
        per_row = map_by_length(rows, self._run_batch, self.batch_size, group=_shape)
        parts: dict[tuple[int, int], list[float]] = {}
        for row, values in zip(rows, per_row):
            parts.setdefault(row.owner, []).extend(values)
        results = []
        for i, item in enumerate(items):
            totals = [(math.fsum(parts[(i, j)]), len(parts[(i, j)])) for j in range(len(item.sequences))]
            results.append(self._result(item, totals))
        return results

    def _result(self, item: Scoring, totals: list[tuple[float, int]]) -> dict[str, Any]:
        if not item.choices:
            logprob, n = totals[0]
            mean = logprob / n
            return {"logprob": logprob, "mean_logprob": mean, "tokens": n, "perplexity": _exp(-mean)}
        means = [s / n for s, n in totals]
        scores = [s for s, _ in totals] if self.by == "sum" else means
        best = max(range(len(scores)), key=lambda k: scores[k])
        return {"choice": best, "scores": scores, "logprobs": [s for s, _ in totals], "tokens": [n for _, n in totals]}

    def _rows(self, index: int, item: Scoring) -> list[_Row]:
        rows = []
        for j, seq in enumerate(item.sequences):
            owner = (index, j)
            if self.kind == "pll":
                mask = self.tokenizer.mask_token_id
                for p in seq.scored:
                    masked = [mask if q == p else t for q, t in enumerate(seq.input_ids)]
                    rows.append(_Row(masked, [(p, seq.input_ids[p])], masked=p, owner=owner))
            elif self.kind == "seq2seq":
                assert seq.labels is not None
                rows.append(_Row(seq.input_ids, [(p, seq.labels[p]) for p in seq.scored], seq.labels, owner=owner))
            else:
                rows.append(_Row(seq.input_ids, [(p, seq.input_ids[p]) for p in seq.scored], owner=owner))
        return rows

    def _run_batch(self, rows: list[_Row]) -> list[list[float]]:
        """The log-probability of each row's target tokens, in order."""
        device = self.model.device
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = pad([r.input_ids for r in rows], pad_id, device=device)
        mask = pad([[1] * len(r.input_ids) for r in rows], 0, device=device)
        with inference():
            logits, where = self._logits(rows, ids, mask)
            index = torch.tensor(where, device=logits.device)
            tokens = torch.tensor([t for r in rows for _, t in r.targets], device=logits.device)
            picked = logits[index[:, 0], index[:, 1]].float()  # (N targets, V)
            values = picked.gather(-1, tokens[:, None])[:, 0] - picked.logsumexp(-1)
        flat = values.double().tolist()
        out, at = [], 0
        for r in rows:
            out.append(flat[at: at + len(r.targets)])
            at += len(r.targets)
        return out

    def _logits(self, rows: list[_Row], ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, list[list[int]]]:
        """The model's logits and, per target in row order, the [row, slot] of the logits predicting it."""
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        if self.lang_id is not None:
            inputs["langs"] = torch.full_like(ids, self.lang_id)
        if self.kind == "xlnet" or (self.kind == "pll" and self.capabilities.permutation):
            return self._xlnet_logits(rows, inputs)
        if self.kind == "seq2seq":
            labels = pad([r.labels or [] for r in rows], self._pad_id(), device=ids.device)
            inputs["decoder_input_ids"] = self._shift_right(labels)
            inputs["use_cache"] = False
        inputs.update(self.capabilities.forward_options)  # MVP: no cache
        logits = self.model(**inputs).logits  # (B, T, V)
        shift = 1 if self.kind == "causal" else 0  # a causal model's logits at p - 1 predict token p
        where = [[b, p - shift] for b, r in enumerate(rows) for p, _ in r.targets]
        return logits, where

    def _xlnet_logits(self, rows: list[_Row], inputs: dict[str, Any]) -> tuple[torch.Tensor, list[list[int]]]:
        """XLNet's predictions of the targets: left to right (a causal ``perm_mask``), or (pll) the
        masked token hidden from every position. Logits (B, P, V): one slot per target."""
        ids = inputs["input_ids"]
        b, t = ids.shape
        p = max(len(r.targets) for r in rows)
        if self.kind == "xlnet":  # position i sees the tokens before it only
            perm_mask = torch.ones(t, t, device=ids.device).triu().expand(b, t, t).contiguous()
        else:
            perm_mask = torch.zeros(b, t, t, device=ids.device)
            for row, r in enumerate(rows):
                perm_mask[row, :, r.masked] = 1.0
        target_mapping = torch.zeros(b, p, t, device=ids.device)
        for row, r in enumerate(rows):
            for k, (position, _) in enumerate(r.targets):
                target_mapping[row, k, position] = 1.0
        logits = self.model(**inputs, perm_mask=perm_mask, target_mapping=target_mapping, use_mems=False).logits
        where = [[row, k] for row, r in enumerate(rows) for k in range(len(r.targets))]
        return logits, where

    def _pad_id(self) -> int:
        config = self.model.config
        pad_id = getattr(config, "pad_token_id", None)
        if pad_id is None:
            pad_id = self.tokenizer.pad_token_id
        return int(pad_id) if pad_id is not None else 0

    def _shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        """The decoder's input: ``decoder_start_token_id``, then the labels but the last."""
        shifted = labels.new_full(labels.shape, int(self.model.config.decoder_start_token_id))
        shifted[:, 1:] = labels[:, :-1]
        return shifted


def _shape(row: _Row) -> tuple[int, int]:
    return len(row.input_ids), len(row.labels or ())


def _choice_list(choices: Any) -> list[str]:
    if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
        raise ChoicesError('"choices" must be a non-empty array of strings')
    return list(choices)


def _exp(value: float) -> float:
    try:
        return math.exp(value)
    except OverflowError:
        return math.inf
