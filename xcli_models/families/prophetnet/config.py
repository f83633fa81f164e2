"""ProphetNet and XLM-ProphetNet configuration: the reference fields and their defaults.

The two model types share one architecture and one set of fields; they differ
in vocabulary (English WordPiece vs multilingual SentencePiece), in
``model_type``, and in what ``num_hidden_layers`` counts.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...config import Config, Field, ConfigError


class ProphetNetConfig(Config):
    """Encoder-decoder ProphetNet (defaults: microsoft/prophetnet-large-uncased).

    ``ngram`` is the number of future tokens the decoder's predicting streams
    learn to predict (1 is an ordinary next-token model); ``num_buckets`` and
    ``relative_max_distance`` shape the decoder's relative position buckets;
    ``eps`` is the label smoothing of the loss and ``disable_ngram_loss``
    trains on the first predicting stream only.
    """

    model_type: ClassVar[str] = "prophetnet"
    #: config.json of the other model type is read too: the architecture is the same
    also_reads: ClassVar[tuple[str, ...]] = ("xlm-prophetnet",)
    fields: ClassVar[dict[str, Any]] = {
        "vocab_size": Field("size", 30522),
        "hidden_size": Field("size", 1024),
        "encoder_ffn_dim": Field("size", 4096),
        "num_encoder_layers": Field("layers", 12),
        "num_encoder_attention_heads": Field("size", 16, alias="num_attention_heads", divides="hidden_size"),
        "decoder_ffn_dim": Field("size", 4096),
        "num_decoder_layers": Field("layers", 12),
        "num_decoder_attention_heads": Field("size", 16, divides="hidden_size"),
        "activation_function": Field("text", "gelu"),
        "dropout": Field("rate", 0.1),
        "attention_dropout": Field("rate", 0.1),
        "activation_dropout": Field("rate", 0.1),
        "max_position_embeddings": Field("size", 512),
        "init_std": Field("scale", 0.02),
        "ngram": Field("size", 2),
        "num_buckets": Field("size", 32),
        "relative_max_distance": Field("size", 128),
        "disable_ngram_loss": Field("flag", False),
        "eps": Field("rate", 0.0),
        "is_encoder_decoder": True,
        "add_cross_attention": True,
        "use_cache": True,
        "pad_token_id": Field("token", 0, below="vocab_size"),
        "bos_token_id": 1,
        "eos_token_id": 2,
        "decoder_start_token_id": 0,
    }

    def check_fields(self) -> None:
        super().check_fields()
        pad = self.pad_token_id or 0
        if self.max_position_embeddings <= pad + 1:
            raise ConfigError(
                f"max_position_embeddings ({self.max_position_embeddings}) must be above pad_token_id + 1 ({pad + 1})"
            )
        exact = self.num_buckets // 2  # the buckets of exact distances; wider ones reach relative_max_distance
        if exact < 1 or self.relative_max_distance <= exact:
            raise ConfigError(
                f"num_buckets ({self.num_buckets}) must be at least 2 and relative_max_distance "
                f"({self.relative_max_distance}) above num_buckets // 2"
            )

    def position_limit(self) -> int | None:
        """``max_position_embeddings - pad_token_id - 2``: position j reads row ``pad_token_id + 1 + j``,
        and the decoder's n-gram stream reads one row further (past the table: an IndexError; the
        encoder would repeat its last position instead)."""
        positions = super().position_limit()
        if positions is None:
            return None
        pad = getattr(self, "pad_token_id", None)
        return max(positions - (pad if isinstance(pad, int) and pad > 0 else 0) - 2, 1)

    def parameter_estimate(self) -> int:
        d, heads = self.hidden_size, self.num_decoder_attention_heads
        attention = 4 * (d * d + d) + 2 * d
        encoder = attention + 2 * d * self.encoder_ffn_dim + d + self.encoder_ffn_dim + 2 * d
        relative = d * self.num_buckets * heads + self.num_buckets * heads
        decoder = (attention + relative + (attention if self.add_cross_attention else 0)
                   + 2 * d * self.decoder_ffn_dim + d + self.decoder_ffn_dim + 2 * d)
        # shared token embeddings, positions of both stacks, their norms, the ngram embeddings
        embeddings = self.vocab_size * d + 2 * self.max_position_embeddings * d + 4 * d + self.ngram * d
        return (embeddings + self.num_encoder_layers * encoder + self.num_decoder_layers * decoder
                + self._head_estimate(d, self.vocab_size))

    @property
    def num_hidden_layers(self) -> int:
        return self.num_encoder_layers

    @num_hidden_layers.setter
    def num_hidden_layers(self, value: int) -> None:
        raise ValueError("num_hidden_layers cannot be set: set num_encoder_layers and num_decoder_layers")


class XLMProphetNetConfig(ProphetNetConfig):
    """Multilingual XLM-ProphetNet (defaults: microsoft/xprophetnet-large-wiki100-cased's shape).

    Same fields as ``ProphetNetConfig``; ``num_hidden_layers`` counts encoder
    and decoder layers together, as the reference's does.
    """

    model_type: ClassVar[str] = "xlm-prophetnet"
    also_reads: ClassVar[tuple[str, ...]] = ("prophetnet",)

    @property
    def num_hidden_layers(self) -> int:
        return self.num_encoder_layers + self.num_decoder_layers

    @num_hidden_layers.setter
    def num_hidden_layers(self, value: int) -> None:
        raise ValueError("num_hidden_layers cannot be set: set num_encoder_layers and num_decoder_layers")
