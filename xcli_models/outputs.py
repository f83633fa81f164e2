"""Output objects: named fields, readable by attribute, by key, or by position.

``out.logits``, ``out["logits"]`` and ``out[0]`` all work; positions count only
the fields that are set, as the reference's outputs do, so ``return_dict=False``
callers get the same tuple.

An output is assembled from parts (what a head computes, then what its stack carries). A
dataclass lists the fields of its last base first, so ``class LMOutput(_DecoderParts, _Scores)``
reads: loss and logits, then the decoder's cache, hidden states and attentions.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, make_dataclass
from typing import Any, Iterator, Mapping

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


#: decoder output fields an encoder-decoder output carries under their own name
_UNPREFIXED = ("last_hidden_state", "past_key_values", "cross_attentions")
#: encoder output fields it carries, prefixed ``encoder_``
_ENCODER_FIELDS = ("last_hidden_state", "hidden_states", "attentions")


def seq2seq_output(
    name: str, decoder: type[ModelOutput], *, renamed: Mapping[str, str] | None = None, module: str = __name__
) -> type[ModelOutput]:
    """An encoder-decoder model's output class, from its decoder's output class: the decoder's
    fields in order, each per-layer one (hidden states, self-attentions) with a ``decoder_``
    prefix unless ``renamed`` names it otherwise (the last hidden states, the cache and the
    cross-attentions keep their names), then the encoder's last hidden state, hidden states and
    attentions with an ``encoder_`` prefix (ProphetNet's, whose decoder has n-gram streams).

    Example: ``BaseModelOutput`` gives the fields of ``Seq2SeqModelOutput``.
    """
    renamed = renamed or {}
    own = []
    for f in fields(decoder):
        keep = f.name in _UNPREFIXED or f.name.startswith("last_hidden_state")
        own.append((renamed.get(f.name, f.name if keep else f"decoder_{f.name}"), f.type, None))
    encoder = [(f"encoder_{f.name}", f.type, None) for f in fields(BaseModelOutput) if f.name in _ENCODER_FIELDS]
    return make_dataclass(name, own + encoder, bases=(ModelOutput,), namespace={"__module__": module})
