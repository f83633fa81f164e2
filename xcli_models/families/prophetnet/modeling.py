"""ProphetNet and XLM-ProphetNet: a post-LN encoder and an n-stream decoder.

Assembled from the shared blocks: every layer is a ``TransformerLayer`` with
its post-norm slots filled. The encoder's layers use the shared ``Attention``;
the decoder's self-attention is the family's ``NgramSelfAttention`` (see
``ngram.py``: a main stream plus ``ngram`` predicting streams, relative
position buckets; each layer is handed the call's ``StreamMasks`` as its
``self_mask``), and its cross-attention is the shared ``Attention`` again,
run over all streams at once. The LM head reads the predicting streams:
``logits`` come from the first (next token), ``logits_ngram`` from the others.

Positions are learned and ProphetNet-style: the j-th token (0-based, counting
cached ones) reads row ``pad_token_id + 1 + j``; predicting streams read the
next row. As in the reference, positions do not skip padding (the reference
never hands its position embedding the attention mask).

Prefill and each decode step run the same ``forward``; the ``Cache`` handed in
as ``past_key_values`` (main-stream keys and values per layer, plus the
encoder's keys and values for cross-attention) grows in place and is returned.

The XLM-ProphetNet classes are these classes with the XLM config class.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ... import layers
from ...layers import Attention, Cache, FeedForward, LearnedPositions, TransformerLayer
from ...modeling import PreTrainedModel
from ...outputs import BaseModelOutput, ModelOutput
from .config import ProphetNetConfig, XLMProphetNetConfig
from .names import PROPHETNET_NAMES
from .ngram import NgramSelfAttention, StreamMasks

__all__ = [
    "ProphetNetDecoder", "ProphetNetEncoder", "ProphetNetForCausalLM", "ProphetNetForConditionalGeneration",
    "ProphetNetModel", "ProphetNetPreTrainedModel",
    "XLMProphetNetDecoder", "XLMProphetNetEncoder", "XLMProphetNetForCausalLM",
    "XLMProphetNetForConditionalGeneration", "XLMProphetNetModel",
    "ProphetNetSeq2SeqLMOutput", "ProphetNetSeq2SeqModelOutput", "ProphetNetDecoderModelOutput",
    "ProphetNetDecoderLMOutput", "ngram_loss",
]

Tensors = tuple[torch.Tensor, ...]


# ------------------------------------------------------------------ outputs
@dataclass
class ProphetNetSeq2SeqModelOutput(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    last_hidden_state_ngram: torch.Tensor | None = None
    past_key_values: Any = None
    decoder_hidden_states: Tensors | None = None
    decoder_ngram_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    decoder_ngram_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None


@dataclass
class ProphetNetSeq2SeqLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    logits_ngram: torch.Tensor | None = None
    past_key_values: Any = None
    decoder_hidden_states: Tensors | None = None
    decoder_ngram_hidden_states: Tensors | None = None
    decoder_attentions: Tensors | None = None
    decoder_ngram_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None
    encoder_last_hidden_state: torch.Tensor | None = None
    encoder_hidden_states: Tensors | None = None
    encoder_attentions: Tensors | None = None


@dataclass
class ProphetNetDecoderModelOutput(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    last_hidden_state_ngram: torch.Tensor | None = None
    past_key_values: Any = None
    hidden_states: Tensors | None = None
    hidden_states_ngram: Tensors | None = None
    attentions: Tensors | None = None
    ngram_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None


@dataclass
class ProphetNetDecoderLMOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    logits_ngram: torch.Tensor | None = None
    past_key_values: Any = None
    hidden_states: Tensors | None = None
    hidden_states_ngram: Tensors | None = None
    attentions: Tensors | None = None
    ngram_attentions: Tensors | None = None
    cross_attentions: Tensors | None = None


# ------------------------------------------------------------------ helpers
def ngram_loss(
    logits: torch.Tensor, labels: torch.Tensor, *, eps: float = 0.0, disable_ngram_loss: bool = False
) -> torch.Tensor:
    """Mean cross-entropy of every predicting stream against the same labels (-100 ignored),
    label-smoothed by ``eps``; ``disable_ngram_loss`` counts the first stream only.

    Shape: logits (B, ngram, T, V); labels (B, T).
    """
    ngram, vocab = logits.shape[1], logits.shape[-1]
    targets = labels.new_full((ngram, *labels.shape), -100)
    targets[: 1 if disable_ngram_loss else ngram] = labels
    targets = targets.view(-1)
    log_probs = F.log_softmax(logits.transpose(0, 1).reshape(-1, vocab), dim=-1, dtype=torch.float32)
    loss = F.nll_loss(log_probs, targets, ignore_index=-100)
    if eps > 0.0:
        smooth = -log_probs.sum(dim=-1)[targets.ne(-100)].mean()
        loss = (1.0 - eps) * loss + eps / vocab * smooth
    return loss


def shift_right(labels: torch.Tensor, start_token_id: int | None, pad_token_id: int | None) -> torch.Tensor:
    """Decoder inputs from labels: start token first, labels moved one right, -100 -> pad."""
    if start_token_id is None or pad_token_id is None:
        raise ValueError("decoder_start_token_id and pad_token_id must be set to derive decoder inputs from labels")
    shifted = labels.new_full(labels.shape, start_token_id)
    shifted[..., 1:] = labels[..., :-1]
    shifted = shifted.masked_fill(shifted == -100, pad_token_id)
    if bool((shifted < 0).any()):
        raise ValueError("labels hold negative ids other than -100")
    return shifted


def padding_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, S) 1/0 mask -> additive (B, 1, 1, S): 0 to attend, the dtype's minimum not to."""
    return ((1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min).to(dtype)


def _pad_id(config: ProphetNetConfig) -> int:
    return config.pad_token_id if config.pad_token_id is not None else 0


def _positions(config: ProphetNetConfig) -> LearnedPositions:
    """Row ``pad_token_id + 1 + j`` for position j: the first rows are never read."""
    offset = _pad_id(config) + 1
    return LearnedPositions(config.max_position_embeddings - offset, config.hidden_size, offset=offset)


def _position_ids(positions: LearnedPositions, past: int, length: int, device: torch.device) -> torch.Tensor:
    """(1, T) ids of the new tokens, clamped to the last row as the reference does."""
    ids = torch.arange(past, past + length, device=device)[None]
    return ids.clamp(max=positions.num_embeddings - positions.offset - 1)


def _check_heads(head_mask: torch.Tensor | None, n_layers: int, name: str) -> None:
    if head_mask is not None and head_mask.shape[0] != n_layers:
        raise ValueError(f"{name} must have one row per layer ({n_layers}), not {head_mask.shape[0]}")


def _projections(dim: int, heads: int) -> dict[str, nn.Linear]:
    if dim % heads:
        raise ValueError(f"hidden_size ({dim}) must be divisible by the number of attention heads ({heads})")
    return layers.projections(dim)


def _attention(config: ProphetNetConfig, heads: int) -> Attention:
    # the reference reports pre-softmax scores as its encoder and cross "attentions"
    return Attention(
        heads, **_projections(config.hidden_size, heads), dropout=config.attention_dropout, report="scores"
    )


def _feed_forward(config: ProphetNetConfig, ffn_dim: int) -> FeedForward:
    return FeedForward(config.hidden_size, ffn_dim, config.activation_function, dropout=config.activation_dropout)


def _encoder_layer(config: ProphetNetConfig) -> TransformerLayer:
    dim = config.hidden_size
    return TransformerLayer(
        _attention(config, config.num_encoder_attention_heads),
        _feed_forward(config, config.encoder_ffn_dim),
        self_attn_post_norm=nn.LayerNorm(dim),
        ffn_post_norm=nn.LayerNorm(dim),
        dropout=config.dropout,
    )


def _decoder_layer(config: ProphetNetConfig) -> TransformerLayer:
    dim, heads = config.hidden_size, config.num_decoder_attention_heads
    self_attn = NgramSelfAttention(
        heads, config.ngram, config.num_buckets,
        **_projections(dim, heads),
        relative_bias=nn.Linear(dim, config.num_buckets * heads),
        dropout=config.attention_dropout,
    )
    cross = _attention(config, heads) if config.add_cross_attention else None
    return TransformerLayer(
        self_attn,
        _feed_forward(config, config.decoder_ffn_dim),
        cross_attn=cross,
        self_attn_post_norm=nn.LayerNorm(dim),
        cross_attn_post_norm=nn.LayerNorm(dim) if cross is not None else None,
        ffn_post_norm=nn.LayerNorm(dim),
        dropout=config.dropout,
    )


# ------------------------------------------------------------------- models
class ProphetNetPreTrainedModel(PreTrainedModel):
    config_class = ProphetNetConfig
    base_model_prefix = "prophetnet"
    names = PROPHETNET_NAMES

    def _set_ties(self, shared: dict[str, str], head: dict[str, str] | None = None) -> None:
        """Encoder and decoder always share the word embeddings (one module); the LM head
        shares them only when ``tie_word_embeddings`` (the reference's rules)."""
        ties = dict(shared)
        if head and self.config.tie_word_embeddings:
            ties.update(head)
        self.tied_weights = ties

    def ties_active(self) -> bool:
        return True  # which ties apply is decided per instance (_set_ties)

    def init_weights(self, prefix: str = "") -> None:
        """The reference's initialisation: normal(0, init_std) weights, zero biases, unit norms,
        zero padding rows (free on the meta device)."""
        for name, param in self.named_parameters():
            if name.startswith(prefix):
                self._init_tensor(name, param.data)

    def _shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_right(labels, self.config.decoder_start_token_id, self.config.pad_token_id)


class ProphetNetEncoder(ProphetNetPreTrainedModel):
    """Embeddings (tokens + learned positions, then a layer norm) and post-LN layers.

    Shape: input_ids (B, S) or inputs_embeds (B, S, D) -> last_hidden_state (B, S, D).
    """

    def __init__(self, config: ProphetNetConfig, word_embeddings: nn.Embedding | None = None) -> None:
        super().__init__(config)
        self.word_embeddings = (
            word_embeddings if word_embeddings is not None
            else nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        )
        self.position_embeddings = _positions(config)
        self.embeddings_layer_norm = nn.LayerNorm(config.hidden_size)
        self.layers = nn.ModuleList(_encoder_layer(config) for _ in range(config.num_encoder_layers))
        self.init_weights()
        self._set_ties({})
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.word_embeddings = value

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
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.use_return_dict if return_dict is None else return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        _check_heads(head_mask, len(self.layers), "head_mask")
        length, device, dtype = inputs_embeds.shape[1], inputs_embeds.device, inputs_embeds.dtype

        mask = None if attention_mask is None else padding_bias(attention_mask.to(device), dtype)
        positions = self.position_embeddings(_position_ids(self.position_embeddings, 0, length, device))
        hidden = self.embeddings_layer_norm(inputs_embeds + positions)
        hidden = F.dropout(hidden, p=config.dropout, training=self.training)

        all_hidden: Tensors | None = () if output_hidden_states else None
        all_attentions: Tensors | None = () if output_attentions else None
        for i, layer in enumerate(self.layers):
            if all_hidden is not None:
                all_hidden += (hidden,)
            hidden, weights, _ = layer(
                hidden,
                self_mask=mask,
                head_mask=None if head_mask is None else head_mask[i],
                output_attentions=output_attentions,
            )
            if all_attentions is not None:
                all_attentions += (weights,)
        if all_hidden is not None:
            all_hidden += (hidden,)
        out = BaseModelOutput(last_hidden_state=hidden, hidden_states=all_hidden, attentions=all_attentions)
        return out if return_dict else out.to_tuple()


class ProphetNetDecoder(ProphetNetPreTrainedModel):
    """Embeddings for the main and predicting streams, then n-stream layers.

    Shape: input_ids (B, T) or inputs_embeds (B, T, D) -> last_hidden_state (B, T, D) (main
    stream) and last_hidden_state_ngram (B, ngram * T, D) (predicting streams, stream-major).
    """

    def __init__(self, config: ProphetNetConfig, word_embeddings: nn.Embedding | None = None) -> None:
        super().__init__(config)
        dim = config.hidden_size
        self.word_embeddings = (
            word_embeddings if word_embeddings is not None
            else nn.Embedding(config.vocab_size, dim, padding_idx=config.pad_token_id)
        )
        self.position_embeddings = _positions(config)
        self.ngram_embeddings = nn.Embedding(config.ngram, dim)
        self.layers = nn.ModuleList(_decoder_layer(config) for _ in range(config.num_decoder_layers))
        self.embeddings_layer_norm = nn.LayerNorm(dim)
        self.init_weights()
        self._set_ties({})
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.word_embeddings = value

    def _embed(self, inputs_embeds: torch.Tensor, past: int, streams: int) -> torch.Tensor:
        """Main stream: tokens + positions; predicting stream s (of the first ``streams``): the
        stream's embedding + the next position. Shape: (B, T, D) -> (B, (1 + streams) * T, D),
        layer-normed."""
        batch, length, dim = inputs_embeds.shape
        ids = _position_ids(self.position_embeddings, past, length, inputs_embeds.device)
        main = inputs_embeds + self.position_embeddings(ids)
        # the reference gives the first predicting stream the last ngram embedding, stream s row s - 1
        ngram = self.config.ngram
        rows = ((torch.arange(ngram, device=inputs_embeds.device) - 1) % ngram)[:streams]
        predict = self.ngram_embeddings(rows)[:, None, :] + self.position_embeddings(ids + 1)  # (n, T, D)
        predict = predict.reshape(1, streams * length, dim).expand(batch, -1, -1)
        return self.embeddings_layer_norm(torch.cat([main, predict.to(main.dtype)], dim=1))

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
        cache_position: torch.Tensor | None = None,  # accepted for API compatibility; the Cache knows its length
        *,
        predict_streams: int | None = None,
    ) -> ProphetNetDecoderModelOutput | tuple:
        """``predict_streams``: run only the first that many predicting streams (default: all
        ``config.ngram``). No stream depends on a later one, so those run are unchanged; generation
        needs only the first. Only for one-token calls (a longer call's bias layout mixes the
        streams, see ngram.py)."""
        config = self.config
        streams = config.ngram if predict_streams is None else predict_streams
        if not 0 < streams <= config.ngram:
            raise ValueError(f"predict_streams must be 1 .. ngram ({config.ngram}), not {predict_streams}")
        use_cache = config.use_cache if use_cache is None else use_cache
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.use_return_dict if return_dict is None else return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of decoder input_ids and inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        _check_heads(head_mask, len(self.layers), "head_mask")
        _check_heads(cross_attn_head_mask, len(self.layers), "cross_attn_head_mask")
        length, device, dtype = inputs_embeds.shape[1], inputs_embeds.device, inputs_embeds.dtype
        if streams < config.ngram and length > 1:
            raise ValueError(f"predict_streams is for one-token calls, not {length} tokens")
        cross = encoder_hidden_states is not None

        cache = (
            Cache.coerce(past_key_values, len(self.layers), cross=cross)
            if use_cache or past_key_values is not None else None
        )
        past = cache.get_seq_length() if cache is not None else 0
        masks = StreamMasks.build(
            attention_mask, past, length, streams,
            num_buckets=config.num_buckets, max_distance=config.relative_max_distance, dtype=dtype, device=device,
        )
        cross_mask = (
            padding_bias(encoder_attention_mask.to(device), dtype) if cross and encoder_attention_mask is not None
            else None
        )
        hidden = F.dropout(self._embed(inputs_embeds, past, streams), p=config.dropout, training=self.training)

        all_hidden: Tensors | None = () if output_hidden_states else None
        all_hidden_ngram: Tensors | None = () if output_hidden_states and config.ngram > 0 else None
        all_self: Tensors | None = () if output_attentions else None
        all_ngram: Tensors | None = () if output_attentions else None
        all_cross: tuple | None = () if output_attentions and config.add_cross_attention else None
        for i, layer in enumerate(self.layers):
            if all_hidden is not None:
                all_hidden += (hidden[:, :length],)
                if all_hidden_ngram is not None:
                    all_hidden_ngram += (hidden[:, length:],)
            hidden, self_weights, cross_weights = layer(
                hidden,
                self_mask=masks,
                memory=encoder_hidden_states,
                cross_mask=cross_mask,
                cache=None if cache is None else cache[i],
                head_mask=None if head_mask is None else head_mask[i],
                cross_head_mask=None if cross_attn_head_mask is None else cross_attn_head_mask[i],
                output_attentions=output_attentions,
            )
            if all_self is not None and all_ngram is not None:
                all_self += (self_weights[0],)
                all_ngram += (self_weights[1],)
            if all_cross is not None:
                all_cross += (cross_weights,)
        if all_hidden is not None:
            all_hidden += (hidden[:, :length],)
            if all_hidden_ngram is not None:
                all_hidden_ngram += (hidden[:, length:],)

        out = ProphetNetDecoderModelOutput(
            last_hidden_state=hidden[:, :length],
            last_hidden_state_ngram=hidden[:, length:] if config.ngram > 0 else None,
            past_key_values=cache,
            hidden_states=all_hidden,
            hidden_states_ngram=all_hidden_ngram,
            attentions=all_self,
            ngram_attentions=all_ngram,
            cross_attentions=all_cross,
        )
        return out if return_dict else out.to_tuple()


