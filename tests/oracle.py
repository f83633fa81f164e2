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

from compare import ATOL, REASON, as_tensors, assert_close, assert_outputs_close  # noqa: F401 (re-exported)

transformers = pytest.importorskip("transformers", reason=REASON)


def oracle_checkpoint(model: Any, directory: Path, **save_kwargs: Any) -> Path:
    """Save an oracle model (eval mode) and return the directory."""
    model.eval()
    model.save_pretrained(directory, **save_kwargs)
    return directory
