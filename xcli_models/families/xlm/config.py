"""XLMConfig: the fields of an XLM config.json and their reference defaults."""

from __future__ import annotations

from typing import Any, ClassVar

from ...config import Config, Field


class XLMConfig(Config):
    """XLM (MLM / CLM / TLM encoders with language embeddings).

    ``asm_cutoffs`` and ``asm_div_value`` (the adaptive softmax of the LM head) have no
    reference default: they must be set when ``asm`` is true. ``lang2id``/``id2lang`` are
    the language tables multilingual checkpoints carry.
    """

    model_type: ClassVar[str] = "xlm"
    fields: ClassVar[dict[str, Any]] = {
        "vocab_size": Field("size", 30145, alias="n_words"),
        "emb_dim": Field("size", 2048, alias="hidden_size"),
        "n_layers": Field("layers", 12, alias="num_hidden_layers"),
        "n_heads": Field("size", 16, alias="num_attention_heads", divides="emb_dim"),
        "dropout": Field("rate", 0.1),
        "attention_dropout": Field("rate", 0.1),
        "gelu_activation": Field("flag", True),
        "sinusoidal_embeddings": Field("flag", False),
        "causal": Field("flag", False),
        "asm": Field("flag", False),
        "asm_cutoffs": Field("ints?", None),
        "asm_div_value": Field("scale?", None),
        "n_langs": Field("size", 1),
        "use_lang_emb": Field("flag", True),
        "max_position_embeddings": Field("size", 512),
        "embed_init_std": Field("scale", 2048**-0.5),
        "layer_norm_eps": Field("scale", 1e-12),
        "init_std": Field("scale", 0.02),
        "bos_index": Field("token", 0),
        "eos_index": Field("token", 1),
        "pad_index": Field("token", 2, below="vocab_size"),
        "unk_index": Field("token", 3),
        "mask_index": Field("token", 5),
        "is_encoder": Field("flag", True),
        "summary_type": Field("text", "first"),
        "summary_use_proj": Field("flag", True),
        "summary_activation": Field("text?", None),
        "summary_proj_to_labels": Field("flag", True),
        "summary_first_dropout": Field("rate", 0.1),
        "start_n_top": Field("size", 5),
        "end_n_top": Field("size", 5),
        "mask_token_id": Field("token", 0),
        "lang_id": Field("count", 0),
        "lang2id": Field("object?", None),
        "id2lang": Field("object?", None),
        "pruned_heads": Field("object?"),
        "pad_token_id": 2,
        "bos_token_id": 0,
    }

    def parameter_estimate(self) -> int:
        d, layers = self.emb_dim, self.n_layers
        layer = 4 * (d * d + d) + 2 * (4 * d * d) + 4 * d + d + 4 * d  # attention, feed-forward, 2 norms
        langs = self.n_langs * d if self.n_langs > 1 and self.use_lang_emb else 0
        embeddings = (self.vocab_size + self.max_position_embeddings) * d + langs + 2 * d
        return embeddings + layers * layer + self._head_estimate(d, self.vocab_size, tied=not self.asm)
