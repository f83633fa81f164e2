"""Dynamic int8 inference on CPU: every matrix product of a model in 8-bit integers.

:func:`quantize_dynamic_int8` replaces each linear projection of a loaded model (``nn.Linear``,
and XLNet's per-head projections) by an :class:`Int8Linear`: the weight rounded to int8 with one
scale per output channel (its largest magnitude / 127), packed for oneDNN on its first product; at
run time each row of the input is rounded to int8 with its own scale, the product is summed in int32
by oneDNN (AMX or VNNI instructions where the CPU has them), and scaled back to float32. Embeddings,
norms and everything else stay in float. A self-attention's queries, keys and values (one input) are
one product of their joined weights (:func:`fuse_projections`), the same numbers.

**Kernel choice**, measured on a 2-core Xeon with AMX (torch 2.13, 2 threads; float32 is oneDNN's):

===========================  =========  ======================  ================  ==================
product (rows x in x out)    float32    oneDNN int8 (this)      ``_int_mm``       ``_weight_int8pack_mm``
===========================  =========  ======================  ================  ==================
2048 x 768 x 768             18.7 ms    4.8 ms                  17.1 ms           1151 ms
2048 x 768 x 3072            75.6 ms    23.7 ms                 122 ms            4574 ms
1 x 1024 x 4096 (decode)     0.79 ms    0.71 ms                 3.5 ms            3.4 ms
===========================  =========  ======================  ================  ==================

so batched task work gains 3-4x in its products; a decode step of one sequence (reading the
weights) hardly gained in that measurement (re-measured in CPU time, 1 thread, weights out of the
cache: 0.46 ms against float32's 1.21, and 3.8x on XGLM's 256k-row LM head; the README's table),
but it rounds the activations, which generation keeps in float. For generation,
:func:`quantize_weight_only` (8 bits) keeps int8 weights and multiplies them with float inputs
(:class:`Int8WeightOnlyLinear`), by xcli's own kernel (:mod:`xcli_models.native`, which reads int8
weights at 17-23 G/s out of the cache, 3.2-3.4x float32, measured) where it can be had, else by
torch's ``_weight_int8pack_mm`` (bfloat16 inputs; 0.14 ms for 1x1024x4096 in the cache, float32
0.39 ms, but 11-12 G weights/s out of it, bound by its arithmetic: it converts and scales every
weight before the multiply). Torch's kernel converts the weight again for every 4 rows, so its
time grows with the rows (a prompt): from :data:`DEQUANTIZE_FROM_ROWS` rows on (from
:data:`NATIVE_BELOW_ROWS` with xcli's kernel, from ``native.AMX_BELOW_ROWS`` where the processor
has AMX's int8 tiles, which take the rows in between: see :mod:`xcli_models.native`), the weight is
turned into bfloat16 a chunk at a time and multiplied by oneDNN's bfloat16 product instead
(:func:`dequantized_product`; same int8 weights).
Measured in CPU time, 1 thread, ``_weight_int8pack_mm`` / dequantized (ms):

=============  ===========  ===========  ===========  ===========  ============
in x out       8 rows       16 rows      64 rows      256 rows     2048 rows
=============  ===========  ===========  ===========  ===========  ============
1024 x 1024    0.26 / 0.41  0.49 / 0.44  2.00 / 0.59  8.1 / 1.3    67 / 7.0
1024 x 4096    1.06 / 1.71  2.12 / 1.68  8.40 / 2.62  35 / 4.7     277 / 46
=============  ===========  ===========  ===========  ===========  ============

**Exact in rows.** The int8 products are summed exactly (integers) and each output is scaled by
its row's and its column's scales alone, so a record's numbers do not depend on its batch, as in
float32 (see ``tasks.common``). **Error**: each weight and input value is off by at most half its
scale; an output's error is bounded by ``sum_k |x_k| s_w + |w_k| s_x`` (about 1% of the output's
scale on these models); the README measures what it does to accuracy.

**Stored.** :func:`per_channel_int8` and :func:`int4_groups` are the only roundings; a quantized
checkpoint (``xcli convert --quantize``, :mod:`xcli_models.quantized_checkpoint`) stores what they
give, and ``Int8Linear.from_int8``, ``Int8WeightOnlyLinear.from_int8`` and
``Int4WeightOnlyLinear.from_packed`` make the very layers the float weight makes from it.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any, Callable

import torch
from torch import nn

from . import native
from .hardware import fast_bfloat16

__all__ = ["Int4WeightOnlyLinear", "Int8Linear", "Int8WeightOnlyLinear", "fuse_activations", "fuse_projections",
           "int4_groups", "int8_available", "layer_kind", "pack_int4", "per_channel_int8", "quantize_dynamic_int8",
           "quantize_model", "quantize_weight_only", "unpack_int4"]

#: inputs per int4 group (each with its own scale and minimum)
INT4_GROUP = 64
#: from this many rows on, an int8 weight-only product dequantizes its weight (see :func:`dequantized_product`)
DEQUANTIZE_FROM_ROWS = 16
#: ... and from this many where xcli's own kernel multiplies the rows before (its time grows with the
#: rows more slowly than torch's: measured in CPU time, 1 thread, 151 M weights, three rows a pass:
#: 16 rows 63 ms against 148 ms dequantized, 32 rows 140 against 197, 48 rows 173 against 185,
#: 64 rows 323 against 155; with AMX's int8 tiles it takes up to native.AMX_BELOW_ROWS)
NATIVE_BELOW_ROWS = 48
#: output channels dequantized at a time there (8 MiB of bfloat16 for 1024 inputs)
CHUNK = 4096
#: held while an Int8Linear packs its weights for oneDNN (on its first product)
_PACKING = threading.Lock()


@lru_cache(maxsize=None)
def int8_available() -> bool:
    """Whether this torch has oneDNN's int8 linear (probed once on a tiny product)."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.onednn, "qlinear_pointwise"):
        return False
    try:
        layer = Int8Linear(torch.eye(4) * 2.0, torch.zeros(4))
        with torch.inference_mode():
            return bool(torch.allclose(layer(torch.ones(3, 4)), torch.full((3, 4), 2.0), atol=0.05))
    except (RuntimeError, NotImplementedError):
        return False


