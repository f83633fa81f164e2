"""XGLM configuration: the fields of the reference ``XGLMConfig`` with its defaults."""

from __future__ import annotations

from typing import Any, ClassVar

from ...config import Config


class XGLMConfig(Config):
    """Decoder-only XGLM (defaults: facebook/xglm-564M).

    ``scale_embedding`` multiplies token embeddings by sqrt(d_model);
    ``add_cross_attention`` gives every layer a cross-attention block over
    ``encoder_hidden_states``.
    """

    model_type: ClassVar[str] = "xglm"
    defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 256008,
        "max_position_embeddings": 2048,
        "d_model": 1024,
        "ffn_dim": 4096,
        "num_layers": 24,
        "attention_heads": 16,
        "activation_function": "gelu",
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.0,
        "layerdrop": 0.0,
        "init_std": 0.02,
        "scale_embedding": True,
        "use_cache": True,
        "decoder_start_token_id": 2,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }
    aliases: ClassVar[dict[str, str]] = {
        "num_attention_heads": "attention_heads",
        "hidden_size": "d_model",
        "num_hidden_layers": "num_layers",
    }
