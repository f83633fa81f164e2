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
from ...layers import Attention, Cache, FeedForward, TransformerLayer, additive, causal_allowed, projections
from ...modeling import PreTrainedModel
from ...outputs import BaseModelOutput, BeamQAOutput, ClassifierOutput, LMOutput, SpanQAOutput
from . import names
from .config import XLMConfig

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

    def post_init(self) -> None:
        """Initialise as the reference does (skipped on the meta device), then tie."""
        if not any(p.is_meta for p in self.parameters()):
            with torch.no_grad():
                self.apply(self._init_module)
        super().post_init()

    def _init_module(self, module: nn.Module) -> None:
        config = self.config
        if isinstance(module, nn.Embedding):
            if config.embed_init_std is not None:
                nn.init.normal_(module.weight, mean=0.0, std=config.embed_init_std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.Linear):
            if config.init_std is not None:
                nn.init.normal_(module.weight, mean=0.0, std=config.init_std)
                if module.bias is not None:
                    module.bias.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        if isinstance(module, XLMModel) and config.sinusoidal_embeddings:
            module.position_embeddings.weight.copy_(xlm_sinusoidal_table(*module.position_embeddings.weight.shape))


def _pruned(config: XLMConfig, layer: int) -> int:
    """Heads removed from ``layer`` by a pruned checkpoint (``config.pruned_heads``)."""
    pruned = getattr(config, "pruned_heads", None) or {}
    return len(set(pruned.get(str(layer), pruned.get(layer, ()))))


def _refuse_unknown(name: str, kwargs: dict[str, Any]) -> None:
    """A misspelt argument is an error, not silently ignored."""
    if kwargs:
        raise TypeError(f"{name}.forward got unexpected arguments: {', '.join(sorted(kwargs))}")


class XLMModel(XLMPreTrainedModel):
    """The XLM encoder. Shape: input_ids (B, T) -> last_hidden_state (B, T, D)."""

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
        head_dim = dim // n_heads
        layers = []
        for i in range(config.n_layers):
            heads_i = n_heads - _pruned(config, i)
            layers.append(TransformerLayer(
                Attention(heads_i, **projections(dim, heads_i * head_dim), dropout=config.attention_dropout),
                FeedForward(dim, 4 * dim, "gelu" if config.gelu_activation else "relu"),
                self_attn_post_norm=nn.LayerNorm(dim, eps=config.layer_norm_eps),
                ffn_post_norm=nn.LayerNorm(dim, eps=config.layer_norm_eps),
                dropout=config.dropout,
            ))
        self.layers = nn.ModuleList(layers)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        langs: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        cache: Any = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: Any = None,
        use_cache: bool | None = None,
        cache_position: torch.Tensor | None = None,  # the reference's; positions come from the cache
        **kwargs: Any,
    ) -> BaseModelOutput | tuple:
        _refuse_unknown("XLMModel", kwargs)
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.use_return_dict if return_dict is None else return_dict
        if input_ids is None and inputs_embeds is None:
            raise ValueError("XLMModel needs input_ids or inputs_embeds")
        if cache is not None and past_key_values is not None:
            raise ValueError("pass either cache (the whole sequence so far) or past_key_values (new tokens only)")
        bs, t_in = input_ids.shape if input_ids is not None else inputs_embeds.shape[:2]
        device = input_ids.device if input_ids is not None else inputs_embeds.device

        # the cache, and how many positions it already holds
        given = cache if cache is not None else past_key_values
        keep_cache = given is not None or bool(use_cache)
        store = None
        if keep_cache:
            store = Cache.coerce(given, len(self.layers))
            if len(store) == 0:
                store = Cache(len(self.layers))
        past = store.get_seq_length() if store is not None else 0
        whole = cache is not None  # the reference's cache: the input is the whole sequence so far
        total = t_in if whole else past + t_in
        new = total - past
        if new <= 0:
            raise ValueError(f"the input ({t_in} positions) adds nothing to the {past} the cache holds")

        # the padding mask over all `total` positions: attention_mask, else lengths, else non-pad tokens
        if lengths is None:
            if input_ids is not None:
                lengths = (input_ids != self.pad_index).sum(dim=1) + (0 if whole else past)
            else:
                lengths = torch.full((bs,), total, device=device)
        if lengths.shape[0] != bs or int(lengths.max()) > total:
            raise ValueError(f"lengths must be (batch,) with values at most the sequence length {total}")
        if attention_mask is not None:
            mask = attention_mask
            if mask.shape[1] == new and new != total:  # new tokens only: the cached ones were real
                mask = torch.cat([mask.new_ones(bs, past), mask], dim=1)
        else:
            mask = torch.arange(total, device=device)[None, :] < lengths[:, None]
        keep = mask[:, -new:, None]  # (B, new, 1): multiplied into the hidden states

        # only the positions the cache has not seen
        def tail(x: torch.Tensor | None) -> torch.Tensor | None:
            return x[:, -new:] if x is not None and x.shape[1] > new else x

        input_ids, langs, token_type_ids = tail(input_ids), tail(langs), tail(token_type_ids)
        inputs_embeds = tail(inputs_embeds)
        if position_ids is None:
            position_ids = torch.arange(past, total, device=device)[None, :]
        else:
            position_ids = tail(position_ids)

        x = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        x = x + self.position_embeddings(position_ids).expand_as(x)
        if langs is not None and self.use_lang_emb:
            x = x + self.lang_embeddings(langs)
        if token_type_ids is not None:
            x = x + self.embeddings(token_type_ids)
        x = F.dropout(self.layer_norm_emb(x), p=self.dropout, training=self.training)
        x = x * keep.to(x.dtype)

        if self.causal:  # a plain triangle: the reference ignores padding here
            allowed = causal_allowed(new, total, device)  # (1, 1, new, total)
        else:
            allowed = (mask != 0)[:, None, None, :]  # (B, 1, 1, total)
        self_mask = additive(allowed, x.dtype)
        layer_heads = _per_layer(head_mask, len(self.layers), x.dtype)

        hidden_states: tuple[torch.Tensor, ...] = ()
        attentions: tuple[torch.Tensor, ...] = ()
        for i, layer in enumerate(self.layers):
            if output_hidden_states:
                hidden_states += (x,)
            x, weights, _ = layer(
                x,
                self_mask=self_mask,
                cache=None if store is None else store[i],
                head_mask=layer_heads[i],
                output_attentions=output_attentions,
            )
            if output_attentions:
                attentions += (weights,)
            x = x * keep.to(x.dtype)
        if output_hidden_states:
            hidden_states += (x,)

        out = BaseModelOutput(
            last_hidden_state=x,
            past_key_values=store,
            hidden_states=hidden_states if output_hidden_states else None,
            attentions=attentions if output_attentions else None,
        )
        return out if return_dict else out.to_tuple()


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
            self.proj = nn.Linear(config.emb_dim, config.vocab_size)

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