def per_channel_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` (out, in) rounded to int8 with one scale per output channel (its largest
    magnitude / 127); contiguous (a transposed weight, XLNet's, would keep strides the kernels ignore)."""
    scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127
    return torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous(), scale


def int4_groups(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``weight`` (out, in) float32 in groups of :data:`INT4_GROUP` inputs, each rounded to 16 levels
    between its minimum and maximum: the levels (out, in) int32 (0..15), and each group's scale and
    minimum (out, in / :data:`INT4_GROUP`) float32, a weight being about ``minimum + level * scale``."""
    n, k = weight.shape
    groups = weight.reshape(n, k // INT4_GROUP, INT4_GROUP)
    low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
    scale = (high - low).clamp_min(1e-8) / 15
    levels = torch.round((groups - low) / scale).clamp(0, 15).to(torch.int32).reshape(n, k)
    return levels, scale.squeeze(-1), low.squeeze(-1)


def pack_int4(levels: torch.Tensor) -> torch.Tensor:
    """Levels (out, in) 0..15 two to a byte: (out, in / 2) uint8, input ``2j`` in the low four bits
    of byte ``j`` and input ``2j + 1`` in the high four."""
    levels = levels.to(torch.uint8)
    return (levels[:, 0::2] | (levels[:, 1::2] << 4)).contiguous()


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """:func:`pack_int4` undone: (out, in) int32 levels."""
    levels = torch.empty(packed.shape[0], packed.shape[1] * 2, dtype=torch.int32)
    levels[:, 0::2] = packed & 15
    levels[:, 1::2] = packed >> 4
    return levels


def aligned(tensor: torch.Tensor, alignment: int = 64) -> torch.Tensor:
    """``tensor`` itself where its data starts on an ``alignment``-byte boundary, else an aligned copy."""
    if tensor.is_contiguous() and tensor.data_ptr() % alignment == 0:
        return tensor
    return tensor.clone(memory_format=torch.contiguous_format)  # torch allocates 64-byte aligned


def _from_parts(cls: type, shape_of: torch.Tensor, bias: torch.Tensor | None, *parts: torch.Tensor) -> Any:
    """A quantized linear of ``cls`` built from its stored parts (``_take``'s arguments), bypassing
    the quantization of a float weight; ``shape_of``: a tensor of the (out, in) shape."""
    layer = cls.__new__(cls)
    _QuantizedLinear.__init__(layer, shape_of, bias)
    layer._take(*parts)
    return layer


class _QuantizedLinear(nn.Module):
    """What the quantized linears share: the float bias, and ``x @ weight.T + bias`` over any leading
    dimensions, computed by :meth:`_product` on the rows of ``x``."""

    #: a model's ``tie_weights`` leaves a quantized layer alone (a tied LM head has its own copy)
    is_quantized = True

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("bias", None if bias is None else bias.detach().float().contiguous(), persistent=False)

    def _product(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` (M, in) times the weight, plus the bias: float32 (M, out)."""
        raise NotImplementedError

    def _plus_bias(self, product: torch.Tensor) -> torch.Tensor:
        # a bfloat16 product plus the float32 bias is summed in float32 (type promotion), one step
        # instead of a cast and an add, the very same numbers
        return product.float() if self.bias is None else torch.add(self.bias, product)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:  # as nn.Linear refuses it (a reshape would mix the rows up)
            raise RuntimeError(f"{type(self).__name__} takes rows of {self.in_features} values, not {x.shape[-1]}")
        out = self._product(x.reshape(-1, self.in_features))
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _Int8Weights(_QuantizedLinear):
    """A quantized linear of int8 weights with a scale per output channel (:func:`per_channel_int8`),
    made from a float weight or from the stored integers (:meth:`from_int8`)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__(weight, bias)
        self._take(*per_channel_int8(weight.detach().float()))

    @classmethod
    def from_int8(cls, int8: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> Any:
        """The layer of int8 weights (out, in), or blocked (:func:`native.block_rows`, as a version-2
        quantized checkpoint stores them), and their float32 scales (out,) already made: exactly the
        layer the float weight they came from gives."""
        shape = int8 if int8.dim() == 2 else torch.empty(scale.shape[0], int8.shape[1] * native.INPUT_MULTIPLE,
                                                         device="meta")
        return _from_parts(cls, shape, bias, int8, scale)

    def _take(self, int8: torch.Tensor, scale: torch.Tensor) -> None:
        raise NotImplementedError


class Int8Linear(_Int8Weights):
    """``x @ weight.T + bias`` in int8 (see the module docstring). ``weight``: (out, in) float."""

    def _take(self, int8: torch.Tensor, scale: torch.Tensor) -> None:
        # packed for oneDNN on the first product (:meth:`_packed`): until then the integers are at
        # hand, to be joined with others of the same input (:func:`fuse_projections`)
        self.register_buffer("int8", aligned(native.as_rows(int8, self.out_features)), persistent=False)
        self.register_buffer("packed", None, persistent=False)
        self.register_buffer("scale", scale.float(), persistent=False)
        self.register_buffer("zero", torch.zeros(self.out_features, dtype=torch.long), persistent=False)

    def _packed(self) -> torch.Tensor:
        if self.packed is None:
            with _PACKING:  # a served model's first products may come from two threads at once
                if self.packed is None:
                    self.packed, self.int8 = _prepack(self.int8), None
        return self.packed

    @classmethod
    def joined(cls, layers: list["Int8Linear"]) -> tuple[nn.Module, list[nn.Module]] | None:
        """``layers`` (of the same input) as one product: their weights joined into one layer, whose
        output :class:`_Joined` splits, and what takes each layer's place: its slice of it (no
        second copy of the weights). None where a layer is packed already."""
        if any(layer.int8 is None for layer in layers):
            return None
        joined = _Joined(cls.from_int8(torch.cat([layer.int8 for layer in layers]),
                                       torch.cat([layer.scale for layer in layers]), _joined_bias(layers)),
                         [layer.out_features for layer in layers])
        return joined, [_Slice(joined, index) for index in range(len(layers))]

    def _product(self, rows: torch.Tensor) -> torch.Tensor:
        rows = rows.float()
        # the rounding in one pass of xcli's own kernel where it can be had (the same bits)
        quantized, row_scale = (native.quantize_rows if native.int8_kernel() else native.rounded_rows)(rows)
        out = torch.ops.onednn.qlinear_pointwise(quantized, 1.0, 0, self._packed(), self.scale, self.zero, None, 1.0,
                                                 0, torch.float32, "none", [], "")
        # the rows' scales and the bias in one pass, in place (the product is ours): a third of the
        # time of a multiply and an add (measured, 375 x 3072)
        return out.mul_(row_scale) if self.bias is None else torch.addcmul(self.bias, out, row_scale, out=out)


class Int8WeightOnlyLinear(_Int8Weights):
    """``x @ weight.T + bias`` with int8 weights (a scale per output channel) and float inputs, for
    generation, whose decode steps read every weight for one row: a quarter of float32's bytes.

    Decode rows go to our own kernel (:mod:`xcli_models.native`: float32 inputs, the weights kept in
    its blocked layout; fewer than :data:`NATIVE_BELOW_ROWS`, or than ``native.AMX_BELOW_ROWS``
    where the processor has AMX's int8 tiles, which take the many) where it can be had, else to torch's
    ``_weight_int8pack_mm`` (inputs rounded to bfloat16, the weights used as they are, a
    memory-mapped checkpoint's pages included; fewer than :data:`DEQUANTIZE_FROM_ROWS`). More rows
    (a prompt) take :func:`dequantized_product`. From stored integers (:meth:`from_int8`), torch's
    kernel uses them as they are (a memory-mapped tensor stays one) where they are 64-byte aligned
    (the kernel crashes on weights that are not, measured), else a copy; ours uses blocked ones (a
    version-2 checkpoint's) as they are, and blocks a copy of others."""

    def _take(self, int8: torch.Tensor, scale: torch.Tensor) -> None:
        kernels = native.int8_kernel()
        self.native = kernels is not None
        self._bound: native.BoundRows | None = None  # our kernel bound to the buffers (see forward)
        #: applied to the product (a feed-forward's GELU taken in: fuse_activations), or None
        self.activation: str | None = None
        # our kernel takes fewer than NATIVE_BELOW_ROWS rows (AMX_BELOW_ROWS where AMX's tiles take many)
        self._native_below = native.AMX_BELOW_ROWS if kernels is not None and kernels.amx else NATIVE_BELOW_ROWS
        if self.native:  # a blocked weight (a quantized checkpoint's) is used as it is: memory-mapped
            blocked = int8 if int8.dim() == 4 else native.block_rows(int8)
            self.register_buffer("blocked", blocked, persistent=False)
            self.register_buffer("scale", scale.float().contiguous(), persistent=False)
        else:
            self.register_buffer("weight_int8", aligned(native.as_rows(int8, self.out_features)), persistent=False)
            self.register_buffer("scale", scale.float().to(torch.bfloat16), persistent=False)

    def int8_rows(self, start: int, stop: int) -> torch.Tensor:
        """The int8 weights of output channels ``start`` to ``stop`` (``start`` a multiple of
        :data:`CHUNK`): (stop - start, in)."""
        if not self.native:
            return self.weight_int8[start:stop]
        block = native.BLOCK
        return native.unblock_rows(self.blocked[start // block:-(-stop // block)], stop - start)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.in_features and self.kernel_takes(x.numel() // self.in_features):
            # a decode step's rows straight to our kernel, in their shape, which adds the bias: one
            # call a product, the weights checked once (145 such products a step for XGLM-564M; a
            # product of 1 x 1024 x 16 took 12 microseconds before, 7 now, 3 of them the call itself)
            bound = self.kernel()
            return bound(x) if x.dtype == torch.float32 else bound(x.float()).to(x.dtype)
        out = super().forward(x)
        return out if self.activation is None else _ACTIVATIONS[self.activation](out)

    def kernel_takes(self, rows: int) -> bool:
        """Whether a product of ``rows`` rows goes to our kernel (see the class docstring)."""
        return self.native and rows < self._native_below

    def kernel(self) -> native.BoundRows:
        """Our kernel bound to this layer's buffers and activation (only where ``native``): bound on
        the first product, and again where a buffer was replaced (``.to``) or the activation changed."""
        bound, buffers = self._bound, self._buffers
        if (bound is None or bound.blocked is not buffers["blocked"] or bound.scale is not buffers["scale"]
                or bound.bias is not buffers["bias"] or bound.activation != self.activation):
            bound = self._bound = native.BoundRows(buffers["blocked"], buffers["scale"], buffers["bias"],
                                                   self.out_features, activation=self.activation)
        return bound

    def __getstate__(self) -> dict[str, Any]:
        # the bound kernel holds a C function (not picklable) and the buffers' addresses: made again
        return {**super().__getstate__(), "_bound": None}

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.activation is None else f", activation={self.activation}")

    def _product(self, rows: torch.Tensor) -> torch.Tensor:
        # the rows our kernel does not take (forward): a prompt's, or any where it cannot be had
        if not self.native and rows.shape[0] < DEQUANTIZE_FROM_ROWS:
            return self._plus_bias(torch.ops.aten._weight_int8pack_mm(rows.to(torch.bfloat16), self.weight_int8,
                                                                      self.scale))
        dtype = torch.bfloat16 if fast_bfloat16() else torch.float32
        out = dequantized_product(rows.to(dtype), self.int8_rows, self.out_features, self.scale)
        return out if self.bias is None else out.add_(self.bias)


#: the activations Int8WeightOnlyLinear can take in, as torch computes them
_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"gelu": torch.nn.functional.gelu}


def _prepack(int8: torch.Tensor) -> torch.Tensor:
    """An (out, in) int8 weight packed for oneDNN's int8 products."""
    return torch.ops.onednn.qlinear_prepack(int8, None)


def _joined_bias(layers: list[Any]) -> torch.Tensor | None:
    """The biases of ``layers`` end to end (zeros for a layer without), or None where none has one."""
    if all(layer.bias is None for layer in layers):
        return None
    return torch.cat([torch.zeros(layer.out_features) if layer.bias is None else layer.bias for layer in layers])


class _Joined(nn.Module):
    """Projections of the same input as one int8 product of their joined weights
    (:meth:`Int8Linear.joined`): ``forward(x)`` gives each one's output, in order. Their integer
    sums are exact and each output is scaled by its row's and channel's scales alone, so each is
    the output of the projection by itself (a projection without a bias adds zeros)."""

    is_quantized = True

    def __init__(self, linear: nn.Module, sizes: list[int]) -> None:
        super().__init__()
        self.linear, self.sizes = linear, sizes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(x).split(self.sizes, dim=-1)


class _Slice(nn.Module):
    """One projection of a :class:`_Joined` product, where the projection is needed alone (a path
    that does not take them together): the whole product, then its part."""

    is_quantized = True

    def __init__(self, joined: _Joined, index: int) -> None:
        super().__init__()
        self.joined, self.index = joined, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.joined(x)[self.index]


def dequantized_product(rows: torch.Tensor, int8_rows: Callable[[int, int], torch.Tensor], outputs: int,
                        scale: torch.Tensor) -> torch.Tensor:
    """``rows`` (M, in) times an int8 weight of ``outputs`` channels, scaled per output channel, for
    many rows (a prompt): the weight (``int8_rows(start, stop)`` gives its channels ``start`` to
    ``stop``) turned into the rows' dtype (exact: integers of up to 8 bits) :data:`CHUNK` channels at
    a time and multiplied by oneDNN's product (bfloat16 where the CPU computes it fast: summed in
    float32, rounded to bfloat16 once, as ``_weight_int8pack_mm`` rounds its result), then scaled in
    float32. Float32 (M, out)."""
    out = torch.empty(rows.shape[0], outputs)
    for start in range(0, outputs, CHUNK):
        stop = min(start + CHUNK, outputs)
        product = torch.nn.functional.linear(rows, int8_rows(start, stop).to(rows.dtype))
        torch.mul(product, scale[start:stop].float(), out=out[:, start:stop])
    return out


class Int4WeightOnlyLinear(_QuantizedLinear):
    """``x @ weight.T + bias`` with 4-bit weights and bfloat16 inputs, by torch's CPU int4 kernel
    (``_weight_int4pack_mm_for_cpu``): each group of :data:`INT4_GROUP` inputs of an output channel
    has its own scale and minimum (asymmetric, 16 levels). An eighth of float32's bytes; about 10%
    of an output's scale off on random weights (measured), so an opt-in for generation."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__(weight, bias)
        levels, scale, low = int4_groups(weight.detach().float())
        self._take(levels, scale, low)

    @classmethod
    def from_packed(cls, packed: torch.Tensor, scale: torch.Tensor, low: torch.Tensor,
                    bias: torch.Tensor | None) -> "Int4WeightOnlyLinear":
        """The layer of levels packed two to a byte (:func:`pack_int4`, (out, in / 2) uint8) with each
        group's float32 scale and minimum ((out, in / :data:`INT4_GROUP`)), as :func:`int4_groups` made
        them: exactly the layer the float weight gives. The levels are repacked into the kernel's layout."""
        shape = torch.empty(packed.shape[0], packed.shape[1] * 2, device="meta")
        return _from_parts(cls, shape, bias, unpack_int4(packed), scale, low)

    def _take(self, levels: torch.Tensor, scale: torch.Tensor, low: torch.Tensor) -> None:
        scale, low = scale.float()[..., None], low.float()[..., None]  # (out, groups, 1)
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(levels, 1),
                             persistent=False)
        # the kernel takes, per group and channel, the scale and the value of level 8
        scales_and_zeros = torch.cat([scale, low + 8 * scale], dim=-1).transpose(0, 1).contiguous()
        self.register_buffer("scales_and_zeros", scales_and_zeros.to(torch.bfloat16), persistent=False)

    @staticmethod
    def fits(outputs: int, inputs: int) -> bool:
        """Whether the kernel takes this shape (outputs a multiple of 16, inputs of the group)."""
        return outputs % 16 == 0 and inputs % INT4_GROUP == 0

    def _product(self, rows: torch.Tensor) -> torch.Tensor:
        return self._plus_bias(torch.ops.aten._weight_int4pack_mm_for_cpu(rows.to(torch.bfloat16), self.packed,
                                                                          INT4_GROUP, self.scales_and_zeros))


