"""The command line's side of ``xcli serve``: a record command's model work, done by a server.

:func:`served_job` is what :func:`xcli.record_command.run_record_command` asks first. When a
server is there (``XCLI_SERVER``, else the default socket: :mod:`xcli.serving.wire`), it returns a
:class:`~xcli.record_command.Job` whose rounds the server runs: the command still reads the
records and writes every line itself (same writer, same order, same formats), so its output is
the bytes it would have written alone; the server prepares and processes the records with a warm
model and sends back each record's result and the run's console lines.

Falling back. A server that cannot be reached, answers garbage, stays silent past
``XCLI_SERVER_TIMEOUT`` seconds (default 30; a working server sends a heartbeat every second) or
is cut off mid-answer makes the command say so once and load the model itself; the round that
was in flight runs again in process, so no record is lost or written twice. A ``generate
--stream`` record cut mid-text goes on from where its text stopped. Errors of the run itself
(no such model, a checkpoint that cannot load) are the run's errors, as in process.

Standard library only: this path never imports torch. It does not import ``http.client`` either
(~17 ms, a tenth of a warm one-liner): :func:`events` speaks HTTP/1.0 to the server over a socket
(a request, then the status line, the headers and the body's lines; a chunked body is read too).
``connection()`` (``http.client``) is there for tests and benchmarks.
"""

from __future__ import annotations

import json
import os
import socket
from typing import IO, Any, Callable, Iterator, Sequence

from ..console import console
from ..errors import ServedFailure, UsageError
from ..invocation import MODEL_ENVIRONMENT, current
from . import wire

#: seconds without a byte from the server before it counts as hung
DEFAULT_TIMEOUT = 30.0


class ServerGone(Exception):
    """The server could not be reached, or stopped answering: run in process."""


def find_server() -> wire.Address | None:
    """The server to use: ``XCLI_SERVER``, else the default socket when there is one; else None."""
    named = os.environ.get("XCLI_SERVER", "").strip()
    if named:
        try:
            return wire.parse_address(named)
        except ValueError as exc:
            raise UsageError(str(exc), "unset it, or pass --no-server") from None
    path = wire.default_socket()
    if not os.path.lexists(path):
        return None
    if wire.unsafe_folder(path.parent) is not None:
        return None  # not this user's private folder: never talk to it
    return wire.Address(path=str(path))


def timeout() -> float:
    try:
        return max(0.1, float(os.environ.get("XCLI_SERVER_TIMEOUT", DEFAULT_TIMEOUT)))
    except ValueError:
        return DEFAULT_TIMEOUT


