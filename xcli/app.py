"""The xcli command line, one line per command.

A command is a plain function in ``xcli/commands/<name>.py`` whose signature (built from
the aliases in :mod:`xcli.options`) is its command line; it imports the model core inside
its body, so that ``--help`` and completion stay fast. Adding a command = that module +
one line below.
"""

from __future__ import annotations

from typing import Annotated

import typer

from . import __version__
from .commands import classify, convert, evaluate, fill_mask, generate, info, merge, qa, tokenize, train
from .commands import models as models_command
from .commands import vocab as vocab_command
from .commands import score as score_command
from .program import Program

app = typer.Typer(
    name="xcli",
    cls=Program,
    help="Run XLM, XLNet, XGLM, XLM-ProphetNet and MVP models on streams of records (JSONL in, JSONL out).",
    no_args_is_help=True,
    add_completion=False,  # completions are generated into completions/ (python -m xcli.completions)
    rich_markup_mode=None,  # plain help: rich would cost ~0.1 s on every --help and TAB
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)

app.command("tokenize")(tokenize.tokenize)
app.command("convert")(convert.convert)
app.command("info")(info.info)
app.command("models")(models_command.models)
app.command("fill-mask")(fill_mask.fill_mask)
app.command("classify")(classify.classify)
app.command("qa")(qa.qa)
app.command("generate")(generate.generate)
app.command("train")(train.train)
app.command("evaluate")(evaluate.evaluate)
app.command("score")(score_command.score)
app.command("vocab")(vocab_command.vocab)
app.command("merge")(merge.merge)


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