def headwise_matrix(weight: torch.Tensor, to_heads: bool) -> torch.Tensor:
    """XLNet's per-head weight (D, H, Dh) as the (out, in) matrix of its product: (H * Dh, D) for a
    projection to the heads (``x @ W``), (D, H * Dh) for the one back (``x @ W.T``)."""
    flat = weight.flatten(1)  # (D, H * Dh)
    return flat.t() if to_heads else flat


class _Headwise(nn.Module):
    """XLNet's per-head projection (``x @ W`` or ``x @ W.T`` with W of shape (D, H, Dh)) as a quantized linear."""

    is_quantized = True

    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear  # a quantized linear of the weight's headwise_matrix

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)


def layer_kind(bits: int, weight_only: bool, outputs: int, inputs: int) -> type[nn.Module]:
    """The quantized linear a projection of this shape gets, the one rule for ``--quantize``, quantized
    checkpoints and their checks. ``bits`` 4: :class:`Int4WeightOnlyLinear`, where its kernel takes
    the shape (:meth:`Int4WeightOnlyLinear.fits`). ``weight_only`` (generation):
    :class:`Int8WeightOnlyLinear` where the inputs are a multiple of 16 (torch's kernel computes
    garbage for others, measured with 24), for int8, and for the shapes int4 cannot take where
    xcli's own kernel multiplies them (faster than int8 products there: XGLM's 256,008-row LM head).
    Everything else: :class:`Int8Linear` (int8 products), or the weight-only layer where this torch
    has no int8 product. RuntimeError where neither can."""
    if bits == 4 and Int4WeightOnlyLinear.fits(outputs, inputs):
        return Int4WeightOnlyLinear
    weight_only_fits = inputs % 16 == 0
    if weight_only and weight_only_fits and (bits == 8 or native.int8_kernel() is not None):
        return Int8WeightOnlyLinear
    if int8_available():
        return Int8Linear
    if weight_only_fits:
        return Int8WeightOnlyLinear
    raise RuntimeError(f"this torch has no oneDNN int8 linear (torch.ops.onednn.qlinear_pointwise) for the CPU, "
                       f"which a {outputs} x {inputs} projection needs")


