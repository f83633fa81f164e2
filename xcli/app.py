"""The xcli command line, one line per command.

A command is a plain function in ``xcli/commands/<name>.py`` whose signature (built from
the aliases in :mod:`xcli.options`) is its command line; it imports the model core inside
its body, so that ``--help`` and completion stay fast. Adding a command = that module +
one line in :data:`COMMANDS`. A run imports and builds only the command it runs (see
:class:`xcli.program.Program`): a one-liner does not pay for the other thirteen.
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import __version__
from .program import Program

#: name -> its function, as "module:function" in xcli.commands (in the order --help lists them)
COMMANDS = {
    "tokenize": "tokenize:tokenize",
    "convert": "convert:convert",
    "info": "info:info",
    "models": "models:models",
    "fill-mask": "fill_mask:fill_mask",
    "classify": "classify:classify",
    "qa": "qa:qa",
    "generate": "generate:generate",
    "train": "train:train",
    "evaluate": "evaluate:evaluate",
    "score": "score:score",
    "vocab": "vocab:vocab",
    "serve": "serve:serve",
    "merge": "merge:merge",
}


class Xcli(Program):
    table = COMMANDS

app = typer.Typer(
    name="xcli",
    cls=Xcli,
    help="Run XLM, XLNet, XGLM, XLM-ProphetNet and MVP models on streams of records (JSONL in, JSONL out).",
    no_args_is_help=True,
    add_completion=False,  # completions are generated into completions/ (python -m xcli.completions)
    rich_markup_mode=None,  # plain help: rich would cost ~0.1 s on every --help and TAB
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)



def _version(value: bool) -> None:
    if value:
        typer.echo(f"xcli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", "-V", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """Run XLM, XLNet, XGLM, XLM-ProphetNet and MVP models on streams of records (JSONL in, JSONL out).

    Records come from TEXT arguments, --input files or stdin; results go to stdout, one JSON
    object per record, in input order. Exit status: 0 ok, 1 failure, 2 usage error,
    4 some records failed, 130 interrupted.
    """
