"""The reference's ProphetNet parameter names -> ours.

Containers keep the reference's names (``prophetnet``, ``encoder``, ``decoder``,
``word_embeddings``, ``position_embeddings``, ``ngram_embeddings``,
``embeddings_layer_norm``, ``layers``, ``lm_head``); inside a layer the shared
blocks' role names are used, and the n-stream attention's relative position
projection is its ``relative_bias``. Post-LN: each sublayer's norm is its
``*_post_norm``. For example
``prophetnet.decoder.layers.2.cross_attn.query_proj.weight`` is
``prophetnet.decoder.layers.2.cross_attn.query.weight`` here.
"""

from __future__ import annotations

from ...loading import NameTable

_PROJECTIONS = (("query_proj", "query"), ("key_proj", "key"), ("value_proj", "value"), ("out_proj", "output"))

PROPHETNET_NAMES = NameTable(
    tuple(
        (f"layers.{{i}}.{attn}.{hf}", f"layers.{{i}}.{attn}.{ours}")
        for attn in ("self_attn", "cross_attn")
        for hf, ours in _PROJECTIONS
    )
    + (
        ("layers.{i}.self_attn.relative_pos_embeddings", "layers.{i}.self_attn.relative_bias"),
        ("layers.{i}.self_attn_layer_norm", "layers.{i}.self_attn_post_norm"),
        ("layers.{i}.cross_attn_layer_norm", "layers.{i}.cross_attn_post_norm"),
        ("layers.{i}.feed_forward.intermediate", "layers.{i}.ffn.up"),
        ("layers.{i}.feed_forward.output", "layers.{i}.ffn.down"),
        ("layers.{i}.feed_forward_layer_norm", "layers.{i}.ffn_post_norm"),
    )
)
