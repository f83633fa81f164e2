"""``xcli vocab``: learn a new vocabulary from text, in a family's own tokenizer files.

The first step of training a model from nothing: a small vocabulary fitted to the data keeps the
embedding matrix small. The learning itself is :func:`xcli_models.tokenization.trainers.learn`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer

from ..options import Debug, Force, Input, InputFormat, InputFormatName, OnError, OnErrorName, Quiet, choices

FAMILIES = ("xlnet", "xglm", "xlm", "mvp", "prophetnet")
#: --family's choices (a shell completes them)
FamilyName = choices("FamilyName", *FAMILIES)


def vocab(
    family: Annotated[
        FamilyName,
        typer.Option("--family", case_sensitive=False, help="Whose tokenizer files to write.", show_default=False),
    ],
    output: Annotated[
        Path,
        typer.Option("--output", "-o", metavar="DIR", help="The folder to write (whole or not at all; see --force).",
                     file_okay=False, show_default=False),
    ],
    size: Annotated[int, typer.Option("--size", min=64, metavar="N", help="Entries in the vocabulary, special "
                                      "tokens included: the rows of the model's embedding matrix.")] = 8000,
    input: Input = None,
    fields: Annotated[
        Optional[list[str]],
        typer.Option("--field", metavar="NAME", help="A record field to learn from; repeat it for several (default: "
                     "text, or the words of a tokens list when a record has no text).", show_default=False),
    ] = None,
    lowercase: Annotated[bool, typer.Option("--lowercase", help="Lower-case (and strip accents, as the family's "
                                            "tokenizer does) before learning and whenever the model runs.")] = False,
    config: Annotated[
        Optional[Path],
        typer.Option("--config", "-c", metavar="FILE", help="A config.json to complete with the vocabulary's size and "
                     "token ids and write into DIR, ready for xcli train --from-scratch.", dir_okay=False,
                     show_default=False),
    ] = None,
    force: Force = False,
    input_format: InputFormat = InputFormatName.auto,
    on_error: OnError = OnErrorName.continue_,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Learn a vocabulary from text and write it as FAMILY's tokenizer files.

    xlnet and xglm get a SentencePiece model (unigram, BPE), xlm a BPE vocab.json + merges.txt
    over Moses words, mvp a byte-level BPE vocab.json + merges.txt, prophetnet a WordPiece list;
    the special tokens sit at the ids the published checkpoints use. The same text and options
    give byte-identical files. Records: JSONL with a text field (or a tokens list), or plain
    lines; a record without text is named on stderr and skipped (exit 4 at the end). stdout gets
    one JSON summary line.

    Examples:

      xcli vocab --family xlnet --size 8000 --lowercase -i sst2-train.jsonl -o ./sentiment -c config.json

      xcli train -m ./sentiment --from-scratch --train sst2-train.jsonl -o ./sentiment-trained
    """
    from .. import io
    from ..console import console
    from ..errors import RecordsFailed, UsageError, XcliError

    console.configure(quiet=quiet, debug=debug)
    family = family.value
    base = _read_config(config, family) if config is not None else None
    if not input:
        raise UsageError("vocab needs text to learn from: --input/-i PATH ('-' for stdin)")
    records = io.read_records(None, input, input_format=input_format, field=(fields or ["text"])[0])
    skipped: list[int] = [0]
    texts = list(_texts(records, fields, on_error, skipped))
    if not texts:
        raise XcliError(f"no text to learn a vocabulary from ({skipped[0]} record(s) skipped)")
    written = _write(family, texts, output, size, lowercase, base, force)
    summary = {"family": family, "directory": str(output), "vocab_size": written.vocab_size, "texts": len(texts),
               "skipped": skipped[0], "files": sorted(written.files + (("config.json",) if base is not None else ()))}
    sys.stdout.write(io.json_text(summary))
    sys.stdout.flush()
    if skipped[0]:
        raise RecordsFailed(f"{skipped[0]} record(s) were skipped", "stderr names their lines")


def _texts(records: Any, fields: list[str] | None, on_error: OnErrorName, skipped: list[int]) -> Iterator[str]:
    """Each record's texts; a record without any is named on stderr and counted (or stops the run)."""
    from xcli_models.tokenization.base import check_text

    from ..console import console
    from ..errors import RecordError, XcliError

    for record in records:
        try:
            if record.error is not None:
                raise record.error
            found = _record_texts(record, fields)
            for text in found:
                check_text(text)
        except (RecordError, ValueError) as exc:
            message = exc.message if isinstance(exc, RecordError) else str(exc)
            if on_error is OnErrorName.stop:
                raise XcliError(f"{record.where}: {message}") from None
            console.warning(f"{record.where}: skipped: {message}")
            skipped[0] += 1
            continue
        yield from found


def _record_texts(record: Any, fields: list[str] | None) -> list[str]:
    from ..errors import RecordError

    if fields:
        return [record.text(name) for name in fields]
    if "text" not in record.data and isinstance(record.get("tokens"), list):
        words = record.get("tokens")
        if not all(isinstance(w, str) for w in words):
            raise RecordError("wrong_type", '"tokens" must be a list of strings')
        return [" ".join(words)]
    return [record.text("text", 'or give --field NAME')]


def _read_config(path: Path, family: str) -> dict[str, Any]:
    from ..errors import UsageError

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"--config {path}: cannot read it as JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: not a JSON object")
    if data.get("model_type", family) != family:
        raise UsageError(f"--config {path}: model_type {data['model_type']!r} is not --family {family}")
    return data


def _write(family: str, texts: list[str], output: Path, size: int, lowercase: bool, config: dict[str, Any] | None,
           force: bool) -> Any:
    """Learn into a hidden folder beside ``output``; publish it whole."""
    from xcli_models.atomic import published_folder
    from xcli_models.tokenization.trainers import VocabularyError, learn

    from ..console import console
    from ..errors import UsageError, XcliError

    if output.exists() and not force:
        raise UsageError(f"{output} exists", "pass --force to replace it")
    try:
        with published_folder(output, replace=force, warn=console.warning) as folder:
            console.note(f"learning a {family} vocabulary of {size} entries from {len(texts)} text(s)")
            written = learn(family, texts, folder, size=size, lowercase=lowercase)
            if config is not None:
                (folder / "config.json").write_text(json.dumps(written.complete(config), indent=2) + "\n",
                                                    encoding="utf-8")
    except VocabularyError as exc:
        raise XcliError(str(exc), "give more text or a smaller --size") from None
    except FileExistsError:
        raise UsageError(f"{output} exists: another run wrote it meanwhile", "pass --force to replace it") from None
    return written
