"""A decode step through a whole stack of layers in one call of our C kernels (generation).

A decode step multiplies one row per sequence by every weight; our kernels read the weights at
close to the memory's rate (``xcli_models.native``: int8 weight-only layers, and float32 ones inside
``kernels.inference``). What is left between the products (a layer's layer norms, its one-query
attention with the cache write, the residual sums, and the Python that calls them) took about 4 ms
of a 29 ms step of XGLM-564M int8, and 5.5 ms of a 48 ms batch-8 step of MVP-large float32, each
operation run cold after the weights streamed through the caches. ``decode_step`` hands the whole
step to ``xcli_decode_layers`` (``data/kernels/kernels.c``) instead: the same kernels for the
products (the same numbers), and the layer norms, the attention (to the new token's cache and,
where the layers have it, to the encoder's cached keys and values), the GELU and the sums in C, the
same arithmetic as torch's to float32 rounding (the layer norm's moments summed in double; the
softmax exp(s - max) / sum, a row whose every key is blocked giving zeros as torch's attention
does; xcli's own GELU polynomials, within 5.3e-7 of float64's).

``run_layers`` asks it for every step it could take: a stack of ``TransformerLayer`` whose
projections are each ``quantize.Int8WeightOnlyLinear`` on our kernel or, inside a
``kernels.inference`` block that sends float32 products to our kernel, a float32 ``kernels.Linear``;
feed-forward blocks whose activation is the GELU; every norm a ``LayerNorm`` or empty; called
without gradients, one float32 token per row on the CPU, a cache (and the encoder's keys and values
cached in it, where encoder states are given), no head masks, prefixes or attention outputs.
Anything else is answered None, and the layers run as modules. ``XCLI_FUSED_DECODE=0`` turns it
off.
"""

from __future__ import annotations

import os
from array import array
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .. import kernels, native, quantize
from .attention import Attention
from .cache import Cache, KVCache
from .feedforward import FeedForward
from .transformer import TransformerLayer

__all__ = ["SWITCH", "decode_step"]

#: set to 0 to run every decode step's layers as modules
SWITCH = "XCLI_FUSED_DECODE"
#: what a layer's step may be handed besides its cache (``TransformerLayer.forward``'s arguments)
SHARED = frozenset({"self_mask", "memory", "cross_mask"})
#: the norm slots, in the C file's order (NORM_SELF_PRE ...)
_NORM_SLOTS = ("self_attn_pre_norm", "self_attn_post_norm", "cross_attn_pre_norm", "cross_attn_post_norm",
               "ffn_pre_norm", "ffn_post_norm")


