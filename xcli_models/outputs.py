"""Output objects: named fields, readable by attribute, by key, or by position.

``out.logits``, ``out["logits"]`` and ``out[0]`` all work; positions count only
the fields that are set, as the reference's outputs do, so ``return_dict=False``
callers get the same tuple.

An output is assembled from parts (what a head computes, then what its stack carries). A
dataclass lists the fields of its last base first, so ``class LMOutput(_DecoderParts, _Scores)``
reads: loss and logits, then the decoder's cache, hidden states and attentions.
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
Layers = tuple[Tensor, ...]


# ------------------------------------------------------------------ parts
@dataclass
class _LastHidden(ModelOutput):
    last_hidden_state: Tensor | None = None


@dataclass
class _Scores(ModelOutput):
    loss: Tensor | None = None
    logits: Tensor | None = None


@dataclass
class _Spans(ModelOutput):
    loss: Tensor | None = None
    start_logits: Tensor | None = None
    end_logits: Tensor | None = None


@dataclass
class _BeamSpans(ModelOutput):
    loss: Tensor | None = None
    start_top_log_probs: Tensor | None = None
    start_top_index: Tensor | None = None
    end_top_log_probs: Tensor | None = None
    end_top_index: Tensor | None = None
    cls_logits: Tensor | None = None


@dataclass
class _Layers(ModelOutput):
    """An encoder's (or any stack without a cache's) per-layer outputs."""

    hidden_states: Layers | None = None
    attentions: Layers | None = None


@dataclass
class _DecoderParts(ModelOutput):
    """A stack that may cache and attend to an encoder."""

    past_key_values: Any = None
    hidden_states: Layers | None = None
    attentions: Layers | None = None
    cross_attentions: Layers | None = None


@dataclass
class _Seq2SeqParts(ModelOutput):
    """An encoder-decoder: the decoder's cache and layers, then the encoder's."""

    past_key_values: Any = None
    decoder_hidden_states: Layers | None = None
    decoder_attentions: Layers | None = None
    cross_attentions: Layers | None = None
    encoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: Layers | None = None
    encoder_attentions: Layers | None = None


# ---------------------------------------------------------------- outputs
@dataclass
class BaseModelOutput(_DecoderParts, _LastHidden):
    """A stack's output (an encoder leaves the cache and cross-attentions unset)."""


@dataclass
class Seq2SeqModelOutput(_Seq2SeqParts, _LastHidden):
    """An encoder-decoder's output: the decoder's last hidden state first."""


@dataclass
class LMOutput(_DecoderParts, _Scores):
    """Masked or causal LM (and any per-token logits head)."""


@dataclass
class Seq2SeqLMOutput(_Seq2SeqParts, _Scores):
    """An encoder-decoder's LM head."""


@dataclass
class ClassifierOutput(_Layers, _Scores):
    """Sequence, token and multiple-choice classification."""


@dataclass
class Seq2SeqClassifierOutput(_Seq2SeqParts, _Scores):
    """An encoder-decoder's sequence classifier."""


@dataclass
class SpanQAOutput(_Layers, _Spans):
    """Extractive QA: a start and an end score per token."""


@dataclass
class Seq2SeqSpanQAOutput(_Seq2SeqParts, _Spans):
    """An encoder-decoder's extractive QA head."""


@dataclass
class BeamQAOutput(_Layers, _BeamSpans):
    """The SQuAD beam-search head of XLM and XLNet."""
