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

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ...heads import (
    BeamQAHead,
    SequenceSummary,
    SpanHead,
    sequence_classification_loss,
    span_loss,
    token_classification_loss,
)
from ...layers import FeedForward, additive
from ...modeling import PreTrainedModel
from ...outputs import ModelOutput
from . import names as hf_names
from .attention import HeadwiseLinear, RelativeAttention, XLNetLayer, relative_sinusoids
from .config import XLNetConfig

Tensor = torch.Tensor
Mems = tuple[Tensor, ...]


# -------------------------------------------------------------------- outputs
@dataclass
class XLNetModelOutput(ModelOutput):
    last_hidden_state: Tensor | None = None
    mems: Mems | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Any, ...] | None = None


@dataclass
class XLNetLMHeadModelOutput(ModelOutput):
    """Also the output of the sequence, token and multiple-choice classifiers."""

    loss: Tensor | None = None
    logits: Tensor | None = None
    mems: Mems | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Any, ...] | None = None


XLNetForSequenceClassificationOutput = XLNetLMHeadModelOutput
XLNetForTokenClassificationOutput = XLNetLMHeadModelOutput
XLNetForMultipleChoiceOutput = XLNetLMHeadModelOutput


@dataclass
class XLNetForQuestionAnsweringSimpleOutput(ModelOutput):
    loss: Tensor | None = None
    start_logits: Tensor | None = None
    end_logits: Tensor | None = None
    mems: Mems | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Any, ...] | None = None


@dataclass
class XLNetForQuestionAnsweringOutput(ModelOutput):
    loss: Tensor | None = None
    start_top_log_probs: Tensor | None = None
    start_top_index: Tensor | None = None
    end_top_log_probs: Tensor | None = None
    end_top_index: Tensor | None = None
    cls_logits: Tensor | None = None
    mems: Mems | None = None
    hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Any, ...] | None = None


# ----------------------------------------------------------------------- base
class XLNetPreTrainedModel(PreTrainedModel):
    config_class = XLNetConfig
    base_model_prefix = "transformer"
    names = hf_names.BASE
    config: XLNetConfig

    def post_init(self) -> None:
        """Initialise this model's own weights as the reference does, then tie."""
        std = self.init_std()
        with torch.no_grad():
            for module in _own_modules(self):
                if isinstance(module, (nn.Linear, nn.Embedding, HeadwiseLinear)):
                    module.weight.normal_(0.0, std)
                    if getattr(module, "bias", None) is not None:
                        module.bias.zero_()
                elif isinstance(module, nn.LayerNorm):
                    module.weight.fill_(1.0)
                    module.bias.zero_()
                elif isinstance(module, RelativeAttention):
                    for p in (module.content_bias, module.position_bias, module.segment_bias, module.segment_embed):
                        p.normal_(0.0, std)
                elif isinstance(module, XLNetModel):
                    module.mask_emb.normal_(0.0, std)
        super().post_init()

    # task models: the base model, then the head
    def _base(self, input_ids: Tensor | None, kwargs: dict[str, Any]) -> "XLNetModelOutput":
        return self.transformer(input_ids, return_dict=True, **kwargs)

    def _finish(self, out: ModelOutput, return_dict: bool | None) -> ModelOutput | tuple:
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        return out if return_dict else out.to_tuple()