def _as_encoder_output(value: Any) -> BaseModelOutput:
    if isinstance(value, BaseModelOutput):
        return value
    if isinstance(value, torch.Tensor):
        return BaseModelOutput(last_hidden_state=value)
    parts = list(value) if not isinstance(value, ModelOutput) else [value[k] for k in value.keys()]
    return BaseModelOutput(
        last_hidden_state=parts[0],
        hidden_states=parts[1] if len(parts) > 1 else None,
        attentions=parts[2] if len(parts) > 2 else None,
    )


class ProphetNetModel(ProphetNetPreTrainedModel):
    """Encoder and decoder sharing one word embedding.

    Shape: input_ids (B, S), decoder_input_ids (B, T) -> last_hidden_state (B, T, D),
    last_hidden_state_ngram (B, ngram * T, D).
    """

    def __init__(self, config: ProphetNetConfig) -> None:
        super().__init__(config)
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.encoder = ProphetNetEncoder(config, self.word_embeddings)
        self.decoder = ProphetNetDecoder(config, self.word_embeddings)
        self._set_ties({
            "encoder.word_embeddings.weight": "word_embeddings.weight",
            "decoder.word_embeddings.weight": "word_embeddings.weight",
        })
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.word_embeddings = self.encoder.word_embeddings = self.decoder.word_embeddings = value

    def get_encoder(self) -> ProphetNetEncoder:
        return self.encoder

    def get_decoder(self) -> ProphetNetDecoder:
        return self.decoder

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
    ) -> ProphetNetSeq2SeqModelOutput | tuple:
        config = self.config
        return_dict = config.use_return_dict if return_dict is None else return_dict
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
        encoder_outputs = _as_encoder_output(encoder_outputs)
        decoder_outputs = self.decoder(
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
        out = ProphetNetSeq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            last_hidden_state_ngram=decoder_outputs.last_hidden_state_ngram,
            past_key_values=decoder_outputs.past_key_values,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_ngram_hidden_states=decoder_outputs.hidden_states_ngram,
            decoder_attentions=decoder_outputs.attentions,
            decoder_ngram_attentions=decoder_outputs.ngram_attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )
        return out if return_dict else out.to_tuple()