def quantize_model(model: nn.Module, bits: int = 8, weight_only: bool = False) -> int:
    """Replace ``model``'s linear projections (``nn.Linear`` and XLNet's per-head ones) by quantized
    ones (:func:`layer_kind`), in place, then join those of one input (:func:`fuse_projections`);
    how many were replaced. A projection whose weight is shared with an embedding (a tied LM head)
    gets its own quantized copy; the embedding stays float."""
    from .families.xlnet.attention import HeadwiseLinear

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                kind = layer_kind(bits, weight_only, child.out_features, child.in_features)
                setattr(parent, name, kind(child.weight, child.bias))
            elif isinstance(child, HeadwiseLinear):
                matrix = headwise_matrix(child.weight.detach(), child.to_heads)
                setattr(parent, name, _Headwise(layer_kind(bits, weight_only, *matrix.shape)(matrix, None)))
            else:
                continue
            replaced += 1
    fuse_projections(model)
    fuse_activations(model)
    return replaced


def _taken_in(x: torch.Tensor) -> torch.Tensor:
    """A feed-forward's activation where its up projection applies it (:func:`fuse_activations`)."""
    return x


def fuse_activations(model: nn.Module) -> int:
    """The GELU of each feed-forward block of ``model`` whose up projection is an
    :class:`Int8WeightOnlyLinear` taken into that projection, which our kernel applies as it writes
    its outputs (torch's GELU runs cold after the weights streamed through the caches: 33
    microseconds a call inside an XGLM-564M decode step against 13 alone, 0.8 ms a step); within a
    few float32 roundings of torch's GELU (xcli's own polynomials for erf). How many were taken in."""
    from .layers.feedforward import FeedForward

    taken = 0
    for block in model.modules():
        if (isinstance(block, FeedForward) and block.act is torch.nn.functional.gelu
                and type(block.up) is Int8WeightOnlyLinear and block.up.activation is None):
            block.up.activation, block.act = "gelu", _taken_in
            taken += 1
    return taken


