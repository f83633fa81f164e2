"""The reference's MVP parameter names -> ours.

Top-level containers keep the reference's names (``model``, ``shared``, ``encoder``,
``decoder``, ``lm_head``, ``classification_head``, ``qa_outputs``); inside the shared
blocks parts are named by role. For example
``model.decoder.layers.3.encoder_attn.q_proj.weight`` is
``model.decoder.layers.3.cross_attn.query.weight`` here.
"""

from __future__ import annotations

from ...loading import NameTable

_PROJECTIONS = (("q_proj", "query"), ("k_proj", "key"), ("v_proj", "value"), ("out_proj", "output"))
_ATTENTIONS = (("self_attn", "self_attn"), ("encoder_attn", "cross_attn"))

_LAYER_RULES = tuple(
    (f"layers.{{i}}.{hf_attn}.{hf_proj}", f"layers.{{i}}.{attn}.{proj}")
    for hf_attn, attn in _ATTENTIONS
    for hf_proj, proj in _PROJECTIONS
) + (
    ("layers.{i}.self_attn_layer_norm", "layers.{i}.self_attn_post_norm"),
    ("layers.{i}.encoder_attn_layer_norm", "layers.{i}.cross_attn_post_norm"),
    ("layers.{i}.fc1", "layers.{i}.ffn.up"),
    ("layers.{i}.fc2", "layers.{i}.ffn.down"),
    ("layers.{i}.final_layer_norm", "layers.{i}.ffn_post_norm"),
)

# prompt modules: an embedding and a two-layer MLP stored as an nn.Sequential (0 = in, 2 = out)
_PROMPT_RULES = tuple(
    (f"{kind}.{hf}", f"{kind}.{ours}")
    for kind in ("self_attn_prompt", "cross_attn_prompt")
    for hf, ours in (("prompt_embedding", "embedding"), ("prompt_trans.0", "up"), ("prompt_trans.2", "down"))
)

MVP_NAMES = NameTable(_LAYER_RULES + _PROMPT_RULES + (("qa_outputs", "qa_outputs.proj"),))
