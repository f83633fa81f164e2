"""MVP: a BART-shaped post-LN encoder-decoder, with optional layer-wise prompts.

The stack is assembled from the shared blocks: learned positions offset by 2,
``layernorm_embedding`` after the embeddings, post-LN ``TransformerLayer``\\ s.
What is MVP's own is the prompt (``Prompt``): with ``config.use_prompt`` a small
MLP turns ``prompt_length`` learned vectors into extra keys and values for every
attention layer (encoder self-attention, decoder self- and cross-attention), put
before the real ones through ``Attention``'s ``prefix`` and always visible.
``set_lightweight_tuning()`` freezes everything but these prompt modules.

The decoder is one code path for a whole sequence and for cached steps: its
positions continue from the cached length, and it returns the updated ``Cache``
(self-attention keys grow, cross-attention keys are computed once).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ...heads import SpanHead, sequence_classification_loss, span_loss
from ...layers import (
    Attention,
    Cache,
    FeedForward,
    LearnedPositions,
    TransformerLayer,
    decoder_mask,
    encoder_mask,
    projections,
)
from ...modeling import PreTrainedModel
from ...outputs import (
    BaseModelOutput,
    LMOutput,
    Seq2SeqClassifierOutput,
    Seq2SeqLMOutput,
    Seq2SeqModelOutput,
    Seq2SeqSpanQAOutput,
)
from .config import MvpConfig
from .names import MVP_NAMES

__all__ = [
    "MvpForCausalLM",
    "MvpForConditionalGeneration",
    "MvpForQuestionAnswering",
    "MvpForSequenceClassification",
    "MvpModel",
    "MvpPreTrainedModel",
    "shift_tokens_right",
]

POSITION_OFFSET = 2  # MVP (like BART) keeps the first two rows of its position table unused


def shift_tokens_right(
    input_ids: torch.Tensor, pad_token_id: int | None, decoder_start_token_id: int | None
) -> torch.Tensor:
    """Decoder inputs from labels: start token first, labels moved one step right, -100 -> pad.

    Shape: (B, T) -> (B, T).
    """
    if pad_token_id is None:
        raise ValueError("config.pad_token_id must be set to build decoder inputs from labels")
    if decoder_start_token_id is None:
        raise ValueError("config.decoder_start_token_id must be set to build decoder inputs from labels")
    shifted = input_ids.new_empty(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill_(shifted == -100, pad_token_id)


# ------------------------------------------------------------------ parts
class Prompt(nn.Module):
    """Layer-wise prefix keys and values for one kind of attention.

    ``length`` learned vectors pass through ``down(gelu(up(x)))`` to ``n_layers * 2 * dim``
    numbers each, read as a key and a value per layer and head; dropout (``config.dropout``)
    applies to the result.

    Shape: () -> ``n_layers`` pairs (key, value), each (H, P, Dh).
    """

    def __init__(self, config: MvpConfig, n_layers: int, n_heads: int) -> None:
        super().__init__()
        self.length, self.n_layers, self.n_heads = config.prompt_length, n_layers, n_heads
        self.dropout = config.dropout
        self.embedding = nn.Embedding(config.prompt_length, config.d_model)
        self.up = nn.Linear(config.d_model, config.prompt_mid_dim)
        self.down = nn.Linear(config.prompt_mid_dim, n_layers * 2 * config.d_model)

    def forward(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x = self.down(F.gelu(self.up(self.embedding.weight)))  # (P, L * 2 * D)
        x = x.view(self.length, self.n_layers * 2, self.n_heads, -1)  # (P, 2L, H, Dh)
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = x.permute(1, 2, 0, 3)  # (2L, H, P, Dh): layer l has key 2l, value 2l + 1
        return [(x[2 * i], x[2 * i + 1]) for i in range(self.n_layers)]


class ClassificationHead(nn.Module):
    """``out_proj(dropout(tanh(dense(dropout(x)))))``. Shape: (B, D) -> (B, num_labels)."""

    def __init__(self, dim: int, inner_dim: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, inner_dim)
        self.out_proj = nn.Linear(inner_dim, num_labels)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(F.dropout(x, p=self.dropout, training=self.training)))
        return self.out_proj(F.dropout(x, p=self.dropout, training=self.training))


def _layer(config: MvpConfig, n_heads: int, ffn_dim: int, *, cross: bool) -> TransformerLayer:
    """A post-LN layer: norms after each residual sum."""
    dim = config.d_model
    if dim % n_heads:
        raise ValueError(f"d_model ({dim}) must be divisible by the number of attention heads ({n_heads})")

    def attention() -> Attention:
        return Attention(n_heads, **projections(dim), dropout=config.attention_dropout)

    return TransformerLayer(
        attention(),
        FeedForward(dim, ffn_dim, config.activation_function, dropout=config.activation_dropout),
        cross_attn=attention() if cross else None,
        self_attn_post_norm=nn.LayerNorm(dim),
        cross_attn_post_norm=nn.LayerNorm(dim) if cross else None,
        ffn_post_norm=nn.LayerNorm(dim),
        dropout=config.dropout,
    )


def _check_head_mask(head_mask: torch.Tensor | None, n_layers: int, name: str) -> None:
    if head_mask is not None and head_mask.shape[0] != n_layers:
        raise ValueError(f"{name} should be given for {n_layers} layers, but it is for {head_mask.shape[0]}")


def _clamp_overflow(x: torch.Tensor) -> torch.Tensor:
    """float16 only: keep inf/nan from an overflowing layer out of the next one, as the reference does."""
    if x.dtype == torch.float16 and not torch.isfinite(x).all():
        limit = torch.finfo(x.dtype).max - 1000
        x = x.clamp(min=-limit, max=limit)
    return x


class _Stack(nn.Module):
    """What the encoder and decoder share: their input embedding and LayerDrop.

    Inputs are token embeddings (times sqrt(d_model) when ``scale_embedding``) plus learned
    positions, then ``layernorm_embedding`` and dropout. ``embed_tokens`` is the model's shared
    embedding when given, else the stack's own.
    """

    def __init__(self, config: MvpConfig, embed_tokens: nn.Embedding | None, layerdrop: float) -> None:
        super().__init__()
        self.config = config
        dim = config.d_model
        if embed_tokens is None:
            embed_tokens = nn.Embedding(config.vocab_size, dim, config.pad_token_id)
        self.embed_tokens = embed_tokens
        self.embed_scale = math.sqrt(dim) if config.scale_embedding else 1.0
        self.embed_positions = LearnedPositions(config.max_position_embeddings, dim, offset=POSITION_OFFSET)
        self.layernorm_embedding = nn.LayerNorm(dim)
        self.dropout = config.dropout
        self.layerdrop = layerdrop

    def _embed(
        self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None, past_length: int = 0
    ) -> torch.Tensor:
        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("pass either input_ids or inputs_embeds, not both")
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass input_ids or inputs_embeds")
            inputs_embeds = self.embed_tokens(input_ids.view(-1, input_ids.shape[-1])) * self.embed_scale
        t = inputs_embeds.shape[1]
        positions = torch.arange(past_length, past_length + t, device=inputs_embeds.device)[None]  # (1, T)
        x = self.layernorm_embedding(inputs_embeds + self.embed_positions(positions))
        return F.dropout(x, p=self.dropout, training=self.training)

    def _drop_layer(self) -> bool:
        """LayerDrop: in training, skip a layer with probability ``layerdrop``."""
        return self.training and bool(torch.rand([]) < self.layerdrop)


class MvpEncoder(_Stack):
    """The encoder stack. Shape: input_ids (B, S) -> last_hidden_state (B, S, D)."""

    def __init__(self, config: MvpConfig, embed_tokens: nn.Embedding | None = None, use_prompt: bool = False) -> None:
        super().__init__(config, embed_tokens, config.encoder_layerdrop)
        self.layers = nn.ModuleList(
            _layer(config, config.encoder_attention_heads, config.encoder_ffn_dim, cross=False)
            for _ in range(config.encoder_layers)
        )
        self.self_attn_prompt = (
            Prompt(config, config.encoder_layers, config.encoder_attention_heads) if use_prompt else None
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> BaseModelOutput | tuple:
        output_attentions = _default(output_attentions, self.config.output_attentions)
        output_hidden_states = _default(output_hidden_states, self.config.output_hidden_states)
        return_dict = _default(return_dict, self.config.use_return_dict)
        _check_head_mask(head_mask, len(self.layers), "head_mask")

        x = self._embed(input_ids, inputs_embeds)
        mask = encoder_mask(attention_mask, x.dtype)
        prompts = self.self_attn_prompt() if self.self_attn_prompt is not None else None

        states: tuple[torch.Tensor, ...] | None = () if output_hidden_states else None
        attentions: tuple[Any, ...] | None = () if output_attentions else None
        for i, layer in enumerate(self.layers):
            if states is not None:
                states += (x,)
            weights = None
            if not self._drop_layer():
                x, weights, _ = layer(
                    x,
                    self_mask=mask,
                    head_mask=None if head_mask is None else head_mask[i],
                    self_prefix=None if prompts is None else prompts[i],
                    output_attentions=output_attentions,
                )
                x = _clamp_overflow(x)
            if attentions is not None:
                attentions += (weights,)
        if states is not None:
            states += (x,)
        out = BaseModelOutput(last_hidden_state=x, hidden_states=states, attentions=attentions)
        return out if return_dict else out.to_tuple()


class MvpDecoder(_Stack):
    """The decoder stack, for whole sequences and for cached steps alike.

    Shape: input_ids (B, T) with ``past_key_values`` holding P earlier steps;
    encoder_hidden_states (B, S, D); attention_mask (B, P + T); encoder_attention_mask (B, S).
    Returns last_hidden_state (B, T, D) and the updated ``Cache``.
    """

    def __init__(self, config: MvpConfig, embed_tokens: nn.Embedding | None = None, use_prompt: bool = False) -> None:
        super().__init__(config, embed_tokens, config.decoder_layerdrop)
        self.layers = nn.ModuleList(
            _layer(config, config.decoder_attention_heads, config.decoder_ffn_dim, cross=True)
            for _ in range(config.decoder_layers)
        )
        self.self_attn_prompt = self.cross_attn_prompt = None
        if use_prompt:
            self.self_attn_prompt = Prompt(config, config.decoder_layers, config.decoder_attention_heads)
            self.cross_attn_prompt = Prompt(config, config.decoder_layers, config.decoder_attention_heads)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: torch.Tensor | None = None,  # accepted for compatibility; positions come from the cache
    ) -> BaseModelOutput | tuple:
        output_attentions = _default(output_attentions, self.config.output_attentions)
        output_hidden_states = _default(output_hidden_states, self.config.output_hidden_states)
        use_cache = _default(use_cache, self.config.use_cache)
        return_dict = _default(return_dict, self.config.use_return_dict)
        _check_head_mask(head_mask, len(self.layers), "head_mask")
        _check_head_mask(cross_attn_head_mask, len(self.layers), "cross_attn_head_mask")

        has_memory = encoder_hidden_states is not None
        cache = None
        if use_cache or past_key_values is not None:
            cache = Cache.coerce(past_key_values, len(self.layers), cross=has_memory)
        past = cache.get_seq_length() if cache is not None else 0

        x = self._embed(input_ids, inputs_embeds, past)
        t = x.shape[1]
        self_mask = decoder_mask(attention_mask, t, past + t, x.dtype, x.device)
        cross_mask = encoder_mask(encoder_attention_mask, x.dtype) if has_memory else None
        self_prompts = self.self_attn_prompt() if self.self_attn_prompt is not None else None
        cross_prompts = self.cross_attn_prompt() if self.cross_attn_prompt is not None else None

        states: tuple[torch.Tensor, ...] | None = () if output_hidden_states else None
        self_attentions: tuple[Any, ...] | None = () if output_attentions else None
        cross_attentions: tuple[Any, ...] | None = () if output_attentions and has_memory else None
        for i, layer in enumerate(self.layers):
            if states is not None:
                states += (x,)
            if self._drop_layer():
                continue
            x, self_weights, cross_weights = layer(
                x,
                self_mask=self_mask,
                memory=encoder_hidden_states,
                cross_mask=cross_mask,
                cache=None if cache is None else cache[i],
                head_mask=None if head_mask is None else head_mask[i],
                cross_head_mask=None if cross_attn_head_mask is None else cross_attn_head_mask[i],
                self_prefix=None if self_prompts is None else self_prompts[i],
                cross_prefix=None if cross_prompts is None else cross_prompts[i],
                output_attentions=output_attentions,
            )
            if self_attentions is not None:
                self_attentions += (self_weights,)
            if cross_attentions is not None:
                cross_attentions += (cross_weights,)
        if states is not None:
            states += (x,)
        out = BaseModelOutput(
            last_hidden_state=x,
            past_key_values=cache,
            hidden_states=states,
            attentions=self_attentions,
            cross_attentions=cross_attentions,
        )
        return out if return_dict else out.to_tuple()


def _default(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def _as_encoder_output(value: Any) -> BaseModelOutput:
    """``encoder_outputs`` as passed by a caller (our output, the reference's, or a tuple)."""
    if isinstance(value, BaseModelOutput):
        return value
    if hasattr(value, "last_hidden_state"):
        return BaseModelOutput(
            last_hidden_state=value.last_hidden_state,
            hidden_states=getattr(value, "hidden_states", None),
            attentions=getattr(value, "attentions", None),
        )
    value = tuple(value)
    return BaseModelOutput(
        last_hidden_state=value[0],
        hidden_states=value[1] if len(value) > 1 else None,
        attentions=value[2] if len(value) > 2 else None,
    )


# ----------------------------------------------------------------- models
class MvpPreTrainedModel(PreTrainedModel):
    """Shared by the MVP classes: config, names, initialisation and tied embeddings.

    The encoder's and decoder's token embeddings are the ``shared`` module itself, whatever
    ``tie_word_embeddings`` says (``shared_embeddings``); only the output projection's tie
    (``output_tie``) follows ``tie_word_embeddings``, as in the reference.
    """

    config_class: ClassVar[type[MvpConfig]] = MvpConfig
    base_model_prefix: ClassVar[str] = "model"
    names = MVP_NAMES
    #: embeddings that are one module by construction
    shared_embeddings: ClassVar[dict[str, str]] = {}
    #: the output projection, tied to the input embeddings when config.tie_word_embeddings
    output_tie: ClassVar[dict[str, str]] = {}
    # prompts missing from a checkpoint (lightweight tuning of a plain MVP checkpoint) start fresh
    ignore_missing: ClassVar[tuple[str, ...]] = (r"(^|\.)(self|cross)_attn_prompt\.",)

    @property
    def tied_weights(self) -> dict[str, str]:  # type: ignore[override]
        ties = dict(self.shared_embeddings)
        if self.config.tie_word_embeddings:
            ties.update(self.output_tie)
        return ties

    def ties_active(self) -> bool:
        return True  # ``tied_weights`` already follows tie_word_embeddings

    def post_init(self) -> None:
        self.init_weights()
        super().post_init()

    def init_weights(self) -> None:
        """Fresh weights as the reference draws them: normal(0, init_std), zero biases and padding rows."""
        std = self.config.init_std
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, nn.Linear):
                    module.weight.normal_(0.0, std)
                    if module.bias is not None:
                        module.bias.zero_()
                elif isinstance(module, nn.Embedding):
                    module.weight.normal_(0.0, std)
                    if module.padding_idx is not None:
                        module.weight[module.padding_idx].zero_()


