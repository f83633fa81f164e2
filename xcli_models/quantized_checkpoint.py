"""Quantized checkpoints: ``xcli convert --quantize int8|int4`` writes them, every loader reads them.

A quantized checkpoint is an ordinary checkpoint directory whose projections (each ``nn.Linear``
and XLNet's per-head projections, exactly those ``--quantize`` replaces on the fly) are stored
already rounded, so that loading it gives the very layers :mod:`xcli_models.quantize` makes from
the float checkpoint (same rounding, same scales: identical outputs), without float weights for
them and without quantizing again.

**config.json** gains one entry::

    "quantization": {"method": "xcli", "version": 2, "bits": 8, "group_size": null,
                     "modules": {"model.layers.0.self_attn.q_proj.weight": 8, ...}}

``bits``: 8 (int8) or 4 (int4, with ``group_size`` 64; int8 has none). ``modules``: the stored
name of each quantized weight and its bits; in an int4 checkpoint a projection torch's int4 kernel
cannot take (outputs not a multiple of 16, inputs not of 64) is int8, as ``--quantize int4`` makes
it. Nothing else changes: embeddings, norms and biases stay float, under their usual names.

**Tensors** (safetensors), for a quantized weight stored as ``W`` (its usual name):

- int8: ``W`` int8, rounded with one scale per output channel, and ``W_scale`` float32 (out,): the
  channel's largest magnitude / 127; a weight is about ``W[o, i] * W_scale[o]``. Where ``in`` is a
  multiple of 16, ``W`` is stored in the layout xcli's decode kernel reads (:func:`native.block_rows`):
  (ceil(out / 8), in / 16, 8, 16), 8 output channels at a time, 16 inputs of each after another
  (``W[o, i]`` is at ``[o // 8, i // 16, o % 8, i % 16]``; channels past ``out`` are zero); else
  (out, in). Version 1 (xcli before this layout) stored every int8 weight (out, in); it is still read,
  and ``convert`` re-packs it into version 2.
- int4: ``W`` uint8 (out, in / 2): levels 0..15, two to a byte, input ``2j`` in the low four bits
  of byte ``j``; ``W_scale`` and ``W_min`` float32 (out, in / 64): each group of 64 inputs of a
  channel has its minimum and (maximum - minimum) / 15 as scale; a weight is about
  ``W_min[o, i // 64] + level * W_scale[o, i // 64]``.
- (out, in) is the orientation of the product ``x @ W.T``. XLNet's per-head weights (D, H, Dh) are
  stored as that matrix: (H * Dh, D) for ``q``, ``k``, ``v`` and ``r`` (``x @ W``), (D, H * Dh) for ``o``.
- A tied LM head gets its own quantized copy under its own name; the embedding stays float.

The quantized weights come first in the file, each starting on a 64-byte boundary where the
sizes allow, so generation's int8 layers use the memory-mapped tensors as they are (xcli's kernel
the blocked weights; torch's, where xcli's cannot be had, an (out, in) copy); oneDNN's int8
products and the int4 kernel repack the integer weights into their own layouts at load (integers
to integers; no float weight is made).
``xcli convert QDST FDST --dtype float32`` turns the checkpoint back into a float one (the values
the integers stand for; a tied head is stored once again, the float embedding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from . import native
from .loading import CheckpointError, legacy_renames
from .quantize import (
    INT4_GROUP, Int4WeightOnlyLinear, _Headwise, headwise_matrix, int4_groups, layer_kind, pack_int4,
    per_channel_int8, quantize_model, unpack_int4,
)

KEY = "quantization"
METHOD = "xcli"
#: the version written; version 1 (every int8 weight (out, in)) is still read
VERSION = 2
VERSIONS = (1, 2)
SCALE, MINIMUM = "_scale", "_min"
#: checkpoint mode -> bits
MODES = {"int8": 8, "int4": 4}


@dataclass(frozen=True)
class Spec:
    """config.json's ``quantization`` entry (see the module docstring)."""

    bits: int
    #: stored weight name -> its bits (8, or 4 in an int4 checkpoint)
    modules: dict[str, int]
    version: int = VERSION

    @property
    def mode(self) -> str:
        return f"int{self.bits}"

    def to_json(self) -> dict[str, Any]:
        return {"method": METHOD, "version": self.version, "bits": self.bits,
                "group_size": INT4_GROUP if self.bits == 4 else None, "modules": dict(self.modules)}

    def int8_shape(self, outputs: int, inputs: int) -> tuple[int, ...]:
        """The stored shape of an int8 weight: blocked (:func:`stored_blocked`), else (out, in)."""
        if stored_blocked(inputs, self.version):
            return native.blocked_shape(outputs, inputs)
        return (outputs, inputs)


