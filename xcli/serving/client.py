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

Standard library only: this path never imports torch.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any, Callable, Iterator, Sequence

from ..console import console
from ..errors import ServedFailure, UsageError
from ..invocation import MODEL_ENVIRONMENT, current
from . import wire

#: seconds without a byte from the server before it counts as hung
DEFAULT_TIMEOUT = 30.0


class ServerGone(Exception):
    """The server could not be reached, or stopped answering: run in process."""


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


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


def connection(address: wire.Address, seconds: float) -> http.client.HTTPConnection:
    if address.is_unix:
        return _UnixConnection(address.path, seconds)
    return http.client.HTTPConnection(address.host, address.port, timeout=seconds)


def events(address: wire.Address, path: str, body: bytes) -> Iterator[dict[str, Any]]:
    """POST ``body`` and yield the answer's events (ServerGone for any failure of the exchange)."""
    conn = connection(address, timeout())
    headers = {"Content-Type": "application/json"}
    secret = wire.token()
    if secret and not address.is_unix:
        headers["Authorization"] = f"Bearer {secret}"
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            raise ServerGone(f"it answered HTTP {response.status}: {_reason(response)}")
        done = False
        while not done:
            line = response.readline()
            if not line:
                raise ServerGone("its answer was cut off")
            if not line.strip():
                continue  # a heartbeat
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ServerGone("it answered something that is not an event")
            done = bool(event.get("done"))
            yield event
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ServerGone(_what(exc)) from None
    finally:
        conn.close()


def _reason(response: http.client.HTTPResponse) -> str:
    try:
        return str(json.loads(response.read(65536)).get("error", {}).get("message", response.reason))
    except (ValueError, AttributeError, OSError, http.client.HTTPException):
        return str(response.reason)


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

