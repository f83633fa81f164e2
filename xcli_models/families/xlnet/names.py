"""XLNet parameter names: the reference's on the left, ours on the right.

Every rule names a whole path, so the rules never feed each other and run in
either direction. The reference keeps its per-layer attention weights as
``(d_model, n_head, d_head)`` tensors; ours hold them in the same shape.
"""

from __future__ import annotations

from ...heads import beam_qa_names, summary_names
from ...loading import NameTable

_LAYER = "layer.{i}"
_OURS = "layers.{i}"

BASE = NameTable(
    (
        (f"{_LAYER}.rel_attn.q", f"{_OURS}.self_attn.query.weight"),
        (f"{_LAYER}.rel_attn.k", f"{_OURS}.self_attn.key.weight"),
        (f"{_LAYER}.rel_attn.v", f"{_OURS}.self_attn.value.weight"),
        (f"{_LAYER}.rel_attn.o", f"{_OURS}.self_attn.output.weight"),
        (f"{_LAYER}.rel_attn.r", f"{_OURS}.self_attn.position.weight"),
        (f"{_LAYER}.rel_attn.r_w_bias", f"{_OURS}.self_attn.content_bias"),
        (f"{_LAYER}.rel_attn.r_r_bias", f"{_OURS}.self_attn.position_bias"),
        (f"{_LAYER}.rel_attn.r_s_bias", f"{_OURS}.self_attn.segment_bias"),
        (f"{_LAYER}.rel_attn.seg_embed", f"{_OURS}.self_attn.segment_embed"),
        (f"{_LAYER}.rel_attn.layer_norm", f"{_OURS}.self_attn_post_norm"),
        (f"{_LAYER}.ff.layer_norm", f"{_OURS}.ffn_post_norm"),
        (f"{_LAYER}.ff.layer_1", f"{_OURS}.ffn.up"),
        (f"{_LAYER}.ff.layer_2", f"{_OURS}.ffn.down"),
    )
)

#: the heads keep the reference's top-level names except where a shared head has its own parts
SUMMARY = summary_names("sequence_summary", "sequence_summary")
SPAN = NameTable((("qa_outputs", "qa_outputs.proj"),))
BEAM = beam_qa_names("", "qa_head")