class MvpModel(MvpPreTrainedModel):
    """The bare encoder-decoder; returns the decoder's last hidden states."""

    shared_embeddings = {"encoder.embed_tokens.weight": "shared.weight", "decoder.embed_tokens.weight": "shared.weight"}
    ignore_unexpected = (*MvpPreTrainedModel.ignore_unexpected, r"^final_logits_bias$")

    def __init__(self, config: MvpConfig) -> None:
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.d_model, config.pad_token_id)
        self.encoder = MvpEncoder(config, self.shared, config.use_prompt)
        self.decoder = MvpDecoder(config, self.shared, config.use_prompt)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def get_encoder(self) -> MvpEncoder:
        return self.encoder

    def get_decoder(self) -> MvpDecoder:
        return self.decoder

    def set_lightweight_tuning(self) -> None:
        """Train only the prompts: freeze every other parameter."""
        if not self.config.use_prompt:
            raise ValueError("lightweight tuning trains the prompts: load or build the model with use_prompt=True")
        self.requires_grad_(False)
        for prompt in (self.encoder.self_attn_prompt, self.decoder.self_attn_prompt, self.decoder.cross_attn_prompt):
            prompt.requires_grad_(True)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs: Any = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: torch.Tensor | None = None,
    ) -> Seq2SeqModelOutput | tuple:
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            # denoising pre-training: without decoder inputs, the decoder reads input_ids shifted right
            if input_ids is None:
                raise ValueError("without decoder_input_ids or decoder_inputs_embeds, input_ids must be given")
            decoder_input_ids = shift_tokens_right(
                input_ids, self.config.pad_token_id, self.config.decoder_start_token_id
            )
        return_dict = _default(return_dict, self.config.use_return_dict)
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                head_mask=head_mask,
                inputs_embeds=inputs_embeds,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
            )
        else:
            encoder_outputs = _as_encoder_output(encoder_outputs)
        decoded = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            past_key_values=past_key_values,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        out = Seq2SeqModelOutput(
            last_hidden_state=decoded.last_hidden_state,
            past_key_values=decoded.past_key_values,
            decoder_hidden_states=decoded.hidden_states,
            decoder_attentions=decoded.attentions,
            cross_attentions=decoded.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )
        return out if return_dict else out.to_tuple()


