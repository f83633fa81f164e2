"""``xcli merge``: the outputs of ``--shard K/N`` runs back into input order (see :mod:`xcli.io.merging`)."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Annotated, BinaryIO, ContextManager

import typer

from ..console import console
from ..options import Debug, Force, Output, Quiet

Files = Annotated[
    list[str],
    typer.Argument(metavar="FILE...", help="The shards' outputs, in any order ('-' is stdin).", show_default=False),
]
KeepRecord = Annotated[
    bool,
    typer.Option("--keep-record", help='Keep each line\'s record number ("record" first in JSONL, the first '
                 "column of text and TSV)."),
]


def merge(
    files: Files,
    output: Output = None,
    force: Force = False,
    keep_record: KeepRecord = False,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Merge the outputs of --shard K/N runs back into input order.

    The result is, byte for byte, what one run without --shard writes. Each file is one shard's
    output (JSONL, text or TSV, as -O made it); the lines are merged by their record numbers a
    line at a time, so memory stays small whatever the sizes. A line without a record number,
    numbers out of order within a file, or one number in two files stop the merge (exit 1; what
    was merged so far is kept). Record numbers missing from 0 to the last (a shard's output left
    out) are named at the end, with exit status 4.

    Examples:

    \b
      xcli classify --shard 0/2 -i texts.txt -o part0.jsonl
      xcli classify --shard 1/2 -i texts.txt -o part1.jsonl
      xcli merge part0.jsonl part1.jsonl -o labels.jsonl
    """
    from .. import io

    console.configure(quiet=quiet, debug=debug)
    with ExitStack() as stack:
        sources = [("<stdin>" if name == "-" else name, stack.enter_context(_open(name))) for name in _checked(files)]
        with io.open_output(output, io.LineWriter, force=force) as writer:
            merged = io.merge_shards(sources, writer, keep_record=keep_record)
    merged.finish()


def _checked(files: list[str]) -> list[str]:
    """The files, each once; a usage error for one that is missing or a folder."""
    import os

    from ..errors import UsageError

    for number, name in enumerate(files):
        if name in files[:number]:
            raise UsageError(f"{name} is given twice")
        if name != "-" and not os.path.isfile(name):
            raise UsageError(f"{name}: {'is a directory' if os.path.isdir(name) else 'no such file'}")
    return files


def _open(name: str) -> ContextManager[BinaryIO]:
    """The file, or stdin (left open) for ``-``."""
    import sys
    from contextlib import nullcontext

    if name == "-":
        return nullcontext(getattr(sys.stdin, "buffer", sys.stdin))
    return open(name, "rb")
