"""Matrix products through oneDNN on CPU, for inference.

torch computes a float32 ``F.linear`` on CPU with MKL. torch also ships oneDNN, whose matmul is
faster for the products inference is made of; measured on a 2-core AMD EPYC (AVX-512, torch
2.13, 2 threads): a matrix-vector product (a decode step: one row times each weight) streams
the weight at ~27 GB/s through oneDNN against ~16 GB/s through MKL, with a machine read
bandwidth of ~33 GB/s; a few rows times a weight (beams, small batches) runs ~1.5x faster; a
batch of a few thousand rows (task commands) 10-25 % faster. On Intel processors products of 1 to 3
rows stay with MKL (``_MKL_ROWS``: there oneDNN's kernels for them are the slower ones).

``onednn_matmuls()`` is a context in which the products of :class:`Linear` (every linear
projection of the five families: ``nn.Linear`` with the same parameters and numbers) and XLNet's
per-head projections run as oneDNN matmuls when they can: tensors on the CPU, float32 or bfloat16,
of one dtype, nothing in need of a gradient, torch built with oneDNN and not told to leave it
(``torch.backends.mkldnn.enabled``). Everything else runs unchanged.

Float32 products of up to ``native.F32_ROWS`` rows (the decode steps of generation: a sequence, a
batch, beams) go to xcli's own float32 kernel instead where it can be had (``native.f32_rows``,
``xcli_f32_rows``; not in row-invariant blocks, whose rows must be rounded alike at any batch size):
it reads a weight once for all the rows, a group of output channels at a time, at close to the
memory's rate (``benchmarks/int8_kernels.py --rows 8``, XGLM-564M's projections, 2-core Xeon with
AMX, torch 2.13, 2 threads: 8 rows 58.9 ms against oneDNN's 84.8 and MKL's 106.0; 1 row 45.1 against
MKL's 46.9; MVP-large batch-8 float32 generation went from 1.44x the reference to 1.68x, XGLM-564M's
from 1.61x to 2.38x). The products are the same; the rounding of a sum can differ in its last bit (another blocking of the sum, as with MKL on
another thread count). The layers ask the context (a context variable: this thread's, or this
task's) at each product, a fraction of a microsecond; it was once a torch function mode, which
put Python in front of every torch call in the block, a few microseconds each (measured:
XLNet-base batch-8 greedy generation, float32, 32 tokens: 1.65-1.68 s asking against 1.87-1.93 s
through the mode).

**The one place it is entered.** :func:`inference` is the context every model call of a command
runs in: ``torch.inference_mode`` and, unless told otherwise, :func:`onednn_matmuls`. The tasks
(``xcli_models.tasks``: classify, fill-mask, qa, score, the task side of generate; evaluation in
training) enter it as ``tasks.common.inference``, the same function, and
``generation.engine.generate`` enters it with ``onednn`` off on a GPU or when asked. Nothing else
opens the context. ``tests/families/test_inference_path_parity.py`` compares every family with the reference
inside this same context, so the numbers the tests check are the numbers the CLI prints.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

import torch
from torch import nn
from torch.nn import functional as F

from . import native
from .native import f32_rows as _f32_rows  # (a name of ours: the tests count what goes there)

_DTYPES = (torch.float32, torch.bfloat16)


@functools.lru_cache(maxsize=None)
def onednn_available() -> bool:
    """Whether this torch has a working oneDNN matmul (probed once on a tiny product)."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        return False
    try:
        x, w = torch.ones(2, 3), torch.ones(4, 3)
        return bool(torch.equal(_linear(x, w, torch.zeros(4)), F.linear(x, w)))
    except (RuntimeError, NotImplementedError):
        return False