_SEQ2SEQ_TIES = {
    "model.encoder.embed_tokens.weight": "model.shared.weight",
    "model.decoder.embed_tokens.weight": "model.shared.weight",
}


def _seq2seq_fields(out: Seq2SeqModelOutput) -> dict[str, Any]:
    """The base model's fields that every sequence-to-sequence head passes on."""
    return {
        "past_key_values": out.past_key_values,
        "decoder_hidden_states": out.decoder_hidden_states,
        "decoder_attentions": out.decoder_attentions,
        "cross_attentions": out.cross_attentions,
        "encoder_last_hidden_state": out.encoder_last_hidden_state,
        "encoder_hidden_states": out.encoder_hidden_states,
        "encoder_attentions": out.encoder_attentions,
    }


class MvpForConditionalGeneration(MvpPreTrainedModel):
    """MVP with its language-modelling head (logits over the vocabulary plus ``final_logits_bias``)."""

    shared_embeddings = _SEQ2SEQ_TIES
    output_tie = {"lm_head.weight": "model.shared.weight"}

    def __init__(self, config: MvpConfig) -> None:
        super().__init__(config)
        self.model = MvpModel(config)
        self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def reset_buffers(self) -> None:
        """A checkpoint without ``final_logits_bias`` means a zero bias."""
        self.final_logits_bias = torch.zeros(1, self.lm_head.out_features, dtype=self.model.shared.weight.dtype)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.shared

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def get_encoder(self) -> MvpEncoder:
        return self.model.encoder

    def get_decoder(self) -> MvpDecoder:
        return self.model.decoder

    def set_lightweight_tuning(self) -> None:
        self.model.set_lightweight_tuning()
        self.lm_head.requires_grad_(False)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs: Any = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: torch.Tensor | None = None,
    ) -> Seq2SeqLMOutput | tuple:
        return_dict = _default(return_dict, self.config.use_return_dict)
        if labels is not None:
            use_cache = False
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        out = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            head_mask=head_mask,
            decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            encoder_outputs=encoder_outputs,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.lm_head(out.last_hidden_state) + self.final_logits_bias
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.config.vocab_size), labels.view(-1))
        result = Seq2SeqLMOutput(loss=loss, logits=logits, **_seq2seq_fields(out))
        return result if return_dict else result.to_tuple()


