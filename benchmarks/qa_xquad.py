"""Question-answering throughput: ``xcli qa`` against the reference pipeline, XQuAD English.

    python benchmarks/qa_xquad.py [--limit N] [--batch-size 32] [--reference-batch-size N ...]
                                  [--threads N] [--device cpu|cuda] [--dtype float32|bfloat16] [--quantize int8]
                                  [--shape base|large|tiny]

The first run builds a random-weight MvpForQuestionAnswering with the real MVP tokenizer
(../shared/data/tokenizers/roberta_bart_mvp) and keeps it in a temporary folder. MVP is
BART-shaped and released in one (large) size; ``--shape base`` (the default) is bart-base's
shape (d_model 768, 6 + 6 layers, 12 heads, ffn 3072), ``--shape large`` RUCAIBox/mvp's
(d_model 1024, 12 + 12 layers, 16 heads, ffn 4096); ``--shape tiny`` checks the answers
quickly. Then, in one run on this machine, the 1,190 XQuAD English questions
(../shared/data/datasets/xquad/xquad.en.json, SQuAD v1.1 dev paragraphs) are answered, after a
warm-up, by:

* the reference: ``transformers.pipeline("question-answering")`` with the reference's
  ``MvpTokenizerFast``, at each ``--reference-batch-size`` (default: 1, its own default, and
  ``--batch-size``);
* xcli in process: ``xcli_models.tasks.qa`` (tokenise, cut into windows, batch windows by
  length, run, decode spans);

these taking turns on chunks of ``--chunk`` questions (512: what ``xcli qa`` reads at once at
batch size 32), so that a busy machine slows them alike; and then by

* the xcli command, end to end (``python -m xcli qa -i questions.jsonl``): start-up, model load,
  reading and writing included.

Every answer must be the same text at the same offsets, and every score within 1e-4 (and 1e-4
relative), as the reference's, else the run fails (with ``--dtype`` other than float32 the
answers that kept the reference's span are counted instead). Default options: max_seq_len 384, doc_stride
128, max_answer_len 15, top_k 1. It prints questions per second for each, the ratio to the
fastest reference run, and where xcli's time goes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("XCLI_SHARED_DATA", ROOT.parent / "shared" / "data"))
XQUAD = DATA / "datasets" / "xquad" / "xquad.en.json"
TOKENIZER = DATA / "tokenizers" / "roberta_bart_mvp"
SHAPES = {
    "base": dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                 decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072),
    "large": dict(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                  decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096),
    # a quick check of the answers (not of speed) on every question
    "tiny": dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64),
}
ATOL = 1e-4


def build(directory: Path, shape: str) -> None:
    import torch
    import transformers

    tokenizer = transformers.MvpTokenizerFast(
        vocab_file=str(TOKENIZER / "vocab.json"), merges_file=str(TOKENIZER / "merges.txt")
    )
    torch.manual_seed(0)
    config = transformers.MvpConfig(vocab_size=len(tokenizer), max_position_embeddings=1024, **SHAPES[shape])
    transformers.MvpForQuestionAnswering(config).eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def questions(limit: int | None) -> list[dict]:
    data = json.loads(XQUAD.read_text(encoding="utf-8"))
    out = [
        {"id": qa["id"], "question": qa["question"], "context": paragraph["context"]}
        for article in data["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]
    ]
    return out[:limit] if limit else out


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def reference_pipeline(directory: Path, batch_size: int, device: str):  # type: ignore[no-untyped-def]
    import transformers

    model = transformers.MvpForQuestionAnswering.from_pretrained(directory)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    pipe = transformers.pipeline("question-answering", model=model, tokenizer=tokenizer, device=device,
                                 batch_size=batch_size)

    def run(records: list[dict]) -> list[dict]:
        out = pipe(question=[r["question"] for r in records], context=[r["context"] for r in records])
        return out if isinstance(out, list) else [out]

    return run


def our_answerer(  # type: ignore[no-untyped-def]
    directory: Path, batch_size: int, device: str, dtype: str, split: dict, quantize: str | None = None
):
    from xcli_models.tasks.common import length_batches, load
    from xcli_models.tasks.qa import QuestionAnswerer

    task = load(directory, device=device, dtype=dtype)
    if quantize == "int8":
        from xcli_models.quantize import quantize_dynamic_int8

        quantize_dynamic_int8(task.model)
    answerer = QuestionAnswerer(task.model, task.tokenizer)

    def run(records: list[dict]) -> list[dict]:
        start = time.perf_counter()
        items = [answerer.prepare(r["question"], r["context"]) for r in records]
        prepared = time.perf_counter()
        out = answerer.answer(items, batch_size)
        split["tokenise"] = split.get("tokenise", 0.0) + prepared - start
        split["model and decoding"] = split.get("model and decoding", 0.0) + time.perf_counter() - prepared
        lengths = [len(w.input_ids) for item in items for w in item.windows]
        split["windows"] = split.get("windows", 0) + len(lengths)
        split["real"] = split.get("real", 0) + sum(lengths)
        split["padded"] = split.get("padded", 0) + sum(
            max(lengths[i] for i in b) * len(b) for b in length_batches(lengths, batch_size)
        )
        return out

    return run


def interleaved(runners: dict, records: list[dict], chunk: int) -> tuple[dict, dict]:
    """Each runner on each chunk in turn, so that all see the same machine load; outputs and seconds."""
    outputs: dict = {name: [] for name in runners}
    seconds: dict = {name: 0.0 for name in runners}
    for i in range(0, len(records), chunk):
        for name, run in runners.items():
            out, took = timed(run, records[i : i + chunk])
            outputs[name].extend(out)
            seconds[name] += took
    return outputs, seconds


def command(directory: Path, records: list[dict], batch_size: int, device: str, dtype: str, threads: int | None,
            quantize: str | None = None):
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "questions.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        target = Path(scratch) / "answers.jsonl"
        args = [sys.executable, "-m", "xcli", "qa", "-m", str(directory), "-i", str(source), "-b", str(batch_size),
                "--device", device, "--dtype", dtype, "-o", str(target), "-q"]
        if quantize:
            args += ["--quantize", quantize]
        if threads:
            args += ["--threads", str(threads)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        _, seconds = timed(subprocess.run, args, check=True, env=env, cwd=ROOT)
        rows = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    return rows, seconds


def compare(name: str, mine: list[dict], theirs: list[dict], exact: bool = True) -> None:
    assert len(mine) == len(theirs), f"{name}: {len(mine)} results for {len(theirs)} questions"
    if not exact:  # another dtype: count the answers that stayed the same span
        same = sum((a["start"], a["end"]) == (b["start"], b["end"]) for a, b in zip(mine, theirs))
        print(f"  {name}: {same} of {len(mine)} answers the same span as the reference's")
        return
    worst = 0.0
    for i, (a, b) in enumerate(zip(mine, theirs)):
        if (a["answer"], a["start"], a["end"]) != (b["answer"], b["start"], b["end"]):
            raise SystemExit(f"{name}: question {i}: {a['answer']!r} at {a['start']}:{a['end']} vs the "
                             f"reference's {b['answer']!r} at {b['start']}:{b['end']}")
        worst = max(worst, abs(a["score"] - b["score"]))
        if not math.isclose(a["score"], b["score"], rel_tol=1e-4, abs_tol=1e-10):
            raise SystemExit(f"{name}: question {i}: score {a['score']} vs the reference's {b['score']}")
    if worst > ATOL:
        raise SystemExit(f"{name}: scores differ from the reference by up to {worst:.2e} (> {ATOL})")
    print(f"  {name}: {len(mine)} answers identical to the reference (text and offsets), scores within {worst:.1e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--reference-batch-size", type=int, action="append", default=None,
                        help="batch size(s) of the reference pipeline (default: 1 and --batch-size)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32",
                        help="xcli's dtype; other than float32, answers are counted, not required equal")
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="xcli's int8 products (--quantize int8); answers are then counted, not required equal")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="base")
    parser.add_argument("--checkpoint", type=Path, default=None, help="where the random checkpoint is kept")
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--chunk", type=int, default=512,
                        help="questions per turn: each contender answers a chunk in turn, so all see the same load")
    parser.add_argument("--skip-command", action="store_true", help="leave out the end-to-end command run")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or Path(tempfile.gettempdir()) / f"xcli-bench-mvp-{args.shape}-qa"
    if args.rebuild or not (checkpoint / "config.json").exists():
        print(f"building an MVP ({args.shape}-sized) question-answering checkpoint in {checkpoint} ...")
        build(checkpoint, args.shape)
    records = questions(args.limit)
    n = len(records)
    print(f"XQuAD en: {n} questions, batch size {args.batch_size}, device {args.device}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")

    split: dict = {}
    runners = {"xcli (in process)": our_answerer(checkpoint, args.batch_size, args.device, args.dtype, split,
                                                 args.quantize)}
    for size in args.reference_batch_size or sorted({1, args.batch_size}):
        runners[f"reference pipeline, batch size {size}"] = reference_pipeline(checkpoint, size, args.device)
    for run in runners.values():
        run(records[:4])  # warm-up
    split.clear()
    outputs, seconds = interleaved(runners, records, args.chunk)
    mine = outputs.pop("xcli (in process)")
    exact = args.dtype == "float32" and args.quantize is None
    for name, theirs in outputs.items():
        compare(f"xcli (in process) vs {name}", mine, theirs, exact)
    rows = [(name, seconds[name]) for name in outputs] + [("xcli (in process)", seconds["xcli (in process)"])]
    t_ref = min(seconds[name] for name in outputs)
    if not args.skip_command:
        cli, t_cli = command(checkpoint, records, args.batch_size, args.device, args.dtype, args.threads,
                             args.quantize)
        compare("xcli qa (command)", cli, theirs, exact)
        rows.append(("xcli qa (command, end to end)", t_cli))

    print(f"\n  {'':38} {'seconds':>8} {'questions/s':>12} {'vs best reference':>18}")
    for name, seconds in rows:
        print(f"  {name:38} {seconds:8.2f} {n / seconds:12.2f} {t_ref / seconds:17.2f}x")
    print(f"\n  xcli in process: tokenising and windows {split['tokenise']:.2f} s, model and decoding "
          f"{split['model and decoding']:.2f} s; {split['windows']} windows, length-sorted batches add "
          f"{split['padded'] / split['real'] - 1:.1%} padding tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
