"""xcli_models.layers.cache: the per-layer key/value buffers."""

from __future__ import annotations

import pytest
import torch

from xcli_models.layers.cache import Cache, KVCache


def _kv(batch: int, steps: int, start: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    base = torch.arange(batch * 2 * steps * 3, dtype=torch.float32).view(batch, 2, steps, 3) + start
    return base, -base


def test_appends_equal_one_concatenation():
    cache = KVCache()
    parts = [_kv(2, n, 100.0 * i) for i, n in enumerate([3, 1, 1, 4, 1])]
    for key, value in parts:
        cache.append(key, value)
    assert torch.equal(cache.key, torch.cat([k for k, _ in parts], dim=2))
    assert torch.equal(cache.value, torch.cat([v for _, v in parts], dim=2))


@pytest.mark.parametrize(("forget", "kept"), [(lambda c: c.crop(2), slice(0, 2)), (lambda c: c.drop_front(4), slice(4, 6))],
                         ids=["crop", "drop_front"])
def test_appending_after_forgetting_never_writes_into_the_callers_tensors(forget, kept):
    key, value = _kv(1, 6)
    original_key, original_value = key.clone(), value.clone()
    cache = KVCache()
    cache.set(key, value)
    forget(cache)
    step = _kv(1, 3, 1000.0)
    cache.append(*step)
    assert torch.equal(key, original_key) and torch.equal(value, original_value)
    assert torch.equal(cache.key, torch.cat([original_key[:, :, kept], step[0]], dim=2))


def test_a_different_batch_size_is_refused_while_steps_are_cached():
    cache = KVCache()
    cache.append(*_kv(1, 2))
    with pytest.raises(ValueError, match="batch rows"):
        cache.append(*_kv(3, 1))
    assert cache.key.shape == (1, 2, 2, 3)  # unchanged


def test_an_emptied_cache_takes_a_new_batch_size():
    cache = KVCache()
    cache.append(*_kv(1, 2))
    cache.crop(0)
    key, value = _kv(3, 2)
    cache.append(key, value)
    cache.append(*_kv(3, 1, 50.0))
    assert cache.key.shape == (3, 2, 3, 3)
    assert torch.equal(cache.key[:, :, :2], key)


def test_reorder_then_append_keeps_rows_apart():
    cache = Cache(1)
    layer = cache[0].self_attn
    layer.append(*_kv(2, 2))
    cache.reorder(torch.tensor([1, 0]))
    step = _kv(2, 1, 500.0)
    layer.append(*step)
    expected = torch.cat([_kv(2, 2)[0][[1, 0]], step[0]], dim=2)
    assert torch.equal(layer.key, expected)


def _window(steps: list[tuple[torch.Tensor, torch.Tensor]], keep: int) -> torch.Tensor:
    """The keys a window of the last ``keep`` steps holds: the concatenation's tail."""
    return torch.cat([k for k, _ in steps], dim=2)[:, :, -keep:]


def test_drop_front_keeps_the_last_steps_and_appends_after_them():
    cache = KVCache()
    key, value = _kv(2, 5)
    cache.append(key, value)
    cache.drop_front(3)
    expected = key[:, :, 3:]
    assert torch.equal(cache.key, expected) and torch.equal(cache.value, value[:, :, 3:])
    for i in range(1, 40):  # past the buffer's end: the kept steps move to its front, or it grows
        key, value = _kv(2, 1 + i % 3, 100.0 * i)
        cache.append(key, value)
        cache.drop_front(cache.length - 6)
        expected = torch.cat([expected, key], dim=2)[:, :, -6:]
        assert torch.equal(cache.key, expected) and torch.equal(cache.value, -expected)


def test_drop_front_is_bounded_by_the_length():
    cache = KVCache()
    cache.append(*_kv(1, 3))
    cache.drop_front(-2)
    assert cache.length == 3
    cache.drop_front(10)
    assert cache.length == 0 and cache.key.shape == (1, 2, 0, 3)
    step = _kv(1, 2, 7.0)
    cache.append(*step)
    assert torch.equal(cache.key, step[0])


def test_crop_and_reorder_after_drop_front():
    cache = Cache(1)
    layer = cache[0].self_attn
    parts = [_kv(2, 4), _kv(2, 3, 100.0)]
    for part in parts:
        layer.append(*part)
    layer.drop_front(2)
    cache.crop(3)
    assert torch.equal(layer.key, torch.cat([k for k, _ in parts], dim=2)[:, :, 2:5])
    cache.reorder(torch.tensor([1, 0]))  # the same batch size: into the spare buffer
    step = _kv(2, 1, 500.0)
    layer.append(*step)
    expected = torch.cat([torch.cat([k for k, _ in parts], dim=2)[[1, 0], :, 2:5], step[0]], dim=2)
    assert torch.equal(layer.key, expected)
    layer.drop_front(1)
    cache.reorder(torch.tensor([0, 0, 1]))  # a new batch size: a fresh buffer of the kept steps
    assert torch.equal(layer.key, expected[[0, 0, 1], :, 1:])
    layer.append(*_kv(3, 1, 900.0))
    assert torch.equal(layer.key[:, :, :-1], expected[[0, 0, 1], :, 1:])


def test_a_sliding_window_rarely_moves_to_a_new_buffer():
    """A window of 64 steps, each step adding 3 steps, dropping 2 (a rerun) and keeping the last 64 (as
    XLNet's mem_len): the buffer is reallocated a few times while growing, then never; the kept steps
    move within it about once every 64 steps, not every step. (Every step's keys are held, so that a
    freed buffer's address cannot come back as a new one's.)"""
    cache, parts = KVCache(), [_kv(1, 70)]
    cache.append(*parts[0])
    held = []
    for i in range(200):
        cache.crop(cache.length - 2)
        parts[-1] = tuple(x[:, :, :-2] for x in parts[-1])
        parts.append(_kv(1, 3, 1000.0 * (i + 1)))
        cache.append(*parts[-1])
        cache.drop_front(cache.length - 64)
        held.append(cache.key)
    assert len({k.untyped_storage().data_ptr() for k in held}) <= 3
    assert torch.equal(cache.key, _window(parts, 64))
