"""``xcli serve``: keep models warm for the command line (and for HTTP clients)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..options import Debug, Quiet, Threads

Socket = Annotated[
    Optional[Path],
    typer.Option("--socket", metavar="PATH", help="Listen on this Unix socket (default: serve.sock in the "
                 "private folder $XDG_RUNTIME_DIR/xcli-UID, else /tmp/xcli-UID).", show_default=False),
]
Host = Annotated[
    Optional[str],
    typer.Option("--host", metavar="ADDRESS", help="Serve HTTP on this address instead of a socket: a loopback "
                 "address unless --allow-remote and --token-file are given.", show_default=False),
]
Port = Annotated[int, typer.Option("--port", min=0, max=65535, help="The HTTP port (with --host; 0: any free one).")]
AllowRemote = Annotated[
    bool, typer.Option("--allow-remote", help="Allow a --host other than loopback (needs --token-file).")
]
TokenFile = Annotated[
    Optional[Path],
    typer.Option("--token-file", metavar="FILE", help="A file (mode 600) holding the bearer token every HTTP "
                 "request must carry.", show_default=False),
]
MaxMemory = Annotated[
    Optional[str],
    typer.Option("--max-memory", metavar="SIZE", help="Weights kept loaded (e.g. 4G); past it the least recently "
                 "used model is unloaded. [default: half the machine's memory]", show_default=False),
]


def serve(
    socket: Socket = None,
    host: Host = None,
    port: Port = 8765,
    allow_remote: AllowRemote = False,
    token_file: TokenFile = None,
    max_memory: MaxMemory = None,
    threads: Threads = None,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Serve the model commands from warm models, until SIGTERM or Ctrl-C.

    While it runs, tokenize, fill-mask, classify, qa, generate and score send their records to it
    (when XCLI_SERVER names it, or it listens on the default socket) and print the very bytes
    they print alone, in a fraction of the time: no torch start-up, no model load. --no-server
    on a command, or no server, runs in process. Concurrent clients of one model share its
    batches (except generate). A model loads on first use; one whose files change loads again.

    By default only its user can reach it: a Unix socket (mode 600) in a private folder (mode
    700). --host/--port serve HTTP on loopback; another address needs --allow-remote and
    --token-file. HTTP endpoints: GET /health, GET /v1/models, POST /v1/COMMAND, POST
    /v1/completions (see the README).

    Examples:

      xcli serve &                       # then: xcli classify "a gripping film"

      xcli serve --host 127.0.0.1 --port 8765 --max-memory 8G

      XCLI_SERVER=http://127.0.0.1:8765 xcli generate "Once upon a time"
    """
    from ..console import console
    from ..serving import listen
    from ..serving.engine import Engine
    from ..serving.server import Server

    console.configure(quiet=quiet, debug=debug)
    budget = listen.parse_memory(max_memory) if max_memory is not None else listen.default_memory()
    token = listen.check_http(host, allow_remote, token_file) if host is not None else None
    if host is None and (allow_remote or token_file is not None):
        console.warning("--allow-remote and --token-file apply to --host: the Unix socket is its owner's only")
    from xcli_models.tasks.common import set_threads

    set_threads(threads)
    server = Server(Engine(budget), token)
    if host is not None:
        sock, where = listen.tcp_socket(host, port), None
    else:
        sock, where = listen.unix_socket(socket)
    try:
        address = f"unix:{where}" if where is not None else "http://{}:{}".format(*sock.getsockname()[:2])
        console.note(f"serving on {address} (pid {os.getpid()})")
        listen.serve(server, sock)
    finally:
        sock.close()
        if where is not None:
            try:
                where.unlink()
            except OSError:
                pass
