"""Matrix products through oneDNN on CPU, for inference.

torch computes a float32 ``F.linear`` on CPU with MKL. torch also ships oneDNN, whose matmul is
faster for the products inference is made of; measured on a 2-core AMD EPYC (AVX-512, torch
2.13, 2 threads): a matrix-vector product (a decode step: one row times each weight) streams
the weight at ~27 GB/s through oneDNN against ~16 GB/s through MKL, with a machine read
bandwidth of ~33 GB/s; a few rows times a weight (beams, small batches) runs ~1.5x faster; a
batch of a few thousand rows (task commands) 10-25 % faster. On Intel processors products of 1 to 3
rows stay with MKL (``_MKL_ROWS``: there oneDNN's kernels for them are the slower ones).

``onednn_matmuls()`` is a context in which ``F.linear`` (every ``nn.Linear``) and ``x @ W`` with
a 2-D ``W`` (XLNet's per-head projections) run as oneDNN matmuls when they can: tensors on the
CPU, float32 or bfloat16, of one dtype, nothing in need of a gradient, torch built with oneDNN
and not told to leave it (``torch.backends.mkldnn.enabled``). Everything else runs unchanged.
The products are the same; the rounding of a sum can differ in its last bit (another blocking
of the sum, as with MKL on another thread count).

**The one place it is entered.** :func:`inference` is the context every model call of a command
runs in: ``torch.inference_mode`` and, unless told otherwise, :func:`onednn_matmuls`. The tasks
(``xcli_models.tasks``: classify, fill-mask, qa, score, the task side of generate; evaluation in
training) enter it as ``tasks.common.inference``, the same function, and
``generation.engine.generate`` enters it with ``onednn`` off on a GPU or when asked. Nothing else
installs the mode. ``tests/families/test_inference_path_parity.py`` compares every family with the reference
inside this same context, so the numbers the tests check are the numbers the CLI prints.
"""

from __future__ import annotations

import functools
import weakref
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

_DTYPES = (torch.float32, torch.bfloat16)
#: how ``x @ W`` reaches a torch function mode
_MATMULS = (torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__)


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


class _OneDnnMatmuls(TorchFunctionMode):
    def __init__(self, row_invariant: bool = False) -> None:
        super().__init__()
        self.linear = _row_invariant_linear if row_invariant else _linear
        # (row-invariant products keep one kernel for every row count)
        self.mkl_rows = () if row_invariant else _mkl_rows()
        self.routed = 0  # products sent to oneDNN so far (see DecodeSteps)
        self.eligible = 0  # ... and products oneDNN could take, sent or not

    def _onednn(self, x: Any, w: Any, bias: Any) -> bool:
        if not _eligible(x, w, bias):
            return False
        self.eligible += 1
        routed = not (self.mkl_rows and x.dtype == torch.float32 and x.numel() // x.shape[-1] in self.mkl_rows)
        self.routed += routed
        return routed

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func is F.linear and torch.backends.mkldnn.enabled:
            x = args[0] if args else kwargs.get("input")
            w = args[1] if len(args) > 1 else kwargs.get("weight")
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if self._onednn(x, w, bias):
                return self.linear(x, w, bias)
        elif func in _MATMULS and len(args) == 2 and not kwargs:
            x, w = args
            if torch.backends.mkldnn.enabled and isinstance(w, torch.Tensor) and w.dim() == 2:
                if self._onednn(x, w.t(), None):
                    return self.linear(x, w.t(), None)
        return func(*args, **kwargs)


@contextmanager
def onednn_matmuls(enabled: bool = True, *, row_invariant: bool = False) -> Iterator[_OneDnnMatmuls | None]:
    """Run eligible matrix products through oneDNN inside the block (see the module docstring); the
    block gets the mode (its ``routed`` counts the products it sent to oneDNN), or None.

    ``row_invariant``: a product's rows never depend on the other rows in it (see
    :func:`inference`). A no-op when ``enabled`` is false or this torch has no usable oneDNN matmul.
    """
    if not enabled or not onednn_available():
        yield None
        return
    with _OneDnnMatmuls(row_invariant) as mode:
        yield mode


#: models whose pass over a prompt had no product oneDNN could take (int8 weight-only ones): their
#: prompts run outside the context too (see DecodeSteps); weakly held
_NOTHING_TO_ROUTE: "weakref.WeakSet[Any]" = weakref.WeakSet()


class DecodeSteps:
    """Generation's model calls inside :func:`onednn_matmuls` only where it sends them any product.

    The context is a torch function mode: Python sees every torch call made inside it, a few
    microseconds each, which adds up over the thousand-odd calls of a decode step (measured on
    XGLM-564M, 2-core Xeon, 2 threads: 12 ms of a 52 ms int8 step, 16 of a 127 ms float32 one).
    A step gains nothing from it where none of its products goes to oneDNN: on Intel processors a
    step of 1 to 3 rows (:data:`_MKL_ROWS`), and int8 weight-only layers, which call no
    ``F.linear``. The prompt's pass (:meth:`prompt`) runs inside the context and counts the
    products it could take; where there were none (a model of int8 weight-only layers), nothing
    runs inside it after, and the next prompts of ``model`` neither (its products are the same
    ones; a float layer put into it later would be multiplied by MKL instead, the same product).
    Otherwise the first step runs inside the context and counts what it routes; the later steps
    (the same products, on as many rows) run inside it only if it routed any."""

    def __init__(self, enabled: bool, model: Any = None) -> None:
        # None: not known before the first step
        self.routing: bool | None = None if enabled and model not in _NOTHING_TO_ROUTE else False
        self._model = model

    def prompt(self, start: Callable[..., Any], *args: Any) -> Any:
        """``start(*args)``, the pass over the prompt, inside the context unless it is known to
        route nothing."""
        if self.routing is False:
            return start(*args)
        with onednn_matmuls(True) as mode:
            result = start(*args)
        if mode is None or mode.eligible == 0:
            self.routing = False
            if mode is not None and self._model is not None:
                _NOTHING_TO_ROUTE.add(self._model)
        return result

    def __call__(self, step: Callable[..., Any], *args: Any) -> Any:
        if self.routing is False:
            return step(*args)
        with onednn_matmuls(True) as mode:
            result = step(*args)
        if self.routing is None:
            self.routing = mode is not None and mode.routed > 0
        return result


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
