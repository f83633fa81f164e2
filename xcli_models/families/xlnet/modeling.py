"""XLNet model classes, assembled from the shared blocks and the family's relative attention.

Inputs and outputs follow the reference (batch first); ``mems`` keep the
reference's layout, one ``(M, B, D)`` tensor per layer, so they pass between
xcli and the reference unchanged.

Two extensions over the reference, both inactive for inputs it accepts:

* ``attn_type="uni"`` works with ``attention_mask``/``input_mask``/``perm_mask``
  for any batch size (the reference fails unless the batch is one row);
* a padding mask (``attention_mask`` or ``input_mask``) may be as long as
  memory plus input (or longer: its last ``M + T`` columns count), so padded
  positions kept in ``mems`` stay masked in later calls. A mask as long as the
  input leaves all memory visible, as in the reference.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...heads import (
    BeamQAHead,
    SequenceSummary,
    SpanHead,
    TokenClassifierHead,
    sequence_classification_loss,
    token_classification_loss,
)
from ...heads import TaskModel, head_arguments
from ...layers import FeedForward, Linear
from ...modeling import PreTrainedModel, resolve_flags
from . import names as hf_names
from .attention import HeadwiseLinear, RelativeAttention, XLNetLayer, relative_sinusoids, two_stream_masks
from .config import XLNetConfig
from .generation import XLNetAdapter
from .memory import LayerMemory, ProjectedMems
from .outputs import (
    Mems,
    XLNetForMultipleChoiceOutput,
    XLNetForQuestionAnsweringOutput,
    XLNetForQuestionAnsweringSimpleOutput,
    XLNetForSequenceClassificationOutput,
    XLNetForTokenClassificationOutput,
    XLNetLMHeadModelOutput,
    XLNetModelOutput,
)

Tensor = torch.Tensor


# ----------------------------------------------------------------------- base
class XLNetPreTrainedModel(PreTrainedModel):
    config_class = XLNetConfig
    base_model_prefix = "transformer"
    names = hf_names.BASE
    #: task models hand keyword arguments they do not know to XLNetModel, which takes the
    #: reference's ``use_cache`` and refuses the rest
    extra_kwargs = True
    config: XLNetConfig


def _layer(config: XLNetConfig) -> XLNetLayer:
    d, h, dh = config.d_model, config.n_head, config.d_head
    attn = RelativeAttention(
        h,
        dh,
        query=HeadwiseLinear(d, h, dh),
        key=HeadwiseLinear(d, h, dh),
        value=HeadwiseLinear(d, h, dh),
        output=HeadwiseLinear(d, h, dh, to_heads=False),
        position=HeadwiseLinear(d, h, dh),
        dropout=config.dropout,
    )
    return XLNetLayer.with_norms(
        "post",
        attn,
        FeedForward(d, config.d_inner, config.ff_activation, dropout=config.dropout),
        d,
        eps=config.layer_norm_eps,
        dropout=config.dropout,
    )


class XLNetModel(XLNetPreTrainedModel):
    """The bare XLNet: word embeddings, ``mask_emb`` for the query stream, relative layers."""

    def __init__(self, config: XLNetConfig) -> None:
        super().__init__(config)
        self.word_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.mask_emb = nn.Parameter(torch.empty(1, 1, config.d_model))
        self.layers = nn.ModuleList([_layer(config) for _ in range(config.n_layer)])
        self.dropout = config.dropout
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.word_embedding

    # ------------------------------------------------------------- pieces
    def _drop(self, x: Tensor) -> Tensor:
        return F.dropout(x, p=self.dropout, training=self.training)

    def _cache(self, current: Tensor, previous: Tensor | None) -> Tensor:
        """The memory a layer keeps for the next call, in the reference's layout.

        Shape: current (B, T, D), previous (M, B, D) -> (M', B, D).
        """
        reuse_len, mem_len = self.config.reuse_len, self.config.mem_len
        if reuse_len is not None and reuse_len > 0:
            current = current[:, :reuse_len]
        current = current.transpose(0, 1)
        kept = current if previous is None else torch.cat([previous.to(current.dtype), current], dim=0)
        if mem_len:
            kept = kept[-mem_len:]
        return kept.detach().contiguous()

    # ------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        mems: Sequence[Tensor] | None = None,
        perm_mask: Tensor | None = None,
        target_mapping: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        input_mask: Tensor | None = None,
        head_mask: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        use_mems: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> XLNetModelOutput | tuple:
        """Shape: input_ids (B, T) or inputs_embeds (B, T, D); attention_mask/input_mask (B, T)
        (or (B, >= M + T), see the module docstring); perm_mask (B, T, T), 1 = may not attend;
        target_mapping (B, P, T); token_type_ids (B, T); mems per layer (M, B, D); head_mask (H,)
        or (L, H). last_hidden_state is (B, P, D) with target_mapping, else (B, T, D).
        """
        cfg = self.config
        if "use_cache" in kwargs:  # the reference's deprecated name
            use_mems = kwargs.pop("use_cache")
        if kwargs:
            raise TypeError(f"XLNet forward got unexpected arguments: {', '.join(sorted(kwargs))}")
        output_attentions, output_hidden_states, return_dict = resolve_flags(
            cfg, output_attentions, output_hidden_states, return_dict
        )
        if use_mems is None:
            use_mems = cfg.use_mems_train if self.training else cfg.use_mems_eval

        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.word_embedding(input_ids) if inputs_embeds is None else inputs_embeds
        batch, qlen, _ = x.shape
        dtype, device = x.dtype, x.device
        memories: Sequence[Tensor | None] = [None] * len(self.layers)
        if mems is not None and len(mems) and mems[0] is not None:
            memories = mems  # (M, B, D) each
        mlen = memories[0].shape[0] if memories[0] is not None else 0

        mask_h, mask_g = two_stream_masks(self.config, qlen, mlen, attention_mask, input_mask, perm_mask, dtype, device)
        context = {
            "positions": self._drop(self._positions(qlen, mlen, batch, device).to(dtype)),
            "segments": _segments(token_type_ids, mlen),
            "mask_h": mask_h,
            "mask_g": mask_g,
            "target_mapping": None if target_mapping is None else target_mapping.to(dtype),
        }
        h = self._drop(x)
        g = None
        if target_mapping is not None:
            g = self._drop(self.mask_emb.expand(batch, target_mapping.shape[1], -1))
        out = self._run_layers(
            h, g, memories, _head_masks(head_mask, len(self.layers), dtype), context,
            use_mems=use_mems, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
        )
        return out if return_dict else out.to_tuple()

    # --------------------------------------------------------- generation
    def projected_mems(self) -> ProjectedMems:
        """An empty ``ProjectedMems`` for this model, for ``next_token_states``."""
        cfg = self.config
        return ProjectedMems(
            len(self.layers), self._positions, bidirectional=cfg.attn_type == "bi", per_row=bool(cfg.bi_data),
            reuse_len=cfg.reuse_len, mem_len=cfg.mem_len,
        )

    def next_token_states(self, input_ids: Tensor, mems: ProjectedMems) -> Tensor:
        """The query stream's output for the position after ``input_ids``, over ``mems`` (updated).

        What ``forward`` gives for ``input_ids`` and a dummy token after them that no token sees
        (``perm_mask``) and that alone is predicted (``target_mapping``), with ``mems`` the memory
        -- the reference's generation step -- less the dummy's content stream, which nothing reads:
        the memory keeps a placeholder row for the dummy, as ``mems`` keep its states, which the
        next step drops (see .generation). Inference only: no dropout, no masks or segments, and
        not with ``same_length`` (which would hide early keys from the query).

        Shape: input_ids (B, T) -> (B, 1, D).
        """
        if self.training or self.config.same_length:
            raise ValueError("next_token_states is for inference, without same_length")
        x = self.word_embedding(input_ids)
        batch, qlen, _ = x.shape
        mask_h, _ = two_stream_masks(self.config, qlen, mems.length, None, None, None, x.dtype, x.device)
        mems.prepare(qlen, batch, x.dtype, x.device)
        context = {"positions": None, "segments": None, "mask_h": mask_h, "mask_g": None, "target_mapping": None,
                   "next_query": True}
        g = self.mask_emb.expand(batch, 1, -1).to(x.dtype)
        out = self._run_layers(x, g, mems.layers, [None] * len(self.layers), context, use_mems=False,
                               output_attentions=False, output_hidden_states=False)
        return out.last_hidden_state

    def _positions(self, qlen: int, mlen: int, batch: int, device: torch.device) -> Tensor:
        """The relative position encodings of the call. Shape: (K + T or more, B', D), see relative_sinusoids."""
        cfg = self.config
        return relative_sinusoids(
            qlen, mlen + qlen, cfg.d_model, bidirectional=cfg.attn_type == "bi", clamp_len=cfg.clamp_len,
            bi_data=cfg.bi_data, batch=batch, device=device,
        )

    def _run_layers(
        self, h: Tensor, g: Tensor | None, memories: Sequence[Tensor | LayerMemory | None],
        head_masks: Sequence[Tensor | None],
        context: dict[str, Any], *, use_mems: bool, output_attentions: bool, output_hidden_states: bool,
    ) -> XLNetModelOutput:
        """XLNet's own layer loop: two streams (content h, query g) through every layer, each
        layer's memory kept from the content stream before it (a ``LayerMemory`` keeps its own).
        Shape: h (B, T, D), g (B, P, D); memories (M, B, D) each."""
        new_mems: list[Tensor] = []
        hidden_states: list[Tensor] = []
        attentions: list[Any] = []
        for layer, memory, layer_head_mask in zip(self.layers, memories, head_masks):
            if use_mems:
                new_mems.append(self._cache(h, memory))
            if output_hidden_states:
                hidden_states.extend((h,) if g is None else (h, g))
            if isinstance(memory, Tensor):
                memory = memory.transpose(0, 1).to(h.dtype)  # (B, M, D)
            h, g, weights_h, weights_g = layer(
                h, g,
                memory=memory,
                head_mask=layer_head_mask,
                output_attentions=output_attentions,
                **context,
            )
            if output_attentions:
                attentions.append(weights_h if g is None else (weights_h, weights_g))
        if output_hidden_states:
            hidden_states.extend((h,) if g is None else (h, g))
        return XLNetModelOutput(
            last_hidden_state=self._drop(h if g is None else g),
            mems=tuple(new_mems) if use_mems else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )


def _segments(token_type_ids: Tensor | None, mlen: int) -> Tensor | None:
    """Whether query and key are in different segments (memory counts as segment 0). Shape: (B, T, K)."""
    if token_type_ids is None:
        return None
    keys = torch.cat([token_type_ids.new_zeros(token_type_ids.shape[0], mlen), token_type_ids], dim=1)
    return token_type_ids[:, :, None] != keys[:, None, :]


def _head_masks(head_mask: Tensor | None, n_layers: int, dtype: torch.dtype) -> Sequence[Tensor | None]:
    """``head_mask`` (H,) for every layer or one row per layer -> one entry (or None) per layer."""
    if head_mask is None:
        return [None] * n_layers
    head_mask = head_mask.to(dtype)
    return [head_mask] * n_layers if head_mask.dim() == 1 else list(head_mask)


# ---------------------------------------------------------------------- heads
_HEAD_AFTER = "inputs_embeds"  # a head's own arguments come after the base model's inputs_embeds


class XLNetLMHeadModel(XLNetPreTrainedModel, TaskModel):
    """XLNet with its LM head ``lm_loss`` (weight tied to the word embeddings, own bias).

    Shape: logits (B, P or T, vocab); labels (B, P or T), -100 ignored.
    """

    base_class = XLNetModel
    output_ties = {"lm_loss.weight": "transformer.word_embedding.weight"}
    arguments = head_arguments(XLNetModel.forward, {_HEAD_AFTER: ("labels",)})
    output = XLNetLMHeadModelOutput
    #: generation predicts a dummy token after the sequence at each step (see .generation)
    generation_adapter_class = XLNetAdapter

    def add_head(self, config: XLNetConfig) -> None:
        self.lm_loss = Linear(config.d_model, config.vocab_size)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_loss

    def head(self, base: XLNetModelOutput, labels: Tensor | None = None) -> dict[str, Any]:
        logits = self.lm_loss(base.last_hidden_state)
        return {"loss": None if labels is None else token_classification_loss(logits, labels), "logits": logits}

    # ---------------------------------------------------------- generation
    #: tokens recomputed at each step besides the dummy: the reference's choice
    generation_offset = 2

    def prepare_inputs_for_generation(
        self,
        input_ids: Tensor,
        past_key_values: Sequence[Tensor] | None = None,
        use_mems: bool | None = None,
        attention_mask: Tensor | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """The inputs of one decoding step, the reference's scheme.

        A dummy token is put after ``input_ids``; no token sees it (``perm_mask``) and the query
        stream predicts it alone (``target_mapping``), so ``logits[:, 0]`` scores the next token.
        With ``past_key_values`` (the ``mems`` of the previous step) only the last two tokens and
        the dummy are run, over the memory less its last two positions.

        ``attention_mask`` (B, tokens so far), when given, is extended over the dummy and passed
        on, so left padding stays masked in the memory too (the reference drops it).
        """
        batch = input_ids.shape[0]
        offset = self.generation_offset
        if past_key_values:
            input_ids = input_ids[:, -offset:]
        input_ids = F.pad(input_ids, (0, 1), value=0)
        length = input_ids.shape[1]
        perm_mask = torch.zeros(batch, length, length, device=input_ids.device)
        perm_mask[:, :, -1] = 1.0
        target_mapping = torch.zeros(batch, 1, length, device=input_ids.device)
        target_mapping[:, 0, -1] = 1.0
        inputs: dict[str, Any] = {
            "input_ids": input_ids,
            "perm_mask": perm_mask,
            "target_mapping": target_mapping,
            "use_mems": use_mems,
        }
        if past_key_values:
            inputs["mems"] = tuple(m[:-offset] for m in past_key_values)
        if attention_mask is not None:
            inputs["attention_mask"] = F.pad(attention_mask, (0, 1), value=1)
        return inputs

    @staticmethod
    def reorder_mems(mems: Sequence[Tensor], beam_idx: Tensor) -> Mems:
        """Keep batch rows ``beam_idx`` of each layer's memory (beam search). Shape: (M, B, D)."""
        return tuple(m.index_select(1, beam_idx.to(m.device)) for m in mems)

    _reorder_cache = reorder_mems


class XLNetForSequenceClassification(XLNetPreTrainedModel, TaskModel):
    """Sequence summary, then ``logits_proj``. Shape: logits (B, num_labels); labels (B,)
    (or (B, num_labels) for multi-label)."""

    base_class = XLNetModel
    names = hf_names.BASE + hf_names.SUMMARY
    arguments = XLNetLMHeadModel.arguments
    output = XLNetForSequenceClassificationOutput

    def add_head(self, config: XLNetConfig) -> None:
        self.sequence_summary = SequenceSummary.from_config(config, config.d_model)
        self.logits_proj = Linear(config.d_model, config.num_labels)

    def head(self, base: XLNetModelOutput, labels: Tensor | None = None) -> dict[str, Any]:
        logits = self.logits_proj(self.sequence_summary(base.last_hidden_state))
        loss = None if labels is None else sequence_classification_loss(logits, labels, self.config)
        return {"loss": loss, "logits": logits}


class XLNetForTokenClassification(TokenClassifierHead, XLNetPreTrainedModel, TaskModel):
    """A linear classifier over every token. Shape: logits (B, T, num_labels); labels (B, T), -100 ignored."""

    base_class = XLNetModel
    arguments = XLNetLMHeadModel.arguments
    output = XLNetForTokenClassificationOutput


class XLNetForMultipleChoice(XLNetPreTrainedModel, TaskModel):
    """Each choice through the model, summarised, then one score.

    Shape: input_ids, token_type_ids, masks (B, C, T); inputs_embeds (B, C, T, D); logits (B, C);
    labels (B,). The choices run as B * C rows.
    """

    base_class = XLNetModel
    names = hf_names.BASE + hf_names.SUMMARY
    arguments = (  # the reference's order, unlike the other heads
        "input_ids", "token_type_ids", "input_mask", "attention_mask", "mems", "perm_mask", "target_mapping",
        "head_mask", "inputs_embeds", "labels", "use_mems", "output_attentions", "output_hidden_states",
        "return_dict",
    )
    output = XLNetForMultipleChoiceOutput

    def add_head(self, config: XLNetConfig) -> None:
        self.sequence_summary = SequenceSummary.from_config(config, config.d_model)
        self.logits_proj = Linear(config.d_model, 1)

    def base_inputs(self, inputs: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
        given = inputs.get("input_ids")
        own["n_choices"] = (given if given is not None else inputs.get("inputs_embeds")).shape[1]
        for name in ("input_ids", "token_type_ids", "input_mask", "attention_mask"):
            if inputs.get(name) is not None:
                inputs[name] = inputs[name].reshape(-1, inputs[name].shape[-1])  # (B * C, T)
        if inputs.get("inputs_embeds") is not None:
            inputs["inputs_embeds"] = inputs["inputs_embeds"].reshape(-1, *inputs["inputs_embeds"].shape[-2:])
        return inputs

    def head(self, base: XLNetModelOutput, labels: Tensor | None = None, n_choices: int = 1) -> dict[str, Any]:
        logits = self.logits_proj(self.sequence_summary(base.last_hidden_state)).view(-1, n_choices)
        return {"loss": None if labels is None else F.cross_entropy(logits, labels.view(-1)), "logits": logits}


class XLNetForQuestionAnsweringSimple(XLNetPreTrainedModel, TaskModel):
    """Start and end logits from one linear layer. Shape: start_logits, end_logits (B, T);
    start/end_positions (B,)."""

    base_class = XLNetModel
    names = hf_names.BASE + hf_names.SPAN
    head_inputs = ("start_positions", "end_positions")
    arguments = head_arguments(XLNetModel.forward, {_HEAD_AFTER: head_inputs})
    output = XLNetForQuestionAnsweringSimpleOutput

    def add_head(self, config: XLNetConfig) -> None:
        self.qa_outputs = SpanHead(config.d_model, config.num_labels)

    def head(self, base: XLNetModelOutput, **own: Tensor | None) -> dict[str, Any]:
        return self.qa_outputs.predict(base.last_hidden_state, **own)


class XLNetForQuestionAnswering(XLNetPreTrainedModel, TaskModel):
    """XLNet with the beam-search SQuAD head (``heads.BeamQAHead``): with start and end
    positions the loss only, otherwise the beam."""

    base_class = XLNetModel
    names = hf_names.BASE + hf_names.BEAM
    head_inputs = ("start_positions", "end_positions", "is_impossible", "cls_index", "p_mask")
    arguments = head_arguments(XLNetModel.forward, {_HEAD_AFTER: head_inputs})
    output = XLNetForQuestionAnsweringOutput

    def add_head(self, config: XLNetConfig) -> None:
        self.qa_head = BeamQAHead(
            config.d_model,
            layer_norm_eps=config.layer_norm_eps,
            start_n_top=config.start_n_top,
            end_n_top=config.end_n_top,
        )

    def head(self, base: XLNetModelOutput, **own: Tensor | None) -> dict[str, Any]:
        return dict(self.qa_head(base.last_hidden_state, **own).items())
