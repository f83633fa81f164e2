"""MvpConfig: the fields of an MVP config.json and their reference defaults."""

from __future__ import annotations

from typing import Any, ClassVar

from ...config import Config


class MvpConfig(Config):
    """Configuration of the MVP models (a BART-shaped encoder-decoder with optional prompts).

    Lightweight tuning is switched on by ``use_prompt``: every attention layer then gets
    ``prompt_length`` extra keys and values, produced from learned prompt vectors by an MLP
    with ``prompt_mid_dim`` hidden units (see ``MvpModel.set_lightweight_tuning``).
    """

    model_type: ClassVar[str] = "mvp"
    defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 50267,
        "max_position_embeddings": 1024,
        "encoder_layers": 12,
        "encoder_ffn_dim": 4096,
        "encoder_attention_heads": 16,
        "decoder_layers": 12,
        "decoder_ffn_dim": 4096,
        "decoder_attention_heads": 16,
        "encoder_layerdrop": 0.0,
        "decoder_layerdrop": 0.0,
        "activation_function": "gelu",
        "d_model": 1024,
        "dropout": 0.1,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "init_std": 0.02,
        "classifier_dropout": 0.0,
        "scale_embedding": False,
        "use_cache": True,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "is_encoder_decoder": True,
        "decoder_start_token_id": 2,
        "forced_bos_token_id": None,
        "forced_eos_token_id": 2,
        # lightweight tuning (layer-wise prompts)
        "use_prompt": False,
        "prompt_length": 100,
        "prompt_mid_dim": 800,
    }
    aliases: ClassVar[dict[str, str]] = {"num_attention_heads": "encoder_attention_heads", "hidden_size": "d_model"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if "num_hidden_layers" not in kwargs:
            self.num_hidden_layers = self.encoder_layers
        # an old config field: generation must start with <s>
        if self.forced_bos_token_id is None and kwargs.get("force_bos_token_to_be_generated", False):
            self.forced_bos_token_id = self.bos_token_id
