"""Position-wise feed-forward block."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..kernels import Linear
from .activations import activation


class FeedForward(nn.Module):
    """``down(dropout(act(up(x))))``; the residual dropout belongs to the layer.

    Shape: (..., D) -> (..., D), through (..., ffn_dim).
    """

    def __init__(self, dim: int, ffn_dim: int, act: str, *, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        self.up = Linear(dim, ffn_dim, bias=bias)
        self.down = Linear(ffn_dim, dim, bias=bias)
        self.act = activation(act)
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.up(x))
        if self.training and self.dropout:
            hidden = F.dropout(hidden, p=self.dropout)
        return self.down(hidden)
