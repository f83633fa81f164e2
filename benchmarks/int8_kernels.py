"""Decode products of int8 weights: every kernel there is for them, on XGLM-564M's projections.

    python benchmarks/int8_kernels.py                 # 24 layers, 2 threads: the README's table
    python benchmarks/int8_kernels.py --layers 4      # weights that fit the cache, for comparison

One row (a batch-1 decode step) times the q, k, v, out, fc1 and fc2 weights of ``--layers`` layers of
XGLM-564M's shape (d_model 1024, ffn 4096; random weights), more than the cache holds at 24 layers
(302 M weights), so each product reads its weights from memory as generation does. Each kernel
runs the same products; the best of ``--repeat`` passes is reported, in ms and weights read per
second, with its speed against float32 and the largest difference of its outputs from the exact
product of the same int8 weights (float64). The kernels:

* float32: ``F.linear`` (torch's default, MKL) and oneDNN's matmul (``kernels._linear``);
* torch ``_weight_int8pack_mm``: int8 weights, inputs rounded to bfloat16;
* torch ``_int_mm`` and oneDNN's int8 linear (``quantize.Int8Linear``): inputs rounded to int8 per row;
* xcli's kernel (``xcli_models.native``): int8 weights blocked, float32 inputs;
* torchao's ``Int8WeightOnlyConfig`` (eager), where torchao is installed.

The float32 rows differ from the int8 product by the weights' rounding; the others by their own
arithmetic (the inputs' rounding, where they round them).
"""

from __future__ import annotations

import argparse
import sys
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
    if native.int8_kernel() is not None:
        blocked = [(native.block_rows(q), s, q.shape[0]) for q, s in int8]
        found["xcli's kernel (float32 rows)"] = lambda: [
            native.int8_rows(rows[b.shape[1] * native.INPUT_MULTIPLE], b, s, None, n) for b, s, n in blocked]
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(o, i, generator=generator) * 0.02 for _ in range(args.layers) for o, i in SHAPES]
    rows = {k: torch.randn(1, k, generator=generator) for k in (1024, 4096)}
    total = sum(w.numel() for w in weights)
    exact = [rows[w.shape[1]].double() @ (q.double() * s.double()[:, None]).t()
             for w in weights for q, s in [per_channel_int8(w)]]
    print(f"{args.layers} layers of XGLM-564M's projections: {total / 1e6:.0f} M weights, 1 row, "
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


if __name__ == "__main__":
    main()
