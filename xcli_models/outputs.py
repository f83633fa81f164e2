"""Output objects: named fields, readable by attribute, by key, or by position.

``out.logits``, ``out["logits"]`` and ``out[0]`` all work; positions count only
the fields that are set, as the reference's outputs do, so ``return_dict=False``
callers get the same tuple.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterator

import torch


class ModelOutput:
    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(v for v in (getattr(self, f.name) for f in fields(self)) if v is not None)

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def __getitem__(self, key: str | int | slice) -> Any:
        if isinstance(key, str):
            if getattr(self, key, None) is None:
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: str) -> bool:
        return getattr(self, key, None) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


Tensor = torch.Tensor
Tuple = tuple


@dataclass
class BaseModelOutput(ModelOutput):
    last_hidden_state: Tensor | None = None
    past_key_values: Any = None
    hidden_states: Tuple[Tensor, ...] | None = None
    attentions: Tuple[Tensor, ...] | None = None
    cross_attentions: Tuple[Tensor, ...] | None = None


@dataclass
class Seq2SeqModelOutput(ModelOutput):
    last_hidden_state: Tensor | None = None
    past_key_values: Any = None
    decoder_hidden_states: Tuple[Tensor, ...] | None = None
    decoder_attentions: Tuple[Tensor, ...] | None = None
    cross_attentions: Tuple[Tensor, ...] | None = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: Tuple[Tensor, ...] | None = None
    encoder_attentions: Tuple[Tensor, ...] | None = None


@dataclass
class LMOutput(ModelOutput):
    """Masked or causal LM (and any per-token logits head)."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    past_key_values: Any = None
    hidden_states: Tuple[Tensor, ...] | None = None
    attentions: Tuple[Tensor, ...] | None = None
    cross_attentions: Tuple[Tensor, ...] | None = None


@dataclass
class Seq2SeqLMOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None
    past_key_values: Any = None
    decoder_hidden_states: Tuple[Tensor, ...] | None = None
    decoder_attentions: Tuple[Tensor, ...] | None = None
    cross_attentions: Tuple[Tensor, ...] | None = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: Tuple[Tensor, ...] | None = None
    encoder_attentions: Tuple[Tensor, ...] | None = None


@dataclass
class ClassifierOutput(ModelOutput):
    """Sequence, token and multiple-choice classification."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    hidden_states: Tuple[Tensor, ...] | None = None
    attentions: Tuple[Tensor, ...] | None = None


@dataclass
class Seq2SeqClassifierOutput(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None
    past_key_values: Any = None
    decoder_hidden_states: Tuple[Tensor, ...] | None = None
    decoder_attentions: Tuple[Tensor, ...] | None = None
    cross_attentions: Tuple[Tensor, ...] | None = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: Tuple[Tensor, ...] | None = None
    encoder_attentions: Tuple[Tensor, ...] | None = None


@dataclass
class SpanQAOutput(ModelOutput):
    loss: Tensor | None = None
    start_logits: Tensor | None = None
    end_logits: Tensor | None = None
    hidden_states: Tuple[Tensor, ...] | None = None
    attentions: Tuple[Tensor, ...] | None = None


@dataclass
class Seq2SeqSpanQAOutput(ModelOutput):
    loss: Tensor | None = None
    start_logits: Tensor | None = None
    end_logits: Tensor | None = None
    past_key_values: Any = None
    decoder_hidden_states: Tuple[Tensor, ...] | None = None
    decoder_attentions: Tuple[Tensor, ...] | None = None
    cross_attentions: Tuple[Tensor, ...] | None = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: Tuple[Tensor, ...] | None = None
    encoder_attentions: Tuple[Tensor, ...] | None = None


@dataclass
class BeamQAOutput(ModelOutput):
    """The SQuAD beam-search head of XLM and XLNet."""

    loss: Tensor | None = None
    start_top_log_probs: Tensor | None = None
    start_top_index: Tensor | None = None
    end_top_log_probs: Tensor | None = None
    end_top_index: Tensor | None = None
    cls_logits: Tensor | None = None
    hidden_states: Tuple[Tensor, ...] | None = None
    attentions: Tuple[Tensor, ...] | None = None
