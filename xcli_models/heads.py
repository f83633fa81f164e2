"""Task heads and their losses, shared by the families.

The losses follow the reference's definitions exactly: a sequence classifier
picks regression (one label), single-label (integer labels) or multi-label
(float labels) unless ``config.problem_type`` says; span QA averages the
start and end cross-entropies, with positions outside the sequence ignored.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import Config


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, config: Config) -> torch.Tensor:
    """Loss of a sequence classifier. Shape: logits (B, num_labels); labels (B,) or (B, num_labels)."""
    num_labels = logits.shape[-1]
    if config.problem_type is None:
        if num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if config.problem_type == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def token_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over tokens; label -100 is ignored. Shape: logits (B, T, C); labels (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    start_positions: torch.Tensor,
    end_positions: torch.Tensor,
) -> torch.Tensor:
    """Mean of start and end cross-entropies; positions beyond the sequence are ignored.

    Shape: logits (B, T); positions (B,) (or (B, 1)).
    """
    length = start_logits.shape[1]
    starts = start_positions.reshape(-1).clamp(0, length)
    ends = end_positions.reshape(-1).clamp(0, length)
    start = F.cross_entropy(start_logits, starts, ignore_index=length)
    end = F.cross_entropy(end_logits, ends, ignore_index=length)
    return (start + end) / 2


class SpanHead(nn.Module):
    """Start and end logits from one linear layer. Shape: (B, T, D) -> two (B, T)."""

    def __init__(self, dim: int, n_outputs: int = 2) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, n_outputs)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.proj(hidden).split(1, dim=-1)
        return start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous()
