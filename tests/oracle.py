"""Helpers for parity tests against the reference library (the oracle).

The oracle builds and saves tiny random checkpoints; xcli_models loads them; outputs are compared
field by field. Importing this module skips the importing test module where the reference is not
installed: only parity modules import it. Tests that use the reference in a few places only ask
for it there (``compare.reference()``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from compare import ATOL, REASON, as_tensors, assert_close, assert_outputs_close  # noqa: F401 (re-exported)

transformers = pytest.importorskip("transformers", reason=REASON)


def oracle_checkpoint(model: Any, directory: Path, **save_kwargs: Any) -> Path:
    """Save an oracle model (eval mode) and return the directory."""
    model.eval()
    model.save_pretrained(directory, **save_kwargs)
    return directory


def randomize(model: torch.nn.Module, seed: int, buffers: tuple[str, ...] = ()) -> None:
    """Redraw every weight (and the buffers whose names end with one of ``buffers``, such as MVP's
    ``final_logits_bias``) wide enough that attention is far from uniform and every term of a sum matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1 + 0.2 * noise if "norm" in name and name.endswith("weight") else 0.3 * noise)
        for name, b in model.named_buffers():
            if name.endswith(buffers):
                b.copy_(0.3 * torch.randn(b.shape, generator=g))
