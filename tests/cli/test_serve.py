"""``xcli serve`` and the command line's transparent use of it.

One server process (``xcli serve --socket``) serves the module. Each command runs in process
through CliRunner twice, with ``XCLI_SERVER`` naming the server and with ``--no-server``: stdout,
stderr and the exit status must be the same bytes, for every record command and many options
(formats, --keep, bad records, --shard, sampling with a seed, --stream). Then the faults: a server
that is gone, hung or cut off mid-answer (the command falls back to in-process with one warning,
losing and repeating nothing), a model that cannot load, malformed requests, a checkpoint whose
files change, the memory budget, SIGTERM with work in flight, and the security defaults (socket
and folder modes, another user refused, non-loopback addresses refused without a token, 401
without the token). The HTTP endpoints are checked as documented in the README.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from conftest import shared_path

from xcli.app import app
from xcli.serving import client, wire
from xcli.serving.engine import Batcher, Cancelled

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


class Served:
    def __init__(self, process: subprocess.Popen, address: wire.Address, log: Path) -> None:
        self.process, self.address, self.log = process, address, log

    @property
    def env(self) -> dict[str, str]:
        return {"XCLI_SERVER": str(self.address)}

    def get(self, path: str) -> Any:
        conn = client.connection(self.address, 10)
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = client.connection(self.address, 60)
        try:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            conn.request("POST", path, body=data, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def start_server(folder: Path, *args: str, env: dict[str, str] | None = None) -> Served:
    """``xcli serve`` in a process of its own, once it answers."""
    log = folder / "serve.log"
    where = [] if "--host" in args else ["--socket", str(folder / "serve.sock")]
    process = subprocess.Popen(
        [sys.executable, "-m", "xcli", "serve", "--threads", "1", *where, *args], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=open(log, "w"), env={**os.environ, **(env or {})},
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        said = log.read_text()
        if "serving on " in said:
            address = wire.parse_address(said.split("serving on ")[1].split()[0])
            return Served(process, address, log)
        if process.poll() is not None:
            raise AssertionError(f"xcli serve exited {process.returncode}: {said}")
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"xcli serve did not start: {log.read_text()}")


def stop(served: Served) -> int:
    served.process.send_signal(signal.SIGTERM)
    return served.process.wait(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    served = start_server(tmp_path_factory.mktemp("server"))
    yield served
    assert stop(served) == 0
    assert not Path(served.address.path).exists()  # the socket is removed


@pytest.fixture(autouse=True)
def no_default_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default socket is looked for in an empty folder: only XCLI_SERVER picks a server."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.delenv("XCLI_SERVER", raising=False)
    monkeypatch.delenv("XCLI_MODEL", raising=False)


def invoke(args: list[str], env: dict[str, str] | None = None, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, args, input=input, env=env)
    return result.exit_code, result.stdout, result.stderr


def same_either_way(served: Served, args: list[str], input: str | None = None) -> tuple[int, str, str]:
    """The command's (exit status, stdout, stderr) through the server, equal to --no-server's."""
    rounds = served.get("/health")["rounds"]
    through = invoke(args, served.env, input)
    alone = invoke([*args, "--no-server"], served.env, input)
    assert through == alone
    assert served.get("/health")["rounds"] > rounds, "the server ran none of it"
    return through


SENTENCES = ["A gripping, funny film.", "Dull.", "", "It is neither good nor bad, and far too long for its story.",
             "Un film magnifique.", "\u00e9t\u00e9 \U0001F600"]
RECORDS = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(SENTENCES)) + "not json\n{\"id\": 9}\n"


@pytest.mark.parametrize("args", [
    ["classify"], ["classify", "-O", "text"], ["classify", "-O", "tsv", "--keep", "id"], ["classify", "-b", "2"],
    ["classify", "--shard", "1/3"], ["classify", "--top-k", "1", "--function", "sigmoid"],
    ["classify", "--quantize", "int8"], ["classify", "--dtype", "bfloat16"],
    ["fill-mask", "--top-k", "3"], ["score"], ["score", "-O", "text"],
    ["tokenize", "-m", "xcli/sentiment", "--offsets"],
], ids=lambda a: " ".join(a))
def test_record_commands_print_the_same_bytes_through_the_server(server: Served, args: list[str]) -> None:
    records = RECORDS.replace("film", "<mask>") if args[0] == "fill-mask" else RECORDS
    status, out, _ = same_either_way(server, args, records)
    assert status == 4 and len(out.splitlines()) == len(SENTENCES) + 2 + (1 if "tsv" in args else 0) or "--shard" in args


@pytest.mark.parametrize("args", [
    ["--max-new-tokens", "8"], ["--max-new-tokens", "8", "--sample", "--seed", "3", "-n", "2"],
    ["--max-new-tokens", "6", "--num-beams", "3", "--scores"], ["--max-new-tokens", "8", "--stream"],
    ["--max-new-tokens", "5", "-O", "tsv", "-b", "2"], ["--max-new-tokens", "8", "--quantize", "int8"],
], ids=lambda a: " ".join(a))
def test_generate_prints_the_same_bytes_through_the_server(server: Served, args: list[str]) -> None:
    prompts = "To be, or not\nWhat light\nO Romeo\n"
    status, out, _ = same_either_way(server, ["generate", *args], prompts)
    assert status == 0 and out


def test_qa_prints_the_same_bytes_through_the_server(server: Served, tmp_path: Path) -> None:
    from task_fixtures import build_native

    model = build_native(tmp_path / "qa", "MvpForQuestionAnswering")
    records = "".join(json.dumps({"question": q, "context": c}) + "\n" for q, c in [
        ("Who sat?", "The cat sat on the mat."), ("Where?", "In Paris, the capital of France."), ("", "x")])
    same_either_way(server, ["qa", "-m", str(model), "--top-k", "2"], records)


def test_evaluate_prints_the_same_bytes_through_the_server(server: Served, tmp_path: Path) -> None:
    lines = shared_path("datasets", "sst2", "dev.tsv").read_text(encoding="utf-8").splitlines()[1:41]
    records = "".join(json.dumps({"text": t, "label": ["negative", "positive"][int(y)]}) + "\n"
                      for t, y in (line.split("\t") for line in lines)) + "not json\n"
    args = ["evaluate", "-m", "xcli/sentiment", "-i", "-", "--predictions", str(tmp_path / "p.jsonl"), "--force"]
    through = invoke(args, server.env, records)
    served_predictions = (tmp_path / "p.jsonl").read_bytes()
    assert through == invoke([*args, "--no-server"], server.env, records)
    assert (tmp_path / "p.jsonl").read_bytes() == served_predictions and len(served_predictions.splitlines()) == 41
    assert through[0] == 4 and json.loads(through[1])["records"] == 40
    status, body = server.post("/v1/evaluate", {"args": ["-m", "xcli/sentiment", "-i", "-"],
                                                "records": [json.loads(r) for r in records.splitlines()[:-1]]})
    assert status == 200 and json.loads(body) == {**json.loads(through[1]), "skipped": 0}


def test_text_arguments_and_the_built_in_note(server: Served) -> None:
    status, out, err = same_either_way(server, ["classify", "a gripping film", "a dull one"])
    assert status == 0 and len(out.splitlines()) == 2
    assert err.count("using the built-in model xcli/sentiment") == 1
    assert same_either_way(server, ["classify", "-q", "a gripping film"])[2] == ""


def test_concurrent_clients_share_batches_and_get_their_own_lines(server: Served) -> None:
    texts = [f"{w} film, {'really ' * (i % 3)}{w}." for i, w in enumerate(["good", "bad", "fine", "odd"] * 4)]
    alone = {t: invoke(["classify", "--no-server", t])[1] for t in texts}
    outputs: dict[str, str] = {}

    def one(text: str) -> None:
        # the protocol the command line speaks, from threads (CliRunner is not thread-safe)
        remote = client.Remote(server.address, lambda piece: None)
        remote.request["argv"] = ["classify", text]
        remote.open()
        from xcli.io import Record

        result = remote.process([Record(0, {"text": text}, "argument 1")])[0]
        outputs[text] = json.dumps(result, ensure_ascii=False) + "\n"

    threads = [threading.Thread(target=one, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outputs == alone


def test_the_batcher_puts_waiting_rounds_in_one_call() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()

    def process(items: list[int]) -> list[int]:
        calls.append(list(items))
        if len(calls) == 1:
            gate.wait(5)  # the first call holds the model while the others queue
        if -1 in items:
            raise ValueError("a bad item")
        return [i * 10 for i in items]

    batcher = Batcher(process, limit=100)
    results: dict[int, Any] = {}

    def run(k: int) -> None:
        try:
            results[k] = batcher.run([k, k + 100])
        except ValueError as exc:
            results[k] = str(exc)

    first = threading.Thread(target=run, args=(0,))
    first.start()
    while not calls:
        time.sleep(0.01)
    others = [threading.Thread(target=run, args=(k,)) for k in (1, 2, 3)]
    for thread in others:
        thread.start()
    time.sleep(0.3)
    gate.set()
    for thread in [first, *others]:
        thread.join()
    assert results == {k: [k * 10, (k + 100) * 10] for k in range(4)}
    assert len(calls) == 2 and sorted(calls[1]) == [1, 2, 3, 101, 102, 103]  # three rounds, one call
    with pytest.raises(ValueError, match="a bad item"):
        batcher.run([-1, 5])
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(Cancelled):  # a round whose client went away is not run
        batcher.run([7], cancelled)


# ---------------------------------------------------------------------- faults
def test_a_server_that_is_gone_means_in_process_with_one_warning(tmp_path: Path) -> None:
    env = {"XCLI_SERVER": f"unix:{tmp_path / 'nothing.sock'}"}
    status, out, err = invoke(["classify", "a fine film", "a dull film"], env)
    assert status == 0 and out == invoke(["classify", "-q", "--no-server", "a fine film", "a dull film"])[1]
    assert err.count("warning") == 1 and "its socket is gone: running in process" in err


class FakeServer:
    """A socket that answers the first exchange (the run's opening) as a server would, then
    hangs (says nothing), or with ``pieces`` sends them as --stream text and closes mid-answer."""

    def __init__(self, path: Path, pieces: list[str] | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.pieces = pieces
        self.open: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        exchanges = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.open.append(conn)
            _read_request(conn)
            exchanges += 1
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n"
            if exchanges == 1:
                conn.sendall(head + b'{"opened": {"batch_size": 1}}\n{"done": true}\n')
                conn.close()
            elif self.pieces is not None:
                events = [{"piece": None}, *({"piece": p} for p in self.pieces)]
                conn.sendall(head + b"".join(json.dumps(e).encode() + b"\n" for e in events))
                conn.close()
            # else: keep the connection open, say nothing

    def close(self) -> None:
        self.sock.close()
        for conn in self.open:
            conn.close()


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += conn.recv(65536)


def test_a_hung_server_times_out_into_in_process(tmp_path: Path) -> None:
    fake = FakeServer(tmp_path / "hung.sock")
    try:
        env = {"XCLI_SERVER": f"unix:{tmp_path / 'hung.sock'}", "XCLI_SERVER_TIMEOUT": "1"}
        status, out, err = invoke(["classify", "a fine film", "a dull film"], env)
    finally:
        fake.close()
    assert status == 0 and out == invoke(["classify", "-q", "--no-server", "a fine film", "a dull film"])[1]
    assert err.count("warning") == 1 and "stopped answering (no answer for 1 s)" in err


def test_a_stream_cut_off_mid_text_goes_on_in_process_without_repeating(tmp_path: Path) -> None:
    args = ["generate", "--stream", "--max-new-tokens", "8", "To be"]
    alone = invoke([*args, "--no-server"])
    words = alone[1].split(" ")
    assert len(words) > 3
    fake = FakeServer(tmp_path / "cut.sock", [words[0], " " + words[1], " " + words[2][:2]])  # cut mid-word
    try:
        status, out, err = invoke(args, {"XCLI_SERVER": f"unix:{tmp_path / 'cut.sock'}"})
    finally:
        fake.close()
    assert (status, out) == alone[:2]
    assert err.count("warning") == 1 and "its answer was cut off" in err


def test_a_model_that_cannot_load_fails_only_its_own_run(server: Served, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "xlnet", "architectures": ["XLNetForSequenceClassification"]')
    through = invoke(["classify", "-m", str(broken), "hi"], server.env)
    assert through == invoke(["classify", "-m", str(broken), "hi", "--no-server"])
    assert through[0] == 1 and "cannot load the checkpoint" in through[2]
    assert invoke(["classify", "-q", "fine"], server.env)[0] == 0  # the server goes on
    status, body = server.post("/v1/classify", {"args": ["-m", str(broken), "hi"]})
    assert status == 500 and json.loads(body)["error"]["exit_code"] == 1


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"argv": []}', b'{"argv": ["train"]}',
                                  b'{"argv": ["classify"], "records": [1]}', b'{"argv": ["classify"], "cwd": "rel"}'])
def test_malformed_requests_get_a_json_error_and_the_server_goes_on(server: Served, body: bytes) -> None:
    status, answer = server.post("/v1/run", body)
    assert status == 400 and json.loads(answer)["error"]["message"]
    assert server.get("/health")["status"] == "ok"


def test_a_checkpoint_whose_files_change_loads_again(server: Served, tmp_path: Path) -> None:
    from task_fixtures import build_native

    model = tmp_path / "m"
    build_native(model, "XLNetForSequenceClassification", seed=1)
    first = invoke(["classify", "-m", str(model), "a fine film"], server.env)
    assert first == invoke(["classify", "-m", str(model), "a fine film", "--no-server"])
    time.sleep(0.05)
    build_native(model, "XLNetForSequenceClassification", seed=2)
    second = invoke(["classify", "-m", str(model), "a fine film"], server.env)
    assert second == invoke(["classify", "-m", str(model), "a fine film", "--no-server"])
    assert second[1] != first[1]


def test_past_max_memory_the_least_recently_used_model_is_unloaded(tmp_path: Path) -> None:
    served = start_server(tmp_path, "--max-memory", "1")
    try:
        invoke(["classify", "-q", "fine"], served.env)
        assert [Path(m["path"]).name for m in served.get("/health")["models"]] == ["sentiment"]
        invoke(["score", "-q", "To be"], served.env)
        assert [Path(m["path"]).name for m in served.get("/health")["models"]] == ["shakespeare"]
        assert invoke(["classify", "-q", "fine"], served.env) == invoke(["classify", "-q", "fine", "--no-server"])
    finally:
        assert stop(served) == 0


def test_sigterm_finishes_the_work_in_flight(tmp_path: Path) -> None:
    served = start_server(tmp_path)
    args = [sys.executable, "-m", "xcli", "generate", "-q", "--max-new-tokens", "60", "--min-new-tokens", "60",
            "To be", "What light"]
    work = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **served.env})
    deadline = time.time() + 60
    while served.get("/health")["rounds"] == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert stop(served) == 0
    out, err = work.communicate(timeout=120)
    assert work.returncode == 0 and len(out.splitlines()) == 2, err
    assert b"warning" not in err  # answered by the server, not by a fallback
    alone = subprocess.run([*args, "--no-server"], cwd=ROOT, capture_output=True)
    assert out == alone.stdout


def test_a_client_that_goes_away_stops_its_stream(server: Served) -> None:
    before = server.get("/health")["cancelled"]
    body = wire.dumps({"argv": ["generate", "--stream", "--max-new-tokens", "400", "--min-new-tokens", "400"],
                       "cwd": str(ROOT), "env": {}, "records": [{"index": 0, "where": "line 1", "line": 1,
                                                                  "data": {"text": "To be"}}]})
    conn = client.connection(server.address, 60)
    conn.request("POST", "/v1/run", body=body)
    response = conn.getresponse()
    while b'"piece": "' not in response.readline().replace(b":", b": "):
        pass
    conn.close()  # gone mid-stream
    deadline = time.time() + 60
    while server.get("/health")["cancelled"] == before and time.time() < deadline:
        time.sleep(0.1)
    assert server.get("/health")["cancelled"] == before + 1


# ---------------------------------------------------------------------- security
def test_the_default_socket_is_its_owners_only(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    log = tmp_path / "default.log"
    process = subprocess.Popen([sys.executable, "-m", "xcli", "serve", "--threads", "1"], cwd=ROOT,
                               stderr=open(log, "w"), env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    try:
        path = runtime / f"xcli-{os.getuid()}" / "serve.sock"
        deadline = time.time() + 90
        while "serving on" not in log.read_text() and time.time() < deadline and process.poll() is None:
            time.sleep(0.1)
        assert f"serving on unix:{path}" in log.read_text()
        assert (path.parent.stat().st_mode & 0o777, path.stat().st_mode & 0o777) == (0o700, 0o600)
        # the command line finds it without XCLI_SERVER
        env = {"XDG_RUNTIME_DIR": str(runtime)}
        assert invoke(["classify", "-q", "fine"], env) == invoke(["classify", "-q", "fine", "--no-server"], env)
        assert Served(process, wire.Address(path=str(path)), log).get("/health")["rounds"] == 1
        if os.getuid() == 0:  # another user cannot connect
            assert _connect_as(65534, path) == "PermissionError"
            assert _connect_as(0, path) == "connected"
        # a second server refuses the socket that answers
        again = subprocess.run([sys.executable, "-m", "xcli", "serve"], cwd=ROOT, capture_output=True, text=True,
                               env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)}, timeout=120)
        assert again.returncode == 2 and "a server already listens" in again.stderr
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def _connect_as(uid: int, path: Path) -> str:
    """Try to connect to ``path`` from a child process running as ``uid``."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        said = b"connected"
        try:
            os.setuid(uid)
            socket.socket(socket.AF_UNIX).connect(str(path))
        except OSError as exc:
            said = type(exc).__name__.encode()
        os.write(write, said)
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read, "rb") as pipe:
        return pipe.read().decode()


