"""XGLM: a pre-LN decoder-only transformer with fixed sinusoidal positions.

Assembled from the shared blocks: each layer is a ``TransformerLayer`` with
its pre-norm slots filled (and a cross-attention block when the config asks
for ``add_cross_attention``), followed by a final ``layer_norm``. What is
XGLM's own is small and lives here: token embeddings scaled by
sqrt(d_model), positions looked up 2 rows into the sinusoidal table, and the
shifted causal LM loss.

Positions: without ``position_ids`` the new tokens get ``past .. past + T - 1``
whatever the padding, exactly as the reference's ``forward``; callers that
left-pad (generation) pass ``position_ids`` (see ``generation_position_ids``).
Prefill and each decode step run the same ``forward``; the ``Cache`` handed
in as ``past_key_values`` grows in place and is returned.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ... import layers
from ...heads import CausalLMHead, TaskModel, head_arguments
from ...layers import Attention, FeedForward, SinusoidalPositions, TransformerLayer
from ...arguments import inserted
from ...layers.stack import DECODER_ARGUMENTS, Call, DecoderStack
from ...modeling import PreTrainedModel
from ...outputs import BaseModelOutput, LMOutput
from .config import XGLMConfig
from .names import XGLM_NAMES

__all__ = ["XGLMForCausalLM", "XGLMModel", "XGLMPreTrainedModel", "generation_position_ids"]

#: XGLM looks positions up this many rows into its sinusoidal table (fairseq's padding offset)
POSITION_OFFSET = 2


class ScaledEmbedding(nn.Embedding):
    """Token embeddings multiplied by ``scale``. Shape: ids (B, T) -> (B, T, D)."""

    def __init__(self, n_tokens: int, dim: int, padding_idx: int | None, *, scale: float = 1.0) -> None:
        super().__init__(n_tokens, dim, padding_idx)
        self.scale = scale

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(input_ids) * self.scale


def generation_position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids for a left-padded batch, as the reference's ``generate`` computes them.

    The i-th real token of a row gets position i; padding gets position 1.
    Shape: attention_mask (B, S) -> (B, S); slice the last T columns for a step of T tokens.
    """
    positions = attention_mask.long().cumsum(-1) - 1
    return positions.masked_fill(attention_mask == 0, 1)


def causal_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None
) -> torch.Tensor:
    """Token t predicts label t + 1; label -100 is ignored. Mean over counted labels, or the sum
    divided by ``num_items_in_batch`` when given (gradient accumulation).

    Shape: logits (B, T, V); labels (B, T).
    """
    targets = F.pad(labels, (0, 1), value=-100)[..., 1:].to(logits.device)
    reduction = "mean" if num_items_in_batch is None else "sum"
    loss = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction=reduction
    )
    if torch.is_tensor(num_items_in_batch):
        num_items_in_batch = num_items_in_batch.to(loss.device)
    if num_items_in_batch is not None:
        loss = loss / num_items_in_batch
    return loss


def _attention(config: XGLMConfig) -> Attention:
    dim, heads = config.d_model, config.attention_heads
    if dim % heads:
        raise ValueError(f"d_model ({dim}) must be divisible by attention_heads ({heads})")
    # the reference floors masked scores at the dtype minimum (float16 overflow): clamp=True
    return Attention(heads, **layers.projections(dim), dropout=config.attention_dropout, clamp=True)


def _decoder_layer(config: XGLMConfig) -> TransformerLayer:
    dim = config.d_model
    cross = _attention(config) if config.add_cross_attention else None
    return TransformerLayer.with_norms(
        "pre",
        _attention(config),
        FeedForward(dim, config.ffn_dim, config.activation_function, dropout=config.activation_dropout),
        dim,
        cross_attn=cross,
        dropout=config.dropout,
    )


