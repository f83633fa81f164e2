"""XLM: post-LN transformer encoder with language embeddings, and its task heads.

What is odd about XLM, and stays here:

* the input is ``word + position (+ language) (+ word embedding of token_type_ids)``, layer-normed;
* the padding mask (from ``attention_mask``, else from ``lengths``, else from counting
  non-pad tokens, which assumes right padding) is multiplied into the hidden states after the
  embeddings and after every layer;
* causal models (CLM) attend over a plain triangle, without a padding mask, as the reference does;
* sinusoidal position embeddings are XLM's own interleaved table (sine on even, cosine on odd
  columns), stored in the checkpoint like learned ones;
* the LM head is a linear layer tied to the word embeddings, or an adaptive softmax (``asm``).

Caches: ``past_key_values`` (a ``layers.Cache``, or the reference's tuple layout) takes only the
new tokens, as every family's decode step does; the reference's ``cache`` argument takes the
whole sequence so far and runs only the tokens the cache has not seen. Both update the cache
in place and return it in ``past_key_values``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ... import heads
from ...heads import TaskModel, head_arguments
from ...layers import Attention, Cache, FeedForward, Linear, TransformerLayer, additive, causal_allowed, projections
from ...layers.stack import Call, Stack
from ...modeling import PreTrainedModel
from ...outputs import BaseModelOutput, BeamQAOutput, ClassifierOutput, LMOutput, SpanQAOutput
from . import names
from .config import XLMConfig
from .generation import XLMAdapter

logger = logging.getLogger("xcli_models")

__all__ = [
    "XLMPreTrainedModel", "XLMModel", "XLMWithLMHeadModel", "XLMForSequenceClassification",
    "XLMForMultipleChoice", "XLMForTokenClassification", "XLMForQuestionAnsweringSimple",
    "XLMForQuestionAnswering", "xlm_sinusoidal_table",
]


def xlm_sinusoidal_table(n_positions: int, dim: int) -> torch.Tensor:
    """XLM's fixed position table: column j of row p is sin (j even) or cos (j odd) of
    ``p / 10000 ** (2 * (j // 2) / dim)``, computed in float64. Shape: (n_positions, dim)."""
    pos = torch.arange(n_positions, dtype=torch.float64)[:, None]
    j = torch.arange(dim, dtype=torch.float64)
    exponent = 2 * torch.div(j, 2, rounding_mode="floor") / dim
    angles = pos / torch.pow(torch.tensor(10000.0, dtype=torch.float64), exponent)
    table = torch.empty(n_positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.float()


class XLMPreTrainedModel(PreTrainedModel):
    config_class = XLMConfig
    base_model_prefix = "transformer"
    names = names.LAYERS

    def _init_tensor(self, name: str, tensor: torch.Tensor) -> None:
        """XLM's rule: embeddings drawn with ``embed_init_std``, a sinusoidal position table
        computed; everything else as every family draws it (``init_std``)."""
        owner_name = name.rpartition(".")[0]
        owner = self.get_submodule(owner_name) if owner_name else self
        if not isinstance(owner, nn.Embedding) or self.config.embed_init_std is None:
            return super()._init_tensor(name, tensor)
        with torch.no_grad():
            if self.config.sinusoidal_embeddings and owner_name.endswith("position_embeddings"):
                tensor.copy_(xlm_sinusoidal_table(*tensor.shape))
                return
            tensor.normal_(0.0, self.config.embed_init_std)
            if owner.padding_idx is not None:
                tensor[owner.padding_idx].zero_()


def _pruned(config: XLMConfig, layer: int) -> int:
    """Heads removed from ``layer`` by a pruned checkpoint (``config.pruned_heads``)."""
    pruned = getattr(config, "pruned_heads", None) or {}
    return len(set(pruned.get(str(layer), pruned.get(layer, ()))))


def _layer(config: XLMConfig, index: int) -> TransformerLayer:
    dim = config.emb_dim
    n_heads = config.n_heads - _pruned(config, index)
    head_dim = dim // config.n_heads
    return TransformerLayer.with_norms(
        "post",
        Attention(n_heads, **projections(dim, n_heads * head_dim), dropout=config.attention_dropout),
        FeedForward(dim, 4 * dim, "gelu" if config.gelu_activation else "relu"),
        dim,
        eps=config.layer_norm_eps,
        dropout=config.dropout,
    )


class XLMModel(Stack, XLMPreTrainedModel):
    """The XLM encoder. Shape: input_ids (B, T) -> last_hidden_state (B, T, D)."""

    arguments = (
        "input_ids", "attention_mask", "langs", "token_type_ids", "position_ids", "lengths", "cache", "head_mask",
        "inputs_embeds", "output_attentions", "output_hidden_states", "return_dict", "past_key_values", "use_cache",
        "cache_position",  # the reference's; positions come from the cache
    )
    #: a head mask may also be one (H,) row for every layer
    any_head_mask = True
    token_embeddings = "embeddings"

    def __init__(self, config: XLMConfig) -> None:
        super().__init__(config)
        if not config.is_encoder:
            raise NotImplementedError("XLM can only be used as an encoder (is_encoder=false is not supported)")
        dim, n_heads = config.emb_dim, config.n_heads
        if dim % n_heads:
            raise ValueError(f"emb_dim ({dim}) must be a multiple of n_heads ({n_heads})")
        self.causal = bool(config.causal)
        self.pad_index = config.pad_index
        self.dropout = config.dropout
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, dim)
        if config.sinusoidal_embeddings:
            self.position_embeddings.weight.requires_grad_(False)
        self.use_lang_emb = config.n_langs > 1 and config.use_lang_emb
        if self.use_lang_emb:
            self.lang_embeddings = nn.Embedding(config.n_langs, dim)
        self.embeddings = nn.Embedding(config.vocab_size, dim, padding_idx=config.pad_index)
        self.layer_norm_emb = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(_layer(config, i) for i in range(config.n_layers))
        self.post_init()

    def open(self, call: Call) -> None:
        """The cache to write to (``call.kv_cache``), the positions it holds (``call.past``) and
        those after this call (``call.total``)."""
        if call.input_ids is None and call.inputs_embeds is None:
            raise ValueError("XLMModel needs input_ids or inputs_embeds")
        if call.cache is not None and call.past_key_values is not None:
            raise ValueError("pass either cache (the whole sequence so far) or past_key_values (new tokens only)")
        call.kv_cache, call.past, call.total = self._open_cache(
            call.cache, call.past_key_values, call.use_cache, call.input_ids, call.inputs_embeds
        )

    def run(self, call: Call) -> BaseModelOutput:
        input_ids, inputs_embeds, past, total = call.input_ids, call.inputs_embeds, call.past, call.total
        new = total - past
        whole = call.cache is not None  # the reference's cache: the input is the whole sequence so far
        mask = self._padding_mask(call.attention_mask, call.lengths, input_ids, inputs_embeds, past, total, whole=whole)
        keep = mask[:, -new:, None]  # (B, new, 1): multiplied into the hidden states

        # only the positions the cache has not seen
        def tail(x: torch.Tensor | None) -> torch.Tensor | None:
            return x[:, -new:] if x is not None and x.shape[1] > new else x

        position_ids = call.position_ids
        if position_ids is None:
            device = (input_ids if input_ids is not None else inputs_embeds).device
            position_ids = torch.arange(past, total, device=device)[None, :]
        x = self._embed(
            tail(input_ids), tail(inputs_embeds), tail(call.langs), tail(call.token_type_ids), tail(position_ids)
        )
        x = x * keep.to(x.dtype)

        if self.causal:  # a plain triangle: the reference ignores padding here
            allowed = causal_allowed(new, total, x.device)  # (1, 1, new, total)
        else:
            allowed = (mask != 0)[:, None, None, :]  # (B, 1, 1, total)
        return self.run_layers(
            x, call,
            shared={"self_mask": additive(allowed, x.dtype)},
            per_layer={"head_mask": _per_layer(call.head_mask, len(self.layers), x.dtype)},
            after=lambda h: h * keep.to(h.dtype),
        )

    def _open_cache(
        self, cache: Any, past_key_values: Any, use_cache: bool | None,
        input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None,
    ) -> tuple[Cache | None, int, int]:
        """The cache to write to, the positions it holds, and the positions after this call."""
        t_in = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        given = cache if cache is not None else past_key_values
        store = None
        if given is not None or bool(use_cache):
            store = Cache.coerce(given, len(self.layers))
            if len(store) == 0:
                store = Cache(len(self.layers))
        past = store.get_seq_length() if store is not None else 0
        total = t_in if cache is not None else past + t_in  # the reference's cache: the whole sequence so far
        if total - past <= 0:
            raise ValueError(f"the input ({t_in} positions) adds nothing to the {past} the cache holds")
        return store, past, total

    def _padding_mask(
        self, attention_mask: torch.Tensor | None, lengths: torch.Tensor | None,
        input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, past: int, total: int, *, whole: bool,
    ) -> torch.Tensor:
        """(B, total), nonzero = a real token: attention_mask, else lengths, else the non-pad tokens."""
        source = input_ids if input_ids is not None else inputs_embeds
        bs, device = source.shape[0], source.device
        new = total - past
        if lengths is None:
            if input_ids is not None:
                lengths = (input_ids != self.pad_index).sum(dim=1) + (0 if whole else past)
            else:
                lengths = torch.full((bs,), total, device=device)
        if lengths.shape[0] != bs or int(lengths.max()) > total:
            raise ValueError(f"lengths must be (batch,) with values at most the sequence length {total}")
        if attention_mask is None:
            return torch.arange(total, device=device)[None, :] < lengths[:, None]
        if attention_mask.shape[1] == new and new != total:  # new tokens only: the cached ones were real
            return torch.cat([attention_mask.new_ones(bs, past), attention_mask], dim=1)
        return attention_mask

    def _embed(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, langs: torch.Tensor | None,
        token_type_ids: torch.Tensor | None, position_ids: torch.Tensor,
    ) -> torch.Tensor:
        """Words + positions (+ languages) (+ token types as words), layer-normed. Shape: (B, T, D)."""
        x = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        x = x + self.position_embeddings(position_ids).expand_as(x)
        if langs is not None and self.use_lang_emb:
            x = x + self.lang_embeddings(langs)
        if token_type_ids is not None:
            x = x + self.embeddings(token_type_ids)
        return F.dropout(self.layer_norm_emb(x), p=self.dropout, training=self.training)


def _per_layer(head_mask: torch.Tensor | None, n_layers: int, dtype: torch.dtype) -> list[torch.Tensor | None]:
    """``head_mask`` (H,) for every layer or (L, H) per layer -> one (H,) tensor (or None) per layer."""
    if head_mask is None:
        return [None] * n_layers
    head_mask = head_mask.to(dtype)
    if head_mask.dim() == 1:
        return [head_mask] * n_layers
    return [head_mask[i].reshape(-1) for i in range(n_layers)]


class XLMPredLayer(nn.Module):
    """The LM head: a linear layer over the vocabulary, or an adaptive softmax.

    With ``asm`` the logits are the adaptive softmax's log-probabilities over the whole
    vocabulary and the loss its negative log-likelihood (labels -100 are left out).
    Shape: (B, T, D) -> logits (B, T, V); labels (B, T).
    """

    def __init__(self, config: XLMConfig) -> None:
        super().__init__()
        self.asm = bool(config.asm)
        self.n_words = config.vocab_size
        if self.asm:
            if not config.asm_cutoffs or config.asm_div_value is None:
                raise ValueError("asm=true needs asm_cutoffs and asm_div_value in the config")
            self.proj: nn.Module = nn.AdaptiveLogSoftmaxWithLoss(
                config.emb_dim, config.vocab_size, cutoffs=list(config.asm_cutoffs),
                div_value=float(config.asm_div_value), head_bias=True,
            )
        else:
            self.proj = Linear(config.emb_dim, config.vocab_size)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.asm:
            logits = self.proj(x)
            loss = None
            if labels is not None:
                loss = F.cross_entropy(logits.view(-1, self.n_words), labels.reshape(-1))
            return logits, loss
        flat = x.reshape(-1, x.shape[-1])  # (B * T, D): the adaptive softmax takes rows
        logits = self.proj.log_prob(flat).view(*x.shape[:-1], self.n_words)
        loss = None
        if labels is not None:
            targets = labels.reshape(-1)
            kept = targets != -100
            loss = self.proj(flat[kept], targets[kept]).loss
        return logits, loss


#: a head's own arguments come after the base model's ``inputs_embeds``; the classifiers and span
#: heads take none of the base model's cache arguments (as in the reference)
_NO_CACHE = ("past_key_values", "use_cache", "cache_position")


class XLMWithLMHeadModel(XLMPreTrainedModel, TaskModel):
    """XLM with its LM head (linear tied to the word embeddings, or adaptive softmax)."""

    base_class = XLMModel
    output_ties = {"pred_layer.proj.weight": "transformer.embeddings.weight"}
    arguments = head_arguments(XLMModel.forward, {"inputs_embeds": ("labels",)})
    output = LMOutput
    #: generation scores a mask token appended at each step (see .generation)
    generation_adapter_class = XLMAdapter

    def add_head(self, config: XLMConfig) -> None:
        self.pred_layer = XLMPredLayer(config)

    def ties_output(self) -> bool:
        return not self.config.asm and super().ties_output()

    def get_output_embeddings(self) -> nn.Module:
        return self.pred_layer.proj

    def head(self, base: BaseModelOutput, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits, loss = self.pred_layer(base.last_hidden_state, labels)
        return {"loss": loss, "logits": logits}


class XLMForSequenceClassification(XLMPreTrainedModel, TaskModel):
    """Sequence summary (``config.summary_*``) of the last hidden states as the logits."""

    base_class = XLMModel
    names = names.SUMMARY
    arguments = head_arguments(XLMModel.forward, {"inputs_embeds": ("labels",)}, drop=_NO_CACHE)
    output = ClassifierOutput

    def add_head(self, config: XLMConfig) -> None:
        self.sequence_summary = heads.SequenceSummary.from_config(config, config.emb_dim)

    def head(self, base: BaseModelOutput, labels: torch.Tensor | None = None) -> dict[str, Any]:
        logits = self.sequence_summary(base.last_hidden_state)
        loss = None if labels is None else heads.sequence_classification_loss(logits, labels, self.config)
        return {"loss": loss, "logits": logits}


class XLMForMultipleChoice(XLMPreTrainedModel, TaskModel):
    """Each choice through the encoder, summarised, then one score. Shape: (B, C, T) -> logits (B, C).

    ``lengths`` is not used (pass ``attention_mask``), as in the reference.
    """

    base_class = XLMModel
    names = names.SUMMARY
    arguments = XLMForSequenceClassification.arguments
    output = ClassifierOutput

    def add_head(self, config: XLMConfig) -> None:
        self.sequence_summary = heads.SequenceSummary.from_config(config, config.emb_dim)
        self.logits_proj = Linear(config.num_labels, 1)

    def base_inputs(self, inputs: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
        given = inputs.get("input_ids")
        own["n_choices"] = (given if given is not None else inputs.get("inputs_embeds")).shape[1]
        if inputs.pop("lengths", None) is not None:
            logger.warning("XLMForMultipleChoice ignores `lengths`; pass attention_mask instead")
        for name in ("input_ids", "attention_mask", "langs", "token_type_ids", "position_ids", "inputs_embeds"):
            value = inputs.get(name)
            if value is not None:
                trailing = 2 if name == "inputs_embeds" else 1
                inputs[name] = value.reshape(-1, *value.shape[value.dim() - trailing:])  # (B * C, T[, D])
        return inputs

    def head(
        self, base: BaseModelOutput, labels: torch.Tensor | None = None, n_choices: int = 1
    ) -> dict[str, Any]:
        logits = self.logits_proj(self.sequence_summary(base.last_hidden_state)).view(-1, n_choices)
        return {"loss": None if labels is None else F.cross_entropy(logits, labels), "logits": logits}


class XLMForTokenClassification(heads.TokenClassifierHead, XLMPreTrainedModel, TaskModel):
    """A linear classifier over every token (after dropout)."""

    base_class = XLMModel
    arguments = XLMForSequenceClassification.arguments
    output = ClassifierOutput
    dropout_field = "dropout"


class XLMForQuestionAnsweringSimple(XLMPreTrainedModel, TaskModel):
    """Start and end logits from one linear layer (``config.num_labels`` outputs, split in two)."""

    base_class = XLMModel
    names = names.SPAN_QA
    head_inputs = ("start_positions", "end_positions")
    arguments = head_arguments(XLMModel.forward, {"inputs_embeds": head_inputs}, drop=_NO_CACHE)
    output = SpanQAOutput

    def add_head(self, config: XLMConfig) -> None:
        self.qa_outputs = heads.SpanHead(config.emb_dim, config.num_labels)

    def head(self, base: BaseModelOutput, **own: torch.Tensor | None) -> dict[str, Any]:
        return self.qa_outputs.predict(base.last_hidden_state, **own)


class XLMForQuestionAnswering(XLMPreTrainedModel, TaskModel):
    """The beam-search SQuAD head (``heads.BeamQAHead``): a loss in training, the top
    ``start_n_top`` x ``end_n_top`` spans and an answerability logit in inference."""

    base_class = XLMModel
    names = names.BEAM_QA
    head_inputs = ("start_positions", "end_positions", "is_impossible", "cls_index", "p_mask")
    arguments = head_arguments(XLMModel.forward, {"inputs_embeds": head_inputs}, drop=_NO_CACHE)
    output = BeamQAOutput

    def add_head(self, config: XLMConfig) -> None:
        self.qa_outputs = heads.BeamQAHead(
            config.emb_dim, layer_norm_eps=config.layer_norm_eps,
            start_n_top=config.start_n_top, end_n_top=config.end_n_top,
        )

    def head(self, base: BaseModelOutput, **own: torch.Tensor | None) -> dict[str, Any]:
        return dict(self.qa_outputs(base.last_hidden_state, **own).items())
