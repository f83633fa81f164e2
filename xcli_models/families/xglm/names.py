"""Reference parameter names of XGLM -> ours.

The containers keep the reference's names (``model``, ``embed_tokens``,
``layers``, ``layer_norm``, ``lm_head``); inside a layer the shared blocks'
role names are used. Pre-LN: each sublayer's norm is its ``*_pre_norm``.
"""

from __future__ import annotations

from ...loading import NameTable

XGLM_NAMES = NameTable((
    ("self_attn.q_proj", "self_attn.query"),
    ("self_attn.k_proj", "self_attn.key"),
    ("self_attn.v_proj", "self_attn.value"),
    ("self_attn.out_proj", "self_attn.output"),
    ("encoder_attn.q_proj", "cross_attn.query"),
    ("encoder_attn.k_proj", "cross_attn.key"),
    ("encoder_attn.v_proj", "cross_attn.value"),
    ("encoder_attn.out_proj", "cross_attn.output"),
    ("layers.{i}.self_attn_layer_norm", "layers.{i}.self_attn_pre_norm"),
    ("layers.{i}.encoder_attn_layer_norm", "layers.{i}.cross_attn_pre_norm"),
    ("layers.{i}.final_layer_norm", "layers.{i}.ffn_pre_norm"),
    ("layers.{i}.fc1", "layers.{i}.ffn.up"),
    ("layers.{i}.fc2", "layers.{i}.ffn.down"),
))