def _self_attention_mask(
    attention_mask: torch.Tensor | None, queries: int, keys: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Additive (B|1, 1, T, S) mask. A 2D 1/0 mask over all S keys is combined with the causal
    mask; a 4D (B, 1, T, S) mask (1 = may attend) is taken as given, as the reference does."""
    if attention_mask is not None and attention_mask.dim() == 4:
        return layers.additive(attention_mask.to(device) == 1, dtype)
    return layers.decoder_mask(attention_mask, queries, keys, dtype, device)


class XGLMPreTrainedModel(PreTrainedModel):
    config_class = XGLMConfig
    base_model_prefix = "model"
    names = XGLM_NAMES
    # older checkpoints stored the sinusoidal table, which is rebuilt, never loaded
    ignore_unexpected = (*PreTrainedModel.ignore_unexpected, r"(^|\.)embed_positions\.weights$")


class XGLMModel(DecoderStack, XGLMPreTrainedModel):
    """Embeddings, the decoder layers and the final layer norm. ``forward`` takes a decoder
    stack's arguments (``DecoderStack``), with ``position_ids`` after ``attention_mask``.

    Shape: input_ids (B, T) or inputs_embeds (B, T, D) -> last_hidden_state (B, T, D).
    """

    arguments = inserted(DECODER_ARGUMENTS, {"attention_mask": ("position_ids",)})

    def __init__(self, config: XGLMConfig, embed_tokens: nn.Embedding | None = None) -> None:
        super().__init__(config)
        dim = config.d_model
        scale = math.sqrt(dim) if config.scale_embedding else 1.0
        self.embed_tokens = (
            embed_tokens if embed_tokens is not None
            else ScaledEmbedding(config.vocab_size, dim, config.pad_token_id, scale=scale)
        )
        self.embed_positions = SinusoidalPositions(
            config.max_position_embeddings, dim, offset=POSITION_OFFSET, padding_idx=config.pad_token_id
        )
        self.layers = nn.ModuleList(_decoder_layer(config) for _ in range(config.num_layers))
        self.layer_norm = nn.LayerNorm(dim)
        self.post_init()

    def run(self, call: Call) -> BaseModelOutput:
        config = self.config
        if (call.input_ids is None) == (call.inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        inputs_embeds = call.inputs_embeds
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(call.input_ids.view(-1, call.input_ids.shape[-1]))
        length, past = inputs_embeds.shape[1], call.past
        device, dtype = inputs_embeds.device, inputs_embeds.dtype
        cross = call.encoder_hidden_states is not None
        if cross and not config.add_cross_attention:
            raise ValueError("encoder_hidden_states given, but this XGLM has no cross-attention (add_cross_attention)")

        position_ids = call.position_ids
        if position_ids is None:
            position_ids = torch.arange(past, past + length, device=device)[None]
        hidden = inputs_embeds + self.embed_positions(position_ids.to(device)).to(dtype)
        return self.run_layers(
            F.dropout(hidden, p=config.dropout, training=self.training),
            call,
            shared={
                "self_mask": _self_attention_mask(call.attention_mask, length, past + length, dtype, device),
                "memory": call.encoder_hidden_states,
                "cross_mask": layers.encoder_mask(call.encoder_attention_mask, dtype) if cross else None,
            },
            per_layer={"head_mask": call.head_mask, "cross_head_mask": call.cross_attn_head_mask},
            cross_attentions=cross,
            layerdrop=config.layerdrop,
            final=self.layer_norm,
        )


class XGLMForCausalLM(CausalLMHead, XGLMPreTrainedModel, TaskModel):
    """XGLM with its LM head, tied to the token embeddings; ``labels`` are shifted inside
    (``causal_lm_loss``). Shape: input_ids (B, T) -> logits (B, T, vocab_size).
    """

    base_class = XGLMModel
    output_ties = {"lm_head.weight": "model.embed_tokens.weight"}
    arguments = head_arguments(
        XGLMModel.forward, {"inputs_embeds": ("labels",), "cache_position": ("num_items_in_batch",)}
    )
    head_inputs = ("labels", "num_items_in_batch")
    output = LMOutput

    def head(
        self, base: BaseModelOutput, labels: torch.Tensor | None = None,
        num_items_in_batch: int | torch.Tensor | None = None,
    ) -> dict[str, Any]:
        logits = self.lm_head(base.last_hidden_state)
        loss = None if labels is None else causal_lm_loss(logits, labels, num_items_in_batch)
        return {"loss": loss, "logits": logits}
