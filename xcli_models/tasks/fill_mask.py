"""Fill-mask: the most likely tokens for each blank of a text.

A text marks each blank with ``<mask>`` (or with the model's own mask token, ``<special1>`` for
XLM). Every blank gets its own list of predictions, best first::

    [[{"token_id": 1996, "token": "the", "score": 0.41, "sequence": "..."}, ...],   # first blank
     [...]]                                                                         # second blank

One list per blank always, also for a single blank (the reference pipeline returns a bare list
for one blank and a list of lists for several; xcli keeps one shape). Each prediction is scored
as the reference fill-mask pipeline does: the softmax over the whole vocabulary at the blank
(restricted to ``targets`` afterwards, not renormalised), ``token`` is the id decoded alone, and
``sequence`` is the input with that one blank filled, decoded without special tokens when the
text has one blank and with them (other blanks included) when it has several.

How each family predicts:

* **XLM** (``XLMWithLMHeadModel``): one pass of the masked LM; ``lang`` adds the language
  embedding of that language (``langs``) to every position, as multilingual checkpoints expect.
* **MVP** (``MvpForConditionalGeneration``): as the reference pipeline runs it, the text goes to
  the encoder and, shifted right by one, to the decoder; the decoder's logits at each blank's
  position are the prediction for it.
* **XLNet** (``XLNetLMHeadModel``): the reference has no fill-mask pipeline for XLNet; xcli uses
  the permutation-LM inputs the model was trained with. ``perm_mask`` hides every blank from
  every token (``perm_mask[b, i, j] = 1`` for each blank ``j`` and all ``i``), so no position
  sees a blank's content, and ``target_mapping`` asks for one prediction per blank
  (``target_mapping[b, k, j_k] = 1``). Each blank is predicted by the query stream from the
  unmasked text only, independently of the other blanks. Padding is on the left, as XLNet's
  tokenizer pads.

Targets follow the reference: a target that is a vocabulary entry is used as is; any other is
tokenised and its first piece used instead, with a warning (collected in ``FillMask.warnings``);
one that gives no piece is dropped with a warning.

A text longer than ``max_length`` (by default the model's own limit, ``common.input_limit``) is
cut to it; a blank beyond the cut is a :class:`MaskMissing` that says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..registry import capabilities, heads_for
from .common import TaskModel, UnsupportedModel, collate, inference, input_limit, language, map_by_length

__all__ = ["GENERIC_MASK", "FillMask", "MaskMissing", "TargetError"]

#: the blank marker every model accepts
GENERIC_MASK = "<mask>"


class MaskMissing(ValueError):
    """The text has no blank to fill."""


class TargetError(ValueError):
    """``targets`` names nothing usable."""


@dataclass
class _Blanks:
    """One text, tokenised: its ids and where its blanks are."""

    input_ids: list[int]
    token_type_ids: list[int] | None
    positions: list[int]
    #: True when the text was cut to fit the length limit
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.input_ids)


class FillMask:
    """Fill the blanks of texts with a masked-LM model (see the module docstring).

    ``prepare(text)`` tokenises one text (raising :class:`MaskMissing` for a text without a
    blank), ``run(prepared)`` predicts a batch of them; ``__call__(texts)`` does both.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        top_k: int = 5,
        targets: Sequence[str] | str | None = None,
        lang: str | None = None,
        batch_size: int = 8,
        max_length: int | None = None,
    ) -> None:
        name = type(model).__name__
        if not capabilities(name).fill_mask:
            raise UnsupportedModel(
                f"fill-mask needs a masked-LM head ({', '.join(heads_for('fill-mask'))}); the model is {name}"
            )
        if tokenizer.mask_token is None:
            raise UnsupportedModel(f"the tokenizer ({type(tokenizer).__name__}) has no mask token")
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        self.model, self.tokenizer = model, tokenizer
        self.kind = name
        self.capabilities = capabilities(name)
        self.top_k = top_k
        self.batch_size = batch_size
        self.limit = input_limit(model, tokenizer, max_length)
        self.mask_id = tokenizer.mask_token_id
        self.warnings: list[str] = []
        self.lang_id = language(model, tokenizer, lang)  # before the targets: XLM tokenises by language
        self.target_ids = None if targets is None else self._target_ids(targets)

    @classmethod
    def from_task_model(cls, task: TaskModel, **options: Any) -> "FillMask":
        return cls(task.model, task.tokenizer, **options)

    # ------------------------------------------------------------ targets
    def _target_ids(self, targets: Sequence[str] | str) -> list[int]:
        tok = self.tokenizer
        vocab = tok.get_vocab()
        ids: list[int] = []
        for target in [targets] if isinstance(targets, str) else list(targets):
            index = vocab.get(target)
            if index is None:
                pieces = tok.encode(target, add_special_tokens=False)
                if not pieces:
                    self.warnings.append(f"target {target!r} gives no token: ignored")
                    continue
                index = pieces[0]
                self.warnings.append(
                    f"target {target!r} is not one token of the vocabulary: using its first piece "
                    f"{tok.convert_ids_to_tokens(index)!r}"
                )
            if index not in ids:
                ids.append(index)
        if not ids:
            raise TargetError("no usable target: give at least one word of the vocabulary")
        return ids

    # ------------------------------------------------------------- inputs
    def prepare(self, text: str) -> _Blanks:
        """Tokenise one text; its blanks may be ``<mask>`` or the model's own mask token."""
        tok = self.tokenizer
        if tok.mask_token != GENERIC_MASK:
            text = text.replace(GENERIC_MASK, tok.mask_token)
        encoding = tok.encode_plus(text, truncation=True, max_length=self.limit)
        positions = [i for i, t in enumerate(encoding.input_ids) if t == self.mask_id]
        if not positions:
            marks = GENERIC_MASK if tok.mask_token == GENERIC_MASK else f"{GENERIC_MASK} or {tok.mask_token}"
            where = f"the text's first {self.limit} tokens (the length limit)" if encoding.overflowing else "the text"
            raise MaskMissing(f"no blank to fill in {where}: mark each with {marks}")
        return _Blanks(encoding.input_ids, encoding.token_type_ids, positions, bool(encoding.overflowing))

    # -------------------------------------------------------------- model
    def __call__(self, texts: Sequence[str]) -> list[list[list[dict[str, Any]]]]:
        return self.run([self.prepare(t) for t in texts])

    def run(self, items: Sequence[_Blanks]) -> list[list[list[dict[str, Any]]]]:
        """The predictions of each prepared text: one list per blank, ``top_k`` best first."""
        return map_by_length(list(items), self._run_batch, self.batch_size)

    def _run_batch(self, items: list[_Blanks]) -> list[list[list[dict[str, Any]]]]:
        tok = self.tokenizer
        device = self.model.device
        batch = collate(items, tok, device=device)
        width = batch["input_ids"].shape[1]
        left = getattr(tok, "padding_side", "right") == "left"
        # where each text starts in the padded batch
        starts = [width - len(item) if left else 0 for item in items]
        with inference():
            probs = self._blank_probs(batch, items, starts)  # (sum of blanks, V)
        if self.target_ids is not None:
            probs = probs[:, torch.tensor(self.target_ids, device=probs.device)]
        k = min(self.top_k, probs.shape[-1])
        scores, picks = probs.float().topk(k, dim=-1)
        scores, picks = scores.tolist(), picks.tolist()
        results: list[list[list[dict[str, Any]]]] = []
        row = 0
        for item in items:
            single = len(item.positions) == 1
            per_blank = []
            for position in item.positions:
                predictions = []
                for score, pick in zip(scores[row], picks[row]):
                    token_id = self.target_ids[pick] if self.target_ids is not None else pick
                    filled = list(item.input_ids)
                    filled[position] = token_id
                    if tok.pad_token_id is not None:
                        filled = [t for t in filled if t != tok.pad_token_id]
                    predictions.append({
                        "token_id": token_id,
                        "token": tok.decode([token_id]),
                        "score": score,
                        "sequence": tok.decode(filled, skip_special_tokens=single),
                    })
                per_blank.append(predictions)
                row += 1
            results.append(per_blank)
        return results

    def _blank_probs(self, batch: dict[str, torch.Tensor], items: list[_Blanks], starts: list[int]) -> torch.Tensor:
        """Probabilities over the vocabulary at every blank, texts in order. Shape: (N blanks, V)."""
        rows = torch.tensor([b for b, item in enumerate(items) for _ in item.positions])
        cols = torch.tensor([starts[b] + p for b, item in enumerate(items) for p in item.positions])
        if self.capabilities.permutation:
            logits = self._xlnet_logits(batch, items, starts)  # (B, P, V)
            slot = torch.tensor([k for item in items for k in range(len(item.positions))])
            picked = logits[rows.to(logits.device), slot.to(logits.device)]
        else:
            inputs = {**batch, **dict(self.capabilities.forward_options)}
            if not self.capabilities.token_types:
                inputs.pop("token_type_ids", None)
            if self.lang_id is not None:
                inputs["langs"] = torch.full_like(batch["input_ids"], self.lang_id)
            logits = self.model(**inputs).logits  # (B, T, V)
            picked = logits[rows.to(logits.device), cols.to(logits.device)]
        return picked.float().softmax(dim=-1)

    def _xlnet_logits(self, batch: dict[str, torch.Tensor], items: list[_Blanks], starts: list[int]) -> torch.Tensor:
        """XLNet's prediction for each blank: blanks hidden from all, one target per blank."""
        ids = batch["input_ids"]
        b, t = ids.shape
        p = max(len(item.positions) for item in items)
        perm_mask = torch.zeros(b, t, t, dtype=torch.float, device=ids.device)
        target_mapping = torch.zeros(b, p, t, dtype=torch.float, device=ids.device)
        for row, item in enumerate(items):
            for k, position in enumerate(item.positions):
                column = starts[row] + position
                perm_mask[row, :, column] = 1.0
                target_mapping[row, k, column] = 1.0
        return self.model(
            **batch, perm_mask=perm_mask, target_mapping=target_mapping, use_mems=False
        ).logits
