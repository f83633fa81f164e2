"""ProphetNet and XLM-ProphetNet configuration: the reference fields and their defaults.

The two model types share one architecture and one set of fields; they differ
in vocabulary (English WordPiece vs multilingual SentencePiece), in
``model_type``, and in what ``num_hidden_layers`` counts.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ...config import Config


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
    defaults: ClassVar[dict[str, Any]] = {
        "vocab_size": 30522,
        "hidden_size": 1024,
        "encoder_ffn_dim": 4096,
        "num_encoder_layers": 12,
        "num_encoder_attention_heads": 16,
        "decoder_ffn_dim": 4096,
        "num_decoder_layers": 12,
        "num_decoder_attention_heads": 16,
        "activation_function": "gelu",
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "activation_dropout": 0.1,
        "max_position_embeddings": 512,
        "init_std": 0.02,
        "ngram": 2,
        "num_buckets": 32,
        "relative_max_distance": 128,
        "disable_ngram_loss": False,
        "eps": 0.0,
        "is_encoder_decoder": True,
        "add_cross_attention": True,
        "use_cache": True,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "decoder_start_token_id": 0,
    }
    aliases: ClassVar[dict[str, str]] = {"num_attention_heads": "num_encoder_attention_heads"}

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