def decode_step(
    layers: Sequence[nn.Module], x: torch.Tensor, shared: Mapping[str, Any], cache: Cache
) -> torch.Tensor | None:
    """``x`` (B, 1, D) through ``layers`` as one step of our kernels, each layer's keys and values
    written into ``cache``: the new (B, 1, D); or None where the step is not one it takes (see the
    module docstring), with nothing written."""
    if (x.dim() != 3 or x.shape[1] != 1 or x.dtype != torch.float32 or not x.is_cpu or torch.is_grad_enabled()
            or not shared.keys() <= SHARED or len(cache) != len(layers)
            or not native._switched_on(os.environ, SWITCH)):
        return None
    found = native.int8_kernel()
    batch, dim = x.shape[0], x.shape[2]
    if found is None:
        return None
    route, cross = kernels._ROUTE.get(), shared.get("memory") is not None
    entries = []
    for layer in layers:  # (the first layer it cannot run ends the asking: the modules run then)
        entry = _entry(layer, dim, cross, route, batch)
        if entry is None:
            return None
        entries.append(entry)
    steps = cache[0].self_attn.length + 1
    mask = _mask(shared.get("self_mask"), batch, steps)
    if mask is False:
        return None
    cross_mask: torch.Tensor | None | bool = None
    pointers: list[int] = []
    numbers: list[int] = []
    floats: list[float] = []
    caches = []
    for layer_cache, (layer_pointers, layer_numbers, layer_floats) in zip(cache, entries):
        kv = layer_cache.self_attn
        heads, head_dim, ffn, act, norms, float32_products = layer_numbers
        if not kv.filled or kv.length != steps - 1:
            return None
        # room made for the step is kept whether or not it is taken: the cached steps stay as they were
        keys, values, start = kv.writable(1)
        if not _buffers_fit(keys, values, batch, heads, head_dim):
            return None
        encoder_keys = encoder_values = None
        if cross:
            encoder_keys, encoder_values = _encoder_cache(layer_cache.cross_attn, batch, heads, head_dim)
            if encoder_keys is None:
                return None
            if cross_mask is None:
                cross_mask = _mask(shared.get("cross_mask"), batch, encoder_keys.shape[2])
            if cross_mask is False or (cross_mask is not None and cross_mask.shape[1] != encoder_keys.shape[2]):
                return None
        caches.append(kv)
        pointers += layer_pointers
        pointers += (keys.data_ptr(), values.data_ptr(), 0 if encoder_keys is None else encoder_keys.data_ptr(),
                     0 if encoder_values is None else encoder_values.data_ptr())
        numbers += (heads, head_dim, ffn, keys.shape[2], start, kv.length, act, norms, float32_products, int(cross),
                    0 if encoder_keys is None else encoder_keys.shape[2])
        floats += layer_floats
    out = x.reshape(batch, dim).clone()
    tables = array("q", pointers), array("q", numbers), array("f", floats)
    done = found.decode_layers(
        len(layers), *(table.buffer_info()[0] for table in tables), out.data_ptr(), batch, dim,
        *_rows(mask, steps), *_rows(cross_mask, 0 if cross_mask is None else cross_mask.shape[1]),
        native.AMX_FROM_ROWS if found.amx else 0,
    )
    if done != 0:  # no memory for its work rows: nothing written
        return None
    for kv in caches:
        kv.written(1)
    return out.view(batch, 1, dim)


def _product(layer: nn.Module, route: kernels.Route | None,
             rows: int) -> tuple[tuple[int, int, int], int, int, Any, bool] | None:
    """A projection as the C table takes it: its three pointers, outputs, inputs, the activation it
    applies itself ("gelu" or None) and whether it is float32; None where our kernels would not take
    its product of ``rows`` rows as a module (an int8 layer's own rule; the block's ``route`` for a
    float32 one)."""
    kind = type(layer)
    if kind is quantize.Int8WeightOnlyLinear and layer.kernel_takes(rows):
        bound = layer.kernel()
        bias = bound.bias
        return ((bound.blocked.data_ptr(), bound.scale.data_ptr(), 0 if bias is None else bias.data_ptr()),
                bound.n, bound.inputs, bound.activation, False)
    if kind is kernels.Linear and route is not None:
        weight, bias = layer._parameters["weight"], layer._parameters["bias"]
        if not route.native_takes(rows, weight, bias):
            return None
        return ((weight.data_ptr(), 0 if bias is None else bias.data_ptr(), 0), weight.shape[0], weight.shape[1],
                None, True)
    return None