def _stream_logits(
    lm_head: nn.Module, hidden_ngram: torch.Tensor, ngram: int
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """LM head over the predicting streams: logits (stream 0), logits_ngram (the others) and
    all of them. Shape: (B, ngram * T, D) -> (B, T, V), (B, ngram - 1, T, V), (B, ngram, T, V)."""
    batch, total, dim = hidden_ngram.shape
    all_logits = lm_head(hidden_ngram.view(batch, ngram, total // ngram, dim))
    logits = all_logits[:, 0].contiguous()
    return logits, (all_logits[:, 1:] if ngram > 1 else None), all_logits


class ProphetNetForConditionalGeneration(ProphetNetPreTrainedModel):
    """``ProphetNetModel`` with the LM head (tied to the word embeddings) over the predicting streams.

    Shape: input_ids (B, S), decoder_input_ids (B, T) -> logits (B, T, V), logits_ngram
    (B, ngram - 1, T, V).
    """

    def __init__(self, config: ProphetNetConfig) -> None:
        super().__init__(config)
        self.prophetnet = ProphetNetModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.disable_ngram_loss = config.disable_ngram_loss
        self.init_weights(prefix="lm_head.")
        self._set_ties(
            {
                "prophetnet.encoder.word_embeddings.weight": "prophetnet.word_embeddings.weight",
                "prophetnet.decoder.word_embeddings.weight": "prophetnet.word_embeddings.weight",
            },
            head={"lm_head.weight": "prophetnet.word_embeddings.weight"},
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.prophetnet.word_embeddings

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def get_encoder(self) -> ProphetNetEncoder:
        return self.prophetnet.encoder

    def get_decoder(self) -> ProphetNetDecoder:
        return self.prophetnet.decoder

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return self._shift_right(labels)

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
    ) -> ProphetNetSeq2SeqLMOutput | tuple:
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        if labels is not None and decoder_input_ids is None and decoder_inputs_embeds is None:
            decoder_input_ids = self._shift_right(labels)
        outputs = self.prophetnet(
            input_ids=input_ids,
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
        logits, logits_ngram, all_logits = _stream_logits(
            self.lm_head, outputs.last_hidden_state_ngram, self.config.ngram
        )
        loss = None
        if labels is not None:
            loss = ngram_loss(
                all_logits, labels.to(all_logits.device),
                eps=self.config.eps, disable_ngram_loss=self.disable_ngram_loss,
            )
        out = ProphetNetSeq2SeqLMOutput(
            loss=loss,
            logits=logits,
            logits_ngram=logits_ngram,
            past_key_values=outputs.past_key_values,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_ngram_hidden_states=outputs.decoder_ngram_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            decoder_ngram_attentions=outputs.decoder_ngram_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )
        return out if return_dict else out.to_tuple()


class ProphetNetDecoderWrapper(nn.Module):
    """Holds the word embeddings beside the decoder, so that ``ForCausalLM`` keeps the
    reference's parameter names (``prophetnet.decoder.*``) and loads full checkpoints."""

    def __init__(self, config: ProphetNetConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.decoder = ProphetNetDecoder(config, self.word_embeddings)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.decoder(*args, **kwargs)


class ProphetNetForCausalLM(ProphetNetPreTrainedModel):
    """The decoder alone with the LM head over its predicting streams (labels are not shifted:
    label t is what position t should predict).

    Shape: input_ids (B, T) -> logits (B, T, V), logits_ngram (B, ngram - 1, T, V).
    """

    def __init__(self, config: ProphetNetConfig) -> None:
        config = copy.deepcopy(config)
        config.is_decoder = True
        config.is_encoder_decoder = False
        super().__init__(config)
        self.prophetnet = ProphetNetDecoderWrapper(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.disable_ngram_loss = config.disable_ngram_loss
        self.init_weights(prefix="lm_head.")
        self._set_ties(
            {"prophetnet.decoder.word_embeddings.weight": "prophetnet.word_embeddings.weight"},
            head={"lm_head.weight": "prophetnet.word_embeddings.weight"},
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.prophetnet.decoder.word_embeddings

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def get_decoder(self) -> ProphetNetDecoder:
        return self.prophetnet.decoder

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
    ) -> ProphetNetDecoderLMOutput | tuple:
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        outputs = self.prophetnet.decoder(
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
        logits, logits_ngram, all_logits = _stream_logits(
            self.lm_head, outputs.last_hidden_state_ngram, self.config.ngram
        )
        loss = None
        if labels is not None:
            loss = ngram_loss(
                all_logits, labels.to(all_logits.device),
                eps=self.config.eps, disable_ngram_loss=self.disable_ngram_loss,
            )
        out = ProphetNetDecoderLMOutput(
            loss=loss,
            logits=logits,
            logits_ngram=logits_ngram,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            hidden_states_ngram=outputs.hidden_states_ngram,
            attentions=outputs.attentions,
            ngram_attentions=outputs.ngram_attentions,
            cross_attentions=outputs.cross_attentions,
        )
        return out if return_dict else out.to_tuple()


# ----------------------------------------------------- XLM-ProphetNet names
class XLMProphetNetEncoder(ProphetNetEncoder):
    config_class = XLMProphetNetConfig


class XLMProphetNetDecoder(ProphetNetDecoder):
    config_class = XLMProphetNetConfig


class XLMProphetNetModel(ProphetNetModel):
    config_class = XLMProphetNetConfig


class XLMProphetNetForConditionalGeneration(ProphetNetForConditionalGeneration):
    config_class = XLMProphetNetConfig


class XLMProphetNetForCausalLM(ProphetNetForCausalLM):
    config_class = XLMProphetNetConfig
