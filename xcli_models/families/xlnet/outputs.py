"""XLNet's output objects: ``mems`` (one (M, B, D) tensor per layer) beside the usual fields;
each head's output is its own fields, then the base output's less ``last_hidden_state``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ...heads import head_output
from ...outputs import ModelOutput

Tensor = torch.Tensor
Mems = tuple[Tensor, ...]


@dataclass
class XLNetModelOutput(ModelOutput):
    last_hidden_state: Tensor | None = None
    mems: Mems | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Any, ...] | None = None


#: also the output of the sequence, token and multiple-choice classifiers
XLNetLMHeadModelOutput = head_output("XLNetLMHeadModelOutput", ("loss", "logits"), XLNetModelOutput, module=__name__)
XLNetForSequenceClassificationOutput = XLNetLMHeadModelOutput
XLNetForTokenClassificationOutput = XLNetLMHeadModelOutput
XLNetForMultipleChoiceOutput = XLNetLMHeadModelOutput
XLNetForQuestionAnsweringSimpleOutput = head_output(
    "XLNetForQuestionAnsweringSimpleOutput", ("loss", "start_logits", "end_logits"), XLNetModelOutput,
    module=__name__,
)
XLNetForQuestionAnsweringOutput = head_output(
    "XLNetForQuestionAnsweringOutput",
    ("loss", "start_top_log_probs", "start_top_index", "end_top_log_probs", "end_top_index", "cls_logits"),
    XLNetModelOutput,
    module=__name__,
)
