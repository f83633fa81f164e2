"""ProphetNet's output objects: the main stream's and the predicting streams' states side by side;
the LM heads' outputs are loss and logits, then the model's fields less its last hidden states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ...heads import head_output
from ...outputs import ModelOutput, seq2seq_output

Tensors = tuple[torch.Tensor, ...]


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


#: the decoder's fields (the per-layer ones prefixed ``decoder_``), then the encoder's
ProphetNetSeq2SeqModelOutput = seq2seq_output(
    "ProphetNetSeq2SeqModelOutput", ProphetNetDecoderModelOutput,
    renamed={"hidden_states_ngram": "decoder_ngram_hidden_states"}, module=__name__,
)

_LM_FIELDS = ("loss", "logits", "logits_ngram")
_STATES = ("last_hidden_state", "last_hidden_state_ngram")
ProphetNetSeq2SeqLMOutput = head_output(
    "ProphetNetSeq2SeqLMOutput", _LM_FIELDS, ProphetNetSeq2SeqModelOutput, leave_out=_STATES, module=__name__
)
ProphetNetDecoderLMOutput = head_output(
    "ProphetNetDecoderLMOutput", _LM_FIELDS, ProphetNetDecoderModelOutput, leave_out=_STATES, module=__name__
)