class MvpForSequenceClassification(MvpPreTrainedModel):
    """MVP with a classifier over the decoder state at the last ``<eos>`` of each input."""

    shared_embeddings = _SEQ2SEQ_TIES

    def __init__(self, config: MvpConfig) -> None:
        super().__init__(config)
        self.model = MvpModel(config)
        self.classification_head = ClassificationHead(
            config.d_model, config.d_model, config.num_labels, config.classifier_dropout
        )
        self.post_init()

    def set_lightweight_tuning(self) -> None:
        self.model.set_lightweight_tuning()
        self.classification_head.requires_grad_(False)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> Seq2SeqClassifierOutput | tuple:
        return_dict = _default(return_dict, self.config.use_return_dict)
        if labels is not None:
            use_cache = False
        if input_ids is None:
            raise NotImplementedError(
                f"{type(self).__name__} pools at the <eos> tokens of input_ids: inputs_embeds alone are not supported"
            )
        out = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            head_mask=head_mask,
            decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            encoder_outputs=encoder_outputs,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        hidden = out.last_hidden_state  # (B, T, D)
        eos = input_ids.eq(self.config.eos_token_id).to(hidden.device)
        counts = eos.sum(1)
        if (counts != counts[0]).any():
            raise ValueError("All examples must have the same number of <eos> tokens.")
        if int(counts[0]) == 0:
            raise ValueError("MvpForSequenceClassification needs an <eos> token in every input")
        pooled = hidden[eos, :].view(hidden.shape[0], -1, hidden.shape[-1])[:, -1, :]  # (B, D): last <eos>
        logits = self.classification_head(pooled)
        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        result = Seq2SeqClassifierOutput(loss=loss, logits=logits, **_seq2seq_fields(out))
        return result if return_dict else result.to_tuple()


