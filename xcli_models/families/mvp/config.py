"""MvpConfig: the fields of an MVP config.json and their reference defaults."""

from __future__ import annotations

from typing import Any, ClassVar

from ...config import Config, Field


class MvpConfig(Config):
    """Configuration of the MVP models (a BART-shaped encoder-decoder with optional prompts).

    Lightweight tuning is switched on by ``use_prompt``: every attention layer then gets
    ``prompt_length`` extra keys and values, produced from learned prompt vectors by an MLP
    with ``prompt_mid_dim`` hidden units (see ``MvpModel.set_lightweight_tuning``).
    """

    model_type: ClassVar[str] = "mvp"
    fields: ClassVar[dict[str, Any]] = {
        "vocab_size": Field("size", 50267),
        "max_position_embeddings": Field("size", 1024),
        "encoder_layers": Field("layers", 12),
        "encoder_ffn_dim": Field("size", 4096),
        "encoder_attention_heads": Field("size", 16, alias="num_attention_heads", divides="d_model"),
        "decoder_layers": Field("layers", 12),
        "decoder_ffn_dim": Field("size", 4096),
        "decoder_attention_heads": Field("size", 16, divides="d_model"),
        "num_hidden_layers": Field("layers"),
        "encoder_layerdrop": Field("rate", 0.0),
        "decoder_layerdrop": Field("rate", 0.0),
        "activation_function": Field("text", "gelu"),
        "d_model": Field("size", 1024, alias="hidden_size"),
        "dropout": Field("rate", 0.1),
        "attention_dropout": Field("rate", 0.0),
        "activation_dropout": Field("rate", 0.0),
        "init_std": Field("scale", 0.02),
        "classifier_dropout": Field("rate", 0.0),
        "scale_embedding": Field("flag", False),
        "use_cache": True,
        "pad_token_id": Field("token", 1, below="vocab_size"),
        "bos_token_id": 0,
        "eos_token_id": 2,
        "is_encoder_decoder": True,
        "decoder_start_token_id": 2,
        "forced_bos_token_id": Field("token", None),
        "forced_eos_token_id": Field("tokens", 2),
        # lightweight tuning (layer-wise prompts)
        "use_prompt": Field("flag", False),
        "prompt_length": Field("size", 100),
        "prompt_mid_dim": Field("size", 800),
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if "num_hidden_layers" not in kwargs:
            self.num_hidden_layers = self.encoder_layers
        # an old config field: generation must start with <s>
        if self.forced_bos_token_id is None and kwargs.get("force_bos_token_to_be_generated", False):
            self.forced_bos_token_id = self.bos_token_id

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
