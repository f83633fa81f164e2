"""What ``--dtype bfloat16`` or ``--quantize int8|int4`` costs in quality, on the built-in models (trained,
so the numbers mean something).

    python benchmarks/dtype_quality.py [--variant bfloat16|int8|int4] [--prompts 100]

For each built-in model, in one run: ``xcli evaluate`` in float32 and in the variant on the
held-out data its card was measured on (SST-2 dev accuracy, CoNLL-2003 eng.testb entity F1,
tinyshakespeare held-out perplexity, Tatoeba held-out top-1 accuracy), and the share of outputs
that are the same: labels (classify), entity lists (classify, token head), best fills (fill-mask),
greedy continuations of 32 new tokens (generate). ``int4`` is for generate only (evaluate refuses
it): there only the language model's continuations are compared, and its metric is not measured.
Prints one JSON object and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("XCLI_SHARED_DATA", ROOT.parent / "shared" / "data"))
XCLI = [sys.executable, "-m", "xcli"]
#: name -> (held-out records, evaluate's extra options, the metric shown, the command for outputs)
MODELS = {
    "sentiment": ("sst2-dev.jsonl", [], "accuracy", "classify"),
    "ner": ("conll-testb.jsonl", [], "f1", "classify"),
    "shakespeare": ("shakespeare-heldout.jsonl", [], "perplexity", "generate"),
    "fill-mask": ("tatoeba-heldout.jsonl", ["--seed", "0"], "accuracy", "fill-mask"),
}


def xcli(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run([*XCLI, *args, "--no-server", "-q"], input=stdin, capture_output=True, text=True, cwd=ROOT)
    if done.returncode not in (0, 4):
        raise SystemExit(f"xcli {' '.join(args)} failed: {done.stderr}")
    return done.stdout


VARIANTS = {"float32": [], "bfloat16": ["--dtype", "bfloat16"], "int8": ["--quantize", "int8"],
            "int4": ["--quantize", "int4"]}
#: variants that only generate runs (their model's metric is left out)
GENERATE_ONLY = ("int4",)


def outputs(name: str, command: str, records: Path, variant: str, prompts: int) -> tuple[list[Any], float]:
    """The model's main outputs on the held-out texts, and the seconds they took."""
    rows = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines()]
    if command == "generate":
        texts = [r["text"][:40] for r in rows[:prompts]]
        extra = ["--max-new-tokens", "32", "--new-text"]
    elif command == "fill-mask":
        texts = [" ".join(w if i != len(r["text"].split()) // 2 else "<mask>" for i, w in enumerate(r["text"].split()))
                 for r in rows[:1000]]
        extra = []
    else:
        texts = [r["text"] if "text" in r else " ".join(r["tokens"]) for r in rows]
        extra = ["--aggregation", "simple"] if name == "ner" else []
    source = "".join(json.dumps({"text": t}) + "\n" for t in texts)
    start = time.perf_counter()
    out = xcli(command, "-m", f"xcli/{name}", *VARIANTS[variant], *extra, stdin=source)
    seconds = time.perf_counter() - start
    main = {"classify": lambda o: o.get("label", [(e["word"], e["entity"]) for e in o.get("entities", [])]),
            "fill-mask": lambda o: o["predictions"][0][0]["token_id"] if "predictions" in o else None,
            "generate": lambda o: o.get("generated_text")}[command]
    return [main(json.loads(line)) for line in out.splitlines()], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="bfloat16", choices=["bfloat16", "int8", "int4"])
    parser.add_argument("--prompts", type=int, default=100, help="generate: how many held-out prompts")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xcli-dtype-"))
    subprocess.run([sys.executable, str(ROOT / "examples" / "builtin_data.py"), str(DATA), str(work)], check=True,
                   capture_output=True)
    report: dict[str, Any] = {}
    for name, (records, extra, metric, command) in MODELS.items():
        if args.variant in GENERATE_ONLY and command != "generate":
            continue
        measured: dict[str, Any] = {args.variant: None}
        for variant in ("float32",) if args.variant in GENERATE_ONLY else ("float32", args.variant):
            metrics = json.loads(xcli("evaluate", "-m", f"xcli/{name}", "-i", str(work / records),
                                      *VARIANTS[variant], *extra))
            measured[variant] = metrics[metric]
        ours, theirs = (outputs(name, command, work / records, v, args.prompts) for v in ("float32", args.variant))
        same = sum(a == b for a, b in zip(ours[0], theirs[0], strict=True)) / len(ours[0])
        report[name] = {"metric": metric, "float32": measured["float32"], args.variant: measured[args.variant],
                        "same_outputs": same, "outputs": len(ours[0]), "command": command,
                        "seconds": {"float32": round(ours[1], 2), args.variant: round(theirs[1], 2)}}
    print(json.dumps(report, indent=2))
    print(f"\n| model | metric | float32 | {args.variant} | same {args.variant} outputs |\n|---|---|---|---|---|")
    for name, r in report.items():
        pct = r["metric"] != "perplexity"
        show = (lambda v: "-" if v is None else f"{100 * v:.1f}%") if pct else (
            lambda v: "-" if v is None else f"{v:.2f}")
        print(f"| xcli/{name} | {r['metric']} | {show(r['float32'])} | {show(r[args.variant])} | "
              f"{100 * r['same_outputs']:.1f}% of {r['outputs']} ({r['command']}) |")


if __name__ == "__main__":
    main()
