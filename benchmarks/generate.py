"""Generation speed: xcli_models against the reference's ``generate``, same settings, same machine.

    python benchmarks/generate.py                       # everything below (slow: builds ~7 GB of checkpoints)
    python benchmarks/generate.py --models xglm --batch 1 --strategies greedy     # the headline case
    python benchmarks/generate.py --size tiny           # a quick run of the whole matrix on small shapes
    python benchmarks/generate.py --models xglm,mvp --batch 1,8 --strategies greedy \
        --libraries xcli,xcli-modules,xcli-int8,xcli-int8-modules    # decode steps in one C call, or as modules

Models (random float32 weights in the published shapes, built once with transformers and kept in
``--cache``): ``xglm`` (XGLM-564M: d_model 1024, 24 layers, 16 heads, ffn 4096, vocab 256008),
``mvp`` (MVP-large: 12+12 layers, d_model 1024, vocab 50267), ``xlnet`` (XLNet-base: 12 layers,
d_model 768, vocab 32000), ``xlm-prophetnet`` (XLM-ProphetNet-large: 12+12 layers, hidden 1024,
vocab 250012, ngram 2; the reference generates with ProphetNetForConditionalGeneration, the same
architecture, since its XLMProphetNet classes cannot).

Each library runs in its own subprocess (clean peak memory, no shared caches; with ``--rounds``
the libraries take turns, and each case keeps its best round, which evens out the load of a
shared machine), over the same
prompts (seeded random ids, ``--prompt-length`` tokens, rows of a batch of different lengths,
left-padded for decoder-only models) and settings: exactly ``--new-tokens`` new tokens
(``min_new_tokens`` = ``max_new_tokens``), greedy or 4-beam search. Reported per case:

* time to first token: a ``max_new_tokens=1`` call (prefill and the first token);
* new tokens/s: batch x new tokens over the wall time of the whole call;
* peak RSS of the process during the call (the kernel's high-water mark, reset before it), and
  how much that exceeds what was resident before the call;
* whether both libraries produced identical sequences (they must);
* CPU tokens/s: the same tokens over the process's CPU time for the call. With ``--threads 1`` this
  is the figure a loaded machine leaves standing (time spent waiting for a core is not counted);
  with more threads it also counts the threads' spinning, so compare wall times there.

For batch-1 greedy the weight-reading ceiling is reported too: the weights one token reads (the
decoder and the LM head; for encoder-decoder models the encoder runs once per prompt) over the
read bandwidth measured on this machine (a single pass over 1 GiB), and what fraction of it
each library reaches.
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

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "xcli-bench-generate"

#: name -> (oracle config class, oracle model class, our class, decoder-only?, config of the full size, tiny size)
MODELS = {
    "xglm": dict(
        config="XGLMConfig", oracle="XGLMForCausalLM", ours="XGLMForCausalLM", causal=True,
        full=dict(vocab_size=256008, d_model=1024, num_layers=24, attention_heads=16, ffn_dim=4096),
        tiny=dict(vocab_size=8000, d_model=128, num_layers=4, attention_heads=4, ffn_dim=512),
    ),
    "mvp": dict(
        config="MvpConfig", oracle="MvpForConditionalGeneration", ours="MvpForConditionalGeneration", causal=False,
        full=dict(vocab_size=50267, d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                  decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096),
        tiny=dict(vocab_size=8000, d_model=128, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                  decoder_attention_heads=4, encoder_ffn_dim=512, decoder_ffn_dim=512),
    ),
    "xlnet": dict(
        config="XLNetConfig", oracle="XLNetLMHeadModel", ours="XLNetLMHeadModel", causal=True,
        full=dict(vocab_size=32000, d_model=768, n_layer=12, n_head=12, d_inner=3072),
        tiny=dict(vocab_size=8000, d_model=128, n_layer=4, n_head=4, d_inner=512),
    ),
    "xlm-prophetnet": dict(
        config="ProphetNetConfig", oracle="ProphetNetForConditionalGeneration",
        ours="XLMProphetNetForConditionalGeneration", causal=False, model_type="xlm-prophetnet",
        full=dict(vocab_size=250012, hidden_size=1024, num_encoder_layers=12, num_decoder_layers=12,
                  num_encoder_attention_heads=16, num_decoder_attention_heads=16, encoder_ffn_dim=4096,
                  decoder_ffn_dim=4096, ngram=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                  decoder_start_token_id=2, max_position_embeddings=512),
        tiny=dict(vocab_size=8000, hidden_size=128, num_encoder_layers=2, num_decoder_layers=2,
                  num_encoder_attention_heads=4, num_decoder_attention_heads=4, encoder_ffn_dim=512,
                  decoder_ffn_dim=512, ngram=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                  decoder_start_token_id=2, max_position_embeddings=512),
    ),
}
STRATEGIES = {"greedy": dict(num_beams=1), "beam4": dict(num_beams=4)}
LIBRARIES = ("transformers", "xcli")
#: more xcli sides (--libraries): ``--quantize int8`` / ``int4`` (int8 or 4-bit weights times bfloat16 inputs)
VARIANTS = ("xcli-int8", "xcli-int4")
#: an xcli side with this suffix runs every decode step's layers as modules (``XCLI_FUSED_DECODE=0``),
#: not as one call of xcli's C kernels: ``xcli-modules``, ``xcli-int8-modules``
MODULES = "-modules"


# ------------------------------------------------------------------ checkpoints
def checkpoint(name: str, size: str, cache: Path) -> Path:
    """The model's directory: ``oracle/`` as transformers saved it, ``xcli/`` the same weights under
    the model_type xcli should read (XLM-ProphetNet), built on first use in a subprocess."""
    root = cache / f"{name}-{size}"
    if not (root / "oracle" / "config.json").exists():
        print(f"building the {size} {name} checkpoint in {root} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, __file__, "--build", name, "--size", size, "--cache", str(cache)], check=True)
    return root


def build(name: str, size: str, cache: Path) -> None:
    import torch
    import transformers

    spec = MODELS[name]
    torch.manual_seed(0)
    model = getattr(transformers, spec["oracle"])(getattr(transformers, spec["config"])(**spec[size]))
    root = cache / f"{name}-{size}"
    model.save_pretrained(root / "oracle")
    ours = root / "xcli"
    ours.mkdir(parents=True, exist_ok=True)
    for file in (root / "oracle").iterdir():
        target = ours / file.name
        if file.name == "config.json" and spec.get("model_type"):
            data = json.loads(file.read_text())
            data["model_type"] = spec["model_type"]
            target.write_text(json.dumps(data, indent=2))
        elif not target.exists():
            os.link(file, target)


# ---------------------------------------------------------------- measurement
class PeakRss:
    """The highest resident set size while the block runs: the kernel's high-water mark (VmHWM),
    reset before the block through /proc/self/clear_refs. (No sampling thread: on a 2-core
    machine one would take a core from the threads of the matrix products and skew the timing.)"""

    def __enter__(self) -> "PeakRss":
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # reset the peak to the current RSS
        self.before = self.peak = rss_mib()
        return self

    def __exit__(self, *exc: object) -> None:
        with open("/proc/self/status") as status:
            hwm = next(line for line in status if line.startswith("VmHWM:"))
        self.peak = max(int(hwm.split()[1]) / 1024, rss_mib())


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def prompts(batch: int, length: int, vocab: int, causal: bool, pad: int):
    import torch

    generator = torch.Generator().manual_seed(1000 + batch)
    lengths = [max(2, length - 2 * (i % 4)) for i in range(batch)]
    ids = torch.full((batch, length), pad, dtype=torch.long)
    mask = torch.zeros(batch, length, dtype=torch.long)
    for row, n in enumerate(lengths):
        tokens = torch.randint(10, min(vocab, 5000), (n,), generator=generator)
        span = slice(length - n, length) if causal else slice(0, n)
        ids[row, span], mask[row, span] = tokens, 1
    return ids, mask


def worker(args: argparse.Namespace) -> None:
    """Runs in the subprocess: load one library's model, run every case, print JSON."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    spec = MODELS[args.model]
    root = Path(args.dir)
    start = time.perf_counter()
    if args.worker.startswith("xcli"):
        import xcli_models
        from xcli_models.layers import fused

        if args.worker.endswith(MODULES):
            os.environ[fused.SWITCH] = "0"
        model = getattr(xcli_models, spec["ours"]).from_pretrained(root / "xcli")
        if args.worker.removesuffix(MODULES) in VARIANTS:
            from xcli_models.quantize import quantize_weight_only

            quantize_weight_only(model, bits=int(args.worker.removesuffix(MODULES).removeprefix("xcli-int")))
    else:
        import transformers

        transformers.logging.set_verbosity_error()
        model = getattr(transformers, spec["oracle"]).from_pretrained(root / "oracle").eval()
    load_s = time.perf_counter() - start
    config = model.config
    pad = config.pad_token_id if config.pad_token_id is not None else 0
    results = []
    for case in json.loads(args.cases):
        ids, mask = prompts(case["batch"], args.prompt_length, config.vocab_size, spec["causal"], pad)
        settings = dict(STRATEGIES[case["strategy"]], attention_mask=mask)

        def run(n: int):
            with torch.inference_mode():
                return model.generate(ids, max_new_tokens=n, min_new_tokens=n, **settings)

        run(2)  # warm-up
        ttft = min(_timed(lambda: run(1))[1] for _ in range(args.repeat))
        times, peaks, cpu = [], [], []
        for _ in range(args.repeat):
            with PeakRss() as memory:
                start_cpu = time.process_time()
                out, seconds = _timed(lambda: run(args.new_tokens))
                cpu.append(time.process_time() - start_cpu)
            times.append(seconds)
            peaks.append((memory.peak, memory.peak - memory.before))
        best = min(times)
        new = out.shape[1] - (ids.shape[1] if spec["causal"] else 1)
        results.append(dict(
            case, seconds=best, ttft=ttft, tokens_per_s=case["batch"] * new / best, new_tokens=new,
            cpu_tokens_per_s=case["batch"] * new / min(cpu),
            peak_rss_mib=max(p for p, _ in peaks), added_rss_mib=max(a for _, a in peaks),
            sequences=out.tolist(),
        ))
    print(json.dumps({
        "library": args.worker, "load_s": load_s, "threads": torch.get_num_threads(),
        "process_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cases": results,
    }))


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def weight_bytes_per_token(directory: Path, name: str) -> int:
    """Bytes of the weights one decode step reads: everything but the encoder (and its embeddings
    are the decoder's too, so they count once)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(directory / "oracle" / "model.safetensors"), "pt") as f:
        for key in f.keys():
            if ".encoder." in key and "embed" not in key and "word_embeddings" not in key:
                continue
            sl = f.get_slice(key)
            n = 1
            for d in sl.get_shape():
                n *= d
            total += n * 4
    return total


def bandwidth_gbs(threads: int | None) -> float:
    """Read bandwidth of this machine: the best of a few passes summing 1 GiB of float32."""
    code = (
        "import torch, time\n"
        f"{'torch.set_num_threads(%d)' % threads if threads else ''}\n"
        "x = torch.ones(2**28)\nbest = 1e9\n"
        "for _ in range(5):\n    t = time.perf_counter(); x.sum(); best = min(best, time.perf_counter() - t)\n"
        "print(2**30 / best / 1e9)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip())


# ------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--batch", default="1,8", help="batch sizes, comma-separated")
    parser.add_argument("--strategies", default="greedy,beam4", help="greedy, beam4")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--prompt-length", type=int, default=16)
    parser.add_argument("--size", choices=("full", "tiny"), default="full")
    parser.add_argument("--threads", type=int, default=None, help="torch threads in both libraries (default: torch's)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per case in a worker (the best counts)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="workers per library, the libraries taking turns (the best counts; evens out load drift)")
    parser.add_argument("--libraries", default=",".join(LIBRARIES), help="comma-separated: "
                        + ", ".join(LIBRARIES + VARIANTS) + f"; an xcli one with {MODULES} after it: decode steps "
                        "as modules, not one call of xcli's kernels")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the checkpoints are kept")
    parser.add_argument("--json", type=Path, help="also write all results here")
    parser.add_argument("--build", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    parser.add_argument("--cases", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        return build(args.build, args.size, args.cache)
    if args.worker:
        return worker(args)

    cases = [dict(batch=int(b), strategy=s) for b in args.batch.split(",") for s in args.strategies.split(",")]
    bandwidth = bandwidth_gbs(args.threads)
    print(f"read bandwidth measured here: {bandwidth:.1f} GB/s "
          f"(threads: {args.threads or 'torch default'}; load average {os.getloadavg()[0]:.1f})")
    report = {"bandwidth_gbs": bandwidth, "models": {}}
    for name in args.models.split(","):
        root = checkpoint(name, args.size, args.cache)
        per_library: dict[str, dict] = {}
        libraries = args.libraries.split(",")
        for round_ in range(args.rounds):
            for library in libraries if round_ % 2 == 0 else libraries[::-1]:
                result = run_worker(args, library, name, root, cases)
                per_library[library] = _best(per_library.get(library), result)
        read = weight_bytes_per_token(root, name)
        report["models"][name] = {"weight_bytes_per_token": read, **per_library}
        _print_model(name, cases, per_library, read, bandwidth)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def run_worker(args: argparse.Namespace, library: str, name: str, root: Path, cases: list[dict]) -> dict:
    command = [sys.executable, __file__, "--worker", library, "--model", name, "--dir", str(root),
               "--cases", json.dumps(cases), "--new-tokens", str(args.new_tokens),
               "--prompt-length", str(args.prompt_length), "--repeat", str(args.repeat)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode:
        sys.exit(f"{library} failed on {name}:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _best(kept: dict | None, new: dict) -> dict:
    """Per case, the fastest of the rounds (time and time to first token), the highest memory."""
    if kept is None:
        return new
    for old, case in zip(kept["cases"], new["cases"]):
        if old["sequences"] != case["sequences"]:
            sys.exit(f"{new['library']}: different sequences in two rounds of the same case")
        if case["seconds"] < old["seconds"]:
            old.update(seconds=case["seconds"], tokens_per_s=case["tokens_per_s"])
        old["ttft"] = min(old["ttft"], case["ttft"])
        old["cpu_tokens_per_s"] = max(old["cpu_tokens_per_s"], case["cpu_tokens_per_s"])
        old["peak_rss_mib"] = max(old["peak_rss_mib"], case["peak_rss_mib"])
        old["added_rss_mib"] = max(old["added_rss_mib"], case["added_rss_mib"])
    return kept


def _print_model(name: str, cases: list[dict], per_library: dict, read: int, bandwidth: float) -> None:
    ceiling = bandwidth * 1e9 / read
    print(f"\n{name}: {read / 1e9:.2f} GB of weights per decode step; batch-1 ceiling {ceiling:.1f} tokens/s")
    print(f"{'batch':>5} {'strategy':>8} {'library':>17} {'TTFT s':>8} {'tok/s':>8} {'vs ref':>7} "
          f"{'of ceil':>7} {'cpu tok/s':>9} {'vs ref':>7} {'peak MiB':>9} {'+MiB':>7} identical")
    for i, case in enumerate(cases):
        rows = {lib: data["cases"][i] for lib, data in per_library.items()}
        reference = rows.get("transformers")
        for lib, row in rows.items():
            same, kind = "-", lib.removesuffix(MODULES)
            if kind == "xcli" and reference is not None:
                same = "yes" if row["sequences"] == reference["sequences"] else "NO"
            elif kind in VARIANTS and "xcli" in rows:  # the share of tokens equal to float32 xcli's
                pairs = [(a, b) for r, q in zip(row["sequences"], rows["xcli"]["sequences"]) for a, b in zip(r, q)]
                same = f"{sum(a == b for a, b in pairs) / len(pairs):.0%} tokens"
            speedup = row["tokens_per_s"] / reference["tokens_per_s"] if reference else float("nan")
            cpu_speedup = row["cpu_tokens_per_s"] / reference["cpu_tokens_per_s"] if reference else float("nan")
            headline = case["batch"] == 1 and case["strategy"] == "greedy"
            of_ceiling = f"{row['tokens_per_s'] / ceiling:.0%}" if headline else ""
            print(f"{case['batch']:>5} {case['strategy']:>8} {lib:>17} {row['ttft']:>8.3f} {row['tokens_per_s']:>8.2f} "
                  f"{speedup:>6.2f}x {of_ceiling:>7} {row['cpu_tokens_per_s']:>9.2f} {cpu_speedup:>6.2f}x "
                  f"{row['peak_rss_mib']:>9.0f} {row['added_rss_mib']:>7.0f} {same}")


if __name__ == "__main__":
    main()
