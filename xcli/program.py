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
from .invocation import Invocation, enter, leave

try:  # typer >= 0.20 carries its own copy of click
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - older typer on top of click
    from click import exceptions as _click_errors  # type: ignore[no-redef]


class Program(TyperGroup):
    """The app's group; its commands are built when first asked for, from :attr:`table`
    (``name -> "module:function"`` in :mod:`xcli.commands`)."""

    table: dict[str, str] = {}

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.table, *(name for name in super().list_commands(ctx) if name not in self.table)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in self.table:
            self.commands[cmd_name] = _build(cmd_name, self.table[cmd_name])
        return super().get_command(ctx, cmd_name)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        console.reset()
        console.hear_library()
        argv = tuple(args) if args is not None else tuple(sys.argv[1:])
        token = enter(Invocation(argv, os.getcwd(), os.environ))  # what a server is sent (xcli.serving)
        try:
            code = self._run(args, prog_name or "xcli", complete_var, extra)
        finally:
            leave(token)
        sys.exit(code)

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


def _build(name: str, target: str) -> Any:
    """The click command of ``xcli.commands.MODULE:FUNCTION``, as typer would build it."""
    import importlib

    from typer.main import get_command_from_info
    from typer.models import CommandInfo

    module, function = target.split(":")
    callback = getattr(importlib.import_module(f"xcli.commands.{module}"), function)
    return get_command_from_info(CommandInfo(name=name, callback=callback), pretty_exceptions_short=True,
                                 rich_markup_mode=None)


def _output_closed() -> int:
    """Silence stdout for good (its reader is gone) and report the usual status."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file descriptor (a test runner's buffer): nothing to silence
    return ExitCode.BROKEN_PIPE
