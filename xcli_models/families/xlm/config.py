"""XLMConfig: the fields of an XLM config.json and their reference defaults."""

from __future__ import annotations

from typing import Any, ClassVar

from ...config import Config


class XLMConfig(Config):
    """XLM (MLM / CLM / TLM encoders with language embeddings).

    ``asm_cutoffs`` and ``asm_div_value`` (the adaptive softmax of the LM head) have no
    reference default: they must be set when ``asm`` is true. ``lang2id``/``id2lang`` are
    the language tables multilingual checkpoints carry.
    """

    model_type: ClassVar[str] = "xlm"
    defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 30145,
        "emb_dim": 2048,
        "n_layers": 12,
        "n_heads": 16,
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "gelu_activation": True,
        "sinusoidal_embeddings": False,
        "causal": False,
        "asm": False,
        "asm_cutoffs": None,
        "asm_div_value": None,
        "n_langs": 1,
        "use_lang_emb": True,
        "max_position_embeddings": 512,
        "embed_init_std": 2048**-0.5,
        "layer_norm_eps": 1e-12,
        "init_std": 0.02,
        "bos_index": 0,
        "eos_index": 1,
        "pad_index": 2,
        "unk_index": 3,
        "mask_index": 5,
        "is_encoder": True,
        "summary_type": "first",
        "summary_use_proj": True,
        "summary_activation": None,
        "summary_proj_to_labels": True,
        "summary_first_dropout": 0.1,
        "start_n_top": 5,
        "end_n_top": 5,
        "mask_token_id": 0,
        "lang_id": 0,
        "lang2id": None,
        "id2lang": None,
        "pad_token_id": 2,
        "bos_token_id": 0,
    }
    aliases: ClassVar[dict[str, str]] = {
        "hidden_size": "emb_dim",
        "num_attention_heads": "n_heads",
        "num_hidden_layers": "n_layers",
        "n_words": "vocab_size",
    }
