"""XLNet parameter names: the reference's on the left, ours on the right.

Every rule names a whole path, so the rules never feed each other and run in
either direction. The reference keeps its per-layer attention weights as
``(d_model, n_head, d_head)`` tensors; ours hold them in the same shape.
"""

from __future__ import annotations

from ...heads import beam_qa_names, summary_names
from ...loading import NameTable

#: the relative attention's parts: the reference's (under ``layer.{i}.rel_attn``) -> ours (under
#: ``layers.{i}.self_attn``)
_ATTENTION = {
    "q": "query.weight",
    "k": "key.weight",
    "v": "value.weight",
    "o": "output.weight",
    "r": "position.weight",
    "r_w_bias": "content_bias",
    "r_r_bias": "position_bias",
    "r_s_bias": "segment_bias",
    "seg_embed": "segment_embed",
}
#: the rest of a layer: the reference's (under ``layer.{i}``) -> ours (under ``layers.{i}``)
_LAYER = {
    "rel_attn.layer_norm": "self_attn_post_norm",
    "ff.layer_norm": "ffn_post_norm",
    "ff.layer_1": "ffn.up",
    "ff.layer_2": "ffn.down",
}

BASE = NameTable(
    tuple((f"layer.{{i}}.rel_attn.{hf}", f"layers.{{i}}.self_attn.{ours}") for hf, ours in _ATTENTION.items())
    + tuple((f"layer.{{i}}.{hf}", f"layers.{{i}}.{ours}") for hf, ours in _LAYER.items())
)

#: the heads keep the reference's top-level names except where a shared head has its own parts
SUMMARY = summary_names("sequence_summary", "sequence_summary")
SPAN = NameTable((("qa_outputs", "qa_outputs.proj"),))
BEAM = beam_qa_names("", "qa_head")
