"""A decode step through a whole stack of layers in one call of our C kernels (int8 generation).

A decode step of int8 weight-only generation multiplies one row per sequence by every weight; our
kernel reads the int8 weights at the memory's rate (``xcli_models.native``). What is left between
the products (a layer's two layer norms, its one-query attention with the cache write, the residual
sums, and the Python that calls them) took about 4 ms of a 29 ms step of XGLM-564M, each operation
run cold after the weights streamed through the caches. ``decode_step`` hands the whole step to
``xcli_decode_layers`` (``data/kernels/int8_rows.c``) instead: the same kernels for the products
(the same numbers), and the layer norms, the attention and the sums in C, the same arithmetic as
torch's to float32 rounding (the layer norm's moments summed in double; the softmax exp(s - max) /
sum).

``run_layers`` asks it for every step it could take: a stack of ``TransformerLayer`` whose six
projections are ``quantize.Int8WeightOnlyLinear`` on our kernel, the feed-forward's activation taken
into the up projection (``quantize.fuse_activations``), every norm a ``LayerNorm`` or empty; called
without gradients, one float32 token per row on the CPU, a cache, no encoder states, head masks,
prefixes or attention outputs. Anything else is answered None, and the layers run as modules.
``XCLI_FUSED_DECODE=0`` turns it off.
"""

from __future__ import annotations

import os
from array import array
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .. import native, quantize
from .attention import Attention
from .cache import Cache
from .feedforward import FeedForward
from .transformer import TransformerLayer

__all__ = ["SWITCH", "decode_step"]

#: set to 0 to run every decode step's layers as modules
SWITCH = "XCLI_FUSED_DECODE"
#: what a layer's step may be handed besides its cache (``TransformerLayer.forward``'s arguments):
#: the self-attention mask; encoder states and their mask only as None
SHARED = frozenset({"self_mask", "memory", "cross_mask"})
_NORM_SLOTS = ("self_attn_pre_norm", "self_attn_post_norm", "ffn_pre_norm", "ffn_post_norm")


def decode_step(
    layers: Sequence[nn.Module], x: torch.Tensor, shared: Mapping[str, Any], cache: Cache
) -> torch.Tensor | None:
    """``x`` (B, 1, D) through ``layers`` as one step of our kernels, each layer's keys and values
    written into ``cache``: the new (B, 1, D); or None where the step is not one it takes (see the
    module docstring), with nothing written."""
    if (x.dim() != 3 or x.shape[1] != 1 or x.dtype != torch.float32 or not x.is_cpu or torch.is_grad_enabled()
            or not shared.keys() <= SHARED or shared.get("memory") is not None or len(cache) != len(layers)
            or not native._switched_on(os.environ, SWITCH)):
        return None
    kernels = native.int8_kernel()
    batch, dim = x.shape[0], x.shape[2]
    if kernels is None or batch >= (native.AMX_BELOW_ROWS if kernels.amx else quantize.NATIVE_BELOW_ROWS):
        return None
    entries = [_entry(layer, dim) for layer in layers]
    if any(entry is None for entry in entries):
        return None
    steps = cache[0].self_attn.length + 1
    mask = _mask(shared.get("self_mask"), batch, steps)
    if mask is False:
        return None
    caches = []
    pointers: list[int] = []
    numbers: list[int] = []
    floats: list[float] = []
    for layer_cache, (layer_pointers, layer_numbers, layer_floats) in zip(cache, entries):
        kv = layer_cache.self_attn
        heads, head_dim, ffn, act, norms = layer_numbers
        if not kv.filled or kv.length != steps - 1:
            return None
        # room made for the step is kept whether or not it is taken: the cached steps stay as they were
        keys, values, start = kv.writable(1)
        if (keys.dtype != torch.float32 or not keys.is_cpu or keys.dim() != 4
                or tuple(keys.shape) != (batch, heads, keys.shape[2], head_dim) or values.shape != keys.shape
                or values.dtype != torch.float32 or not values.is_cpu):
            return None
        caches.append(kv)
        pointers += layer_pointers
        pointers += (keys.data_ptr(), values.data_ptr())
        numbers += (heads, head_dim, ffn, keys.shape[2], start, kv.length, act, norms)
        floats += layer_floats
    out = x.reshape(batch, dim).clone()
    mask_rows, mask_stride = (None, 0) if mask is None else (mask.data_ptr(), 0 if mask.shape[0] == 1 else steps)
    tables = array("q", pointers), array("q", numbers), array("f", floats)
    done = kernels.decode_layers(
        len(layers), *(table.buffer_info()[0] for table in tables), out.data_ptr(), batch, dim, mask_rows, mask_stride,
        native.AMX_FROM_ROWS if kernels.amx else 0,
    )
    if done != 0:  # no memory for its work rows: nothing written
        return None
    for kv in caches:
        kv.written(1)
    return out.view(batch, 1, dim)


