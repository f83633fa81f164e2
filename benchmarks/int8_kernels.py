"""Decode products of int8 weights: every kernel there is for them, on XGLM-564M's projections.

    python benchmarks/int8_kernels.py                 # 24 layers, 2 threads: the README's table
    python benchmarks/int8_kernels.py --layers 4      # weights that fit the cache, for comparison
    python benchmarks/int8_kernels.py --rows 16       # a prompt's rows: xcli's float32 kernel against AMX's
    python benchmarks/int8_kernels.py --rows 8        # a batch of 8's decode step (float32 kernels too)

One row (a batch-1 decode step; ``--rows``: that many) times the q, k, v, out, fc1 and fc2 weights of
``--layers`` layers of XGLM-564M's shape (d_model 1024, ffn 4096; random weights), more than the
cache holds at 24 layers (302 M weights), so each product reads its weights from memory as
generation does; then greedy decoding's argmax over as many rows of XGLM's 256,008 logits, torch's
against xcli's kernel (the same indices). Each kernel
runs the same products; the best of ``--repeat`` passes is reported, in ms and weights read per
second, with its speed against float32 and the largest difference of its outputs from the exact
product of the same int8 weights (float64). The kernels:

* float32: ``F.linear`` (torch's default, MKL), oneDNN's matmul (``kernels._linear``) and, up to
  ``native.F32_ROWS`` rows, xcli's float32 kernel (``native.f32_rows``, float32 decode steps);
* torch ``_weight_int8pack_mm``: int8 weights, inputs rounded to bfloat16;
* torch ``_int_mm`` and oneDNN's int8 linear (``quantize.Int8Linear``): inputs rounded to int8 per row;
* xcli's kernel (``xcli_models.native``): int8 weights blocked, float32 inputs; from
  ``native.AMX_FROM_ROWS`` rows on, where the processor has AMX, both its paths: the float32 one
  and AMX's int8 tiles (each row in three int8 parts);
* torchao's ``Int8WeightOnlyConfig`` (eager), where torchao is installed.

The float32 rows differ from the int8 product by the weights' rounding; the others by their own
arithmetic (the inputs' rounding, where they round them).
"""

from __future__ import annotations

import argparse
import sys
import types
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xcli_models import kernels, native  # noqa: E402
from xcli_models.quantize import Int8Linear, int8_available, per_channel_int8  # noqa: E402

SHAPES = [(1024, 1024)] * 4 + [(4096, 1024), (1024, 4096)]  # (out, in): q, k, v, out, fc1, fc2


def best(run: Callable[[], list[torch.Tensor]], repeat: int) -> tuple[float, list[torch.Tensor]]:
    outputs = run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times), outputs


def candidates(weights: list[torch.Tensor], rows: dict[int, torch.Tensor]) -> dict[str, Callable[[], list]]:
    """Kernel name -> a pass of every product through it."""
    int8 = [per_channel_int8(w) for w in weights]
    x = lambda w: rows[w.shape[1]]  # noqa: E731
    found: dict[str, Callable[[], list]] = {
        "float32, torch default": lambda: [torch.nn.functional.linear(x(w), w) for w in weights],
    }

    if kernels.onednn_available():
        found["float32, oneDNN"] = lambda: [kernels._linear(x(w), w, None) for w in weights]
    own = native.int8_kernel()
    if own is not None and next(iter(rows.values())).shape[0] <= native.F32_ROWS:
        found["float32, xcli's float32 kernel"] = lambda: [native.f32_rows(own, x(w), w, None) for w in weights]
    bf16 = [(q, s.to(torch.bfloat16)) for q, s in int8]
    found["torch _weight_int8pack_mm (bf16 rows)"] = lambda: [
        torch.ops.aten._weight_int8pack_mm(x(q).bfloat16(), q, s).float() for q, s in bf16]

    def int_mm() -> list[torch.Tensor]:
        out = []
        for q, s in int8:
            xq, xs = native.rounded_rows(x(q))
            out.append(torch._int_mm(xq, q.t()).float() * xs * s)
        return out

    found["torch _int_mm (int8 rows)"] = int_mm
    if int8_available():
        layers = [Int8Linear(w, None) for w in weights]
        found["oneDNN int8, Int8Linear (int8 rows)"] = lambda: [layer(rows[layer.in_features]) for layer in layers]
    if own is not None:
        blocked = [(native.block_rows(q), s, q.shape[0]) for q, s in int8]
        many = next(iter(rows.values())).shape[0] >= native.AMX_FROM_ROWS
        paths = {"float32 rows": types.SimpleNamespace(rows=own.rows, rows_amx=own.rows_amx, amx=False)}
        if many and own.amx:
            paths["AMX int8 tiles"] = own
        for path, chosen in paths.items():
            bound = [native.BoundRows(b, s, None, n, kernels=chosen) for b, s, n in blocked]
            found[f"xcli's kernel ({path})"] = lambda bound=bound: [
                product(rows[product.inputs]) for product in bound]
    try:
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    except ImportError:
        print("torchao is not installed: its kernel is left out", file=sys.stderr)
    else:
        modules = []
        for w in weights:
            linear = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            linear.weight.data = w.clone()
            quantize_(linear, Int8WeightOnlyConfig())
            modules.append(linear)
        found["torchao Int8WeightOnlyConfig (eager)"] = lambda: [m(rows[m.in_features]) for m in modules]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--rows", type=int, default=1, help="rows of inputs (1: a batch-1 decode step)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(o, i, generator=generator) * 0.02 for _ in range(args.layers) for o, i in SHAPES]
    rows = {k: torch.randn(args.rows, k, generator=generator) for k in (1024, 4096)}
    total = sum(w.numel() for w in weights)
    exact = [rows[w.shape[1]].double() @ (q.double() * s.double()[:, None]).t()
             for w in weights for q, s in [per_channel_int8(w)]]
    print(f"{args.layers} layers of XGLM-564M's projections: {total / 1e6:.0f} M weights, {args.rows} row(s), "
          f"{args.threads} threads, torch {torch.__version__}; best of {args.repeat}")
    print(f"{'kernel':<42} {'ms':>8} {'weights/s':>10} {'vs float32':>11} {'max |diff| from the int8 product':>11}")
    reference = None
    with torch.inference_mode():
        for name, run in candidates(weights, rows).items():
            seconds, outputs = best(run, args.repeat)
            reference = reference or seconds
            diff = max(float((o.double() - e).abs().max()) for o, e in zip(outputs, exact, strict=True))
            print(f"{name:<42} {seconds * 1e3:>8.1f} {total / seconds / 1e9:>9.1f}G {reference / seconds:>10.2f}x "
                  f"{diff:>11.2e}")
        if native.int8_kernel() is not None:  # greedy decoding's choice over XGLM's vocabulary
            logits = torch.randn(args.rows, 256008, generator=generator)
            assert torch.equal(native.argmax_rows(logits), logits.argmax(-1))  # the same indices
            ours, _ = best(lambda: [native.argmax_rows(logits)], args.repeat * 10)
            theirs, _ = best(lambda: [logits.argmax(-1)], args.repeat * 10)
            print(f"argmax over {args.rows} x 256,008 logits: torch {theirs * 1e6:.0f} us, xcli's kernel "
                  f"{ours * 1e6:.0f} us ({theirs / ours:.1f}x)")


if __name__ == "__main__":
    main()
