"""``xcli`` and ``python -m xcli``: run the app (see :mod:`xcli.program` for how a run ends)."""

from __future__ import annotations

import signal
import sys


def _terminated(signum: int, frame: object) -> None:
    # unwind like Ctrl-C does, so that --output keeps what was written
    raise SystemExit(143)


def main(argv: list[str] | None = None) -> None:
    """Run xcli with ``argv`` (default: ``sys.argv[1:]``) and exit with its status."""
    try:
        signal.signal(signal.SIGTERM, _terminated)
        from .app import app

        app(args=argv, prog_name="xcli")
    except KeyboardInterrupt:  # before the app could take over
        sys.exit(130)


if __name__ == "__main__":
    main()
