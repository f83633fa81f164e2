"""Reference parameter names of XLM -> ours.

XLM keeps its layers as four parallel lists (``attentions``, ``layer_norm1``, ``ffns``,
``layer_norm2``); we keep one list of ``layers.TransformerLayer``. Embeddings, the LM
prediction layer and the containers (``transformer``, ``pred_layer``, ``qa_outputs``,
``sequence_summary``) keep the reference's names.
"""

from __future__ import annotations

from ...heads import beam_qa_names, summary_names
from ...loading import NameTable

LAYERS = NameTable((
    ("attentions.{i}.q_lin", "layers.{i}.self_attn.query"),
    ("attentions.{i}.k_lin", "layers.{i}.self_attn.key"),
    ("attentions.{i}.v_lin", "layers.{i}.self_attn.value"),
    ("attentions.{i}.out_lin", "layers.{i}.self_attn.output"),
    ("layer_norm1.{i}", "layers.{i}.self_attn_post_norm"),
    ("ffns.{i}.lin1", "layers.{i}.ffn.up"),
    ("ffns.{i}.lin2", "layers.{i}.ffn.down"),
    ("layer_norm2.{i}", "layers.{i}.ffn_post_norm"),
))

#: sequence classification and multiple choice: ``sequence_summary.summary`` -> ``.proj``
SUMMARY = LAYERS + summary_names()

#: the simple span head: one linear layer ``qa_outputs`` -> ``qa_outputs.proj``
SPAN_QA = LAYERS + NameTable((
    ("qa_outputs.weight", "qa_outputs.proj.weight"),
    ("qa_outputs.bias", "qa_outputs.proj.bias"),
))

#: the beam-search SQuAD head kept under ``qa_outputs``
BEAM_QA = LAYERS + beam_qa_names("qa_outputs", "qa_outputs")