def spec_of(data: Mapping[str, Any] | Any, where: str = "config.json") -> Spec | None:
    """The ``quantization`` entry of config.json (a dict or a Config), checked; None when absent."""
    entry = data.get(KEY) if isinstance(data, Mapping) else getattr(data, KEY, None)
    if entry is None:
        return None
    what = f"{where}: {KEY}"
    if not isinstance(entry, dict):
        raise CheckpointError(f"{what} is not a JSON object")
    version = entry.get("version")
    if entry.get("method") != METHOD or type(version) is not int or version not in VERSIONS:
        raise CheckpointError(f"{what} is not xcli's (method {entry.get('method')!r:.40}, version {version!r:.20}; "
                              f"xcli reads method 'xcli', versions {' and '.join(map(str, VERSIONS))})")
    bits = entry.get("bits")
    if type(bits) is not int or bits not in (4, 8):
        raise CheckpointError(f"{what}: bits {bits!r:.40} (xcli stores 8 or 4)")
    group = entry.get("group_size")
    if group != (INT4_GROUP if bits == 4 else None):
        raise CheckpointError(f"{what}: group_size {group!r:.40} (int4 has groups of {INT4_GROUP}, int8 none)")
    modules = entry.get("modules")
    allowed = (4, 8) if bits == 4 else (8,)
    if not isinstance(modules, dict) or not all(type(b) is int and b in allowed for b in modules.values()):
        raise CheckpointError(f"{what}: modules must map weight names to their bits ({' or '.join(map(str, allowed))})")
    return Spec(bits, dict(modules), version)


@dataclass(frozen=True)
class Projection:
    """One projection ``--quantize`` replaces: where it sits and its stored names."""

    parent: nn.Module
    attr: str
    weight: str  # stored (Hugging Face) name of its weight
    bias: str | None
    #: None for an nn.Linear; else XLNet's per-head projection, to the heads or back
    to_heads: bool | None
    shape: tuple[int, ...]  # of the float weight as stored
    outputs: int
    inputs: int
    #: stored name of the weight it is tied to (a tied LM head's embedding), else None
    tied_to: str | None


def projections(model: Any) -> dict[str, Projection]:
    """The model's projections by stored weight name, in module order (as ``quantize._replace`` finds them)."""
    from .families.xlnet.attention import HeadwiseLinear

    ties = model.tied_weights
    found: dict[str, Projection] = {}
    for prefix, parent in model.named_modules():
        for attr, child in parent.named_children():
            ours = f"{prefix}.{attr}" if prefix else attr
            if isinstance(child, nn.Linear):
                to_heads, (outputs, inputs) = None, (child.out_features, child.in_features)
            elif isinstance(child, HeadwiseLinear):
                to_heads = child.to_heads
                outputs, inputs = headwise_matrix(child.weight, to_heads).shape
            else:
                continue
            bias = model.names.to_hf(f"{ours}.bias") if getattr(child, "bias", None) is not None else None
            source = ties.get(f"{ours}.weight")
            found[model.names.to_hf(f"{ours}.weight")] = Projection(
                parent, attr, model.names.to_hf(f"{ours}.weight"), bias, to_heads, tuple(child.weight.shape),
                outputs, inputs, model.names.to_hf(source) if source else None)
    return found


