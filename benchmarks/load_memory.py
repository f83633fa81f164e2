"""Load time and peak memory of an XGLM-564M-sized checkpoint: xcli_models against transformers.

    python benchmarks/load_memory.py [--checkpoint DIR] [--repeat N] [--rebuild]

The first run builds a random-weight float32 checkpoint of facebook/xglm-564M's shape (d_model
1024, 24 layers, 16 heads, ffn 4096, vocab 256008; 2.3 GB) with transformers and keeps it in
DIR (default: a folder in the system temp directory). Each measurement then runs in a fresh
subprocess, which imports the library, loads the checkpoint (timed; peak RSS read from
``resource.getrusage`` afterwards), runs one forward pass (peak RSS again) and hands its logits
back, so the two libraries are checked against each other on the same input.

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


def measure(library: str, directory: Path, logits_file: Path) -> dict[str, float]:
    """Runs inside the subprocess: import, load, forward; returns the numbers."""
    start = time.perf_counter()
    import torch

    if library == "xcli_models":
        from xcli_models import XGLMForCausalLM

        load = lambda: XGLMForCausalLM.from_pretrained(directory)  # noqa: E731
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
    parser.add_argument("--child", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--logits", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(json.dumps(measure(args.child, args.checkpoint, args.logits)))
        return
    if args.build_only:
        build(args.checkpoint)
        return

    if args.rebuild or not (args.checkpoint / "model.safetensors").exists():
        print(f"building a random XGLM-564M-sized checkpoint in {args.checkpoint} ...", file=sys.stderr)
        started = time.perf_counter()
        run_child("--build-only", "--checkpoint", str(args.checkpoint))
        print(f"built in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    size = sum(f.stat().st_size for f in args.checkpoint.glob("*.safetensors")) / 2**20

    runs: dict[str, list[dict[str, float]]] = {lib: [] for lib in LIBRARIES}
    with tempfile.TemporaryDirectory() as scratch:
        logits = {lib: Path(scratch) / f"{lib}.pt" for lib in LIBRARIES}
        for _ in range(args.repeat):  # alternate, so that neither always runs on a warmer page cache
            for lib in LIBRARIES:
                child = ("--child", lib, "--checkpoint", str(args.checkpoint), "--logits", str(logits[lib]))
                runs[lib].append(json.loads(run_child(*child)))
        import torch

        ours, theirs = (torch.load(logits[lib], weights_only=True) for lib in LIBRARIES)
    diff = (ours - theirs).abs().max().item()

    print(f"checkpoint: {args.checkpoint} ({size:.0f} MiB float32 safetensors), {args.repeat} runs each, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'':24}{'xcli_models':>14}{'transformers':>14}{'ratio':>8}")
    for key, label, pick in [
        ("import_s", "import (s)", statistics.median),
        ("load_s", "load (s)", statistics.median),
        ("forward_s", "first forward (s)", statistics.median),
        ("rss_after_import_mib", "peak RSS import (MiB)", max),
        ("rss_after_load_mib", "peak RSS load (MiB)", max),
        ("rss_after_forward_mib", "peak RSS forward (MiB)", max),
    ]:
        a, b = (pick([r[key] for r in runs[lib]]) for lib in LIBRARIES)
        print(f"{label:24}{a:>14.2f}{b:>14.2f}{a / b if b else float('nan'):>8.2f}")
    print(f"logits of the last 4 positions: max abs diff {diff:.2e} ({'same' if diff <= 1e-4 else 'DIFFERENT'})")
    if diff > 1e-4:
        sys.exit(1)


if __name__ == "__main__":
    main()
