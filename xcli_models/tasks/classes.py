"""The model classes each task serves, by name: plain tables, no torch (``xcli models`` reads them)."""

from __future__ import annotations

#: classify
SEQUENCE_HEADS = ("XLMForSequenceClassification", "XLNetForSequenceClassification", "MvpForSequenceClassification")
TOKEN_HEADS = ("XLMForTokenClassification", "XLNetForTokenClassification")
CHOICE_HEADS = ("XLMForMultipleChoice", "XLNetForMultipleChoice")

#: fill-mask
FILL_MASK_CLASSES = ("XLMWithLMHeadModel", "XLNetLMHeadModel", "MvpForConditionalGeneration")

#: generate: decoder-only heads (continue the prompt)
CAUSAL_CLASSES = (
    "XGLMForCausalLM", "XLMWithLMHeadModel", "XLNetLMHeadModel", "MvpForCausalLM", "ProphetNetForCausalLM",
    "XLMProphetNetForCausalLM",
)
#: generate: encoder-decoder heads (write a new text from the input)
SEQ2SEQ_CLASSES = (
    "MvpForConditionalGeneration", "ProphetNetForConditionalGeneration", "XLMProphetNetForConditionalGeneration",
)
GENERATE_CLASSES = CAUSAL_CLASSES + SEQ2SEQ_CLASSES

#: score: every language-modelling head (masked LMs through pseudo-log-likelihood)
SCORE_CLASSES = GENERATE_CLASSES

#: qa
SPAN_HEADS = ("XLMForQuestionAnsweringSimple", "XLNetForQuestionAnsweringSimple", "MvpForQuestionAnswering")
BEAM_HEADS = ("XLMForQuestionAnswering", "XLNetForQuestionAnswering")