def _own_modules(model: nn.Module):
    """``model`` and its submodules, leaving out nested models (they initialise themselves)."""
    stack = [model]
    while stack:
        module = stack.pop()
        yield module
        stack.extend(c for c in module.children() if not isinstance(c, PreTrainedModel))


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
    return XLNetLayer(
        attn,
        FeedForward(d, config.d_inner, config.ff_activation, dropout=config.dropout),
        self_attn_post_norm=nn.LayerNorm(d, eps=config.layer_norm_eps),
        ffn_post_norm=nn.LayerNorm(d, eps=config.layer_norm_eps),
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

    def _masks(
        self,
        qlen: int,
        mlen: int,
        attention_mask: Tensor | None,
        input_mask: Tensor | None,
        perm_mask: Tensor | None,
        dtype: torch.dtype,
        device: torch.device,
    ) -> tuple[Tensor | None, Tensor | None]:
        """Additive masks (B|1, 1, T, K) of the content and the query stream, or None.

        A key is blocked by the causal pattern (``uni``), by padding, or by ``perm_mask``; in the
        content stream a token always sees itself.
        """
        klen = mlen + qlen
        query = torch.arange(qlen, device=device)[:, None] + mlen  # absolute position of each query
        key = torch.arange(klen, device=device)[None, :]
        blocked: Tensor | None = None

        def join(more: Tensor) -> None:
            nonlocal blocked
            blocked = more if blocked is None else blocked | more

        if self.config.attn_type == "uni":
            causal = key > query
            if self.config.same_length:  # every query sees the same number of keys
                causal = causal | (key < query - mlen)
            join(causal[None])  # (1, T, K)
        if input_mask is not None and attention_mask is not None:
            raise ValueError("pass one of input_mask (1 = padding) and attention_mask (0 = padding), not both")
        if input_mask is None and attention_mask is not None:
            input_mask = 1.0 - attention_mask.float()
        if input_mask is not None:
            padding = input_mask.to(device) > 0  # (B, T) or (B, >= K)
            if padding.shape[1] == qlen:
                padding = torch.cat([padding.new_zeros(padding.shape[0], mlen), padding], dim=1)
            elif padding.shape[1] >= klen:
                padding = padding[:, -klen:]
            else:
                raise ValueError(
                    f"a padding mask of length {padding.shape[1]} fits neither the input ({qlen}) "
                    f"nor memory plus input ({klen})"
                )
            join(padding[:, None, :])  # (B, 1, K)
        if perm_mask is not None:
            perm = perm_mask.to(device) > 0  # (B, T, T)
            join(torch.cat([perm.new_zeros(perm.shape[0], qlen, mlen), perm], dim=2))
        if blocked is None:
            return None, None
        blocked_h = blocked & (key != query)[None]
        return additive(~blocked_h[:, None], dtype), additive(~blocked[:, None], dtype)

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
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = cfg.use_return_dict if return_dict is None else return_dict
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

        mask_h, mask_g = self._masks(qlen, mlen, attention_mask, input_mask, perm_mask, dtype, device)
        segments = None
        if token_type_ids is not None:  # memory counts as segment 0
            keys = torch.cat([token_type_ids.new_zeros(batch, mlen), token_type_ids], dim=1)
            segments = token_type_ids[:, :, None] != keys[:, None, :]  # (B, T, K)
        positions = relative_sinusoids(
            qlen,
            mlen + qlen,
            cfg.d_model,
            bidirectional=cfg.attn_type == "bi",
            clamp_len=cfg.clamp_len,
            bi_data=cfg.bi_data,
            batch=batch,
            device=device,
        )
        positions = self._drop(positions.to(dtype))
        head_masks: Sequence[Tensor | None] = [None] * len(self.layers)
        if head_mask is not None:
            head_mask = head_mask.to(dtype)
            head_masks = [head_mask] * len(self.layers) if head_mask.dim() == 1 else list(head_mask)
        if target_mapping is not None:
            target_mapping = target_mapping.to(dtype)

        h = self._drop(x)
        g = None
        if target_mapping is not None:
            g = self._drop(self.mask_emb.expand(batch, target_mapping.shape[1], -1))

        new_mems: list[Tensor] = []
        hidden_states: list[Tensor] = []
        attentions: list[Any] = []
        for layer, memory, layer_head_mask in zip(self.layers, memories, head_masks):
            if use_mems:
                new_mems.append(self._cache(h, memory))
            if output_hidden_states:
                hidden_states.extend((h,) if g is None else (h, g))
            h, g, weights_h, weights_g = layer(
                h,
                g,
                positions=positions,
                memory=None if memory is None else memory.transpose(0, 1).to(dtype),  # (B, M, D)
                segments=segments,
                mask_h=mask_h,
                mask_g=mask_g,
                target_mapping=target_mapping,
                head_mask=layer_head_mask,
                output_attentions=output_attentions,
            )
            if output_attentions:
                attentions.append(weights_h if g is None else (weights_h, weights_g))
        if output_hidden_states:
            hidden_states.extend((h,) if g is None else (h, g))

        out = XLNetModelOutput(
            last_hidden_state=self._drop(h if g is None else g),
            mems=tuple(new_mems) if use_mems else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )
        return out if return_dict else out.to_tuple()


# ---------------------------------------------------------------------- heads
_BASE_ARGS = (
    "attention_mask", "mems", "perm_mask", "target_mapping", "token_type_ids", "input_mask",
    "head_mask", "inputs_embeds", "use_mems", "output_attentions", "output_hidden_states",
)


class XLNetLMHeadModel(XLNetPreTrainedModel):
    """XLNet with its LM head ``lm_loss`` (weight tied to the word embeddings, own bias)."""

    tied_weights = {"lm_loss.weight": "transformer.word_embedding.weight"}

    def __init__(self, config: XLNetConfig) -> None:
        super().__init__(config)
        self.transformer = XLNetModel(config)
        self.lm_loss = nn.Linear(config.d_model, config.vocab_size)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_loss

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
        labels: Tensor | None = None,
        use_mems: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> XLNetLMHeadModelOutput | tuple:
        """Shape: logits (B, P or T, vocab); labels (B, P or T), -100 ignored."""
        base = self._base(input_ids, {**_pick(locals()), **kwargs})
        logits = self.lm_loss(base.last_hidden_state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        out = XLNetLMHeadModelOutput(loss, logits, base.mems, base.hidden_states, base.attentions)
        return self._finish(out, return_dict)

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


class XLNetForSequenceClassification(XLNetPreTrainedModel):
    names = hf_names.BASE + hf_names.SUMMARY

    def __init__(self, config: XLNetConfig) -> None:
        super().__init__(config)
        self.transformer = XLNetModel(config)
        self.sequence_summary = SequenceSummary.from_config(config, config.d_model)
        self.logits_proj = nn.Linear(config.d_model, config.num_labels)
        self.post_init()

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
        labels: Tensor | None = None,
        use_mems: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> XLNetLMHeadModelOutput | tuple:
        """Shape: logits (B, num_labels); labels (B,) (or (B, num_labels) for multi-label)."""
        base = self._base(input_ids, {**_pick(locals()), **kwargs})
        logits = self.logits_proj(self.sequence_summary(base.last_hidden_state))
        loss = None if labels is None else sequence_classification_loss(logits, labels, self.config)
        out = XLNetForSequenceClassificationOutput(loss, logits, base.mems, base.hidden_states, base.attentions)
        return self._finish(out, return_dict)


class XLNetForTokenClassification(XLNetPreTrainedModel):
    def __init__(self, config: XLNetConfig) -> None:
        super().__init__(config)
        self.transformer = XLNetModel(config)
        self.classifier = nn.Linear(config.d_model, config.num_labels)
        self.post_init()

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
        labels: Tensor | None = None,
        use_mems: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> XLNetLMHeadModelOutput | tuple:
        """Shape: logits (B, T, num_labels); labels (B, T), -100 ignored."""
        base = self._base(input_ids, {**_pick(locals()), **kwargs})
        logits = self.classifier(base.last_hidden_state)
        loss = None if labels is None else token_classification_loss(logits, labels)
        out = XLNetForTokenClassificationOutput(loss, logits, base.mems, base.hidden_states, base.attentions)
        return self._finish(out, return_dict)


class XLNetForMultipleChoice(XLNetPreTrainedModel):
    names = hf_names.BASE + hf_names.SUMMARY

    def __init__(self, config: XLNetConfig) -> None:
        super().__init__(config)
        self.transformer = XLNetModel(config)
        self.sequence_summary = SequenceSummary.from_config(config, config.d_model)
        self.logits_proj = nn.Linear(config.d_model, 1)
        self.post_init()

    def forward(
        self,
        input_ids: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        input_mask: Tensor | None = None,
        attention_mask: Tensor | None = None,
        mems: Sequence[Tensor] | None = None,
        perm_mask: Tensor | None = None,
        target_mapping: Tensor | None = None,
        head_mask: Tensor | None = None,
        inputs_embeds: Tensor | None = None,
        labels: Tensor | None = None,
        use_mems: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> XLNetLMHeadModelOutput | tuple:
        """Shape: input_ids, token_type_ids, masks (B, C, T); inputs_embeds (B, C, T, D);
        logits (B, C); labels (B,). The choices run as B * C rows."""
        n_choices = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        args = _pick(locals())
        for name in ("token_type_ids", "input_mask", "attention_mask"):
            if args[name] is not None:
                args[name] = args[name].reshape(-1, args[name].shape[-1])  # (B * C, T)
        if inputs_embeds is not None:
            args["inputs_embeds"] = inputs_embeds.reshape(-1, *inputs_embeds.shape[-2:])
        flat_ids = None if input_ids is None else input_ids.reshape(-1, input_ids.shape[-1])
        base = self._base(flat_ids, {**args, **kwargs})
        logits = self.logits_proj(self.sequence_summary(base.last_hidden_state)).view(-1, n_choices)
        loss = None if labels is None else F.cross_entropy(logits, labels.view(-1))
        out = XLNetForMultipleChoiceOutput(loss, logits, base.mems, base.hidden_states, base.attentions)
        return self._finish(out, return_dict)


class XLNetForQuestionAnsweringSimple(XLNetPreTrainedModel):
    names = hf_names.BASE + hf_names.SPAN

    def __init__(self, config: XLNetConfig) -> None:
        super().__init__(config)
        self.transformer = XLNetModel(config)
        self.qa_outputs = SpanHead(config.d_model, config.num_labels)
        self.post_init()

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
        start_positions: Tensor | None = None,
        end_positions: Tensor | None = None,
        use_mems: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> XLNetForQuestionAnsweringSimpleOutput | tuple:
        """Shape: start_logits, end_logits (B, T); start/end_positions (B,)."""
        base = self._base(input_ids, {**_pick(locals()), **kwargs})
        start_logits, end_logits = self.qa_outputs(base.last_hidden_state)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        out = XLNetForQuestionAnsweringSimpleOutput(
            loss, start_logits, end_logits, base.mems, base.hidden_states, base.attentions
        )
        return self._finish(out, return_dict)


class XLNetForQuestionAnswering(XLNetPreTrainedModel):
    """XLNet with the beam-search SQuAD head (``heads.BeamQAHead``)."""

    names = hf_names.BASE + hf_names.BEAM

    def __init__(self, config: XLNetConfig) -> None:
        super().__init__(config)
        self.transformer = XLNetModel(config)
        self.qa_head = BeamQAHead(
            config.d_model,
            layer_norm_eps=config.layer_norm_eps,
            start_n_top=config.start_n_top,
            end_n_top=config.end_n_top,
        )
        self.post_init()

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
        start_positions: Tensor | None = None,
        end_positions: Tensor | None = None,
        is_impossible: Tensor | None = None,
        cls_index: Tensor | None = None,
        p_mask: Tensor | None = None,
        use_mems: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> XLNetForQuestionAnsweringOutput | tuple:
        """With start and end positions: the loss only. Otherwise the beam (see BeamQAHead)."""
        base = self._base(input_ids, {**_pick(locals()), **kwargs})
        head = self.qa_head(
            base.last_hidden_state,
            start_positions=start_positions,
            end_positions=end_positions,
            cls_index=cls_index,
            is_impossible=is_impossible,
            p_mask=p_mask,
        )
        out = XLNetForQuestionAnsweringOutput(
            head.loss,
            head.start_top_log_probs,
            head.start_top_index,
            head.end_top_log_probs,
            head.end_top_index,
            head.cls_logits,
            base.mems,
            base.hidden_states,
            base.attentions,
        )
        return self._finish(out, return_dict)


def _pick(arguments: dict[str, Any]) -> dict[str, Any]:
    """The base model's keyword arguments out of a task forward's ``locals()``."""
    return {name: arguments[name] for name in _BASE_ARGS}
