"""MVP's encoder and decoder stacks: BART-shaped post-LN layers run by the shared ``run_layers``.

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
from ...layers.stack import check_head_mask, open_cache, run_layers
from ...modeling import resolve_flags
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
        output_attentions, output_hidden_states, return_dict = resolve_flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        check_head_mask(head_mask, len(self.layers))
        x = self._embed(input_ids, inputs_embeds)
        prompts = self.self_attn_prompt() if self.self_attn_prompt is not None else None
        out = run_layers(
            self.layers, x,
            shared={"self_mask": encoder_mask(attention_mask, x.dtype)},
            per_layer={"head_mask": head_mask, "self_prefix": prompts},
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            layerdrop=self.layerdrop,
            training=self.training,
            dropped_attention=True,
            after=_clamp_overflow,
        )
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
        use_cache = self.config.use_cache if use_cache is None else use_cache
        output_attentions, output_hidden_states, return_dict = resolve_flags(
            self.config, output_attentions, output_hidden_states, return_dict
        )
        check_head_mask(head_mask, len(self.layers))
        check_head_mask(cross_attn_head_mask, len(self.layers), "cross_attn_head_mask")
        has_memory = encoder_hidden_states is not None
        cache, past = open_cache(past_key_values, use_cache, len(self.layers), cross=has_memory)
        x = self._embed(input_ids, inputs_embeds, past)
        t = x.shape[1]
        out = run_layers(
            self.layers, x,
            shared={
                "self_mask": decoder_mask(attention_mask, t, past + t, x.dtype, x.device),
                "memory": encoder_hidden_states,
                "cross_mask": encoder_mask(encoder_attention_mask, x.dtype) if has_memory else None,
            },
            per_layer={
                "head_mask": head_mask,
                "cross_head_mask": cross_attn_head_mask,
                "self_prefix": self.self_attn_prompt() if self.self_attn_prompt is not None else None,
                "cross_prefix": self.cross_attn_prompt() if self.cross_attn_prompt is not None else None,
            },
            cache=cache,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            cross_attentions=has_memory,
            layerdrop=self.layerdrop,
            training=self.training,
        )
        return out if return_dict else out.to_tuple()