def connection(address: wire.Address, seconds: float) -> Any:
    """An ``http.client`` connection to the server (Unix socket or TCP), for tests and tools."""
    import http.client

    class _Unix(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = _socket(address, seconds)

    if address.is_unix:
        return _Unix("localhost", timeout=seconds)
    return http.client.HTTPConnection(address.host, address.port, timeout=seconds)


def _socket(address: wire.Address, seconds: float) -> socket.socket:
    family, target = ((socket.AF_UNIX, address.path) if address.is_unix
                      else (socket.AF_INET6 if ":" in address.host else socket.AF_INET, (address.host, address.port)))
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(seconds)
    try:
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    return sock


def events(address: wire.Address, path: str, body: bytes) -> Iterator[dict[str, Any]]:
    """POST ``body`` and yield the answer's events (ServerGone for any failure of the exchange)."""
    head = [f"POST {path} HTTP/1.0", "Host: localhost", "Content-Type: application/json",
            f"Content-Length: {len(body)}"]
    secret = wire.token()
    if secret and not address.is_unix:
        head.append(f"Authorization: Bearer {secret}")
    try:
        with _socket(address, timeout()) as sock, sock.makefile("rb") as answer:
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            lines = _body_lines(answer)
            done = False
            while not done:
                line = next(lines, b"")
                if not line:
                    raise ServerGone("its answer was cut off")
                if not line.strip():
                    continue  # a heartbeat
                event = json.loads(line)
                if not isinstance(event, dict):
                    raise ServerGone("it answered something that is not an event")
                done = bool(event.get("done"))
                yield event
    except (OSError, ValueError) as exc:
        raise ServerGone(_what(exc)) from None


def _body_lines(answer: IO[bytes]) -> Iterator[bytes]:
    """The lines of an HTTP answer's body (ServerGone for an answer that is not 200)."""
    status = answer.readline(65536).split(None, 2)
    if len(status) < 2 or not status[0].startswith(b"HTTP/") or not status[1].isdigit():
        raise ServerGone("it does not answer HTTP")
    chunked = False
    while True:
        header = answer.readline(65536)
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.partition(b":")
        chunked |= name.strip().lower() == b"transfer-encoding" and b"chunked" in value.lower()
    body = _chunks(answer) if chunked else iter(lambda: answer.readline(1 << 24), b"")
    if status[1] != b"200":
        raise ServerGone(f"it answered HTTP {status[1].decode()}: {_reason(b''.join(body))}")
    if not chunked:
        return body
    return _split(body)


def _chunks(answer: IO[bytes]) -> Iterator[bytes]:
    """The data of a chunked body, chunk by chunk."""
    while True:
        size = int(answer.readline(1024).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        data = answer.read(size)
        answer.readline(16)  # the chunk's CRLF
        yield data


def _split(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Lines out of pieces of data."""
    pending = b""
    for data in chunks:
        pending += data
        *whole, pending = pending.split(b"\n")
        for line in whole:
            yield line + b"\n"
    if pending:
        yield pending


def _reason(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error", {}).get("message", "")) or "an error"
    except (ValueError, AttributeError):
        return "an error"


def _what(exc: BaseException) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer for {timeout():g} s"
    if isinstance(exc, FileNotFoundError):
        return "its socket is gone"
    if isinstance(exc, ConnectionRefusedError):
        return "nothing listens there"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return " ".join(str(exc).split()) or type(exc).__name__


class Remote:
    """One command run's model side on a server: opened once, then one exchange per round."""

    def __init__(self, address: wire.Address, emit: Callable[[str | None], None]) -> None:
        caller = current()
        self.address = address
        self.emit = emit
        self.streamed = ""  # the text --stream has shown of the record in flight
        env = {name: caller.env[name] for name in MODEL_ENVIRONMENT if name in caller.env}
        self.request = {"argv": list(caller.argv), "cwd": caller.cwd, "env": env}

    def open(self) -> int:
        """Start the run on the server (it loads the model); the records a round may hold."""
        opened = self._exchange([])
        if not isinstance(opened, int) or opened < 1:
            raise ServerGone("it did not open the run")
        return opened

    def process(self, records: Sequence[Any]) -> list[Any]:
        """Each record's result (a dict, or the record's RecordError), in order."""
        results = self._exchange([wire.record_out(r) for r in records])
        if not isinstance(results, list) or len(results) != len(records):
            raise ServerGone("it answered a round with the wrong number of results")
        return [wire.result_in(r) for r in results]

    def _exchange(self, records: list[dict[str, Any]]) -> Any:
        said: list[list[Any]] = []
        answer: Any = None
        body = wire.dumps({**self.request, "records": records})
        for event in events(self.address, "/v1/run", body):
            if "piece" in event:
                self._piece(event["piece"])
            elif "say" in event:
                said.append(event["say"])
            elif "opened" in event:
                answer = event["opened"].get("batch_size")
            elif "results" in event:
                answer = event["results"]
            elif "measured" in event:
                answer = event["measured"]
            elif "failed" in event:
                _replay(said)
                failed = event["failed"]
                raise ServedFailure(int(failed.get("code", 1)), str(failed.get("message", "the server failed")))
        _replay(said)  # only once the round is whole: a round run again never says things twice
        return answer

    def measure(self, records: list[Any]) -> tuple[dict[str, Any], list[tuple[Any, Any]]]:
        """``evaluate`` on the server: its metrics, and each record's prediction (when asked for)."""
        answer = self._exchange([wire.record_out(r) for r in records])
        if not isinstance(answer, dict) or not isinstance(answer.get("summary"), dict):
            raise ServerGone("it did not answer with metrics")
        outputs = answer.get("outputs") or []
        if outputs and len(outputs) != len(records):
            raise ServerGone("it answered with the wrong number of predictions")
        return answer["summary"], [(r, wire.result_in(o)) for r, o in zip(records, outputs)]

    def _piece(self, piece: str | None) -> None:
        self.streamed = "" if piece is None else self.streamed + piece
        self.emit(piece)


def _replay(said: list[list[Any]]) -> None:
    for call in said:
        if call and isinstance(call[0], str):
            console.replay(call[0], *call[1:])


class _Resumed:
    """The pieces of a --stream record generated again in process, less the text already shown."""

    def __init__(self, emit: Callable[[str | None], None], shown: str) -> None:
        self.emit, self.left = emit, shown

    def __call__(self, piece: str | None) -> None:
        if self.left is None:
            self.emit(piece)
        elif piece is not None:  # (the record's start was shown already: not again)
            cut = min(len(piece), len(self.left))
            self.left = self.left[cut:] or None
            if piece[cut:]:
                self.emit(piece[cut:])


def served_job(start: Callable[[Callable[[str | None], None]], Any], emit: Callable[[str | None], None]) -> Any:
    """The run's :class:`~xcli.record_command.Job` done by a server, or None where none answers
    (``start(emit)`` makes the job in process, for the fallback)."""
    from ..record_command import Job

    address = find_server()
    if address is None:
        return None
    remote = Remote(address, emit)
    try:
        size = remote.open()
    except ServerGone as exc:
        console.warning(f"the xcli server at {address} {exc}: running in process")
        return None
    local: list[Any] = []

    def process(records: list[Any]) -> list[Any]:
        if not local:
            try:
                return remote.process(records)
            except ServerGone as exc:
                console.warning(f"the xcli server at {address} stopped answering ({exc}): running in process")
                resumed = _Resumed(emit, remote.streamed) if remote.streamed else emit
                local.append(start(resumed))
                # the round in flight runs here; a resumed stream shows only the rest of its text
                results = _local(local[0], records)
                if isinstance(resumed, _Resumed):
                    resumed.left = None  # the next records' text goes straight out
                return results
        return _local(local[0], records)

    return Job(lambda record: record, process, size)


def measured(records: Any, measure: Callable[[Any], Any], server: bool = True) -> Any:
    """``measure(records)`` (evaluate's model side) by a server when one answers, else here."""
    address = find_server() if server else None
    if address is not None:
        batch = list(records)  # all of them: the metrics need every record
        try:
            return Remote(address, lambda piece: None).measure(batch)
        except ServerGone as exc:
            console.warning(f"the xcli server at {address} {exc}: running in process")
        records = batch
    return measure(records)


def _local(job: Any, records: list[Any]) -> list[Any]:
    from ..io import handle

    return handle(records, job.prepare, job.process)

