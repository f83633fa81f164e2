"""What XLM's heads can do (torch-free: ``xcli models`` and ``xcli info`` read it)."""

from __future__ import annotations

from ...registry import Capabilities

_LANGS = ("langs",)  # language ids, when the model has language embeddings

HEADS = {
    # a causal LM when config.json says "causal": true, else a masked LM
    "XLMWithLMHeadModel": Capabilities(
        fill_mask=True, generate="causal", train="causal-lm", causal_flag=True, needs=_LANGS, unpadded=True,
    ),
    "XLMForSequenceClassification": Capabilities(classify="sequence", train="sequence-classification", needs=_LANGS),
    "XLMForTokenClassification": Capabilities(classify="token", train="token-classification", needs=_LANGS),
    "XLMForMultipleChoice": Capabilities(classify="choice", train="multiple-choice", needs=_LANGS),
    "XLMForQuestionAnsweringSimple": Capabilities(qa="span", train="question-answering", needs=_LANGS),
    "XLMForQuestionAnswering": Capabilities(qa="beam", train="question-answering", needs=_LANGS),
}
