"""Our own C kernels for inference on CPU, compiled on first use: the decode products of int8
weight-only generation (``xcli_int8_rows``) and of float32 generation (``xcli_f32_rows``, up to
:data:`F32_ROWS` rows: see ``kernels.Route``), a whole decode step of a stack of such layers
(``xcli_decode_layers``: see ``layers/fused.py``), greedy decoding's argmax, and the rounding of
float rows to int8 that the dynamic int8 products of the task commands start with
(``xcli_quantize_rows``: the same bits as :func:`rounded_rows`'s six torch operations, in one pass;
measured on XLNet-base SST-2 classification, 2-core Xeon: int8 3.1x the reference before, 3.5-4.6x
over three runs with it and the in-place epilogue of :class:`quantize.Int8Linear`).

**Why.** A decode step multiplies one row (or a few: beams, a small batch) by every weight, so its
time is the time to read the weights. Int8 weights are a quarter of float32's bytes, but none of
the kernels torch or torchao offer here reads them much faster than float32 reads its own (measured
by ``benchmarks/int8_kernels.py`` on a 2-core Xeon with AMX, torch 2.13, torchao 0.18, 2 threads:
one row times the 24 layers of XGLM-564M's projections, 302 M weights, too many for the cache):

==========================================  ==========  ==============
1 row times every projection of 24 layers   ms          weights / s
==========================================  ==========  ==============
float32 (torch's default; oneDNN)           44.7; 51.0  6.8 G; 5.9 G
torch ``_weight_int8pack_mm`` (bf16 rows)   24.3        12.4 G
torch ``_int_mm`` (rows rounded to int8)    26.7        11.3 G
oneDNN int8 (rows rounded to int8)          22.4        13.5 G
torchao ``Int8WeightOnlyConfig`` (eager)    136.9       2.2 G
inductor-compiled ``(x * w).sum(-1) * s``   33          9 G (by hand; 20 s to compile)
**this kernel** (float32 rows)              13.2        22.9 G
==========================================  ==========  ==============

What makes the difference is the weights' order in memory, not the arithmetic: this kernel widens
every weight to float32 and multiplies it with the float32 input (the input is never rounded), but
it reads them blocked (:func:`block_rows`: 8 output channels at a time, 16 inputs of each after
another), so a block is one forward stream the processor fetches ahead, and asks for the data 4 KiB
ahead. In (out, in) order the same loop reads 13 G weights/s.

**Many rows** (a prompt, a batch, beams: from :data:`AMX_FROM_ROWS` on) are bound by the float32
multiply-adds instead (16 rows through XGLM-564M's layers: about 95 G a second on two cores, the
processor's rate). Where the processor has AMX's int8 tiles (and the system lets the process use
them), ``xcli_int8_rows_amx`` multiplies those: each row of inputs is written as its scale and three
int8 parts (``x = s (q1 + q2 / 254 + q3 / 254^2)``, to about 2^-24 of the row's largest magnitude),
each part is multiplied by the int8 weights as they lie, summed exactly in int32, and the parts are
put together in double precision: as exact as a float32 product (more, measured against float64:
3.4e-3 against 4.4e-3 on 16 rows x 1024 x 1024), though not bit for bit the float32 kernel's, and
a row's numbers depend on that row alone. Measured on XGLM-564M's projections (2 threads): 16 rows
27 ms against 60, 256 rows 0.30 s against 0.95, a batch of 8 sequences' decode step 25 ms against
32. From :data:`AMX_BELOW_ROWS` rows on (a long prompt) the bfloat16 product of the dequantized
weight is the faster, and ``Int8WeightOnlyLinear`` takes it. ``XCLI_NATIVE_AMX=0`` keeps many rows
on the float32 kernel.

**Built on first use** from ``data/kernels/kernels.c`` by the C compiler (``$CC``, else ``cc``)
with OpenMP (the ``libgomp`` torch has already loaded, so the kernel shares torch's threads and
``torch.set_num_threads``), for x86-64 processors with AVX-512 (F, BW, VL) and FMA. The library is
kept in ``$XCLI_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/xcli/kernels``, else ``~/.cache/xcli/kernels``,
named by a digest of its source, compiler and flags: built once (about 1.5 s), then loaded. It is
checked on a small product against torch before use. Where it cannot be had (another processor, no
compiler, a cache that cannot be written, ``XCLI_NATIVE_KERNELS=0``), :func:`int8_kernel` is None and
the int8 layers use torch's kernels; :func:`kernel_status` says why (``xcli info --processor``).

This module imports no torch at import time (``xcli info`` stays light).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import hardware

__all__ = ["ACTIVATIONS", "AMX_BELOW_ROWS", "AMX_FROM_ROWS", "BLOCK", "BoundRows", "F32_ROWS", "argmax_rows",
           "as_rows", "block_rows", "blocked_shape", "f32_rows", "f32_weight_fits", "int8_kernel", "int8_rows", "kernel_status",
           "quantize_rows", "rounded_rows", "unblock_rows"]

logger = logging.getLogger("xcli_models")

SOURCE = Path(__file__).parent / "data" / "kernels" / "kernels.c"
FLAGS = ("-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mfma", "-fopenmp", "-shared", "-fPIC", "-lm")
#: the instruction sets the flags compile for
NEEDS = ("avx512f", "avx512bw", "avx512vl", "fma")
#: output channels per block of the kernel's weight layout (the C file's BLOCK)
BLOCK = 8
#: the inputs of a row are read 16 at a time
INPUT_MULTIPLE = 16
#: set to 0 to use torch's kernels only
SWITCH = "XCLI_NATIVE_KERNELS"
#: set to 0 to keep many rows on the float32 kernel (not AMX's int8 tiles)
AMX_SWITCH = "XCLI_NATIVE_AMX"
#: what the processor needs for them
AMX = ("amx_tile", "amx_int8")
#: from this many rows on, a product goes to AMX's tiles where they can be had (measured, XGLM-564M's
#: projections, 2 threads: 6 rows 27.8 ms through the float32 kernel against 31.4, 7 rows 32.1 against
#: 25.3, 16 rows 60.2 against 27.3, 512 rows 2,306 against 584)
AMX_FROM_ROWS = 7
#: ... and below this many, where it beats the bfloat16 product of the dequantized weight
#: (``quantize.dequantized_product``), which from there on is the faster (it rounds the inputs to
#: bfloat16 and multiplies once, where AMX's path multiplies three int8 parts): prefill of XGLM-564M
#: int8, 2 threads, 256 tokens 0.38-0.47 s against 0.52, 512 tokens 0.98-1.06 against 0.51
AMX_BELOW_ROWS = 256
#: float32 products of at most this many rows are the float32 kernel's (``xcli_f32_rows``; the C
#: file's F32_GROUP_ROWS, where the measurements are: past it oneDNN's product is the faster)
F32_ROWS = 16
#: what the kernels can apply to their outputs (the C files' act): the exact GELU, within a few
#: float32 roundings of torch's (its own polynomials for erf)
ACTIVATIONS = {"gelu": 1}


def cache_dir(env: Any = os.environ) -> Path:
    """Where built kernels are kept (see the module docstring)."""
    if env.get("XCLI_KERNEL_CACHE"):
        return Path(env["XCLI_KERNEL_CACHE"])
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "xcli" / "kernels"


def _compiler(env: Any = os.environ) -> str | None:
    return shutil.which(env.get("CC") or "cc")


def _library_path(compiler: str, env: Any = os.environ) -> Path:
    digest = hashlib.sha256(SOURCE.read_bytes() + "\0".join((compiler, *FLAGS)).encode()).hexdigest()[:16]
    return cache_dir(env) / f"kernels-{digest}.so"


def _switched_on(env: Any, name: str) -> bool:
    return env.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


def _amx_wanted(env: Any = os.environ) -> bool:
    """Whether AMX's tiles are to be tried: not turned off (:data:`AMX_SWITCH`), and the processor
    has them (the system's grant is asked of the library: ``xcli_amx_ready``)."""
    return _switched_on(env, AMX_SWITCH) and all(flag in hardware._cpu()[1] for flag in AMX)


def unavailable_reason(env: Any = os.environ) -> str | None:
    """Why the kernel cannot be had here without trying to build it, or None."""
    if not _switched_on(env, SWITCH):
        return f"turned off ({SWITCH}={env[SWITCH]})"
    missing = [flag for flag in NEEDS if flag not in hardware._cpu()[1]]
    if missing:
        return f"this processor lacks {', '.join(missing)}"
    if _compiler(env) is None:
        return f"no C compiler ({env.get('CC') or 'cc'}) to build it"
    return None


def build(compiler: str, target: Path) -> None:
    """Compile the kernel into ``target``, atomically (a half-written library is never loaded);
    OSError with the compiler's first line of complaint where it fails."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=target.stem, suffix=".so.part", dir=target.parent)
    os.close(handle)
    try:
        done = subprocess.run([compiler, *FLAGS, "-o", temporary, str(SOURCE)], capture_output=True, text=True,
                              timeout=300, check=False)
        if done.returncode != 0:
            complaint = next((line for line in done.stderr.splitlines() if line.strip()), "no message")
            raise OSError(f"{compiler} failed (exit {done.returncode}): {complaint}")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


class Kernels:
    """The library's functions, typed for ctypes: ``rows`` (``xcli_int8_rows``: int8 weights times
    float32 rows), ``rows_amx`` (``xcli_int8_rows_amx``: the same by AMX's int8 tiles, for many
    rows; 0, or -1 where it could not), ``quantize`` (``xcli_quantize_rows``: float32 rows rounded
    to int8), ``argmax`` (``xcli_argmax_rows``: each row's first largest value), ``f32_rows``
    (``xcli_f32_rows``: float32 weights times a few float32 rows) and ``decode_layers``
    (``xcli_decode_layers``: a decode step through a stack of layers, ``layers/fused.py``). ``amx``:
    whether ``rows_amx`` may be used here (:data:`AMX_SWITCH`, the processor, the operating system; checked
    by :func:`_agrees`)."""

    def __init__(self, library: ctypes.CDLL, env: Any = os.environ) -> None:
        pointer, size = ctypes.c_void_p, ctypes.c_int64
        self.rows = library.xcli_int8_rows
        self.rows.restype = None
        self.rows.argtypes = [pointer, size, pointer, pointer, pointer, pointer, size, size, ctypes.c_int]
        self.rows_amx = library.xcli_int8_rows_amx
        self.rows_amx.restype, self.rows_amx.argtypes = ctypes.c_int, self.rows.argtypes
        self.amx = _amx_wanted(env) and bool(library.xcli_amx_ready())
        self.quantize = library.xcli_quantize_rows
        self.quantize.restype, self.quantize.argtypes = None, [pointer, size, size, pointer, pointer]
        self.argmax = library.xcli_argmax_rows
        self.argmax.restype, self.argmax.argtypes = None, [pointer, size, size, pointer]
        self.f32_rows = library.xcli_f32_rows
        self.f32_rows.restype = None
        self.f32_rows.argtypes = [pointer, size, pointer, pointer, pointer, size, size, ctypes.c_int]
        self.decode_layers = library.xcli_decode_layers
        self.decode_layers.restype = ctypes.c_int
        self.decode_layers.argtypes = [size, pointer, pointer, pointer, pointer, size, size, pointer, size, pointer,
                                       size, size]


@lru_cache(maxsize=1)
def _load() -> tuple[Kernels | None, str]:
    """The kernels (or None) and where they came from (or why there are none)."""
    reason = unavailable_reason()
    if reason is not None:
        return None, reason
    compiler = _compiler()
    assert compiler is not None
    target = _library_path(compiler)
    try:
        if not target.exists():
            build(compiler, target)
        kernels = Kernels(ctypes.CDLL(str(target)))
    except (OSError, AttributeError, subprocess.SubprocessError) as exc:
        return _unexpected(f"could not build or load it: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    if not _agrees(kernels):
        return _unexpected(f"{target} gives wrong products; not used")
    return kernels, str(target)


def _unexpected(reason: str) -> tuple[None, str]:
    """A kernel that should have been had and was not: said once (a warning of the ``xcli_models``
    logger, which the command line shows), since int8 runs slower without it."""
    logger.warning("xcli's int8 kernel %s; int8 layers and greedy decoding use torch's kernels (slower)", reason)
    return None, reason


def _agrees(kernels: Kernels) -> bool:
    """Whether the loaded kernels compute a small product and a rounding as torch does (odd channel,
    row and input counts)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    int8 = torch.randint(-127, 128, (13, 48), generator=generator, dtype=torch.int8)
    scale, bias = torch.rand(13, generator=generator), torch.randn(13, generator=generator)
    product = BoundRows(block_rows(int8), scale, bias, 13, kernels)
    weight = int8.float() * scale[:, None]

    def right(rows: Any) -> bool:
        return bool(torch.allclose(product(rows), rows @ weight.t() + bias, rtol=1e-5, atol=1e-4))

    odd = torch.randn(3, 37, generator=generator)
    odd[1, 5] = odd[1, 30] = odd[1].max() + 1  # a tie: the first
    if kernels.amx:  # many rows (two chunks of 16), inputs not a multiple of 64: else it is not used
        kernels.amx = right(torch.randn(AMX_FROM_ROWS + 16, 48, generator=generator))
    return right(torch.randn(3, 48, generator=generator)) and all(
        torch.equal(a, b) for a, b in zip(_rounded(kernels, odd), rounded_rows(odd), strict=True)) and torch.equal(
        _argmax(kernels, odd), odd.argmax(-1))


def int8_kernel() -> Kernels | None:
    """The kernels, built or loaded once per process; None where they cannot be had."""
    return _load()[0]


def kernel_status() -> str:
    """One line for ``xcli info``: where the kernel is, or why it is not used; builds nothing."""
    reason = unavailable_reason()
    if reason is not None:
        return f"torch's kernels ({reason})"
    if _load.cache_info().currsize:
        kernels, where = _load()
        if kernels is None:
            return f"torch's kernels ({where})"
        return f"native ({where}{f'; AMX int8 tiles from {AMX_FROM_ROWS} rows' if kernels.amx else ''})"
    target = _library_path(_compiler() or "cc")
    amx = f"; AMX int8 tiles from {AMX_FROM_ROWS} rows where the system grants them" if _amx_wanted() else ""
    if target.exists():
        return f"native ({target}{amx})"
    return f"native, built on the first generate or --quantize int8 run into {target.parent}{amx}"


def blocked_shape(n: int, k: int) -> tuple[int, int, int, int]:
    """The shape of an (N, K) weight in the kernel's layout (:func:`block_rows`)."""
    return (-(-n // BLOCK), k // INPUT_MULTIPLE, BLOCK, INPUT_MULTIPLE)


def block_rows(int8: Any) -> Any:
    """An (N, K) int8 weight in the kernel's layout: (ceil(N / BLOCK), K / 16, BLOCK, 16), the rows
    past N zero. K must be a multiple of 16."""
    import torch

    n, k = int8.shape
    blocks = blocked_shape(n, k)[0]
    if blocks * BLOCK != n:
        int8 = torch.cat([int8, int8.new_zeros(blocks * BLOCK - n, k)])
    return int8.reshape(blocks, BLOCK, k // INPUT_MULTIPLE, INPUT_MULTIPLE).transpose(1, 2).contiguous()


def unblock_rows(blocked: Any, n: int) -> Any:
    """:func:`block_rows` undone, as a view where it can be: the (N, K) weight."""
    blocks, groups, _, width = blocked.shape
    return blocked.transpose(1, 2).reshape(blocks * BLOCK, groups * width)[:n]


def as_rows(int8: Any, n: int) -> Any:
    """An int8 weight of ``n`` output channels, blocked or (N, K), as (N, K)."""
    return unblock_rows(int8, n) if int8.dim() == 4 else int8


def int8_rows(rows: Any, blocked: Any, scale: Any, bias: Any, n: int, activation: str | None = None) -> Any:
    """``rows`` (..., K) float32 times the blocked int8 weight of ``n`` output channels, scaled per
    channel (``scale`` (n,) float32), plus ``bias`` (n,) float32 or None, then ``activation``
    (:data:`ACTIVATIONS`) where given: (..., n) float32. Only where :func:`int8_kernel` is not None."""
    return BoundRows(blocked, scale, bias, n, activation=activation)(rows)


def quantize_rows(rows: Any) -> tuple[Any, Any]:
    """``rows`` (M, K) float32 rounded to int8, each with its own scale: the same bits as
    :func:`rounded_rows` for finite rows (a NaN gives garbage in both), in one pass. Only where
    :func:`int8_kernel` is not None."""
    return _rounded(_load()[0], rows)


def rounded_rows(rows: Any) -> tuple[Any, Any]:
    """``rows`` (M, K) float32 rounded to int8 (M, K), each row with its own scale (M, 1) float32
    (its largest magnitude / 127), in torch: what :func:`quantize_rows` computes."""
    import torch

    scale = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
    return torch.round(rows / scale).clamp(-127, 127).to(torch.int8), scale


class BoundRows:
    """:func:`int8_rows` bound to one weight: the blocked int8 weights of ``n`` output channels,
    their scales and bias (or None) checked once, here, so that a product checks only its rows and
    makes one call (a decode step of XGLM-564M makes 145; see ``quantize.Int8WeightOnlyLinear``):
    AMX's for :data:`AMX_FROM_ROWS` rows or more where ``kernels.amx``, else the float32 kernel's.
    It holds the tensors it was made from, in ``blocked``, ``scale`` and ``bias``, and asks them
    where their data is at each product (``share_memory_`` moves it)."""

    __slots__ = ("blocked", "scale", "bias", "n", "activation", "inputs", "_act", "_call", "_many", "_empty",
                 "_float32")

    def __init__(self, blocked: Any, scale: Any, bias: Any, n: int, kernels: Any = None,
                 activation: str | None = None) -> None:
        import torch

        if activation is not None and activation not in ACTIVATIONS:
            raise ValueError(f"xcli's int8 kernel applies {', '.join(ACTIVATIONS)} after its product, "
                             f"not {activation!r}")

        # what the kernel reads must be there: n channels of weights, scales and biases, float32
        # (it reads past none of them), in the CPU's memory
        elsewhere = {str(t.device) for t in (blocked, scale, bias) if t is not None and t.device.type != "cpu"}
        if elsewhere:
            raise ValueError(f"xcli's int8 kernel multiplies weights in the CPU's memory, not "
                             f"{', '.join(sorted(elsewhere))}")
        vectors = (scale,) if bias is None else (scale, bias)
        if (blocked.dtype != torch.int8 or blocked.dim() != 4 or not blocked.is_contiguous()
                or n > blocked.shape[0] * BLOCK
                or any(v.dtype != torch.float32 or not v.is_contiguous() or v.numel() < n for v in vectors)):
            raise ValueError(f"{n} output channels asked of int8 weights, scales or biases that hold fewer, "
                             "or not in the kernel's layout (blocked int8, float32 scales and bias)")
        self.blocked, self.scale, self.bias, self.n, self.activation = blocked, scale, bias, n, activation
        self._act = 0 if activation is None else ACTIVATIONS[activation]
        self.inputs = blocked.shape[1] * INPUT_MULTIPLE
        self._empty, self._float32 = torch.empty, torch.float32
        kernels = kernels or _load()[0]
        self._call = kernels.rows
        self._many = kernels.rows_amx if kernels.amx else None  # AMX's tiles, from AMX_FROM_ROWS rows

    def __call__(self, rows: Any) -> Any:
        """``rows`` (..., K) float32 times the weight: (..., n) float32."""
        if rows.shape[-1] != self.inputs or rows.dtype != self._float32 or not rows.is_cpu:
            raise ValueError(f"rows of {rows.shape[-1]} {rows.dtype} values for int8 weights of {self.inputs} "
                             f"inputs (float32 rows in the CPU's memory; these are on {rows.device})")
        rows = rows.contiguous()
        out = self._empty(*rows.shape[:-1], self.n)  # (sizes as numbers: half the time of a torch.Size)
        if out.dtype != self._float32:  # another default dtype
            out = out.float()
        bias = self.bias
        arguments = (rows.data_ptr(), rows.numel() // self.inputs, self.blocked.data_ptr(), self.scale.data_ptr(),
                     None if bias is None else bias.data_ptr(), out.data_ptr(), self.n, self.inputs, self._act)
        if self._many is None or arguments[1] < AMX_FROM_ROWS or self._many(*arguments) != 0:
            self._call(*arguments)  # (-1 from AMX's: no memory for its buffers, nothing written)
        return out


def f32_weight_fits(weight: Any, bias: Any) -> bool:
    """Whether ``xcli_f32_rows`` takes ``weight`` (N, K) and ``bias`` (N,) or None as they are: float32,
    contiguous, in the CPU's memory."""
    import torch

    return (weight.dtype == torch.float32 and weight.dim() == 2 and weight.is_cpu and weight.is_contiguous()
            and (bias is None or (bias.dtype == torch.float32 and bias.is_cpu and bias.is_contiguous()
                                  and tuple(bias.shape) == (weight.shape[0],))))


def f32_rows(kernels: Kernels, rows: Any, weight: Any, bias: Any) -> Any:
    """``rows`` (..., K) float32 times ``weight`` (N, K) float32, plus ``bias`` (N,) or None, by
    ``kernels``' float32 kernel (``xcli_f32_rows``): (..., N). At most :data:`F32_ROWS` rows, every
    tensor in the CPU's memory, the weight and bias contiguous (``kernels.Route`` sends only those)."""
    import torch

    n, k = weight.shape
    rows = rows.contiguous()
    count = rows.numel() // k
    if (count > F32_ROWS or rows.shape[-1] != k or rows.dtype != torch.float32 or not rows.is_cpu
            or not f32_weight_fits(weight, bias)):
        raise ValueError(f"xcli's float32 kernel takes up to {F32_ROWS} float32 rows of {k} values times a "
                         f"contiguous ({n}, {k}) float32 weight in the CPU's memory")
    out = torch.empty(*rows.shape[:-1], n, dtype=torch.float32)
    kernels.f32_rows(rows.data_ptr(), count, weight.data_ptr(), None if bias is None else bias.data_ptr(),
                     out.data_ptr(), n, k, 0)
    return out


def argmax_rows(scores: Any) -> Any:
    """``torch.argmax(scores, dim=-1)`` for (M, N) scores, the same indices (the first of equal
    largest values; the first NaN), by our kernel where it can be had and takes them (float32 rows
    in the CPU's memory): greedy decoding's choice, 9-13 times faster than torch's (measured,
    2-core Xeon, one row: 37 against 484 microseconds over XGLM's 256,008 logits, 14 against 122
    over MVP's 50,265)."""
    import torch

    kernels = _load()[0]
    if (kernels is None or scores.dim() != 2 or scores.shape[1] == 0 or not scores.is_cpu
            or scores.dtype != torch.float32):
        return scores.argmax(dim=-1)
    return _argmax(kernels, scores)


def _argmax(kernels: Any, scores: Any) -> Any:
    import torch

    scores = scores.contiguous()
    out = torch.empty(scores.shape[0], dtype=torch.int64)
    kernels.argmax(scores.data_ptr(), scores.shape[0], scores.shape[1], out.data_ptr())
    return out


def _rounded(kernels: Any, rows: Any) -> tuple[Any, Any]:
    import torch

    rows = rows.contiguous()
    if rows.dim() != 2 or rows.dtype != torch.float32:
        raise ValueError(f"rows to round are (M, K) float32, not {tuple(rows.shape)} {rows.dtype}")
    quantized = torch.empty(rows.shape, dtype=torch.int8)
    scale = torch.empty(rows.shape[0], 1, dtype=torch.float32)
    kernels.quantize(rows.data_ptr(), rows.shape[0], rows.shape[1], quantized.data_ptr(), scale.data_ptr())
    return quantized, scale
