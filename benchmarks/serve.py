"""``xcli serve``: one-liners cold and warm, concurrent clients, and sharding, in one run.

    python benchmarks/serve.py [--calls 50] [--records 10000] [--skip-shards]

1. **One-record ``xcli classify``** (the built-in sentiment model), ``--calls`` times each: cold
   (``--no-server``: torch start-up and a model load every time) and warm (a running ``xcli
   serve`` on a Unix socket); wall time p50 and p95 of the whole command, as a shell runs it.
   Every output must be the same bytes.
2. **Concurrent clients**: 1, 4 and 8 threads, each sending one-record requests to the server
   as fast as it answers for a few seconds, through ``POST /v1/classify`` (the HTTP API) and
   through the command line's own protocol (``/v1/run``: the open and the round a one-liner
   sends); requests per second and the ratio to one client. Their rounds share batches.
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
XCLI = [shutil.which("xcli") or sys.executable, *([] if shutil.which("xcli") else ["-m", "xcli"])]
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


def concurrency(address: str, seconds: float) -> dict[str, dict[int, float]]:
    from xcli.io import Record
    from xcli.serving import client, wire

    where = wire.parse_address(address)
    expected = subprocess.run([*XCLI, "classify", "-q", "--no-server", SENTENCE], capture_output=True,
                              check=True).stdout

    def http_request() -> None:
        conn = client.connection(where, 30)
        conn.request("POST", "/v1/classify", body=json.dumps({"args": ["-q", SENTENCE]}))
        body = conn.getresponse().read()
        conn.close()
        assert body == expected, body

    def cli_request() -> None:
        remote = client.Remote(where, lambda piece: None)
        remote.request.update(argv=["classify", "-q", SENTENCE], cwd=str(ROOT))
        remote.open()
        result = remote.process([Record(0, {"text": SENTENCE}, "argument 1")])[0]
        assert (json.dumps(result, ensure_ascii=False) + "\n").encode() == expected

    out: dict[str, dict[int, float]] = {}
    for name, request in (("http", http_request), ("cli", cli_request)):
        request()  # warm
        out[name] = {n: rate(n, seconds, request) for n in (1, 4, 8)}
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
    env = {k: v for k, v in os.environ.items() if k != "XCLI_SERVER"}
    env["XDG_RUNTIME_DIR"] = str(folder)  # no default socket: cold means cold
    cold, cold_out = one_liners(args.calls, env, ["--no-server"])
    process, address = start_server(folder, env)
    try:
        warm_env = {**env, "XCLI_SERVER": address}
        one_liners(3, warm_env, [])  # the server loads the model
        warm, warm_out = one_liners(args.calls, warm_env, [])
        clients = concurrency(address, args.seconds)
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
        "requests_per_s": {name: {f"{n}_clients": round(r, 1) for n, r in rates.items()} | {
            "8_vs_1": round(rates[8] / rates[1], 2)} for name, rates in clients.items()},
    }
    if not args.skip_shards:
        report["shards"] = shards(args.records, folder, env)
    print(json.dumps(report, indent=2))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
