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
    kinds: ClassVar[dict[str, str]] = {
        "vocab_size": "size",
        "max_position_embeddings": "size",
        "encoder_layers": "layers",
        "encoder_ffn_dim": "size",
        "encoder_attention_heads": "size",
        "decoder_layers": "layers",
        "decoder_ffn_dim": "size",
        "decoder_attention_heads": "size",
        "num_hidden_layers": "layers",
        "encoder_layerdrop": "rate",
        "decoder_layerdrop": "rate",
        "activation_function": "text",
        "d_model": "size",
        "dropout": "rate",
        "attention_dropout": "rate",
        "activation_dropout": "rate",
        "init_std": "scale",
        "classifier_dropout": "rate",
        "scale_embedding": "flag",
        "forced_bos_token_id": "token",
        "forced_eos_token_id": "tokens",
        "use_prompt": "flag",
        "prompt_length": "size",
        "prompt_mid_dim": "size",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if "num_hidden_layers" not in kwargs:
            self.num_hidden_layers = self.encoder_layers
        # an old config field: generation must start with <s>
        if self.forced_bos_token_id is None and kwargs.get("force_bos_token_to_be_generated", False):
            self.forced_bos_token_id = self.bos_token_id

    def check_fields(self) -> None:
        self._divisible("d_model", "encoder_attention_heads")
        self._divisible("d_model", "decoder_attention_heads")
        self._below("pad_token_id", "vocab_size")

    def parameter_estimate(self) -> int:
        d = self.d_model
        attention = 4 * (d * d + d) + 2 * d
        encoder = attention + 2 * d * self.encoder_ffn_dim + d + self.encoder_ffn_dim + 2 * d
        decoder = 2 * attention + 2 * d * self.decoder_ffn_dim + d + self.decoder_ffn_dim + 2 * d
        # shared token embeddings, learned positions (2 rows more) and norms of both stacks
        embeddings = self.vocab_size * d + 2 * (self.max_position_embeddings + 2) * d + 4 * d
        prompts = 0
        if self.use_prompt:  # one prompt for the encoder, two (self and cross) for the decoder
            mid = self.prompt_mid_dim

            def prompt(layers: int) -> int:
                return self.prompt_length * d + d * mid + mid + mid * layers * 2 * d + layers * 2 * d

            prompts = prompt(self.encoder_layers) + 2 * prompt(self.decoder_layers)
        return (embeddings + self.encoder_layers * encoder + self.decoder_layers * decoder + prompts
                + self._head_estimate(d, self.vocab_size))
