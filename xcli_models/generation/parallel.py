"""Row-parallel matrix products for decoding on CPU.

A decode step multiplies a few rows by every weight matrix once, so its speed is how fast
the weights stream from memory. MKL's single matrix-vector call does not stream at the
machine's read bandwidth (measured here: ~17 GB/s of ~33 GB/s, with one or two threads),
but independent calls on disjoint row blocks of the weight, one per core, do.

``split_matmuls(workers)`` is a context in which ``F.linear`` (every ``nn.Linear``) and
``x @ W`` with a large 2D ``W`` are computed as row blocks of ``W`` (output columns), shared
among the calling thread and ``workers - 1`` helper threads, each running single-threaded
MKL. Each output element is still one dot product computed by the same kernel, so a
matrix-vector product gives the very same numbers; with several input rows MKL's blocking
may round the last bit differently. Blocks are taken from a shared counter, so when the
other cores are busy the calling thread simply does more of them (no waiting for a thread
that is not scheduled). Inside the context torch runs single-threaded otherwise (the
element-wise work of a decode step is tiny); the thread setting is restored on exit.

Small weights (below ``min_bytes``) and anything needing gradients run unchanged.
"""

from __future__ import annotations

import itertools
import queue
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

#: weights smaller than this run as one call
MIN_BYTES = 2 << 20
#: aim for blocks of about this size (more blocks: finer sharing when a core is busy)
BLOCK_BYTES = 8 << 20
MAX_BLOCKS = 16


class _Job:
    """Tasks taken one by one by whichever thread asks next; ``wait`` returns when all are done."""

    def __init__(self, tasks: list[Callable[[], None]], inference: bool) -> None:
        self.tasks = tasks
        self.inference = inference
        self._next = itertools.count()
        self._left = len(tasks)
        self._lock = threading.Lock()
        self._done = threading.Event()
        self.error: BaseException | None = None

    def work(self) -> None:
        with torch.inference_mode(self.inference), torch.no_grad():
            while (i := next(self._next)) < len(self.tasks):
                try:
                    self.tasks[i]()
                except BaseException as exc:  # handed to the caller by wait()
                    self.error = exc
                with self._lock:
                    self._left -= 1
                    if self._left == 0:
                        self._done.set()

    def wait(self) -> None:
        self._done.wait()
        if self.error is not None:
            raise self.error


class _Team:
    """``helpers`` daemon threads serving jobs (they live as long as the process)."""

    def __init__(self, helpers: int) -> None:
        self.helpers = helpers
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        for _ in range(helpers):
            threading.Thread(target=self._serve, name="xcli-matmul", daemon=True).start()

    def _serve(self) -> None:
        torch.set_num_threads(1)
        while True:
            self._jobs.get().work()

    def run(self, tasks: list[Callable[[], None]]) -> None:
        job = _Job(tasks, torch.is_inference_mode_enabled())
        for _ in range(min(self.helpers, len(tasks) - 1)):
            self._jobs.put(job)
        job.work()
        job.wait()


_TEAMS: dict[int, _Team] = {}
_TEAMS_LOCK = threading.Lock()


def _team(helpers: int) -> _Team:
    with _TEAMS_LOCK:
        if helpers not in _TEAMS:
            _TEAMS[helpers] = _Team(helpers)
        return _TEAMS[helpers]


def _bounds(n: int, nbytes: int, workers: int) -> list[tuple[int, int]]:
    blocks = max(workers, min(MAX_BLOCKS, nbytes // BLOCK_BYTES), 1)
    blocks = min(blocks, n)
    edges = [n * i // blocks for i in range(blocks + 1)]
    return list(zip(edges[:-1], edges[1:]))


class _SplitMatmuls(TorchFunctionMode):
    def __init__(self, team: _Team, workers: int, min_bytes: int) -> None:
        super().__init__()
        self.team, self.workers, self.min_bytes = team, workers, min_bytes

    def _eligible(self, x: object, w: object) -> bool:
        return (
            isinstance(x, torch.Tensor) and isinstance(w, torch.Tensor) and w.dim() == 2 and x.dim() >= 1
            and x.device.type == "cpu" and w.device.type == "cpu" and x.dtype == w.dtype
            and w.is_floating_point() and w.numel() * w.element_size() >= self.min_bytes
            and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
        )

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func is F.linear:
            x, w = args[0], args[1] if len(args) > 1 else kwargs.get("weight")
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if self._eligible(x, w) and x.shape[-1] == w.shape[1]:
                return self._linear(x, w, bias)
        elif func in (torch.matmul, torch.Tensor.__matmul__) and len(args) == 2 and not kwargs:
            x, w = args
            if self._eligible(x, w) and x.dim() >= 2 and x.shape[-1] == w.shape[0]:
                return self._linear(x, w.t(), None)
        return func(*args, **kwargs)

    def _linear(self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """``x @ w.T (+ bias)`` over row blocks of ``w``. Shape: x (..., K), w (N, K) -> (..., N)."""
        n = w.shape[0]
        flat = x.reshape(-1, x.shape[-1])
        out = flat.new_empty(flat.shape[0], n)

        def block(a: int, b: int) -> Callable[[], None]:
            if bias is None:
                return lambda: torch.mm(flat, w[a:b].t(), out=out[:, a:b])
            return lambda: torch.addmm(bias[a:b], flat, w[a:b].t(), out=out[:, a:b])

        tasks = [block(a, b) for a, b in _bounds(n, w.numel() * w.element_size(), self.workers)]
        self.team.run(tasks)
        return out.view(*x.shape[:-1], n)


@contextmanager
def split_matmuls(workers: int, *, min_bytes: int = MIN_BYTES) -> Iterator[None]:
    """Run large matrix products as row blocks on ``workers`` threads (see the module docstring)."""
    if workers <= 1:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with _SplitMatmuls(_team(workers - 1), workers, min_bytes):
            yield
    finally:
        torch.set_num_threads(threads)
