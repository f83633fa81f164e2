"""MVP's encoder and decoder stacks: BART-shaped post-LN layers run by the shared ``Stack``.

The decoder is one code path for a whole sequence and for cached steps: its positions
continue from the cached length, and it returns the updated ``Cache`` (self-attention keys
grow, cross-attention keys are computed once). With prompts (``prompt.py``) every attention
layer gets the prompt's keys and values before its own, through ``Attention``'s ``prefix``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...layers import (
    Attention, FeedForward, LearnedPositions, TransformerLayer, decoder_mask, encoder_mask, projections,
)
from ...layers.stack import Call, DecoderStack, Stack
from ...outputs import BaseModelOutput
from .config import MvpConfig
from .prompt import Prompt

POSITION_OFFSET = 2  # MVP (like BART) keeps the first two rows of its position table unused


def _layer(config: MvpConfig, n_heads: int, ffn_dim: int, *, cross: bool) -> TransformerLayer:
    """A post-LN layer: norms after each residual sum."""
    dim = config.d_model
    if dim % n_heads:
        raise ValueError(f"d_model ({dim}) must be divisible by the number of attention heads ({n_heads})")

    def attention() -> Attention:
        return Attention(n_heads, **projections(dim), dropout=config.attention_dropout)

    return TransformerLayer.with_norms(
        "post",
        attention(),
        FeedForward(dim, ffn_dim, config.activation_function, dropout=config.activation_dropout),
        dim,
        cross_attn=attention() if cross else None,
        dropout=config.dropout,
    )


def _clamp_overflow(x: torch.Tensor) -> torch.Tensor:
    """float16 only: keep inf/nan from an overflowing layer out of the next one, as the reference does."""
    if x.dtype == torch.float16 and not torch.isfinite(x).all():
        limit = torch.finfo(x.dtype).max - 1000
        x = x.clamp(min=-limit, max=limit)
    return x


def _prefixes(prompt: Prompt | None) -> Any:
    """Each layer's prompt keys and values (None without prompts)."""
    return prompt() if prompt is not None else None


class _MvpStack(nn.Module):
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


class MvpEncoder(Stack, _MvpStack):
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

    def run(self, call: Call) -> BaseModelOutput:
        x = self._embed(call.input_ids, call.inputs_embeds)
        return self.run_layers(
            x, call,
            shared={"self_mask": encoder_mask(call.attention_mask, x.dtype)},
            per_layer={"head_mask": call.head_mask, "self_prefix": _prefixes(self.self_attn_prompt)},
            layerdrop=self.layerdrop,
            dropped_attention=True,
            after=_clamp_overflow,
        )


class MvpDecoder(DecoderStack, _MvpStack):
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

    def run(self, call: Call) -> BaseModelOutput:
        x = self._embed(call.input_ids, call.inputs_embeds, call.past)
        t, past = x.shape[1], call.past
        has_memory = call.encoder_hidden_states is not None
        return self.run_layers(
            x, call,
            shared={
                "self_mask": decoder_mask(call.attention_mask, t, past + t, x.dtype, x.device),
                "memory": call.encoder_hidden_states,
                "cross_mask": encoder_mask(call.encoder_attention_mask, x.dtype) if has_memory else None,
            },
            per_layer={
                "head_mask": call.head_mask,
                "cross_head_mask": call.cross_attn_head_mask,
                "self_prefix": _prefixes(self.self_attn_prompt),
                "cross_prefix": _prefixes(self.cross_attn_prompt),
            },
            cross_attentions=has_memory,
            layerdrop=self.layerdrop,
        )
