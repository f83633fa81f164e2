"""What every part of training shares: the task names, the errors, the ignored label."""

from __future__ import annotations

import random

import torch

TASKS = ("sequence-classification", "token-classification", "question-answering", "multiple-choice", "causal-lm",
         "masked-lm", "plm", "seq2seq")
CLASSIFICATION = ("sequence-classification", "token-classification")
#: the label value a loss does not count
IGNORE = -100


class TrainingError(ValueError):
    """The run cannot be set up as asked (no head for the task, labels missing, bad options).

    ``hint`` is the train-specific way out (grow a head with --labels), kept apart so that a
    command for which it does not apply (evaluate) can say its own.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(f"{message}: {hint}" if hint else message)
        self.message, self.hint = message, hint


class ExampleError(ValueError):
    """One record cannot become a training example. ``type`` is a short snake_case tag."""

    def __init__(self, type: str, message: str) -> None:
        super().__init__(message)
        self.type = type
        self.message = message


def set_seed(seed: int) -> None:
    """Seed Python's and torch's generators (CPU and CUDA)."""
    random.seed(seed)
    torch.manual_seed(seed)

