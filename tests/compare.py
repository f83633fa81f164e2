"""Comparing model outputs, and the reference library where it is the oracle.

Nothing here imports the reference (transformers==4.56.2, a test extra): :func:`reference` imports
it on first use and skips the calling test, with the reason, where it is not installed. Tests whose
subject is not parity with the reference build their checkpoints with xcli's own classes
(``task_fixtures.native``) and run without it.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

ATOL = 1e-4
REASON = "the oracle (transformers==4.56.2) is a test extra"


def reference() -> Any:
    """The reference library (the oracle); skips the test that asks for it where it is absent."""
    return pytest.importorskip("transformers", reason=REASON)


class _Reference:
    """A stand-in for the reference module: the first attribute asked for imports it, or skips the
    test that asked (so a module that uses it in a few tests still runs its other tests without it)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "pytestmark":  # what pytest's collection looks for
            raise AttributeError(name)
        return getattr(reference(), name)


#: ``from compare import transformers``: the reference library, imported on first use (see :func:`reference`)
transformers: Any = _Reference()


def as_tensors(value: Any) -> list[torch.Tensor]:
    """Flatten nested tuples/lists/caches of tensors into a list, in order."""
    if value is None:
        return []
    if isinstance(value, torch.Tensor):
        return [value]
    to_legacy = getattr(value, "to_legacy_cache", None) or getattr(value, "to_legacy", None)
    if to_legacy is not None:
        return as_tensors(to_legacy())
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in as_tensors(item)]
    raise TypeError(f"cannot compare {type(value).__name__}")


def assert_close(ours: Any, theirs: Any, atol: float = ATOL, what: str = "output") -> None:
    """Every tensor within ``atol``, with shapes equal."""
    a, b = as_tensors(ours), as_tensors(theirs)
    assert len(a) == len(b), f"{what}: {len(a)} tensors vs {len(b)} expected"
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.shape == y.shape, f"{what}[{i}]: shape {tuple(x.shape)} vs expected {tuple(y.shape)}"
        if x.is_floating_point():
            diff = (x.float() - y.float()).abs().max().item() if x.numel() else 0.0
            assert diff <= atol, f"{what}[{i}]: max abs diff {diff:.3g} > {atol}"
        else:
            assert torch.equal(x, y), f"{what}[{i}]: values differ"


def assert_outputs_close(ours: Any, theirs: Any, fields: list[str] | None = None, atol: float = ATOL) -> None:
    """Compare the named output fields (default: every field the expected output set)."""
    names = fields or [k for k in theirs.keys() if getattr(theirs, k, None) is not None]
    assert names, "no output field to compare"
    for name in names:
        assert_close(getattr(ours, name), getattr(theirs, name), atol=atol, what=name)
