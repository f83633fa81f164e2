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
    kinds: ClassVar[dict[str, str]] = {
        "vocab_size": "size",
        "emb_dim": "size",
        "n_layers": "layers",
        "n_heads": "size",
        "dropout": "rate",
        "attention_dropout": "rate",
        "gelu_activation": "flag",
        "sinusoidal_embeddings": "flag",
        "causal": "flag",
        "asm": "flag",
        "asm_cutoffs": "ints?",
        "asm_div_value": "scale?",
        "n_langs": "size",
        "use_lang_emb": "flag",
        "max_position_embeddings": "size",
        "embed_init_std": "scale",
        "layer_norm_eps": "scale",
        "init_std": "scale",
        "bos_index": "token",
        "eos_index": "token",
        "pad_index": "token",
        "unk_index": "token",
        "mask_index": "token",
        "is_encoder": "flag",
        "summary_type": "text",
        "summary_use_proj": "flag",
        "summary_activation": "text?",
        "summary_proj_to_labels": "flag",
        "summary_first_dropout": "rate",
        "start_n_top": "size",
        "end_n_top": "size",
        "mask_token_id": "token",
        "lang_id": "count",
        "lang2id": "object?",
        "id2lang": "object?",
        "pruned_heads": "object?",
    }

    def check_fields(self) -> None:
        self._divisible("emb_dim", "n_heads")
        self._below("pad_index", "vocab_size")

    def parameter_estimate(self) -> int:
        d, layers = self.emb_dim, self.n_layers
        layer = 4 * (d * d + d) + 2 * (4 * d * d) + 4 * d + d + 4 * d  # attention, feed-forward, 2 norms
        langs = self.n_langs * d if self.n_langs > 1 and self.use_lang_emb else 0
        embeddings = (self.vocab_size + self.max_position_embeddings) * d + langs + 2 * d
        return embeddings + layers * layer + self._head_estimate(d, self.vocab_size, tied=not self.asm)
