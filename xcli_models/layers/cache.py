"""Key/value caches for incremental decoding.

A ``KVCache`` holds one attention layer's keys and values, shape
``(batch, heads, length, head_dim)``. Self-attention appends a step at a time
into a buffer that grows by doubling, so a decode step copies only the new
token's keys, not the whole history; cross-attention fills it once from the
encoder output. A sliding window (XLNet's ``mem_len``) drops steps from the
front by moving a start offset: the kept steps move to the buffer's front only
when the room at its end runs out, so a window of ``M`` steps is copied once
every ``M`` or so steps, not at every step. ``Cache`` is the model-wide list of
them, with the operations generation needs: the cached length, reordering for
beam search, and the reference's tuple layout for interoperability.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch


class KVCache:
    """Keys and values of one attention layer. Shape: (B, H, S, Dh)."""

    def __init__(self) -> None:
        self._key: torch.Tensor | None = None
        self._value: torch.Tensor | None = None
        self.length = 0
        self._start = 0  # the buffer row of the first cached step (steps before it were dropped)
        self._owned = False  # whether the buffers are ours to overwrite (not tensors handed to set())
        self._spare: tuple[torch.Tensor, torch.Tensor] | None = None  # reorder's second buffer

    @property
    def filled(self) -> bool:
        return self._key is not None

    @property
    def key(self) -> torch.Tensor:
        assert self._key is not None
        return self._key[:, :, self._start : self._start + self.length]

    @property
    def value(self) -> torch.Tensor:
        assert self._value is not None
        return self._value[:, :, self._start : self._start + self.length]

    def set(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Replace the contents (cross-attention: the encoder's keys and values)."""
        self._key, self._value, self.length = key, value, key.shape[2]
        self._start, self._owned = 0, False
        return key, value

    def append(self, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add ``key``/``value`` (B, H, T, Dh) after the cached steps; return all steps."""
        if self._key is None:
            return self.set(key, value)
        if key.shape[0] != self._key.shape[0]:
            if self.length:
                raise ValueError(
                    f"the cache holds {self._key.shape[0]} batch rows; cannot append {key.shape[0]} "
                    "(reorder it first, or crop it to 0)"
                )
            return self.set(key, value)  # emptied by crop(0): start afresh at the new batch size
        new_length = self.length + key.shape[2]
        self._make_room(new_length)
        end = self._start + new_length
        self._key[:, :, self._start + self.length : end] = key
        self._value[:, :, self._start + self.length : end] = value
        self.length = new_length
        return self.key, self.value

    def writable(self, steps: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Room for ``steps`` more steps, for a writer of its own (``layers/fused.py``): the key and
        value buffers, (B, H, capacity, Dh), contiguous and ours, and the row of the first cached
        step; step ``length + i`` goes to row ``start + length + i``. ``written`` then counts them."""
        assert self._key is not None and self._value is not None
        self._make_room(self.length + steps)
        return self._key, self._value, self._start

    def written(self, steps: int) -> None:
        """Count ``steps`` steps written after the cached ones into the buffers ``writable`` gave."""
        self.length += steps

    def _make_room(self, new_length: int) -> None:
        """Make the buffer hold ``new_length`` steps from ``_start``, copying as seldom as it can.

        Tensors handed to set() are the caller's: they are copied before anything is written
        into them (after a crop or drop_front). In our own buffer, when the end is reached but
        the dropped steps in front leave room, the kept steps move to the front in place; the
        move is only done when they do not overlap their new rows (``_start >= length``), so
        it reads nothing it has already written. Otherwise the buffer doubles.
        """
        assert self._key is not None and self._value is not None
        capacity = self._key.shape[2]
        if self._owned and self._start + new_length <= capacity:
            return
        if self._owned and new_length <= capacity and self._start >= self.length:
            for buffer in (self._key, self._value):
                buffer[:, :, : self.length] = buffer[:, :, self._start : self._start + self.length]
        else:
            capacity = max(new_length, 2 * capacity)
            self._key, self._value = _grow(self.key, capacity), _grow(self.value, capacity)
            self._owned = True
        self._start = 0

    def drop_front(self, n: int) -> None:
        """Forget the first ``n`` steps (a sliding window): the buffer and its room are kept,
        so the next append writes in place instead of copying the kept steps (see _make_room).
        As after ``crop``, tensors read from ``key``/``value`` before may see later writes."""
        n = min(max(n, 0), self.length)
        self._start, self.length = self._start + n, self.length - n

    def crop(self, length: int) -> None:
        """Forget every step after the first ``length`` (the buffer is kept for reuse)."""
        self.length = min(self.length, max(length, 0))

    def reorder(self, index: torch.Tensor) -> None:
        """Keep batch rows ``index`` (beam search), in that order.

        When the batch size stays (a beam-search step), the rows are gathered into a second
        buffer of the same capacity, which then takes the current one's place and leaves it as
        the next step's spare: a step allocates nothing and the cache keeps its room to grow.
        """
        if self._key is None or self._value is None:
            return
        index = index.to(self._key.device)
        if index.shape[0] != self._key.shape[0]:
            self._key, self._value = self.key.index_select(0, index), self.value.index_select(0, index)
            self._start, self._owned, self._spare = 0, True, None
            return
        spare = self._spare
        if spare is None or spare[0].shape != self._key.shape or spare[0].dtype != self._key.dtype:
            spare = (self._key.new_empty(self._key.shape), self._value.new_empty(self._value.shape))
        torch.index_select(self._key, 0, index, out=spare[0])
        torch.index_select(self._value, 0, index, out=spare[1])
        previous = (self._key, self._value)
        self._key, self._value = spare
        self._spare = previous if self._owned else None
        self._owned = True


def _grow(tensor: torch.Tensor, capacity: int) -> torch.Tensor:
    b, h, s, d = tensor.shape
    out = tensor.new_empty(b, h, capacity, d)
    out[:, :, :s] = tensor
    return out


class LayerCache:
    """The caches of one layer: self-attention, and cross-attention when the layer has it."""

    def __init__(self, cross: bool = False) -> None:
        self.self_attn = KVCache()
        self.cross_attn = KVCache() if cross else None

    def reorder(self, index: torch.Tensor) -> None:
        self.self_attn.reorder(index)
        if self.cross_attn is not None:
            self.cross_attn.reorder(index)


class Cache:
    """Per-layer caches of a decoder (``past_key_values``)."""

    def __init__(self, n_layers: int, cross: bool = False) -> None:
        self.layers = [LayerCache(cross) for _ in range(n_layers)]

    def __getitem__(self, index: int) -> LayerCache:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def get_seq_length(self) -> int:
        """Number of positions already cached (0 for an empty cache)."""
        return self.layers[0].self_attn.length if self.layers else 0

    def reorder(self, index: torch.Tensor) -> None:
        for layer in self.layers:
            layer.reorder(index)

    def crop(self, length: int) -> None:
        """Keep the first ``length`` self-attention steps of every layer (cross-attention untouched)."""
        for layer in self.layers:
            layer.self_attn.crop(length)

    def to_legacy(self) -> tuple[tuple[torch.Tensor, ...], ...]:
        """``((k, v[, cross_k, cross_v]), ...)`` per layer, as the reference's tuple caches."""
        out = []
        for layer in self.layers:
            entry = (layer.self_attn.key, layer.self_attn.value)
            if layer.cross_attn is not None and layer.cross_attn.filled:
                entry += (layer.cross_attn.key, layer.cross_attn.value)
            out.append(entry)
        return tuple(out)

    @classmethod
    def from_legacy(cls, layers: Sequence[Sequence[torch.Tensor]]) -> "Cache":
        cross = any(len(entry) == 4 for entry in layers)
        cache = cls(len(layers), cross=cross)
        for layer, entry in zip(cache.layers, layers):
            layer.self_attn.set(entry[0], entry[1])
            if len(entry) == 4 and layer.cross_attn is not None:
                layer.cross_attn.set(entry[2], entry[3])
        return cache

    @classmethod
    def coerce(cls, value: object, n_layers: int, cross: bool = False) -> "Cache":
        """A ``Cache`` from what a caller passed as past_key_values (None, Cache, or tuples)."""
        if value is None:
            return cls(n_layers, cross=cross)
        if isinstance(value, Cache):
            return value
        to_legacy = getattr(value, "to_legacy_cache", None)  # a reference Cache object
        if to_legacy is not None:
            value = to_legacy()
        if isinstance(value, Iterable):
            return cls.from_legacy(list(value))  # type: ignore[arg-type]
        raise TypeError(f"cannot use {type(value).__name__} as past_key_values")
