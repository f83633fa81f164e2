"""MVP's prompts: layer-wise prefix keys and values made by a small MLP (MVP's own idea)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ...layers import Linear
from .config import MvpConfig


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
        self.up = Linear(config.d_model, config.prompt_mid_dim)
        self.down = Linear(config.prompt_mid_dim, n_layers * 2 * config.d_model)

    def forward(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x = self.down(F.gelu(self.up(self.embedding.weight)))  # (P, L * 2 * D)
        x = x.view(self.length, self.n_layers * 2, self.n_heads, -1)  # (P, 2L, H, Dh)
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = x.permute(1, 2, 0, 3)  # (2L, H, P, Dh): layer l has key 2l, value 2l + 1
        return [(x[2 * i], x[2 * i + 1]) for i in range(self.n_layers)]
