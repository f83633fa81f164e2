"""Start-up time of xcli, measured: the median wall time of N runs of each command.

    python benchmarks/startup.py [--runs N]

Runs, in one go: bare ``python -c pass``; ``xcli --help``; a one-line
``xcli tokenize -m xlnet/xlnet-base-cased "Hello world"``; and the same tokenisation through
the reference library (``transformers.XLNetTokenizer`` on the same spiece.model), then prints
each median with its ratio to bare Python, and xcli's tokenize against the reference.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "xlnet/xlnet-base-cased"
TEXT = "Hello world"


def xcli_command() -> list[str]:
    """The installed console script beside this python, else ``python -m xcli``."""
    script = Path(sys.executable).parent / "xcli"
    if script.exists():
        return [str(script)]
    found = shutil.which("xcli")
    return [found] if found and "shims" not in found else [sys.executable, "-m", "xcli"]


def median_seconds(command: list[str], runs: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("XCLI_MODEL", "XCLI_DEBUG")}
    subprocess.run(command, capture_output=True, env=env, check=True)  # warm the file cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (the median is reported)")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from xcli.models import resolve_model

    spiece = resolve_model(MODEL).path / "spiece.model"
    xcli = xcli_command()
    oracle = (
        "from transformers import XLNetTokenizer; "
        f"t = XLNetTokenizer({str(spiece)!r}); print(t.convert_ids_to_tokens(t({TEXT!r})['input_ids']))"
    )
    cases = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("xcli --help", [*xcli, "--help"]),
        (f'xcli tokenize -m {MODEL} "{TEXT}"', [*xcli, "tokenize", "-m", MODEL, TEXT]),
        ("transformers XLNetTokenizer (same spiece.model)", [sys.executable, "-c", oracle]),
    ]
    print(f"median wall time of {args.runs} runs; python {sys.version.split()[0]}; xcli = {' '.join(xcli)}")
    results = {}
    for label, command in cases:
        try:
            results[label] = median_seconds(command, args.runs)
        except subprocess.CalledProcessError as exc:
            print(f"{label:55s} failed (exit {exc.returncode})")
            continue
        ratio = results[label] / results["python -c pass"]
        print(f"{label:55s} {results[label] * 1000:8.1f} ms  {ratio:5.1f}x python")
    tokenize, reference = cases[2][0], cases[3][0]
    if tokenize in results and reference in results:
        print(f"xcli tokenize / transformers: {results[tokenize] / results[reference]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
