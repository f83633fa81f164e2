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


def test_crop_then_append_never_writes_into_the_callers_tensors():
    key, value = _kv(1, 4)
    original_key, original_value = key.clone(), value.clone()
    cache = KVCache()
    cache.set(key, value)
    cache.crop(2)
    new_key, new_value = _kv(1, 1, 1000.0)
    cache.append(new_key, new_value)
    assert torch.equal(key, original_key) and torch.equal(value, original_value)
    assert torch.equal(cache.key, torch.cat([original_key[:, :, :2], new_key], dim=2))


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
