"""XGLM configuration: the fields of the reference ``XGLMConfig`` with its defaults."""

from __future__ import annotations

from typing import Any, ClassVar

from ...config import Config, Field


class XGLMConfig(Config):
    """Decoder-only XGLM (defaults: facebook/xglm-564M).

    ``scale_embedding`` multiplies token embeddings by sqrt(d_model);
    ``add_cross_attention`` gives every layer a cross-attention block over
    ``encoder_hidden_states``.
    """

    model_type: ClassVar[str] = "xglm"
    fields: ClassVar[dict[str, Any]] = {
        "vocab_size": Field("size", 256008),
        "max_position_embeddings": Field("size", 2048),
        "d_model": Field("size", 1024, alias="hidden_size"),
        "ffn_dim": Field("size", 4096),
        "num_layers": Field("layers", 24, alias="num_hidden_layers"),
        "attention_heads": Field("size", 16, alias="num_attention_heads", divides="d_model"),
        "activation_function": Field("text", "gelu"),
        "dropout": Field("rate", 0.1),
        "attention_dropout": Field("rate", 0.1),
        "activation_dropout": Field("rate", 0.0),
        "layerdrop": Field("rate", 0.0),
        "init_std": Field("scale", 0.02),
        "scale_embedding": Field("flag", True),
        "use_cache": True,
        "decoder_start_token_id": 2,
        "pad_token_id": Field("token", 1, below="vocab_size"),
        "bos_token_id": 0,
        "eos_token_id": 2,
    }

    def check_fields(self) -> None:
        super().check_fields()
        self._below("pad_token_id", "max_position_embeddings", slack=2)  # it also blanks a row of the positions

    def parameter_estimate(self) -> int:
        d, ffn = self.d_model, self.ffn_dim
        attention = 4 * (d * d + d) + 2 * d
        layer = attention * (2 if self.add_cross_attention else 1) + 2 * d * ffn + d + ffn + 2 * d
        # token embeddings, the final norm, and the table of sinusoidal positions (a buffer)
        embeddings = self.vocab_size * d + 2 * d + (self.max_position_embeddings + 2) * d
        return embeddings + self.num_layers * layer + self._head_estimate(d, self.vocab_size)
