"""Multi-head attention over projections it is handed.

The module owns no naming or layout decisions: a family hands it its
``query``/``key``/``value``/``output`` projections (any modules mapping
``(..., D)`` to ``(..., H * Dh)`` and back), the head count, the
attention-probability dropout and the score scale. It serves self-attention
(with a growing ``KVCache``), cross-attention (keys and values computed once
from ``memory`` and cached), and prefix key/values (MVP's prompts).

Scores use torch's ``scaled_dot_product_attention`` unless the caller needs
the attention probabilities or a head mask; then the explicit path runs.
Both give the same numbers to float32 rounding.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..kernels import Linear
from .cache import KVCache


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, H * Dh) -> (B, H, T, Dh)."""
    b, t, _ = x.shape
    return x.view(b, t, n_heads, -1).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, T, Dh) -> (B, T, H * Dh)."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
    dropout: float = 0.0,
    head_mask: torch.Tensor | None = None,
    need_weights: bool = False,
    report: str = "probs",
    clamp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention.

    ``clamp`` floors the masked scores at the dtype's minimum before the softmax (XGLM's
    reference does): in float16 a blocked score can overflow to -inf, and a fully blocked row
    would give NaN instead of attending uniformly. Off by default: ProphetNet's reference lets
    a doubly blocked score reach -inf, and its padded rows depend on that.

    ``report`` picks the weights returned when asked: ``"probs"`` (the softmax, head-masked) or
    ``"scores"`` (the masked scores before the softmax, head-masked; ProphetNet's reference
    reports these as its encoder and cross-attention "attentions").

    Shape:
        q: (B, H, T, Dh); k, v: (B, H, S, Dh); mask: additive, broadcastable to (B, H, T, S);
        head_mask: (H,) or broadcastable to (B, H, T, S). Returns (B, H, T, Dh) and,
        when asked, the weights (B, H, T, S).
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if not need_weights and head_mask is None:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale)
        return out, None
    scores = torch.matmul(q * scale, k.transpose(-1, -2))
    if mask is not None:
        scores = scores + mask
        if clamp:
            scores = torch.clamp_min(scores, torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    if head_mask is not None:
        head_mask = head_mask.view(1, -1, 1, 1) if head_mask.dim() == 1 else head_mask
        probs = probs * head_mask
    if report == "scores":
        weights = scores if head_mask is None else scores * head_mask
    else:
        weights = probs
    probs = F.dropout(probs, p=dropout, training=dropout > 0)
    return torch.matmul(probs, v), weights


class Attention(nn.Module):
    """Multi-head attention (see the module docstring).

    Shape:
        hidden: (B, T, D); memory: (B, S, D) for cross-attention; mask: additive,
        broadcastable to (B, H, T, S_total) where S_total counts cached and prefix keys;
        prefix: a pair of (H, P, Dh) or (B, H, P, Dh) tensors put before the keys/values.
        Returns (B, T, D) and the attention probabilities (B, H, T, S_total) or None.
    """

    #: the projections a self-attention call feeds the same input, which ``together`` may compute as one
    SAME_INPUT = ("query", "key", "value")

    def __init__(
        self,
        n_heads: int,
        query: nn.Module,
        key: nn.Module,
        value: nn.Module,
        output: nn.Module,
        *,
        dropout: float = 0.0,
        scale: float | None = None,
        report: str = "probs",
        clamp: bool = False,
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.query, self.key, self.value, self.output = query, key, value, output
        # SAME_INPUT's projections in one product (quantized models: quantize.fuse_projections),
        # giving each one's output; used by self-attention calls
        self.together: nn.Module | None = None
        self.dropout = dropout
        self.scale = scale
        self.report = report  # what output_attentions returns: "probs" or "scores" (see attend)
        self.clamp = clamp  # floor masked scores at the dtype minimum (see attend)

    def forward(
        self,
        hidden: torch.Tensor,
        *,
        memory: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        head_mask: torch.Tensor | None = None,
        prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if memory is None and self.together is not None:  # self-attention's projections in one product
            q, k, v = (split_heads(x, self.n_heads) for x in self.together(hidden))
            if cache is not None:
                k, v = cache.append(k, v)
        elif memory is not None and cache is not None and cache.filled:
            q = split_heads(self.query(hidden), self.n_heads)
            k, v = cache.key, cache.value  # cross-attention: encoder keys computed once
        else:
            q = split_heads(self.query(hidden), self.n_heads)
            source = hidden if memory is None else memory
            k = split_heads(self.key(source), self.n_heads)
            v = split_heads(self.value(source), self.n_heads)
            if cache is not None:  # (the encoder's, kept for every step, in the layout steps read: contiguous)
                k, v = cache.set(k.contiguous(), v.contiguous()) if memory is not None else cache.append(k, v)
        if prefix is not None:
            pk, pv = (p if p.dim() == 4 else p.unsqueeze(0) for p in prefix)
            b = q.shape[0]
            k = torch.cat([pk.expand(b, -1, -1, -1), k], dim=2)
            v = torch.cat([pv.expand(b, -1, -1, -1), v], dim=2)
            if mask is not None:  # prefix positions are always visible
                mask = F.pad(mask, (pk.shape[2], 0), value=0.0)
        out, weights = attend(
            q, k, v,
            mask=mask,
            scale=self.scale,
            dropout=self.dropout if self.training else 0.0,
            head_mask=head_mask,
            need_weights=output_attentions,
            report=self.report,
            clamp=self.clamp,
        )
        return self.output(merge_heads(out)), weights


def projections(dim: int, inner: int | None = None, bias: bool = True) -> dict[str, nn.Linear]:
    """The four square projections of standard attention, by role."""
    inner = dim if inner is None else inner
    return {
        "query": Linear(dim, inner, bias=bias),
        "key": Linear(dim, inner, bias=bias),
        "value": Linear(dim, inner, bias=bias),
        "output": Linear(inner, dim, bias=bias),
    }
