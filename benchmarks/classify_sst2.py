"""Sentence classification throughput: ``xcli classify`` against the reference pipeline, SST-2 dev.

    python benchmarks/classify_sst2.py [--limit N] [--batch-size 32] [--threads N] [--rounds 2]

The first run builds a random-weight XLNetForSequenceClassification of xlnet-base-cased's shape
(d_model 768, 12 layers, 12 heads, d_inner 3072, vocab 32000, 2 labels) with the real XLNet
tokenizer (../shared/data/tokenizers/xlnet/spiece.model) and keeps it in a temporary folder. Then,
in one run on this machine, the 872 SST-2 dev sentences are classified at batch size 32:

* the reference: ``transformers.pipeline("text-classification")`` with the reference's
  ``XLNetTokenizer`` (the tokenizer xcli's ids are identical to) and ``use_mems_eval=False``
  (with the default True its pipeline cannot unbatch XLNet's outputs). ``--fast-reference``
  also times the pipeline with the fast tokenizer the reference converts from spiece.model; that
  one is an approximation whose ids differ on about a fifth of these sentences ("ex-wife",
  "high-spirited", a leading "..."), so its outputs are not compared, only its time shown;
* xcli in process: ``xcli_models.tasks.classify`` (tokenise, sort by length, run, score); with
  ``--variants float32,bfloat16,int8`` also in bfloat16 and with int8 products (``--quantize
  int8``), whose labels are compared with float32 xcli's;
* the xcli command, end to end (``python -m xcli classify -i sentences.txt``): start-up, model
  load, reading and writing included.

The reference and xcli in process take turns on slices of the sentences (ABBA order over
``--rounds`` slices), so that a machine busy with other work slows both alike; wall time and
CPU time are both reported. Every label must agree and every score be within 1e-4, else the run
fails. It prints sentences per second and the ratios to the reference, and where xcli's time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("XCLI_SHARED_DATA", ROOT.parent / "shared" / "data"))
SST2 = DATA / "datasets" / "sst2" / "dev.tsv"
SPIECE = DATA / "tokenizers" / "xlnet" / "spiece.model"
DEFAULT_DIR = Path(tempfile.gettempdir()) / "xcli-bench-xlnet-base-sst2"
SHAPE = dict(vocab_size=32000, d_model=768, n_layer=12, n_head=12, d_inner=3072)
LABELS = {0: "negative", 1: "positive"}
ATOL = 1e-4


def build(directory: Path) -> None:
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.XLNetConfig(**SHAPE, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    model = transformers.XLNetForSequenceClassification(config).eval()
    model.save_pretrained(directory)
    transformers.XLNetTokenizer(str(SPIECE)).save_pretrained(directory)


def sentences(limit: int | None) -> list[str]:
    lines = SST2.read_text(encoding="utf-8").splitlines()[1:]
    # the file ends each sentence with a space; the reference's fast XLNet tokenizer would keep it
    # as a piece of its own where its slow tokenizer (and xcli) drop it: strip it
    texts = [line.rsplit("\t", 1)[0].strip() for line in lines if line.strip()]
    return texts[:limit] if limit else texts


class Clock:
    """Wall and CPU seconds spent inside ``with clock:`` blocks, summed."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0

    def __enter__(self) -> "Clock":
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.wall += time.perf_counter() - self._wall
        self.cpu += time.process_time() - self._cpu


def reference_runner(directory: Path, batch_size: int, device: str, fast: bool = False) -> Callable[[list[str]], list]:
    import transformers

    model = transformers.XLNetForSequenceClassification.from_pretrained(directory, use_mems_eval=False)
    if fast:
        tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    else:
        tokenizer = transformers.XLNetTokenizer.from_pretrained(directory)
    pipe = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer, device=device,
                                 batch_size=batch_size)

    def run(texts: list[str]) -> list[dict]:
        return [{s["label"]: s["score"] for s in row} for row in pipe(texts, top_k=None)]

    return run


class Ours:
    """xcli in process, keeping count of where the time goes."""

    def __init__(self, directory: Path, batch_size: int, device: str, variant: str = "float32") -> None:
        from xcli_models.quantize import quantize_dynamic_int8
        from xcli_models.tasks.classify import classifier_for
        from xcli_models.tasks.common import load

        task = load(directory, device=device, dtype="bfloat16" if variant == "bfloat16" else "float32")
        if variant == "int8":
            quantize_dynamic_int8(task.model)
        self.batch_size = batch_size
        self.classifier = classifier_for(task.model, task.tokenizer, batch_size=batch_size)
        self.tokenise = self.model = 0.0
        self.tokens = self.padded = 0

    def __call__(self, texts: list[str]) -> list[dict]:
        from xcli_models.tasks.common import length_batches

        start = time.perf_counter()
        items = [self.classifier.prepare(t) for t in texts]
        prepared = time.perf_counter()
        out = self.classifier.run(items)
        self.tokenise += prepared - start
        self.model += time.perf_counter() - prepared
        lengths = [len(i) for i in items]
        self.tokens += sum(lengths)
        self.padded += sum(max(lengths[i] for i in b) * len(b) for b in length_batches(lengths, self.batch_size))
        return [o["scores"] for o in out]