class MvpForQuestionAnswering(MvpPreTrainedModel):
    """MVP with a span head (start and end logits) on the decoder states."""

    shared_embeddings = _SEQ2SEQ_TIES

    def __init__(self, config: MvpConfig) -> None:
        config.num_labels = 2
        super().__init__(config)
        self.model = MvpModel(config)
        self.qa_outputs = SpanHead(config.d_model)
        self.post_init()

    def set_lightweight_tuning(self) -> None:
        self.model.set_lightweight_tuning()
        self.qa_outputs.requires_grad_(False)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        decoder_head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        encoder_outputs: Any = None,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ) -> Seq2SeqSpanQAOutput | tuple:
        return_dict = _default(return_dict, self.config.use_return_dict)
        with_loss = start_positions is not None and end_positions is not None
        if with_loss:
            use_cache = False
        out = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            head_mask=head_mask,
            decoder_head_mask=decoder_head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            encoder_outputs=encoder_outputs,
            inputs_embeds=inputs_embeds,
            decoder_inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        start_logits, end_logits = self.qa_outputs(out.last_hidden_state)
        loss = span_loss(start_logits, end_logits, start_positions, end_positions) if with_loss else None
        result = Seq2SeqSpanQAOutput(
            loss=loss, start_logits=start_logits, end_logits=end_logits, **_seq2seq_fields(out)
        )
        return result if return_dict else result.to_tuple()


