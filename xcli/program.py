"""How one run of the command line begins and ends.

:class:`Program` is the app's click group. Its ``main`` wraps every invocation, whether
from the ``xcli`` script, ``python -m xcli`` or a test's ``CliRunner``:

* the console starts fresh (``--quiet``/``--debug`` set it while options are parsed);
* a usage error from option parsing is one line: ``xcli tokenize: error: ... (see 'xcli tokenize --help')``;
* any exception a command lets out becomes one line and an exit code through
  :func:`xcli.errors.describe`, with the traceback first under ``--debug``/``XCLI_DEBUG=1``;
* a closed stdout ends quietly: stdout is pointed at /dev/null so that nothing complains
  at exit, and the exit code is 141;
* Ctrl-C exits 130 (the command's ``with`` blocks have kept what was written).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from .console import console
from .errors import ExitCode, OutputClosed, describe

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - older typer on top of click
    from click import exceptions as _click_errors  # type: ignore[no-redef]


class Program(TyperGroup):
    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        console.reset()
        console.hear_library()
        sys.exit(self._run(args, prog_name or "xcli", complete_var, extra))

    def _run(self, args: Any, prog_name: str, complete_var: str | None, extra: dict[str, Any]) -> int:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _click_errors.NoArgsIsHelpError as exc:
            exc.show()
            return ExitCode.USAGE
        except _click_errors.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else prog_name
            hint = f" (see '{where} --help')" if exc.ctx is not None else ""
            console.error(f"{exc.format_message()}{hint}".replace("\n", " "))
            return exc.exit_code
        except _click_errors.ClickException as exc:
            console.error(exc.format_message())
            return exc.exit_code
        except typer.Abort as exc:
            interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
            return ExitCode.INTERRUPTED if interrupted else ExitCode.FAILURE
        except typer.Exit as exc:
            return exc.exit_code
        except (OutputClosed, BrokenPipeError):
            return _output_closed()
        except BaseException as exc:  # noqa: BLE001 - the table decides what it means
            if isinstance(exc, SystemExit):
                raise
            code, message = describe(exc)
            console.exception(exc, message)
            return code
        if result == ExitCode.INTERRUPTED:  # typer turns Ctrl-C into Exit(130)
            console.error("interrupted")
        return result if isinstance(result, int) else ExitCode.OK


def _output_closed() -> int:
    """Silence stdout for good (its reader is gone) and report the usual status."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file descriptor (a test runner's buffer): nothing to silence
    return ExitCode.BROKEN_PIPE