def command(directory: Path, texts: list[str], batch_size: int, device: str, threads: int | None) -> tuple[list[dict], Clock]:
    clock = Clock()
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "sentences.txt"
        source.write_text("".join(t.replace("\n", " ") + "\n" for t in texts), encoding="utf-8")
        target = Path(scratch) / "out.jsonl"
        args = [sys.executable, "-m", "xcli", "classify", "-m", str(directory), "-i", str(source),
                "--input-format", "text", "-b", str(batch_size), "--device", device, "-o", str(target), "-q"]
        if threads:
            args += ["--threads", str(threads)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(args, check=True, env=env, cwd=ROOT)
        clock.wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        clock.cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    return [r["scores"] for r in rows], clock


def compare(name: str, mine: list[dict], theirs: list[dict]) -> None:
    assert len(mine) == len(theirs), f"{name}: {len(mine)} results for {len(theirs)} sentences"
    worst = 0.0
    for i, (a, b) in enumerate(zip(mine, theirs)):
        if max(a, key=a.get) != max(b, key=b.get):
            raise SystemExit(f"{name}: sentence {i}: label {max(a, key=a.get)} vs the reference's {max(b, key=b.get)}")
        worst = max(worst, max(abs(a[k] - b[k]) for k in b))
    if worst > ATOL:
        raise SystemExit(f"{name}: scores differ from the reference by up to {worst:.2e} (> {ATOL})")
    print(f"  {name}: {len(mine)} labels identical to the reference, scores within {worst:.1e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=2, help="slices the two sides take turns on")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_DIR, help="where the random checkpoint is kept")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--skip-command", action="store_true", help="leave out the end-to-end command run")
    parser.add_argument("--variants", default="float32", help="xcli sides, comma-separated: float32 (its labels "
                        "and scores must match the reference), bfloat16 (--dtype bfloat16), int8 (--quantize int8); "
                        "the others report the share of labels equal to float32 xcli's")
    parser.add_argument("--fast-reference", action="store_true",
                        help="also time the reference pipeline with its fast tokenizer (outputs not compared)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rebuild or not (args.checkpoint / "config.json").exists():
        print(f"building an xlnet-base-sized checkpoint in {args.checkpoint} ...")
        build(args.checkpoint)
    texts = sentences(args.limit)
    n = len(texts)
    print(f"SST-2 dev: {n} sentences, batch size {args.batch_size}, device {args.device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    sides: dict[str, Any] = {"reference pipeline": reference_runner(args.checkpoint, args.batch_size, args.device)}
    if args.fast_reference:
        sides["reference pipeline, fast tokenizer"] = reference_runner(
            args.checkpoint, args.batch_size, args.device, fast=True
        )
    ours = sides["xcli (in process)"] = Ours(args.checkpoint, args.batch_size, args.device)
    variants = [v for v in args.variants.split(",") if v and v != "float32"]
    for variant in variants:
        sides[f"xcli (in process, {variant})"] = Ours(args.checkpoint, args.batch_size, args.device, variant)
    for run in sides.values():  # warm-up
        run(texts[: args.batch_size])
    ours.tokenise = ours.model = 0.0
    ours.tokens = ours.padded = 0

    clocks = {name: Clock() for name in sides}
    results: dict[str, list] = {name: [] for name in sides}
    size = -(-n // args.rounds)
    for k, start in enumerate(range(0, n, size)):
        part = texts[start : start + size]
        names = list(sides) if k % 2 == 0 else list(reversed(sides))
        for name in names:
            with clocks[name]:
                results[name].extend(sides[name](part))
    theirs = results["reference pipeline"]
    compare("xcli (in process)", results["xcli (in process)"], theirs)
    for variant in variants:
        floats, got = results["xcli (in process)"], results[f"xcli (in process, {variant})"]
        same = sum(max(a, key=a.get) == max(b, key=b.get) for a, b in zip(got, floats, strict=True))
        worst = max(abs(a[k] - b[k]) for a, b in zip(got, floats) for k in b)
        print(f"  xcli {variant}: {same} of {n} labels equal to float32 xcli's ({same / n:.1%}), scores within "
              f"{worst:.1e} (random weights: near-ties flip; see benchmarks/dtype_quality.py for a trained model)")
    if args.fast_reference:
        fast = results["reference pipeline, fast tokenizer"]
        differ = sum(max(a, key=a.get) != max(b, key=b.get) or max(abs(a[k] - b[k]) for k in b) > ATOL
                     for a, b in zip(fast, theirs))
        print(f"  reference pipeline, fast tokenizer: {differ} of {n} outputs differ (its ids differ); timing only")
    rows = list(clocks.items())
    if not args.skip_command:
        cli, clock = command(args.checkpoint, texts, args.batch_size, args.device, args.threads)
        compare("xcli classify (command)", cli, theirs)
        rows.append(("xcli classify (command, end to end)", clock))

    ref = clocks["reference pipeline"]
    print(f"\n  {'':38} {'wall s':>8} {'sentences/s':>12} {'vs reference':>13} {'CPU s':>8} {'vs reference':>13}")
    for name, clock in rows:
        print(f"  {name:38} {clock.wall:8.2f} {n / clock.wall:12.1f} {ref.wall / clock.wall:12.2f}x "
              f"{clock.cpu:8.1f} {ref.cpu / clock.cpu:12.2f}x")
    print(f"\n  xcli in process: tokenising {ours.tokenise:.2f} s, model and scores {ours.model:.2f} s; "
          f"its length-sorted batches hold {ours.padded / ours.tokens - 1:.1%} padding tokens beyond the "
          f"{ours.tokens} real ones (input order, as the reference batches: "
          f"{_input_order_padding(ours, texts, args.batch_size):.1%})")
    return 0


def _input_order_padding(ours: Ours, texts: list[str], batch_size: int) -> float:
    lengths = [len(ours.classifier.prepare(t)) for t in texts]
    padded = sum(max(lengths[i : i + batch_size]) * len(lengths[i : i + batch_size])
                 for i in range(0, len(lengths), batch_size))
    return padded / sum(lengths) - 1


if __name__ == "__main__":
    sys.exit(main())