class XLMWithLMHeadModel(XLMPreTrainedModel):
    """XLM with its LM head (linear tied to the word embeddings, or adaptive softmax)."""

    tied_weights = {"pred_layer.proj.weight": "transformer.embeddings.weight"}

    def __init__(self, config: XLMConfig) -> None:
        super().__init__(config)
        self.transformer = XLMModel(config)
        self.pred_layer = XLMPredLayer(config)
        self.post_init()

    def ties_active(self) -> bool:
        return not self.config.asm and super().ties_active()

    def get_output_embeddings(self) -> nn.Module:
        return self.pred_layer.proj

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        langs: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        cache: Any = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        past_key_values: Any = None,
        use_cache: bool | None = None,
        cache_position: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> LMOutput | tuple:
        _refuse_unknown("XLMWithLMHeadModel", kwargs)
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        base = self.transformer(
            input_ids, attention_mask=attention_mask, langs=langs, token_type_ids=token_type_ids,
            position_ids=position_ids, lengths=lengths, cache=cache, head_mask=head_mask,
            inputs_embeds=inputs_embeds, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, past_key_values=past_key_values, use_cache=use_cache,
        )
        logits, loss = self.pred_layer(base.last_hidden_state, labels)
        out = LMOutput(
            loss=loss, logits=logits, past_key_values=base.past_key_values,
            hidden_states=base.hidden_states, attentions=base.attentions,
        )
        return out if return_dict else out.to_tuple()