def _entry(layer: nn.Module, dim: int, cross: bool, route: kernels.Route | None,
           rows: int) -> tuple[list[int], list[int], list[float]] | None:
    """What the C table holds for ``layer`` but its caches: pointers, numbers (heads, head_dim, the
    feed-forward width, the activation, the norms, the float32 products) and floats; or None where
    our kernels cannot run it. (Submodules are read from ``_modules``: a step asks for every layer's.)"""
    if type(layer) is not TransformerLayer:
        return None
    modules = layer._modules
    attention, ffn, encoder = modules["self_attn"], modules["ffn"], modules.get("cross_attn")
    if (type(attention) is not Attention or attention.together is not None or type(ffn) is not FeedForward
            or (cross and type(encoder) is not Attention)):
        return None
    parts, up_down = attention._modules, ffn._modules
    roles = [parts["query"], parts["key"], parts["value"], parts["output"], None, None, up_down["up"],
             up_down["down"]]
    if cross:
        roles[4:6] = encoder._modules["query"], encoder._modules["output"]
    products = [None if role is None else _product(role, route, rows) for role in roles]
    if any(p is None for i, p in enumerate(products) if roles[i] is not None):
        return None
    query, key, value, output, cross_query, cross_output, up, down = products
    inner, heads = query[1], attention.n_heads
    if (query[2] != dim or key[2] != dim or value[2] != dim or up[2] != dim or key[1] != inner or value[1] != inner
            or output[2] != inner or output[1] != dim or down[2] != up[1] or down[1] != dim or inner % heads
            or any(p is not None and p[3] for p in (query, key, value, output, cross_query, cross_output, down))
            or (cross and (encoder.n_heads != heads or cross_query[1] != inner or cross_query[2] != dim
                           or cross_output[2] != inner or cross_output[1] != dim))):
        return None
    # the GELU: taken into an int8 up projection (quantize.fuse_activations), or the block's own
    if (up[3] == "gelu" and ffn.act is quantize._taken_in) or (up[3] is None and ffn.act is F.gelu):
        act = native.ACTIVATIONS["gelu"]
    else:
        return None
    pointers: list[int] = []
    eps: list[float] = []
    norms = 0
    for i, slot in enumerate(_NORM_SLOTS):
        norm = modules.get(slot)
        if norm is None or type(norm) is nn.Identity or (2 <= i <= 3 and not cross):
            pointers += (0, 0)
            eps.append(0.0)
            continue
        if type(norm) is not nn.LayerNorm or norm.normalized_shape != (dim,):
            return None
        vectors = norm._parameters
        for v in (vectors["weight"], vectors["bias"]):
            if v is None:
                pointers.append(0)
            elif v.dtype != torch.float32 or not v.is_cpu or not v.is_contiguous() or v.numel() != dim:
                return None
            else:
                pointers.append(v.data_ptr())
        eps.append(norm.eps)
        norms |= 1 << i
    float32_products = 0
    for i, p in enumerate(products):
        pointers += (0, 0, 0) if p is None else p[0]
        float32_products |= (p is not None and p[4]) << i
    head_dim = inner // heads
    scales = [head_dim**-0.5 if a is None or a.scale is None else a.scale for a in (attention, encoder)]
    return pointers, [heads, head_dim, up[1], act, norms, float32_products], eps + scales


def _buffers_fit(keys: torch.Tensor, values: torch.Tensor, batch: int, heads: int, head_dim: int) -> bool:
    return (keys.dtype == values.dtype == torch.float32 and keys.is_cpu and values.is_cpu and keys.dim() == 4
            and tuple(keys.shape) == (batch, heads, keys.shape[2], head_dim) and values.shape == keys.shape
            and keys.is_contiguous() and values.is_contiguous())


def _encoder_cache(kv: KVCache | None, batch: int, heads: int,
                   head_dim: int) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
    """The encoder's cached keys and values (B, H, S, Dh), contiguous as the cross-attention keeps
    them; (None, None) where there are none to use."""
    if kv is None or not kv.filled:
        return None, None
    keys, values = kv.key, kv.value
    if not _buffers_fit(keys, values, batch, heads, head_dim) or keys.shape[2] == 0:
        return None, None
    return keys, values


def _mask(mask: torch.Tensor | None, batch: int, steps: int) -> torch.Tensor | None | bool:
    """An additive attention mask as (1 or B, steps) float32 rows, None for none, or False where it
    is not one the step can take."""
    if mask is None:
        return None
    if (mask.dim() != 4 or mask.shape[0] not in (1, batch) or mask.shape[1:3] != (1, 1) or mask.shape[3] != steps
            or mask.dtype != torch.float32 or not mask.is_cpu):
        return False
    return mask.reshape(mask.shape[0], steps).contiguous()


def _rows(mask: Any, steps: int) -> tuple[int | None, int]:
    """A mask's rows as the C function takes them: the address (None for none) and the row stride."""
    if mask is None:
        return None, 0
    return mask.data_ptr(), 0 if mask.shape[0] == 1 else steps