def aligned_names(model: Any, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` under the names the model stores (legacy norm names and the base-model prefix fixed)."""
    return model._align_prefix({legacy_renames(k): v for k, v in state.items()}, model.state_dict(keep_vars=True))


# ------------------------------------------------------------------------------------- writing
def quantize_state(model: Any, state: Mapping[str, torch.Tensor], bits: int) -> tuple[dict[str, torch.Tensor], Spec]:
    """``state`` (a float checkpoint's tensors) with each projection of ``model`` (built on the meta
    device) quantized as ``--quantize int<bits>`` would: the tensors to write and the config entry.
    A projection whose weight the checkpoint lacks (a head to be initialised) is left out."""
    out = aligned_names(model, state)
    modules: dict[str, int] = {}
    for name, proj in projections(model).items():
        stored = out.get(name) if name in out else out.get(proj.tied_to) if proj.tied_to else None
        if stored is None:
            continue
        matrix = stored.float() if proj.to_heads is None else headwise_matrix(stored.float(), proj.to_heads)
        if bits == 4 and Int4WeightOnlyLinear.fits(proj.outputs, proj.inputs):
            levels, scale, low = int4_groups(matrix)
            out[name], out[name + SCALE], out[name + MINIMUM] = pack_int4(levels), scale, low
            modules[name] = 4
        else:
            int8, out[name + SCALE] = per_channel_int8(matrix)
            out[name] = stored_int8(int8)
            modules[name] = 8
    return out, Spec(bits, modules)


def stored_blocked(inputs: int, version: int = VERSION) -> bool:
    """Whether a checkpoint of ``version`` stores an int8 weight of ``inputs`` inputs blocked
    (:func:`native.block_rows`): from version 2, where the inputs are a multiple of 16."""
    return version >= 2 and inputs % native.INPUT_MULTIPLE == 0


def stored_int8(int8: torch.Tensor) -> torch.Tensor:
    """An (out, in) int8 weight in the layout :data:`VERSION` stores."""
    return native.block_rows(int8) if stored_blocked(int8.shape[1]) else int8


def current_layout(state: Mapping[str, torch.Tensor], spec: Spec) -> tuple[dict[str, torch.Tensor], Spec]:
    """A checked quantized state in the layout :data:`VERSION` writes (a version-1 checkpoint's int8
    weights blocked), and its spec."""
    out = dict(state)
    for name, bits in spec.modules.items():
        if bits == 8 and out[name].dim() == 2:
            out[name] = stored_int8(out[name])
    return out, Spec(spec.bits, spec.modules)


def dequantize_state(model: Any, state: Mapping[str, torch.Tensor], spec: Spec, where: str) -> dict[str, torch.Tensor]:
    """A quantized checkpoint's tensors as float32 ones in the float layout (each weight the value its
    integers stand for); a tied head's copy is dropped (its embedding is stored)."""
    found = projections(model)
    out = aligned_names(model, state)
    check_tensors(out, spec, found, where)
    for name, bits in spec.modules.items():
        proj = found[name]
        if bits == 8:
            int8 = native.as_rows(out.pop(name), proj.outputs)
            matrix = int8.float() * out.pop(name + SCALE).float()[:, None]
        else:
            levels = unpack_int4(out.pop(name)).float().reshape(proj.outputs, -1, INT4_GROUP)
            scale, low = out.pop(name + SCALE).float(), out.pop(name + MINIMUM).float()
            matrix = (low[..., None] + levels * scale[..., None]).reshape(proj.outputs, proj.inputs)
        if proj.to_heads is not None:
            matrix = (matrix.t() if proj.to_heads else matrix).reshape(proj.shape)
        if proj.tied_to is None or proj.tied_to not in out:
            out[name] = matrix.contiguous()
    return out


# ------------------------------------------------------------------------------------- reading
def check_tensors(state: Mapping[str, torch.Tensor], spec: Spec, found: Mapping[str, Projection], where: str) -> None:
    """Every quantized weight named in ``spec`` is a projection of the model, with its scales (and
    minima), each of the dtype and shape the format says, and no projection holds integers ``spec``
    does not name: else a one-line ``CheckpointError``."""
    unnamed = [n for n in found if n not in spec.modules and n in state and not state[n].is_floating_point()]
    if unnamed:
        raise CheckpointError(f"{where}: {unnamed[0]} holds {str(state[unnamed[0]].dtype).removeprefix('torch.')} "
                              f"weights, but config.json's {KEY} does not name it")
    for name, bits in spec.modules.items():
        proj = found.get(name)
        if proj is None:
            raise CheckpointError(f"{where}: config.json's {KEY} names {name!r:.80}, not a projection of this model")
        if bits == 4 and not Int4WeightOnlyLinear.fits(proj.outputs, proj.inputs):
            raise CheckpointError(f"{where}: {name} is int4 but its shape ({proj.outputs} x {proj.inputs}) is not "
                                  f"one torch's int4 kernel takes")
        columns = proj.inputs if bits == 8 else proj.inputs // 2
        groups = (proj.outputs,) if bits == 8 else (proj.outputs, proj.inputs // INT4_GROUP)
        weight = spec.int8_shape(proj.outputs, proj.inputs) if bits == 8 else (proj.outputs, columns)
        parts = {name: (torch.int8 if bits == 8 else torch.uint8, weight), name + SCALE: (torch.float32, groups)}
        if bits == 4:
            parts[name + MINIMUM] = (torch.float32, groups)
        for part, (dtype, shape) in parts.items():
            tensor = state.get(part)
            if tensor is None:
                raise CheckpointError(f"{where}: {part} is missing (int{bits} weights need it)")
            if tensor.dtype != dtype or tuple(tensor.shape) != shape:
                raise CheckpointError(
                    f"{where}: {part} is {str(tensor.dtype).removeprefix('torch.')} {list(tensor.shape)}; "
                    f"int{bits} needs {str(dtype).removeprefix('torch.')} {list(shape)}")
            if dtype == torch.float32 and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(f"{where}: {part} holds values that are not finite")


def install(model: Any, state: Mapping[str, torch.Tensor], spec: Spec, weight_only: bool | None,
            where: str) -> dict[str, torch.Tensor]:
    """Put quantized layers made from ``state``'s stored integers into ``model`` (built on the meta
    device) in place of its projections; the rest of ``state``, to load as usual.

    ``weight_only``: int8 weights times float inputs (for generation), otherwise int8 products; None:
    weight-only for int4 checkpoints only. Each layer is the kind ``--quantize`` gives its shape
    (:func:`quantize.layer_kind`). The checkpoint's projections are checked first (:func:`check_tensors`)."""
    weight_only = spec.bits == 4 if weight_only is None else weight_only
    found = projections(model)
    rest = aligned_names(model, state)
    # named as the state is (a task checkpoint read into its base model, or the other way round);
    # weights this model has no place for stay in the state, reported as unused checkpoint tensors
    named = aligned_names(model, spec.modules)  # type: ignore[arg-type]
    ours = model.state_dict(keep_vars=True)
    spec = Spec(spec.bits, {k: b for k, b in named.items() if k in found or model.names.to_ours(k) in ours},
                spec.version)
    check_tensors(rest, spec, found, where)
    for name, bits in spec.modules.items():
        proj = found[name]
        bias = rest.pop(proj.bias).float() if proj.bias and proj.bias in rest else None
        if proj.bias and bias is None:
            raise CheckpointError(f"{where}: {proj.bias} is missing")
        weight, scale = rest.pop(name), rest.pop(name + SCALE)
        if bits == 4:
            layer: nn.Module = Int4WeightOnlyLinear.from_packed(weight, scale, rest.pop(name + MINIMUM), bias)
        else:
            kind = layer_kind(spec.bits, weight_only, proj.outputs, proj.inputs)
            layer = kind.from_int8(weight, scale, bias)  # type: ignore[attr-defined]
        setattr(proj.parent, proj.attr, layer if proj.to_heads is None else _Headwise(layer))
    return rest


def quantize_rest(model: Any, spec: Spec, weight_only: bool | None) -> None:
    """Projections the checkpoint had no weights for (heads initialised at load), quantized as
    ``--quantize`` would, so that the whole model is quantized."""
    quantize_model(model, spec.bits, spec.bits == 4 if weight_only is None else weight_only)
