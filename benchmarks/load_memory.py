"""Load time and peak memory of an XGLM-564M-sized checkpoint: xcli_models against transformers.

    python benchmarks/load_memory.py [--checkpoint DIR] [--repeat N] [--rebuild] [--quantize int8,int4]

The first run builds a random-weight float32 checkpoint of facebook/xglm-564M's shape (d_model
1024, 24 layers, 16 heads, ffn 4096, vocab 256008; 2.3 GB) with transformers and keeps it in
DIR (default: a folder in the system temp directory). Each measurement then runs in a fresh
subprocess, which imports the library, loads the checkpoint (timed; peak RSS read from
``resource.getrusage`` afterwards), runs one forward pass (peak RSS again) and hands its logits
back, so the two libraries are checked against each other on the same input.

``--quantize int8,int4`` adds two columns per mode: xcli_models+MODE, the float checkpoint loaded
and quantized on the fly as ``generate --quantize`` does, and xcli_models-MODE, the checkpoint
converted once by ``xcli convert --quantize`` (kept beside DIR as DIR-int8, DIR-int4) loaded as
``generate`` loads it (weight-only layers: int8 weights used from the memory map, int4 repacked for
torch's kernel). Their logits must be identical; against float32 they are shown for information.

Linux carries a process's peak RSS over into the program it execs, so this parent stays small:
it builds the checkpoint in a subprocess too and imports torch only after the measurements.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIR = Path(tempfile.gettempdir()) / "xcli-bench-xglm-564m"
SHAPE = dict(vocab_size=256008, d_model=1024, num_layers=24, attention_heads=16, ffn_dim=4096)
LIBRARIES = ("xcli_models", "transformers")


def build(directory: Path) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.XGLMForCausalLM(transformers.XGLMConfig(**SHAPE))
    model.save_pretrained(directory)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def quantize(directory: Path, mode: str) -> None:
    from xcli_models.convert import convert_checkpoint

    convert_checkpoint(directory, quantized_dir(directory, mode), quantize=mode, verify=False, overwrite=True)


def quantized_dir(directory: Path, mode: str) -> Path:
    return directory.with_name(f"{directory.name}-{mode}")


def xcli_loader(library: str, directory: Path) -> Any:
    """xcli_models: float32; +int8/+int4 quantized on the fly after loading (as generate --quantize
    does); -int8/-int4 a quantized checkpoint, as generate loads it (weight-only layers)."""
    from xcli_models import XGLMForCausalLM
    from xcli_models.quantize import quantize_weight_only

    mode = library.removeprefix("xcli_models")

    def load() -> Any:
        model = XGLMForCausalLM.from_pretrained(directory, weight_only=True if mode.startswith("-") else None)
        if mode.startswith("+"):
            quantize_weight_only(model, bits=int(mode.removeprefix("+int")))
        return model

    return load


def measure(library: str, directory: Path, logits_file: Path) -> dict[str, float]:
    """Runs inside the subprocess: import, load, forward; returns the numbers."""
    start = time.perf_counter()
    import torch

    if library.startswith("xcli_models"):
        load = xcli_loader(library, directory)
    else:
        import transformers

        transformers.logging.set_verbosity_error()
        load = lambda: transformers.XGLMForCausalLM.from_pretrained(directory).eval()  # noqa: E731
    imported = time.perf_counter()
    rss_imported = peak_rss_mib()
    model = load()
    loaded = time.perf_counter()
    rss_loaded = peak_rss_mib()
    ids = torch.arange(16 * 2).view(2, 16) * 7919 % 256000 + 3
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    forward = time.perf_counter() - loaded
    torch.save(logits[:, -4:].clone(), logits_file)
    return {
        "import_s": imported - start,
        "load_s": loaded - imported,
        "forward_s": forward,
        "rss_after_import_mib": rss_imported,
        "rss_after_load_mib": rss_loaded,
        "rss_after_forward_mib": peak_rss_mib(),
    }


def run_child(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True, env=env)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_DIR,
                        help="where the checkpoint is (built there if absent)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per library (median time, largest RSS)")
    parser.add_argument("--rebuild", action="store_true", help="build the checkpoint again")
    parser.add_argument("--quantize", default="", metavar="MODES",
                        help="also quantized checkpoints of these modes (int8,int4), converted once beside DIR")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--logits", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quantize-only", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(measure(args.child, args.checkpoint, args.logits)))
        return
    if args.build_only:
        build(args.checkpoint)
        return
    if args.quantize_only:
        quantize(args.checkpoint, args.quantize_only)
        return
    modes = [m for m in args.quantize.split(",") if m]
    if any(m not in ("int8", "int4") for m in modes):
        parser.error("--quantize takes int8, int4 or both (int8,int4)")
    run_benchmark(args, modes)


def run_benchmark(args: argparse.Namespace, modes: list[str]) -> None:
    """Build what is missing, measure each column in fresh subprocesses, print the table."""
    if args.rebuild or not (args.checkpoint / "model.safetensors").exists():
        print(f"building a random XGLM-564M-sized checkpoint in {args.checkpoint} ...", file=sys.stderr)
        started = time.perf_counter()
        run_child("--build-only", "--checkpoint", str(args.checkpoint))
        print(f"built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    directories = {lib: args.checkpoint for lib in LIBRARIES}
    for mode in modes:
        directories[f"xcli_models+{mode}"] = args.checkpoint
        directories[f"xcli_models-{mode}"] = quantized_dir(args.checkpoint, mode)
        if args.rebuild or not (quantized_dir(args.checkpoint, mode) / "model.safetensors").exists():
            print(f"converting it to {mode} ...", file=sys.stderr)
            run_child("--quantize-only", mode, "--checkpoint", str(args.checkpoint))
    sizes = {lib: sum(f.stat().st_size for f in d.glob("*.safetensors")) / 2**20 for lib, d in directories.items()}

    runs: dict[str, list[dict[str, float]]] = {lib: [] for lib in directories}
    with tempfile.TemporaryDirectory() as scratch:
        logits = {lib: Path(scratch) / f"{lib}.pt" for lib in directories}
        for _ in range(args.repeat):  # alternate, so that none always runs on a warmer page cache
            for lib, directory in directories.items():
                child = ("--child", lib, "--checkpoint", str(directory), "--logits", str(logits[lib]))
                runs[lib].append(json.loads(run_child(*child)))
        import torch

        outputs = {lib: torch.load(logits[lib], weights_only=True) for lib in directories}
    diff = (outputs["xcli_models"] - outputs["transformers"]).abs().max().item()
    _table(args, runs, sizes, torch.get_num_threads())
    print(f"logits of the last 4 positions: max abs diff {diff:.2e} ({'same' if diff <= 1e-4 else 'DIFFERENT'})")
    for mode in modes:
        off = (outputs[f"xcli_models-{mode}"] - outputs["xcli_models"]).abs().max().item()
        same = torch.equal(outputs[f"xcli_models-{mode}"], outputs[f"xcli_models+{mode}"])
        print(f"  {mode} checkpoint: {'identical to' if same else 'DIFFERENT from'} the float one quantized on the "
              f"fly; against float32 max abs diff {off:.3g} (largest logit {outputs['xcli_models'].abs().max():.3g})")
    if diff > 1e-4:
        sys.exit(1)


def _table(args: argparse.Namespace, runs: dict[str, list[dict[str, float]]], sizes: dict[str, float],
           threads: int) -> None:
    columns = list(runs)
    print(f"checkpoint: {args.checkpoint} ({sizes['xcli_models']:.0f} MiB float32 safetensors), {args.repeat} runs "
          f"each, torch threads {threads}")
    print(f"{'':24}" + "".join(f"{c:>20}" for c in columns) + f"{'ratio':>8}")
    print(f"{'file size (MiB)':24}" + "".join(f"{sizes[c]:>20.0f}" for c in columns))
    for key, label, pick in [
        ("import_s", "import (s)", statistics.median),
        ("load_s", "load (s)", statistics.median),
        ("forward_s", "first forward (s)", statistics.median),
        ("rss_after_import_mib", "peak RSS import (MiB)", max),
        ("rss_after_load_mib", "peak RSS load (MiB)", max),
        ("rss_after_forward_mib", "peak RSS forward (MiB)", max),
    ]:
        values = {c: pick([r[key] for r in runs[c]]) for c in columns}
        a, b = values["xcli_models"], values["transformers"]
        print(f"{label:24}" + "".join(f"{values[c]:>20.2f}" for c in columns)
              + f"{a / b if b else float('nan'):>8.2f}")


if __name__ == "__main__":
    main()
