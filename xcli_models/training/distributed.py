"""Data-parallel training over several processes (``torchrun``), with ``torch.distributed``.

A :class:`World` is this process's place in the job: its ``rank`` among ``size`` processes
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, as torchrun sets them; ``MASTER_ADDR``/``MASTER_PORT``
are read by ``init_process_group``). One process alone is ``World()``: every collective is then
a no-op, so the loop runs the same code either way.

How a job divides the work (see :class:`xcli_models.training.Trainer`):

* every process encodes every record and draws the same global batches of
  ``batch_size x size`` examples (the same shuffled, length-grouped order on each, from the same
  seed); process ``rank`` trains on rows ``rank*batch_size .. (rank+1)*batch_size`` of each;
* the item counts of an optimizer step's batches are summed over the processes first, so that
  each process weights its loss by its share of the global count; the weighted gradients are
  then summed (``all_reduce``), which makes them the gradient of the global batch's mean loss,
  exactly as one process with ``batch_size x size`` computes it; the loss reported is summed
  the same way. Every process then takes the same optimizer step on the same weights;
* dev evaluation is sharded: process ``rank`` evaluates every ``size``-th dev batch, the loss
  sums are summed and the ``(gold, prediction)`` pairs gathered, so every process computes the
  same metrics (and takes the same early-stopping decision);
* a resumable state holds every process's random generators; it is written by process 0 only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable

import torch

__all__ = ["World", "from_env"]

#: gradients are summed in flat buckets of at most this many elements
BUCKET = 1 << 24


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel job (``World()``: alone)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Process 0: the one that writes output and reports progress."""
        return self.rank == 0

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the processes, in place; returns it."""
        if self.active:
            torch.distributed.all_reduce(tensor)
        return tensor

    def sum_tensors(self, tensors: Iterable[torch.Tensor]) -> None:
        """Sum each tensor over the processes, in place, a few large messages at a time."""
        if not self.active:
            return
        bucket: list[torch.Tensor] = []
        size = 0
        for tensor in tensors:
            if bucket and (size + tensor.numel() > BUCKET or tensor.dtype != bucket[0].dtype
                           or tensor.device != bucket[0].device):
                self._sum_bucket(bucket)
                bucket, size = [], 0
            bucket.append(tensor)
            size += tensor.numel()
        if bucket:
            self._sum_bucket(bucket)

    @staticmethod
    def _sum_bucket(tensors: list[torch.Tensor]) -> None:
        flat = torch.cat([t.reshape(-1) for t in tensors])
        torch.distributed.all_reduce(flat)
        offset = 0
        for tensor in tensors:
            n = tensor.numel()
            tensor.copy_(flat[offset : offset + n].view_as(tensor))
            offset += n

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (picklable), in rank order, on every process."""
        if not self.active:
            return [value]
        out: list[Any] = [None] * self.size
        torch.distributed.all_gather_object(out, value)
        return out

    def share_weights(self, module: torch.nn.Module) -> None:
        """Give every process process 0's weights and buffers."""
        if not self.active:
            return
        with torch.no_grad():
            for tensor in module.state_dict().values():
                torch.distributed.broadcast(tensor, 0)

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def close(self) -> None:
        if self.active and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def from_env(device: str | None = "auto") -> World:
    """This process's :class:`World`, joining the job's process group when ``WORLD_SIZE`` > 1
    (``gloo`` on CPU, ``nccl`` on CUDA, where ``LOCAL_RANK`` picks the GPU)."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return World()
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    name = str(getattr(device, "value", device) or "auto")
    cuda = name.startswith("cuda") or (name == "auto" and torch.cuda.is_available())
    backend = "nccl" if cuda else "gloo"
    if cuda:
        torch.cuda.set_device(local)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend, init_method="env://")
    return World(rank=rank, size=size, local_rank=local, backend=backend)
