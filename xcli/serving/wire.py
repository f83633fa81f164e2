"""What the command line and ``xcli serve`` say to each other, and where the server listens.

Standard library only: the client side never imports torch (or the server's libraries).

**Where.** ``XCLI_SERVER`` names a server: ``unix:PATH`` or ``http://HOST:PORT`` (a bearer token
from ``XCLI_SERVER_TOKEN`` or the file named by ``XCLI_SERVER_TOKEN_FILE`` goes with every
request). Without it, the default socket: ``serve.sock`` in the folder ``xcli-UID`` of
``$XDG_RUNTIME_DIR`` (else of the temporary folder). That folder must belong to the user and be
closed to everyone else (mode 0700): the server refuses to listen in any other, and a client does
not talk to a socket in any other (someone else's server would see its records).

**The run protocol** (``POST /v1/run``, what a command sends when a server is there): the body
is one JSON object ``{"argv", "cwd", "env", "records"}``: the command line (the command's name
first), the client's working folder, the environment variables that decide which model loads
(:data:`xcli.invocation.MODEL_ENVIRONMENT`), and a round of records (``[]`` only opens the run:
the server loads the model and says how many records a round may hold). The answer is a stream
of JSON lines, each one event:

- ``{"say": [method, args...]}``: a console line of the run (``warning``, ``note``,
  ``counted_warning``, ``error``), for the client's console to print as its own;
- ``{"piece": TEXT}`` / ``{"piece": null}``: ``generate --stream`` text as it is generated /
  a new record's text begins;
- ``{"opened": {"batch_size": N}}``: the run is ready;
- ``{"results": [...]}``: one per record of the round, in order: ``{"ok": OUTPUT}`` or
  ``{"error": [TYPE, MESSAGE]}`` (the record's error line);
- ``{"measured": {"summary": METRICS, "outputs": [...]}}``: ``evaluate``'s answer to all its
  records at once (its metrics, and each record's prediction when asked);
- ``{"failed": {"code": C, "message": M}}``: what stopped the run (exit code, one line);
- ``{"done": true}``: the last line. A stream that ends without it was cut (a server killed):
  the client runs the round itself.

Empty lines are heartbeats, one a second while the server works, so that a client can tell a
busy server from a hung one. Numbers keep every bit (JSON's shortest round-trip form, NaN and
Infinity included), strings every code point (a lone surrogate travels escaped), so a line the
client writes from a result is the line it would have written from its own.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RecordError
from ..io.jsonl import json_default
from ..io.records import Record

SOCKET_NAME = "serve.sock"


@dataclass(frozen=True)
class Address:
    """A Unix socket (``path``) or an HTTP host and port."""

    path: str = ""
    host: str = ""
    port: int = 0

    @property
    def is_unix(self) -> bool:
        return bool(self.path)

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path else f"http://{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """``unix:PATH`` or ``http://HOST:PORT`` (ValueError otherwise)."""
    if text.startswith("unix:") and len(text) > 5:
        return Address(path=text[5:])
    if text.startswith("http://"):
        host, _, port = text[7:].rstrip("/").rpartition(":")
        host = host.strip("[]")
        if host and port.isdigit() and 0 < int(port) < 65536:
            return Address(host=host, port=int(port))
    raise ValueError(f"XCLI_SERVER={text!r}: expected unix:PATH or http://HOST:PORT")


def default_socket() -> Path:
    """``$XDG_RUNTIME_DIR/xcli-UID/serve.sock``, else the same in the temporary folder."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime and os.path.isdir(runtime) else Path(tempfile.gettempdir())
    return base / f"xcli-{os.getuid()}" / SOCKET_NAME


def unsafe_folder(folder: Path) -> str | None:
    """Why ``folder`` may not hold a socket of this user's (None when it is this user's, mode 0700)."""
    try:
        info = folder.lstat()
    except OSError as exc:
        return f"{folder}: {exc.strerror}"
    if not stat.S_ISDIR(info.st_mode):
        return f"{folder} is not a folder"
    if info.st_uid != os.getuid():
        return f"{folder} belongs to another user (uid {info.st_uid})"
    if info.st_mode & 0o077:
        return f"{folder} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}; it must be 0700)"
    return None


def token() -> str | None:
    """The bearer token for an HTTP server: ``XCLI_SERVER_TOKEN``, else the file ``XCLI_SERVER_TOKEN_FILE`` names."""
    value = os.environ.get("XCLI_SERVER_TOKEN")
    if value:
        return value.strip()
    path = os.environ.get("XCLI_SERVER_TOKEN_FILE")
    if path:
        try:
            return Path(path).expanduser().read_text(encoding="utf-8").strip() or None
        except OSError:
            return None
    return None


# ------------------------------------------------------------------ the values that travel
def dumps(obj: Any) -> bytes:
    """Compact JSON, ASCII only, NaN and Infinity kept (both ends are xcli)."""
    return json.dumps(obj, ensure_ascii=True, allow_nan=True, default=json_default, separators=(",", ":")).encode()


def record_out(record: Record) -> dict[str, Any]:
    out = {"index": record.index, "where": record.where, "line": record.line, "data": record.data}
    if record.error is not None:
        out["error"] = [record.error.type, record.error.message]
    return out


def record_in(value: Any) -> Record:
    """A record as the client read it (ValueError for anything else)."""
    if not isinstance(value, dict) or not isinstance(value.get("data"), dict):
        raise ValueError("a record must be an object with a \"data\" object")
    index, line, where = value.get("index", 0), value.get("line"), value.get("where", "")
    if not isinstance(index, int) or not (line is None or isinstance(line, int)) or not isinstance(where, str):
        raise ValueError("a record's index and line must be integers, its where a string")
    error = value.get("error")
    if error is not None:
        if not (isinstance(error, list) and len(error) == 2 and all(isinstance(e, str) for e in error)):
            raise ValueError("a record's error must be [type, message]")
        return Record(index, value["data"], where, line, RecordError(*error))
    return Record(index, value["data"], where, line)


def result_out(result: Any) -> dict[str, Any]:
    if isinstance(result, RecordError):
        return {"error": [result.type, result.message]}
    return {"ok": result}


def result_in(value: dict[str, Any]) -> Any:
    if "error" in value:
        kind, message = value["error"]
        return RecordError(kind, message)
    return value["ok"]