def test_a_socket_folder_open_to_others_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / f"xcli-{os.getuid()}"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    result = subprocess.run([sys.executable, "-m", "xcli", "serve"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}, timeout=120)
    assert result.returncode == 2 and "is open to other users" in result.stderr
    # and the command line does not talk to a socket there
    (folder / "serve.sock").touch()
    assert client.find_server() is None


def test_a_non_loopback_address_needs_allow_remote_and_a_token(tmp_path: Path) -> None:
    for extra in ([], ["--allow-remote"]):
        result = subprocess.run([sys.executable, "-m", "xcli", "serve", "--host", "0.0.0.0", *extra], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and "not a loopback address" in result.stderr
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token-0123456789\n")
    token_file.chmod(0o644)
    result = subprocess.run([sys.executable, "-m", "xcli", "serve", "--host", "0.0.0.0", "--allow-remote",
                             "--token-file", str(token_file)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "readable by others" in result.stderr
    token_file.chmod(0o600)
    served = start_server(tmp_path, "--host", "0.0.0.0", "--port", "0", "--allow-remote", "--token-file",
                          str(token_file))
    try:
        local = wire.Address(host="127.0.0.1", port=served.address.port)
        served.address = local
        status, body = served.post("/v1/classify", {"args": ["fine"]})
        assert status == 401 and json.loads(body)["error"]["type"] == "unauthorized"
        status, _ = served.post("/v1/classify", {"args": ["fine"]}, {"Authorization": "Bearer wrong"})
        assert status == 401
        status, body = served.post("/v1/classify", {"args": ["-q", "fine"]},
                                   {"Authorization": "Bearer s3cret-token-0123456789"})
        assert status == 200 and body.decode() == invoke(["classify", "-q", "fine", "--no-server"])[1]
        env = {"XCLI_SERVER": f"http://127.0.0.1:{local.port}", "XCLI_SERVER_TOKEN_FILE": str(token_file)}
        assert invoke(["classify", "-q", "fine"], env) == invoke(["classify", "-q", "fine", "--no-server"])
        assert served.get("/health") == {"error": {"type": "unauthorized",
                                                   "message": "a bearer token is needed (Authorization: Bearer TOKEN)"}}
    finally:
        assert stop(served) == 0


# ---------------------------------------------------------------------- HTTP API
def test_the_http_endpoints(server: Served) -> None:
    status, body = server.post("/v1/classify", {"args": ["-O", "text"], "records": ["a fine film", {"text": "dull"}]})
    assert status == 200 and body.decode() == invoke(["classify", "-q", "-O", "text", "--no-server", "a fine film",
                                                      "dull"])[1]
    status, body = server.post("/v1/tokenize", {"args": ["-m", "xcli/sentiment", "hello world"]})
    assert status == 200 and json.loads(body)["tokens"]
    status, body = server.post("/v1/train", {"args": []})
    assert status == 404
    models = server.get("/v1/models")
    assert models["object"] == "list"
    by_id = {m["id"]: m for m in models["data"]}
    assert by_id["xcli/sentiment"]["loaded"] and "classify" in by_id["xcli/sentiment"]["commands"]
    status, body = server.post("/v1/completions", {"prompt": ["To be", "O Romeo"], "max_tokens": 6, "temperature": 0})
    answer = json.loads(body)
    expected = [json.loads(line)["generated_text"] for line in invoke(
        ["generate", "-q", "--no-server", "--new-text", "--max-new-tokens", "6", "To be", "O Romeo"])[1].splitlines()]
    assert status == 200 and answer["object"] == "text_completion"
    assert [c["text"] for c in answer["choices"]] == expected and [c["index"] for c in answer["choices"]] == [0, 1]
    status, body = server.post("/v1/completions", {"prompt": "To be", "max_tokens": 6, "temperature": 0,
                                                   "stream": True})
    events = [line[6:] for line in body.decode().split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["text"] for e in events[:-1]) == expected[0]
    for bad in ({"prompt": 3}, {"prompt": "x", "max_tokens": 0}, {"prompt": "x", "stream": True, "n": 2}, []):
        status, body = server.post("/v1/completions", bad)
        assert status == 400 and json.loads(body)["error"]["message"]


def test_memory_stays_bounded_under_many_requests(server: Served) -> None:
    status_file = Path(f"/proc/{server.process.pid}/status")
    if not status_file.exists():
        pytest.skip("no /proc here to read the server's memory from")

    def rss_kib() -> int:
        line = next(l for l in status_file.read_text().splitlines() if l.startswith("VmRSS:"))
        return int(line.split()[1])

    def requests(n: int) -> None:
        for i in range(n):
            status, _ = server.post("/v1/classify", {"args": ["-q", f"film number {i} of {n}"]})
            assert status == 200

    requests(100)
    before = rss_kib()
    requests(400)
    assert rss_kib() - before < 32 * 1024  # KiB: no growth per request


def test_the_client_side_never_imports_torch(server: Served) -> None:
    code = ("import sys\nfrom xcli.__main__ import main\ntry:\n    main(['classify', '-q', 'fine'])\n"
            "except SystemExit as e:\n    print('torch' in sys.modules, e.code, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, **server.env}, timeout=120)
    assert result.stderr.strip().splitlines()[-1] == "False 0" and '"label"' in result.stdout


def test_an_address_that_is_not_one_is_a_usage_error() -> None:
    status, _, err = invoke(["classify", "fine"], {"XCLI_SERVER": "tcp://x"})
    assert status == 2 and "expected unix:PATH or http://HOST:PORT" in err


def test_sst2_sentences_through_the_server(server: Served) -> None:
    lines = shared_path("datasets", "sst2", "dev.tsv").read_text(encoding="utf-8").splitlines()[1:201]
    records = "".join(json.dumps({"text": line.split("\t")[0]}) + "\n" for line in lines)
    status, out, _ = same_either_way(server, ["classify", "-q", "-b", "16"], records)
    assert status == 0 and len(out.splitlines()) == 200


def test_sizes_and_addresses_the_server_takes() -> None:
    from xcli.errors import UsageError
    from xcli.serving import listen

    assert listen.parse_memory("4G") == 4 * 1024**3 and listen.parse_memory("512MiB") == 512 * 1024**2
    assert listen.parse_memory("1.5gb") == int(1.5 * 1024**3) and listen.parse_memory("1000") == 1000
    with pytest.raises(UsageError):
        listen.parse_memory("lots")
    assert listen.default_memory() > 0
    assert all(listen.is_loopback(h) for h in ("localhost", "127.0.0.1", "127.1.2.3", "::1", "[::1]"))
    assert not any(listen.is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "example.org", "::"))
    assert wire.parse_address("unix:/tmp/s") == wire.Address(path="/tmp/s")
    assert wire.parse_address("http://[::1]:8765/") == wire.Address(host="::1", port=8765)
    for bad in ("tcp://x", "http://host", "http://host:0", "unix:"):
        with pytest.raises(ValueError):
            wire.parse_address(bad)
