"""Position embeddings shared across families."""

from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(n_positions: int, dim: int, padding_idx: int | None = None) -> torch.Tensor:
    """fairseq's sinusoidal table: sines in the first half of each row, cosines in the second.

    Shape: (n_positions, dim); row ``padding_idx`` is zero. An odd ``dim`` gets a zero last column.
    Always computed on the CPU, even inside a ``torch.device("meta")`` block: a module built
    there for loading gets its real table at once (and meta arithmetic would import torch's
    Python reference kernels, seconds per process).
    """
    cpu = torch.device("cpu")
    half = dim // 2
    step = math.log(10000.0) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.int64, device=cpu).float() * -step)
    angles = torch.arange(n_positions, dtype=torch.int64, device=cpu).float()[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2 == 1:
        table = torch.cat([table, torch.zeros(n_positions, 1, device=cpu)], dim=1)
    if padding_idx is not None:
        table[padding_idx] = 0.0
    return table


class SinusoidalPositions(nn.Module):
    """Fixed sinusoidal position embeddings looked up by position id plus ``offset``.

    The table grows on demand when a position beyond it is asked for.
    Shape: position_ids (B, T) -> (B, T, dim).
    """

    def __init__(self, n_positions: int, dim: int, *, offset: int = 0, padding_idx: int | None = None) -> None:
        super().__init__()
        self.dim, self.offset, self.padding_idx = dim, offset, padding_idx
        self.n_positions = n_positions + offset
        self.register_buffer("table", sinusoidal_table(self.n_positions, dim, padding_idx), persistent=False)

    def reset_buffers(self) -> None:
        self.table = sinusoidal_table(self.n_positions, self.dim, self.padding_idx)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        index = position_ids + self.offset
        needed = int(index.max()) + 1 if index.numel() else 0
        if needed > self.table.shape[0]:
            self.n_positions = needed
            self.table = sinusoidal_table(needed, self.dim, self.padding_idx).to(self.table.device)
        return self.table[index]


class LearnedPositions(nn.Embedding):
    """Learned position embeddings with a fixed id offset (BART/MVP keep 2 rows unused).

    Shape: position_ids (B, T) -> (B, T, dim).
    """

    def __init__(self, n_positions: int, dim: int, *, offset: int = 0) -> None:
        super().__init__(n_positions + offset, dim)
        self.offset = offset

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(position_ids + self.offset)


def positions_from_mask(attention_mask: torch.Tensor, past_length: int = 0) -> torch.Tensor:
    """Position ids that skip padding: the i-th real token gets position i (left padding safe).

    Shape: attention_mask (B, S) over cached + new tokens -> (B, S - past_length).
    """
    positions = attention_mask.long().cumsum(-1) - 1
    positions = positions.clamp(min=0)
    return positions[:, past_length:]
