"""Attention masks.

Masks are built as booleans (True = may attend) and turned into an additive
float mask once, with the dtype's most negative value for blocked pairs. A
query row that may attend nothing then attends uniformly, as in the
reference, instead of producing NaN.

Shapes: ``(B, 1, T, S)`` for T queries over S keys, broadcast over heads.
"""

from __future__ import annotations

import torch


def padding_allowed(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B, S)`` 1/0 padding mask -> ``(B, 1, 1, S)`` booleans."""
    return attention_mask.bool()[:, None, None, :]


def causal_allowed(queries: int, keys: int, device: torch.device | None = None) -> torch.Tensor:
    """``(1, 1, T, S)``: query i (at absolute position S - T + i) sees keys 0..S - T + i."""
    q = torch.arange(keys - queries, keys, device=device)[:, None]
    k = torch.arange(keys, device=device)[None, :]
    return (k <= q)[None, None]


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean mask -> 0 where allowed, the dtype's minimum elsewhere."""
    zero = torch.zeros((), dtype=dtype, device=allowed.device)
    return torch.where(allowed, zero, torch.finfo(dtype).min)


def encoder_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Additive ``(B, 1, 1, S)`` mask from a padding mask, or None when there is none."""
    return None if attention_mask is None else additive(padding_allowed(attention_mask), dtype)


def decoder_mask(
    attention_mask: torch.Tensor | None, queries: int, keys: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Additive causal mask ``(B|1, 1, T, S)``, combined with the padding mask when given."""
    allowed = causal_allowed(queries, keys, device)
    if attention_mask is not None:
        allowed = allowed & padding_allowed(attention_mask[:, -keys:].to(device))
    return additive(allowed, dtype)