def _entry(layer: nn.Module, dim: int) -> tuple[list[int], list[int], list[float]] | None:
    """What the C table holds for ``layer`` but its cache (pointers, numbers, floats), or None where
    our kernels cannot run it. (Submodules are read from ``_modules``: a step asks for 24 layers'.)"""
    if type(layer) is not TransformerLayer:
        return None
    modules = layer._modules
    attention, ffn = modules["self_attn"], modules["ffn"]
    if (type(attention) is not Attention or attention.together is not None or type(ffn) is not FeedForward
            or ffn.act is not quantize._taken_in):
        return None
    parts, up_down = attention._modules, ffn._modules
    bound = []
    for p in (parts["query"], parts["key"], parts["value"], parts["output"], up_down["up"], up_down["down"]):
        if type(p) is not quantize.Int8WeightOnlyLinear or not p.native:
            return None
        bound.append(p.kernel())
    query, key, value, output, up, down = bound
    inner, heads = query.n, attention.n_heads
    if (query.inputs != dim or key.inputs != dim or value.inputs != dim or up.inputs != dim or key.n != inner
            or value.n != inner or output.inputs != inner or output.n != dim or down.inputs != up.n or down.n != dim
            or inner % heads or query.activation or key.activation or value.activation or output.activation
            or down.activation or not up.activation):
        return None
    pointers: list[int] = []
    eps: list[float] = []
    norms = 0
    for i, slot in enumerate(_NORM_SLOTS):
        norm = modules[slot]
        if type(norm) is nn.Identity:
            pointers += (0, 0)
            eps.append(0.0)
            continue
        if type(norm) is not nn.LayerNorm or norm.normalized_shape != (dim,):
            return None
        vectors = norm._parameters
        for v in (vectors["weight"], vectors["bias"]):
            if v is None:
                pointers.append(0)
            elif v.dtype != torch.float32 or not v.is_cpu or not v.is_contiguous():
                return None
            else:
                pointers.append(v.data_ptr())
        eps.append(norm.eps)
        norms |= 1 << i
    for p in bound:
        bias = p.bias
        pointers += (p.blocked.data_ptr(), p.scale.data_ptr(), 0 if bias is None else bias.data_ptr())
    head_dim = inner // heads
    scale = head_dim**-0.5 if attention.scale is None else attention.scale
    numbers = [heads, head_dim, up.n, native.ACTIVATIONS[up.activation], norms]
    return pointers, numbers, eps + [scale]


def _mask(mask: torch.Tensor | None, batch: int, steps: int) -> torch.Tensor | None | bool:
    """The additive self-attention mask as (1 or B, steps) float32 rows, None for none, or False
    where it is not one the step can take."""
    if mask is None:
        return None
    if (mask.dim() != 4 or mask.shape[0] not in (1, batch) or mask.shape[1:3] != (1, 1) or mask.shape[3] != steps
            or mask.dtype != torch.float32 or not mask.is_cpu):
        return False
    return mask.reshape(mask.shape[0], steps).contiguous()
