"""XLNet's config.json fields."""

from __future__ import annotations

from typing import Any, ClassVar

from ...config import Config, Field, ConfigError, show_value


class XLNetConfig(Config):
    """XLNet: permutation language model with two-stream relative attention and memory.

    ``d_head`` is derived (``d_model // n_head``) and written back, as the reference does.
    ``summary_proj_to_labels`` is deliberately not a default: the reference documents it but
    never sets it, so its sequence summary projects to ``d_model`` unless config.json says
    otherwise. ``use_cache`` is the reference's deprecated name for ``use_mems_eval``.
    """

    model_type: ClassVar[str] = "xlnet"
    fields: ClassVar[dict[str, Any]] = {
        "vocab_size": Field("size", 32000, alias="n_token"),
        "d_model": Field("size", 1024, alias="hidden_size"),
        "n_layer": Field("layers", 24, alias="num_hidden_layers"),
        "n_head": Field("size", 16, alias="num_attention_heads", divides="d_model"),
        "d_inner": Field("size", 4096),
        "ff_activation": Field("text", "gelu"),
        "untie_r": Field("flag", True),
        "attn_type": Field("text", "bi"),
        "initializer_range": Field("scale", 0.02),
        "layer_norm_eps": Field("scale", 1e-12),
        "dropout": Field("rate", 0.1),
        "mem_len": Field("count?", 512),
        "reuse_len": Field("count?", None),
        "use_mems_eval": Field("flag", True, alias="use_cache"),
        "use_mems_train": Field("flag", False),
        "bi_data": Field("flag", False),
        "clamp_len": Field("int", -1),
        "same_length": Field("flag", False),
        "summary_type": Field("text", "last"),
        "summary_use_proj": Field("flag", True),
        "summary_activation": Field("text?", "tanh"),
        "summary_proj_to_labels": Field("flag"),
        "summary_last_dropout": Field("rate", 0.1),
        "start_n_top": Field("size", 5),
        "end_n_top": Field("size", 5),
        "pad_token_id": 5,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }

    def __init__(self, **kwargs: Any) -> None:
        d_head = kwargs.pop("d_head", None)
        super().__init__(**kwargs)
        # the common default ``use_cache`` would be read back by the reference as use_mems_eval
        vars(self).pop("use_cache", None)
        self.check_fields()  # as the reference's constructor does
        if d_head is not None and d_head != self.d_model // self.n_head:
            raise ConfigError(
                f"d_head ({show_value(d_head)}) must equal d_model // n_head ({self.d_model // self.n_head})"
            )
        self.d_head = self.d_model // self.n_head

    def check_fields(self) -> None:
        super().check_fields()
        if self.attn_type not in ("bi", "uni"):
            raise ConfigError(
                f"attn_type must be 'bi' (XLNet) or 'uni' (Transformer-XL), not {show_value(self.attn_type)}"
            )

    def position_limit(self) -> int | None:
        """None: relative positions have no limit."""
        return None

    def parameter_estimate(self) -> int:
        d, inner = self.d_model, self.d_inner
        # query, key, value, output and position projections, 3 biases and the segment embedding
        # (5 vectors of d), the feed-forward and 2 norms
        layer = 5 * d * d + 5 * d + 2 * d * inner + d + inner + 4 * d
        embeddings = self.vocab_size * d + d
        return embeddings + self.n_layer * layer + self._head_estimate(d, self.vocab_size)