def _linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x @ w.T + bias`` by oneDNN. Shape: x (..., K), w (N, K), bias (N,) -> (..., N)."""
    return torch.ops.mkldnn._linear_pointwise(x, w, bias, "none", [], "")


def _eligible(x: Any, w: Any, bias: Any) -> bool:
    if not (isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor)):
        return False
    if x.device.type != "cpu" or w.device.type != "cpu" or x.dtype != w.dtype or x.dtype not in _DTYPES:
        return False
    if w.dim() != 2 or x.dim() < 2 or x.shape[-1] != w.shape[1] or x.numel() == 0 or w.numel() == 0:
        return False
    if bias is not None and not (
        isinstance(bias, torch.Tensor) and bias.dim() == 1 and bias.dtype == x.dtype
        and bias.device.type == "cpu" and bias.shape[0] == w.shape[0]
    ):
        return False
    tensors = (x, w) if bias is None else (x, w, bias)
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _row_invariant_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """:func:`_linear` whose every row comes out as it would among any other rows.

    oneDNN computes a product of one row (a matrix-vector product) by another kernel than a
    product of two or more rows, with another rounding; from two rows on, a row's result does
    not depend on how many rows share the product. A lone row is therefore computed beside a
    copy of itself.
    """
    if x.numel() // x.shape[-1] != 1:
        return _linear(x, w, bias)
    pair = x.reshape(1, x.shape[-1]).expand(2, -1)
    return _linear(pair, w, bias)[:1].reshape(*x.shape[:-1], w.shape[0])


#: products of this many rows that MKL computes faster than oneDNN on Intel processors: float32, measured
#: on a 2-core Xeon with AMX (torch 2.13, a shared machine): with one thread oneDNN's kernel for 2 or 3
#: rows ran at about half MKL's speed on XLNet-base and MVP-large weights (XLNet-base batch-1 generation,
#: whose steps are 3-row products: 20.2 tokens/s through MKL against 14.7); with two threads under load,
#: batch-1 greedy generation (1-row products) ran 1.2x the reference through MKL against 0.63x through
#: oneDNN for MVP-large, 0.99x against 0.75x for XGLM-564M. From 4 rows on oneDNN was as fast or faster.
#: (On AMD processors oneDNN is kept for every product: see above.)
_MKL_ROWS = (1, 2, 3)


def _mkl_rows() -> tuple[int, ...]:
    from .hardware import processor_vendor

    return _MKL_ROWS if processor_vendor() == "intel" else ()


def _native_kernels() -> native.Kernels | None:
    return native.int8_kernel()


class Route:
    """Where the products of an :func:`onednn_matmuls` block go: ``routed`` counts those sent to
    oneDNN, ``native`` those sent to xcli's float32 kernel."""

    def __init__(self, row_invariant: bool = False) -> None:
        self.linear = _row_invariant_linear if row_invariant else _linear
        # (row-invariant products keep one kernel for every row count)
        self.mkl_rows = () if row_invariant else _mkl_rows()
        # float32 products of a few rows (decode steps): xcli's own kernel where it can be had
        self.kernels = None if row_invariant else _native_kernels()
        self.routed = self.native = 0

    def native_takes(self, rows: int, w: Any, bias: Any) -> bool:
        """Whether a float32 product of ``rows`` rows by ``w`` (and ``bias``) goes to xcli's float32
        kernel (the fused decode step asks too: ``layers/fused.py``)."""
        return self.kernels is not None and rows <= native.F32_ROWS and native.f32_weight_fits(w, bias)

    def product(self, x: Any, w: Any, bias: Any) -> torch.Tensor | None:
        """``x @ w.T + bias`` by xcli's float32 kernel or oneDNN where one takes it, else None."""
        if not _eligible(x, w, bias):
            return None
        rows = x.numel() // x.shape[-1]
        if x.dtype == torch.float32 and self.native_takes(rows, w, bias):
            self.native += 1
            return _f32_rows(self.kernels, x, w, bias)
        if not torch.backends.mkldnn.enabled:
            return None
        if self.mkl_rows and x.dtype == torch.float32 and rows in self.mkl_rows:
            return None
        self.routed += 1
        return self.linear(x, w, bias)


#: the route of the innermost onednn_matmuls block of this thread (or task), None outside any
_ROUTE: ContextVar[Route | None] = ContextVar("xcli_onednn_route", default=None)


def routed_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """``x @ w.T + bias`` (w: (N, K)) by oneDNN where an :func:`onednn_matmuls` block is open and
    sends it there, else None: the caller computes it its own way."""
    route = _ROUTE.get()
    return None if route is None else route.product(x, w, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (the same parameters, state and numbers) whose product goes through oneDNN
    inside an :func:`onednn_matmuls` block where it may: every linear projection of the five
    families is one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = routed_linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias) if out is None else out


@contextmanager
def onednn_matmuls(enabled: bool = True, *, row_invariant: bool = False) -> Iterator[Route | None]:
    """Send eligible products of :class:`Linear` layers (and XLNet's per-head projections) through
    oneDNN inside the block, in this thread (see the module docstring); the block gets its
    :class:`Route` (what it sent), or None.

    ``row_invariant``: a product's rows never depend on the other rows in it (see
    :func:`inference`). With ``enabled`` false, or where this torch has no usable oneDNN matmul,
    the products inside run torch's way, an enclosing block's too.
    """
    route = Route(row_invariant) if enabled and onednn_available() else None
    token = _ROUTE.set(route)
    try:
        yield route
    finally:
        _ROUTE.reset(token)


@contextmanager
def inference(onednn: bool = True, *, batch_invariant: bool = False) -> Iterator[None]:
    """Around every model call of a command: ``torch.inference_mode`` (no autograd bookkeeping) and,
    with ``onednn`` (the default), eligible matrix products through oneDNN (:func:`onednn_matmuls`).

    ``batch_invariant`` (the task commands: classify, fill-mask, qa, score): every row of a
    product is rounded as it would be in a product of any other number of rows, so that a
    record's numbers never depend on the records beside it in a batch, provided the batch holds
    no padding (the tasks batch inputs of one length only: see
    :func:`xcli_models.tasks.common.map_by_length`). Generation leaves it off: a decode step of
    one sequence is a matrix-vector product, and doubling it would cost speed.

    This is the CLI's kernel path: the tasks and ``generate`` enter it and nothing else does, and the
    reference-parity tests run inside it.
    """
    with torch.inference_mode(), onednn_matmuls(onednn, row_invariant=batch_invariant):
        yield
