"""Encoder and decoder layers built from parts they are handed.

A layer is a stack of sublayers (self-attention, optional cross-attention,
feed-forward), each wrapped the same way::

    x = post_norm(x + dropout(sublayer(pre_norm(x))))

Which norm slots are filled decides the placement: pre-LN layers (XGLM) fill
``*_pre_norm``, post-LN layers (XLM, MVP, ProphetNet's encoder) fill
``*_post_norm``; an empty slot is the identity. No flag, no branch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .attention import Attention
from .cache import LayerCache
from .feedforward import FeedForward


def _slot(module: nn.Module | None) -> nn.Module:
    return nn.Identity() if module is None else module


def _normed(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)``; an empty slot (the identity) costs no module call (XGLM-564M's 24 pre-LN layers
    have 48 of them)."""
    return x if type(norm) is nn.Identity else norm(x)


class TransformerLayer(nn.Module):
    """One transformer layer (see the module docstring).

    Shape:
        x: (B, T, D); memory: (B, S, D) encoder states for cross-attention;
        self_mask: additive, broadcastable to (B, H, T, cached + T); cross_mask: (B, 1, 1|T, S).
        Returns x (B, T, D), self-attention probabilities and cross-attention probabilities
        (each None unless ``output_attentions``).
    """

    def __init__(
        self,
        self_attn: Attention,
        ffn: FeedForward,
        *,
        cross_attn: Attention | None = None,
        self_attn_pre_norm: nn.Module | None = None,
        self_attn_post_norm: nn.Module | None = None,
        cross_attn_pre_norm: nn.Module | None = None,
        cross_attn_post_norm: nn.Module | None = None,
        ffn_pre_norm: nn.Module | None = None,
        ffn_post_norm: nn.Module | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.self_attn = self_attn
        self.self_attn_pre_norm = _slot(self_attn_pre_norm)
        self.self_attn_post_norm = _slot(self_attn_post_norm)
        self.cross_attn = cross_attn
        if cross_attn is not None:
            self.cross_attn_pre_norm = _slot(cross_attn_pre_norm)
            self.cross_attn_post_norm = _slot(cross_attn_post_norm)
        self.ffn = ffn
        self.ffn_pre_norm = _slot(ffn_pre_norm)
        self.ffn_post_norm = _slot(ffn_post_norm)
        self.dropout = dropout

    @classmethod
    def with_norms(
        cls, where: str, self_attn: nn.Module, ffn: nn.Module, dim: int, *, cross_attn: nn.Module | None = None,
        eps: float = 1e-5, dropout: float = 0.0,
    ) -> "TransformerLayer":
        """A layer with a ``LayerNorm(dim, eps)`` in every sublayer's ``where`` slot: ``"pre"``
        (XGLM) or ``"post"`` (XLM, XLNet, MVP, ProphetNet); the other slots stay empty."""
        parts = {} if cross_attn is None else {"cross_attn": cross_attn}
        norms = {f"{name}_{where}_norm": nn.LayerNorm(dim, eps=eps) for name in ("self_attn", *parts, "ffn")}
        return cls(self_attn, ffn, dropout=dropout, **parts, **norms)

    def _residual(self, x: torch.Tensor, update: torch.Tensor, post_norm: nn.Module) -> torch.Tensor:
        if self.training and self.dropout:
            update = F.dropout(update, p=self.dropout)
        return _normed(post_norm, x + update)

    def forward(
        self,
        x: torch.Tensor,
        *,
        self_mask: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        cross_mask: torch.Tensor | None = None,
        cache: LayerCache | None = None,
        head_mask: torch.Tensor | None = None,
        cross_head_mask: torch.Tensor | None = None,
        self_prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
        cross_prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        update, self_weights = self.self_attn(
            _normed(self.self_attn_pre_norm, x),
            mask=self_mask,
            cache=None if cache is None else cache.self_attn,
            head_mask=head_mask,
            prefix=self_prefix,
            output_attentions=output_attentions,
        )
        x = self._residual(x, update, self.self_attn_post_norm)
        cross_weights = None
        if self.cross_attn is not None and memory is not None:
            update, cross_weights = self.cross_attn(
                _normed(self.cross_attn_pre_norm, x),
                memory=memory,
                mask=cross_mask,
                cache=None if cache is None else cache.cross_attn,
                head_mask=cross_head_mask,
                prefix=cross_prefix,
                output_attentions=output_attentions,
            )
            x = self._residual(x, update, self.cross_attn_post_norm)
        x = self._residual(x, self.ffn(_normed(self.ffn_pre_norm, x)), self.ffn_post_norm)
        return x, self_weights, cross_weights
