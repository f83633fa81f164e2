"""xcli_models: the XLM, XLNet, XGLM, XLM-ProphetNet and MVP families in plain PyTorch.

Names are imported lazily, so that ``import xcli_models`` and the tokenizers
never import torch; touching a model class does.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, tuple[str, ...]] = {
    "xcli_models.tokenization": ("AutoTokenizer", "Tokenizer", "TokenizerError", "AddedToken"),
    "xcli_models.tokenization.moses_bpe": ("XLMTokenizer",),
    "xcli_models.tokenization.sentencepiece": (
        "XLNetTokenizer", "XLNetTokenizerFast", "XGLMTokenizer", "XGLMTokenizerFast", "XLMProphetNetTokenizer",
    ),
    "xcli_models.tokenization.wordpiece": ("ProphetNetTokenizer",),
    "xcli_models.tokenization.byte_bpe": ("MvpTokenizer", "MvpTokenizerFast"),
    "xcli_models.auto": ("AutoConfig", "AutoModel", "CheckpointError"),
    "xcli_models.families.xlm.config": ("XLMConfig",),
    "xcli_models.families.xlm.modeling": (
        "XLMModel", "XLMWithLMHeadModel", "XLMForSequenceClassification", "XLMForMultipleChoice",
        "XLMForTokenClassification", "XLMForQuestionAnsweringSimple", "XLMForQuestionAnswering",
    ),
    "xcli_models.families.xlnet.config": ("XLNetConfig",),
    "xcli_models.families.xlnet.modeling": (
        "XLNetModel", "XLNetLMHeadModel", "XLNetForSequenceClassification", "XLNetForMultipleChoice",
        "XLNetForTokenClassification", "XLNetForQuestionAnsweringSimple", "XLNetForQuestionAnswering",
    ),
    "xcli_models.families.xglm.config": ("XGLMConfig",),
    "xcli_models.families.xglm.modeling": ("XGLMModel", "XGLMForCausalLM"),
    "xcli_models.families.prophetnet.config": ("XLMProphetNetConfig", "ProphetNetConfig"),
    "xcli_models.families.prophetnet.modeling": (
        "XLMProphetNetModel", "XLMProphetNetEncoder", "XLMProphetNetDecoder",
        "XLMProphetNetForConditionalGeneration", "XLMProphetNetForCausalLM",
        "ProphetNetModel", "ProphetNetEncoder", "ProphetNetDecoder",
        "ProphetNetForConditionalGeneration", "ProphetNetForCausalLM",
    ),
    "xcli_models.families.mvp.config": ("MvpConfig",),
    "xcli_models.families.mvp.modeling": (
        "MvpModel", "MvpForConditionalGeneration", "MvpForSequenceClassification",
        "MvpForQuestionAnswering", "MvpForCausalLM",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'xcli_models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
