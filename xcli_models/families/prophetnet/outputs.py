"""ProphetNet's output objects: the main stream's and the predicting streams' states side by side;
the LM heads' outputs are loss and logits, then the model's fields less its last hidden states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ...heads import head_output
from ...outputs import ModelOutput

Tensors = tuple[torch.Tensor, ...]


@dataclass
class ProphetNetSeq2SeqModelOutput(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    last_hidden_state_ngram: torch.Tensor | None = None
    past_key_values: Any = None
    decoder_hidden_states: Tensors | None = None
    decoder_ngram_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    decoder_ngram_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None


@dataclass
class ProphetNetDecoderModelOutput(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    last_hidden_state_ngram: torch.Tensor | None = None
    past_key_values: Any = None
    hidden_states: Tensors | None = None
    hidden_states_ngram: Tensors | None = None
    attentions: Tensors | None = None
    ngram_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None


_LM_FIELDS = ("loss", "logits", "logits_ngram")
_STATES = ("last_hidden_state", "last_hidden_state_ngram")
ProphetNetSeq2SeqLMOutput = head_output(
    "ProphetNetSeq2SeqLMOutput", _LM_FIELDS, ProphetNetSeq2SeqModelOutput, leave_out=_STATES, module=__name__
)
ProphetNetDecoderLMOutput = head_output(
    "ProphetNetDecoderLMOutput", _LM_FIELDS, ProphetNetDecoderModelOutput, leave_out=_STATES, module=__name__
)
