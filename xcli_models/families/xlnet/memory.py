"""XLNet's memory kept projected across generation steps.

The memory of a call (``mems``) is, per layer, the layer's input states of earlier tokens; the
model turns them into keys and values with the layer's key and value projections, and projects
the sinusoids of every relative distance of the call with the layer's position projection.
Calling the model again with the memory redoes both over the whole context. ``ProjectedMems``
keeps the results instead:

* per layer, the keys and values of the memory (a ``KVCache``): a call appends its tokens' and
  keeps the rows the model keeps in ``mems`` (the call's first ``reuse_len`` tokens when that is
  set, then the last ``mem_len`` rows when that is set), so ``crop_end(n)`` is the ``mems[:-n]``
  of the reference's generation; the rows before the window are dropped in place
  (``KVCache.drop_front``), so a step past ``mem_len`` does not copy the whole window;
* one table of relative-position sinusoids, from a distance ``top`` down, grown by doubling,
  and each layer's projection of it; a call takes the rows of its own distances (a view). Under
  a ``mem_len`` window a call's distances stop growing, so neither is rebuilt step after step.

Projections are linear row by row, so this is the reference's arithmetic regrouped: each step
projects its new tokens only (rounding can differ in the last bits). Inference only (the model's
dropout on positions is left out).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn import functional as F

from ...layers import KVCache

Tensor = torch.Tensor
#: (qlen, mlen, batch, device) -> sinusoids of distances mlen + qlen down to -qlen + 1 (or 0), (1|B, R, D)
TableBuilder = Callable[[int, int, int, torch.device], Tensor]


class PositionTable:
    """Sinusoids of the relative distances ``top, top - 1, ...`` (down to ``-(reach - 1)`` when
    bidirectional, else 0), built by the model's own ``build``; ``version`` counts rebuilds.

    ``prepare`` makes sure a call of ``qlen`` tokens over ``klen`` keys is covered and sets
    ``rows``, the slice of the table that call needs: distances ``klen`` down to ``-(qlen - 1)``
    (or 0), the table ``relative_sinusoids`` gives that call.
    """

    def __init__(self, build: TableBuilder, *, bidirectional: bool, per_row: bool) -> None:
        self.build, self.bidirectional, self.per_row = build, bidirectional, per_row
        self.table: Tensor | None = None  # (1|B, R, D)
        self.top = self.reach = self.batch = self.version = 0
        self.rows = slice(0, 0)

    def prepare(self, qlen: int, klen: int, batch: int, dtype: torch.dtype, device: torch.device) -> None:
        reach = qlen if self.bidirectional else 1
        stale = (
            self.table is None or klen > self.top or reach > self.reach or self.table.dtype != dtype
            or self.table.device != device or (self.per_row and batch != self.batch)
        )
        if stale:
            self.top, self.reach, self.batch = max(klen, 2 * self.top, 32), max(reach, self.reach), batch
            # distances top .. -(reach - 1): the table of reach tokens over top - reach memory rows
            self.table = self.build(self.reach, self.top - self.reach, batch, device).to(dtype)
            self.version += 1
        start = self.top - klen
        self.rows = slice(start, start + klen + reach)


class LayerMemory:
    """One layer's memory as keys and values (``cache``: (B, H, M, Dh)) and its projection of the
    shared position table."""

    def __init__(self, positions: PositionTable, *, reuse_len: int | None, mem_len: int | None) -> None:
        self.cache = KVCache()
        self.table = positions
        self.reuse_len, self.mem_len = reuse_len, mem_len
        self._projected: Tensor | None = None  # (1|B, H, R, Dh)
        self._version = -1

    def extend(self, key: Tensor, value: Tensor, *, placeholders: int = 0) -> tuple[Tensor, Tensor]:
        """The memory's keys and values, then the call's ``key``/``value`` (B, H, T, Dh); keeps the
        rows the model's ``mems`` would, as if the call had ``placeholders`` more tokens (zeros:
        tokens nothing reads, whose rows the caller drops before they are used)."""
        before, t = self.cache.length, key.shape[2]
        if placeholders:
            key, value = (F.pad(x, (0, 0, 0, placeholders)) for x in (key, value))
        key_all, value_all = self.cache.append(key, value)
        key_all, value_all = key_all[:, :, : before + t], value_all[:, :, : before + t]
        new = key.shape[2]
        if self.reuse_len is not None and self.reuse_len > 0:
            new = min(new, self.reuse_len)
        self.cache.crop(before + new)
        if self.mem_len:  # the reference's kept[-mem_len:]; the buffer keeps its room (see KVCache)
            self.cache.drop_front(self.cache.length - self.mem_len)
        return key_all, value_all

    def positions(self, project: Callable[[Tensor], Tensor]) -> Tensor:
        """The call's projected positions (1|B, H, R, Dh); ``project`` maps (.., R, D) -> (.., H, R, Dh)."""
        if self._version != self.table.version:
            assert self.table.table is not None, "prepare the position table first"
            self._projected, self._version = project(self.table.table), self.table.version
        assert self._projected is not None
        return self._projected[:, :, self.table.rows]


class ProjectedMems:
    """Every layer's ``LayerMemory`` and the shared ``PositionTable``: what generation keeps
    between calls instead of ``mems`` (pass it as ``mems``; the call updates it and returns it)."""

    def __init__(
        self, n_layers: int, build: TableBuilder, *, bidirectional: bool, per_row: bool,
        reuse_len: int | None, mem_len: int | None,
    ) -> None:
        self.positions = PositionTable(build, bidirectional=bidirectional, per_row=per_row)
        self.layers = [LayerMemory(self.positions, reuse_len=reuse_len, mem_len=mem_len) for _ in range(n_layers)]

    @property
    def length(self) -> int:
        """Memory rows (M)."""
        return self.layers[0].cache.length if self.layers else 0

    def prepare(self, qlen: int, batch: int, dtype: torch.dtype, device: torch.device) -> None:
        """Ready the position table for a call of ``qlen`` tokens over this memory."""
        self.positions.prepare(qlen, self.length + qlen, batch, dtype, device)

    def crop_end(self, n: int) -> None:
        """Forget the last ``n`` rows of every layer (``mems[:-n]``)."""
        for layer in self.layers:
            layer.cache.crop(layer.cache.length - n)

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (beam search), in that order."""
        for layer in self.layers:
            layer.cache.reorder(index)
