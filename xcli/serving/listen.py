"""Where ``xcli serve`` listens, who may talk to it, and the loop that serves.

* The default: a Unix socket (mode 0600) in the user's private folder (mode 0700, see
  :func:`xcli.serving.wire.default_socket`); a folder that is not the user's alone is refused, so
  only the owner can connect. ``--socket PATH`` listens at PATH (its socket mode 0600 too).
* ``--host/--port``: HTTP on a loopback address. Any other address is refused unless
  ``--allow-remote`` and a ``--token-file`` (readable by its owner only) are given; every request
  then needs the token. Nothing listens on all interfaces by accident.
* A socket path where a server already answers is refused; a stale one (its server killed) is
  replaced. The socket file is removed when the server stops.
* SIGTERM or Ctrl-C: no new connections; the requests in flight finish, then the server exits.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import wire

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_memory(text: str) -> int:
    """``"4G"``, ``"512MiB"``, ``"1.5gb"``, ``"1000000"`` -> bytes (powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise UsageError(f"--max-memory {text!r}: expected a size such as 4G, 512M or 1000000")
    power = " KMGT".index(match.group(2).upper() or " ")
    return int(float(match.group(1)) * 1024**power)


def default_memory() -> int:
    """Half of the machine's memory."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_token(path: Path) -> str:
    """The token in ``path``: a file of the user's, closed to others, not empty."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UsageError(f"--token-file {path}: {exc.strerror or exc}") from None
    if info.st_mode & 0o077:
        raise UsageError(f"--token-file {path}: readable by others (mode {stat.S_IMODE(info.st_mode):04o})",
                         f"chmod 600 {path}")
    if len(text) < 16:
        raise UsageError(f"--token-file {path}: the token must be at least 16 characters",
                         "make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return text


def check_http(host: str, allow_remote: bool, token_file: Path | None) -> str | None:
    """The token an HTTP server needs (None: none); a non-loopback address without both
    ``--allow-remote`` and ``--token-file`` is a usage error."""
    if not is_loopback(host):
        if not allow_remote or token_file is None:
            raise UsageError(
                f"--host {host} is not a loopback address: anyone who reaches it could use the server",
                "add --allow-remote and --token-file FILE (every request then needs the token), "
                "or keep the default Unix socket",
            )
    return read_token(token_file) if token_file is not None else None


def unix_socket(path: Path | None) -> tuple[socket.socket, Path]:
    """A listening Unix socket (mode 0600) at ``path`` or the default one."""
    if path is None:
        path = wire.default_socket()
        folder = path.parent
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot make the socket folder {folder}: {exc.strerror}") from None
        reason = wire.unsafe_folder(folder)
        if reason is not None:
            raise UsageError(f"will not listen in {folder}: {reason}", "remove it, or pass --socket PATH")
    if os.path.lexists(path):
        if _answers(path):
            raise UsageError(f"a server already listens at {path}", "stop it first, or pass --socket PATH")
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise UsageError(f"{path} exists and is not a socket", "pass --socket PATH")
        os.unlink(path)  # a server that was killed left it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen at {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock, path


def _answers(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def tcp_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one)."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(info[0], socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(info[4])
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    return sock


def serve(app: Any, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` until SIGTERM or Ctrl-C; the requests in flight finish first."""
    import signal

    import uvicorn

    # uvicorn raises SIGTERM again once it has shut down gracefully: that is the normal end here (exit 0)
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", server_header=False,
                            timeout_graceful_shutdown=None)
    uvicorn.Server(config).run(sockets=[sock])
