"""ProphetNet's layers and positions, and how the decoder's output splits into streams.

Every layer is a ``TransformerLayer`` with its post-norm slots filled. The encoder's layers
use the shared ``Attention``; the decoder's self-attention is the family's
``NgramSelfAttention`` (``ngram.py``), handed the call's ``StreamMasks`` as its ``self_mask``,
and its cross-attention is the shared ``Attention`` again, run over all streams at once
(the reference reports pre-softmax scores as its encoder and cross "attentions").

Positions are learned and ProphetNet-style: the j-th token (0-based, counting cached ones)
reads row ``pad_token_id + 1 + j``; predicting streams read the next row. As in the
reference, positions do not skip padding.
"""

from __future__ import annotations

import torch
from torch import nn

from ... import layers
from ...layers import Attention, FeedForward, LearnedPositions, Linear, TransformerLayer
from ...outputs import BaseModelOutput
from .config import ProphetNetConfig
from .ngram import NgramSelfAttention
from .outputs import ProphetNetDecoderModelOutput


def padding_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, S) 1/0 mask -> additive (B, 1, 1, S): 0 to attend, the dtype's minimum not to."""
    return ((1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min).to(dtype)


def pad_id(config: ProphetNetConfig) -> int:
    return config.pad_token_id if config.pad_token_id is not None else 0


def learned_positions(config: ProphetNetConfig) -> LearnedPositions:
    """Row ``pad_token_id + 1 + j`` for position j: the first rows are never read."""
    offset = pad_id(config) + 1
    return LearnedPositions(config.max_position_embeddings - offset, config.hidden_size, offset=offset)


def new_position_ids(positions: LearnedPositions, past: int, length: int, device: torch.device) -> torch.Tensor:
    """(1, T) ids of the new tokens, clamped to the last row as the reference does."""
    ids = torch.arange(past, past + length, device=device)[None]
    return ids.clamp(max=positions.num_embeddings - positions.offset - 1)


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


def encoder_layer(config: ProphetNetConfig) -> TransformerLayer:
    dim = config.hidden_size
    return TransformerLayer.with_norms(
        "post",
        _attention(config, config.num_encoder_attention_heads),
        _feed_forward(config, config.encoder_ffn_dim),
        dim,
        dropout=config.dropout,
    )


def decoder_layer(config: ProphetNetConfig) -> TransformerLayer:
    dim, heads = config.hidden_size, config.num_decoder_attention_heads
    self_attn = NgramSelfAttention(
        heads, config.ngram, config.num_buckets,
        **_projections(dim, heads),
        relative_bias=Linear(dim, config.num_buckets * heads),
        dropout=config.attention_dropout,
    )
    cross = _attention(config, heads) if config.add_cross_attention else None
    return TransformerLayer.with_norms(
        "post", self_attn, _feed_forward(config, config.decoder_ffn_dim), dim, cross_attn=cross, dropout=config.dropout,
    )


# ------------------------------------------------------------------- models
def split_streams(run: BaseModelOutput, length: int, has_ngram: bool) -> ProphetNetDecoderModelOutput:
    """The decoder's output from the layers' output: each hidden state (B, (1 + n) * T, D) split
    into the main stream (B, T, D) and the predicting streams (B, n * T, D), and each
    self-attention into the main and predicting streams' probabilities."""
    states, weights = run.hidden_states, run.attentions
    hidden = run.last_hidden_state
    return ProphetNetDecoderModelOutput(
        last_hidden_state=hidden[:, :length],
        last_hidden_state_ngram=hidden[:, length:] if has_ngram else None,
        past_key_values=run.past_key_values,
        hidden_states=None if states is None else tuple(h[:, :length] for h in states),
        hidden_states_ngram=None if states is None or not has_ngram else tuple(h[:, length:] for h in states),
        attentions=None if weights is None else tuple(w[0] for w in weights),
        ngram_attentions=None if weights is None else tuple(w[1] for w in weights),
        cross_attentions=run.cross_attentions,
    )
