"""model_type -> family: where its config, tokenizer and model classes live.

Entries name modules by dotted path and are imported only when used, so that
reading this table (as `xcli tokenize` does) never imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Family:
    name: str
    #: "module:Class" of the config class
    config: str
    #: "module:Class" of the tokenizer class, and of alternatives by tokenizer_class name
    tokenizer: str
    #: module holding the model classes (names as in the reference documentation)
    models: str
    tokenizers_by_class: dict[str, str] = field(default_factory=dict)


FAMILIES: dict[str, Family] = {
    "xlm": Family(
        name="XLM",
        config="xcli_models.families.xlm.config:XLMConfig",
        tokenizer="xcli_models.tokenization.moses_bpe:XLMTokenizer",
        models="xcli_models.families.xlm.modeling",
    ),
    "xlnet": Family(
        name="XLNet",
        config="xcli_models.families.xlnet.config:XLNetConfig",
        tokenizer="xcli_models.tokenization.sentencepiece:XLNetTokenizer",
        models="xcli_models.families.xlnet.modeling",
    ),
    "xglm": Family(
        name="XGLM",
        config="xcli_models.families.xglm.config:XGLMConfig",
        tokenizer="xcli_models.tokenization.sentencepiece:XGLMTokenizer",
        models="xcli_models.families.xglm.modeling",
    ),
    "xlm-prophetnet": Family(
        name="XLM-ProphetNet",
        config="xcli_models.families.prophetnet.config:XLMProphetNetConfig",
        tokenizer="xcli_models.tokenization.sentencepiece:XLMProphetNetTokenizer",
        models="xcli_models.families.prophetnet.modeling",
        tokenizers_by_class={"ProphetNetTokenizer": "xcli_models.tokenization.wordpiece:ProphetNetTokenizer"},
    ),
    "prophetnet": Family(
        name="ProphetNet",
        config="xcli_models.families.prophetnet.config:ProphetNetConfig",
        tokenizer="xcli_models.tokenization.wordpiece:ProphetNetTokenizer",
        models="xcli_models.families.prophetnet.modeling",
        tokenizers_by_class={
            "XLMProphetNetTokenizer": "xcli_models.tokenization.sentencepiece:XLMProphetNetTokenizer"
        },
    ),
    "mvp": Family(
        name="MVP",
        config="xcli_models.families.mvp.config:MvpConfig",
        tokenizer="xcli_models.tokenization.byte_bpe:MvpTokenizer",
        models="xcli_models.families.mvp.modeling",
    ),
}


def load_object(ref: str) -> Any:
    """Import ``"package.module:Name"`` and return ``Name``."""
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def family_for(model_type: str) -> Family:
    try:
        return FAMILIES[model_type]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        raise KeyError(f"model_type {model_type!r} is not supported (xcli runs: {known})") from None