class _DecoderOnly(nn.Module):
    """Holds the decoder under ``model.decoder``, where the reference keeps it."""

    def __init__(self, config: MvpConfig) -> None:
        super().__init__()
        self.decoder = MvpDecoder(config)  # no prompts, its own token embeddings

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.decoder(*args, **kwargs)


class MvpForCausalLM(MvpPreTrainedModel):
    """The MVP decoder alone as a causal language model (cross-attention only with encoder states).

    As in the reference, this decoder has no prompts, and the loss compares the logits at
    position t with ``labels[t]`` (the caller shifts the labels).
    """

    output_tie = {"lm_head.weight": "model.decoder.embed_tokens.weight"}

    def __init__(self, config: MvpConfig) -> None:
        config.is_decoder = True
        config.is_encoder_decoder = False
        super().__init__(config)
        self.model = _DecoderOnly(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.decoder.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def get_decoder(self) -> MvpDecoder:
        return self.model.decoder

    def set_lightweight_tuning(self) -> None:
        # the reference's method fails here too (its decoder wrapper has no prompts to tune)
        raise ValueError("MvpForCausalLM has no prompts to tune: use MvpForConditionalGeneration with use_prompt=True")

    def _align_prefix(self, state: dict[str, torch.Tensor], expected: dict[str, Any]) -> dict[str, torch.Tensor]:
        """A sequence-to-sequence checkpoint keeps the decoder's token embeddings as ``shared``."""
        state = super()._align_prefix(state, expected)
        if "model.decoder.embed_tokens.weight" not in state and "model.shared.weight" in state:
            state = {**state, "model.decoder.embed_tokens.weight": state["model.shared.weight"]}
            del state["model.shared.weight"]
        return state

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        cross_attn_head_mask: torch.Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        cache_position: torch.Tensor | None = None,
    ) -> LMOutput | tuple:
        return_dict = _default(return_dict, self.config.use_return_dict)
        out = self.model.decoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            head_mask=head_mask,
            cross_attn_head_mask=cross_attn_head_mask,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.lm_head(out.last_hidden_state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.config.vocab_size), labels.view(-1))
        result = LMOutput(
            loss=loss,
            logits=logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            cross_attentions=out.cross_attentions,
        )
        return result if return_dict else result.to_tuple()