def fuse_projections(model: nn.Module) -> int:
    """Join the int8 projections of each self-attention module of ``model`` that take the same input
    (its ``SAME_INPUT`` roles: queries, keys and values) into one product (:meth:`Int8Linear.joined`),
    put in its ``together`` slot: the same numbers, in fewer and larger products (XLNet-base SST-2
    classification, measured in one process: 6.90 s against 7.32 s, best of three). How many
    modules were joined.

    Weight-only layers stay apart: their decode products read the weights at the same rate one by
    one or in one pass of our kernel (measured: XGLM-564M's queries, keys and values, 1 row)."""
    from .layers.transformer import TransformerLayer

    joined = 0
    for layer in list(model.modules()):
        attention = getattr(layer, "self_attn", None) if isinstance(layer, TransformerLayer) else None
        roles = getattr(attention, "SAME_INPUT", None)
        if attention is None or roles is None or attention.together is not None:
            continue
        parts = [getattr(attention, role) for role in roles]
        parts = [part.linear if isinstance(part, _Headwise) else part for part in parts]
        if any(type(part) is not Int8Linear for part in parts):
            continue
        made = Int8Linear.joined(parts)
        if made is not None:
            attention.together, places = made
            for role, place in zip(roles, places, strict=True):
                setattr(attention, role, place)
            joined += 1
    return joined


def quantize_dynamic_int8(model: nn.Module) -> int:
    """Every projection of ``model`` an :class:`Int8Linear` (:func:`quantize_model`); RuntimeError
    where this torch has no int8 linear."""
    if not int8_available():
        raise RuntimeError("this torch has no oneDNN int8 linear (torch.ops.onednn.qlinear_pointwise) for the CPU")
    return quantize_model(model, 8)


def quantize_weight_only(model: nn.Module, bits: int = 8) -> int:
    """Weight-only quantization for generation (:func:`quantize_model`): ``bits``-bit weights,
    :class:`Int8WeightOnlyLinear` or :class:`Int4WeightOnlyLinear`."""
    return quantize_model(model, bits, weight_only=True)