class XLMForSequenceClassification(XLMPreTrainedModel):
    """Sequence summary (``config.summary_*``) of the last hidden states as the logits."""

    names = names.SUMMARY

    def __init__(self, config: XLMConfig) -> None:
        super().__init__(config)
        self.transformer = XLMModel(config)
        self.sequence_summary = heads.SequenceSummary.from_config(config, config.emb_dim)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        langs: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        cache: Any = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ClassifierOutput | tuple:
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        base = self.transformer(
            input_ids, attention_mask=attention_mask, langs=langs, token_type_ids=token_type_ids,
            position_ids=position_ids, lengths=lengths, cache=cache, head_mask=head_mask,
            inputs_embeds=inputs_embeds, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.sequence_summary(base.last_hidden_state)
        loss = None if labels is None else heads.sequence_classification_loss(logits, labels, self.config)
        out = ClassifierOutput(loss=loss, logits=logits, hidden_states=base.hidden_states, attentions=base.attentions)
        return out if return_dict else out.to_tuple()


class XLMForMultipleChoice(XLMPreTrainedModel):
    """Each choice through the encoder, summarised, then one score. Shape: (B, C, T) -> logits (B, C)."""

    names = names.SUMMARY

    def __init__(self, config: XLMConfig) -> None:
        super().__init__(config)
        self.transformer = XLMModel(config)
        self.sequence_summary = heads.SequenceSummary.from_config(config, config.emb_dim)
        self.logits_proj = nn.Linear(config.num_labels, 1)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        langs: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        cache: Any = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ClassifierOutput | tuple:
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        n_choices = (input_ids if input_ids is not None else inputs_embeds).shape[1]

        def rows(x: torch.Tensor | None, trailing: int = 1) -> torch.Tensor | None:
            return None if x is None else x.reshape(-1, *x.shape[x.dim() - trailing:])  # (B * C, T[, D])

        if lengths is not None:
            logger.warning("XLMForMultipleChoice ignores `lengths`; pass attention_mask instead")
        base = self.transformer(
            rows(input_ids), attention_mask=rows(attention_mask), langs=rows(langs),
            token_type_ids=rows(token_type_ids), position_ids=rows(position_ids), cache=cache,
            head_mask=head_mask, inputs_embeds=rows(inputs_embeds, 2), output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.logits_proj(self.sequence_summary(base.last_hidden_state)).view(-1, n_choices)
        loss = None if labels is None else F.cross_entropy(logits, labels)
        out = ClassifierOutput(loss=loss, logits=logits, hidden_states=base.hidden_states, attentions=base.attentions)
        return out if return_dict else out.to_tuple()


class XLMForTokenClassification(XLMPreTrainedModel):
    """A linear classifier over every token (after dropout)."""

    def __init__(self, config: XLMConfig) -> None:
        super().__init__(config)
        self.transformer = XLMModel(config)
        self.classifier = nn.Linear(config.emb_dim, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        langs: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        cache: Any = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> ClassifierOutput | tuple:
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        base = self.transformer(
            input_ids, attention_mask=attention_mask, langs=langs, token_type_ids=token_type_ids,
            position_ids=position_ids, lengths=lengths, cache=cache, head_mask=head_mask,
            inputs_embeds=inputs_embeds, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden = F.dropout(base.last_hidden_state, p=self.config.dropout, training=self.training)
        logits = self.classifier(hidden)
        loss = None if labels is None else heads.token_classification_loss(logits, labels)
        out = ClassifierOutput(loss=loss, logits=logits, hidden_states=base.hidden_states, attentions=base.attentions)
        return out if return_dict else out.to_tuple()


class XLMForQuestionAnsweringSimple(XLMPreTrainedModel):
    """Start and end logits from one linear layer (``config.num_labels`` outputs, split in two)."""

    names = names.SPAN_QA

    def __init__(self, config: XLMConfig) -> None:
        super().__init__(config)
        self.transformer = XLMModel(config)
        self.qa_outputs = heads.SpanHead(config.emb_dim, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        langs: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        cache: Any = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> SpanQAOutput | tuple:
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        base = self.transformer(
            input_ids, attention_mask=attention_mask, langs=langs, token_type_ids=token_type_ids,
            position_ids=position_ids, lengths=lengths, cache=cache, head_mask=head_mask,
            inputs_embeds=inputs_embeds, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        start_logits, end_logits = self.qa_outputs(base.last_hidden_state)
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = heads.span_loss(start_logits, end_logits, start_positions, end_positions)
        out = SpanQAOutput(
            loss=loss, start_logits=start_logits, end_logits=end_logits,
            hidden_states=base.hidden_states, attentions=base.attentions,
        )
        return out if return_dict else out.to_tuple()


class XLMForQuestionAnswering(XLMPreTrainedModel):
    """The beam-search SQuAD head (``heads.BeamQAHead``): a loss in training, the top
    ``start_n_top`` x ``end_n_top`` spans and an answerability logit in inference."""

    names = names.BEAM_QA

    def __init__(self, config: XLMConfig) -> None:
        super().__init__(config)
        self.transformer = XLMModel(config)
        self.qa_outputs = heads.BeamQAHead(
            config.emb_dim, layer_norm_eps=config.layer_norm_eps,
            start_n_top=config.start_n_top, end_n_top=config.end_n_top,
        )
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        langs: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        cache: Any = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        is_impossible: torch.Tensor | None = None,
        cls_index: torch.Tensor | None = None,
        p_mask: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BeamQAOutput | tuple:
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        base = self.transformer(
            input_ids, attention_mask=attention_mask, langs=langs, token_type_ids=token_type_ids,
            position_ids=position_ids, lengths=lengths, cache=cache, head_mask=head_mask,
            inputs_embeds=inputs_embeds, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        head = self.qa_outputs(
            base.last_hidden_state, start_positions=start_positions, end_positions=end_positions,
            cls_index=cls_index, is_impossible=is_impossible, p_mask=p_mask,
        )
        out = BeamQAOutput(
            loss=head.loss, start_top_log_probs=head.start_top_log_probs, start_top_index=head.start_top_index,
            end_top_log_probs=head.end_top_log_probs, end_top_index=head.end_top_index,
            cls_logits=head.cls_logits, hidden_states=base.hidden_states, attentions=base.attentions,
        )
        return out if return_dict else out.to_tuple()
