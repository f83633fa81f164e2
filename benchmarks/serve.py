"""``xcli serve``: one-liners cold and warm, concurrent clients, and sharding, in one run.

    python benchmarks/serve.py [--calls 50] [--records 10000] [--skip-shards]

1. **One-record ``xcli classify``** (the built-in sentiment model), ``--calls`` times each: cold
   (``--no-server``: torch start-up and a model load every time) and warm (a running ``xcli
   serve`` on a Unix socket); wall time p50 and p95 of the whole command, as a shell runs it.
   Every output must be the same bytes.
2. **Concurrent clients**: 1, 4 and 8 threads, each sending one-record ``POST /v1/classify``
   requests as fast as the server answers, for a few seconds; requests per second and the ratio
   to one client, for the built-in model and for a model of XLNet-base's shape, with one sentence
   for all clients and with SST-2 sentences of every length. Rounds share a model call only when
   their inputs have one length (batch invariance: no padding).
3. **Sharding**: ``--records`` SST-2 sentences (the 872 dev sentences repeated) classified by one
   ``xcli classify`` process and by two ``--shard K/2`` processes run by GNU parallel (``xargs -P
   2`` where parallel is missing), merged by ``xcli merge``: wall time and the outputs compared
   byte for byte.

The numbers depend on the machine: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("XCLI_SHARED_DATA", ROOT.parent / "shared" / "data"))
#: the installed entry point beside this python (a shell's `xcli`), else python -m xcli
_SCRIPT = Path(sys.executable).parent / "xcli"
XCLI = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "xcli"]
SENTENCE = "A gripping, beautifully shot film."


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def one_liners(calls: int, env: dict[str, str], extra: list[str]) -> tuple[list[float], set[bytes]]:
    times, outputs = [], set()
    for _ in range(calls):
        start = time.perf_counter()
        done = subprocess.run([*XCLI, "classify", "-q", *extra, SENTENCE], env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
        outputs.add(done.stdout)
    return times, outputs


def start_server(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    log = folder / "serve.log"
    process = subprocess.Popen([*XCLI, "serve", "--socket", str(folder / "serve.sock")], env=env,
                               stderr=open(log, "w"), stdout=subprocess.DEVNULL)
    while "serving on " not in log.read_text():
        if process.poll() is not None:
            raise SystemExit(f"xcli serve failed: {log.read_text()}")
        time.sleep(0.05)
    return process, log.read_text().split("serving on ")[1].split()[0]


def rate(clients: int, seconds: float, request: Callable[[], None]) -> float:
    """Requests per second of ``clients`` threads each sending ``request()`` back to back."""
    counts = [0] * clients
    stop = time.perf_counter() + seconds

    def loop(k: int) -> None:
        while time.perf_counter() < stop:
            request()
            counts[k] += 1

    threads = [threading.Thread(target=loop, args=(k,)) for k in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def base_model(folder: Path) -> Path:
    """A random-weight XLNetForSequenceClassification of xlnet-base-cased's shape (xcli's own classes)."""
    import torch

    import xcli_models

    directory = folder / "xlnet-base-shaped"
    torch.manual_seed(0)
    config = xcli_models.XLNetConfig(vocab_size=32000, d_model=768, n_layer=12, n_head=12, d_inner=3072,
                                     id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    xcli_models.XLNetForSequenceClassification(config).eval().save_pretrained(directory)
    xcli_models.XLNetTokenizer(str(DATA / "tokenizers" / "xlnet" / "spiece.model")).save_pretrained(directory)
    return directory


def concurrency(address: str, seconds: float, models: dict[str, list[str]]) -> dict[str, Any]:
    """Requests/s of 1, 4 and 8 clients, each sending one-record ``POST /v1/classify`` requests, with
    one sentence for all (inputs of one length share model calls) and with SST-2 sentences of
    every length (batch invariance lets only equal lengths share a call)."""
    from xcli.serving import client, wire

    where = wire.parse_address(address)
    lines = (DATA / "datasets" / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    sst2 = [line.split("\t")[0] for line in lines]
    out: dict[str, Any] = {}
    for name, model in models.items():
        for texts in ("one sentence", "SST-2 sentences"):
            pool = [SENTENCE] if texts == "one sentence" else sst2
            counter = iter(range(10**9))

            def request() -> None:
                text = pool[next(counter) % len(pool)]
                conn = client.connection(where, 120)
                conn.request("POST", "/v1/classify", body=json.dumps({"args": ["-q", *model, text]}))
                response = conn.getresponse()
                assert response.status == 200 and b'"label"' in response.read()
                conn.close()

            request()  # the server loads the model
            rates = {n: rate(n, seconds, request) for n in (1, 4, 8)}
            out[f"{name}, {texts}"] = {f"{n}_clients": round(r, 1) for n, r in rates.items()} | {
                "8_vs_1": round(rates[8] / rates[1], 2)}
    return out


def shards(records: int, folder: Path, env: dict[str, str]) -> dict[str, Any]:
    lines = (DATA / "datasets" / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts = [line.split("\t")[0] for line in lines]
    source = folder / "sentences.txt"
    source.write_text("".join(texts[i % len(texts)] + "\n" for i in range(records)), encoding="utf-8")
    common = "classify -q --no-server --threads 1 -i sentences.txt"
    start = time.perf_counter()
    subprocess.run(f"{' '.join(XCLI)} {common} > one.jsonl", shell=True, cwd=folder, env=env, check=True)
    one = time.perf_counter() - start
    launcher = ("parallel -j 2 '{xcli} {common} --shard {{}}/2 > part{{}}.jsonl' ::: 0 1"
                if shutil.which("parallel") else "printf '0\\n1\\n' | xargs -P 2 -I{{}} sh -c "
                "'{xcli} {common} --shard {{}}/2 > part{{}}.jsonl'")
    start = time.perf_counter()
    subprocess.run(launcher.format(xcli=" ".join(XCLI), common=common) + f" && {' '.join(XCLI)} merge part0.jsonl "
                   "part1.jsonl > merged.jsonl", shell=True, cwd=folder, env=env, check=True)
    two = time.perf_counter() - start
    same = (folder / "one.jsonl").read_bytes() == (folder / "merged.jsonl").read_bytes()
    return {"records": records, "one_process_s": one, "two_shards_s": two, "speed-up": one / two,
            "identical": same, "launcher": "GNU parallel" if shutil.which("parallel") else "xargs -P 2"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0, help="per concurrency level")
    parser.add_argument("--records", type=int, default=10000)
    parser.add_argument("--skip-shards", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="xcli-serve-bench-"))
    # as an installed xcli runs: its bytecode cached (pip compiles it; PYTHONDONTWRITEBYTECODE would
    # make every run compile xcli's modules again, ~20 ms), and no default socket: cold means cold
    env = {k: v for k, v in os.environ.items() if k not in ("XCLI_SERVER", "PYTHONDONTWRITEBYTECODE")}
    env["XDG_RUNTIME_DIR"] = str(folder)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "xcli")], env=env, check=True)
    cold, cold_out = one_liners(args.calls, env, ["--no-server"])
    process, address = start_server(folder, env)
    try:
        warm_env = {**env, "XCLI_SERVER": address}
        one_liners(3, warm_env, [])  # the server loads the model
        warm, warm_out = one_liners(args.calls, warm_env, [])
        clients = concurrency(address, args.seconds, {
            "xcli/sentiment (built in, XLNet d128)": [],
            "XLNet-base shape (random weights)": ["-m", str(base_model(folder))],
        })
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    assert cold_out == warm_out and len(cold_out) == 1, "warm and cold outputs differ"
    report: dict[str, Any] = {
        "one_record_classify": {
            "cold_p50_s": statistics.median(cold), "cold_p95_s": percentile(cold, 95),
            "warm_p50_s": statistics.median(warm), "warm_p95_s": percentile(warm, 95),
            "speed-up_p50": statistics.median(cold) / statistics.median(warm), "calls": args.calls,
            "identical": True,
        },
        "requests_per_s": clients,
    }
    if not args.skip_shards:
        report["shards"] = shards(args.records, folder, env)
    print(json.dumps(report, indent=2))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
