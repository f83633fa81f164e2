"""``xcli tokenize``: texts to tokens and ids (or ids back to text) with a model's tokenizer.

Needs only the tokenizer files, never torch.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Optional

import typer

from ..options import (
    Debug, Field, Force, Input, InputFormat, InputFormatName, Keep, Lang, MaxLength, Model, OnError,
    OnErrorName, Output, OutputFormat, OutputFormatName, Quiet, Texts,
)

#: what --fields may name, from the tokenizer's encoding
FIELDS = ("tokens", "ids", "offsets", "attention_mask", "token_type_ids", "special_tokens_mask")


class TruncationName(str, Enum):
    longest_first = "longest_first"
    only_first = "only_first"
    only_second = "only_second"


def tokenize(
    texts: Texts = None,
    model: Model = None,
    fields: Annotated[
        str, typer.Option("--fields", metavar="F1,F2", help=f"Output fields, from: {', '.join(FIELDS)}.")
    ] = "tokens,ids",
    offsets: Annotated[bool, typer.Option("--offsets", help="Add character offsets: [[start, end], ...].")] = False,
    count: Annotated[bool, typer.Option("--count", help='Output only {"count": number of tokens}.')] = False,
    special_tokens: Annotated[
        bool, typer.Option("--special-tokens/--no-special-tokens", help="Add the model's special tokens.")
    ] = True,
    decode: Annotated[
        bool, typer.Option("--decode", help='Turn "ids" (an array, or integers in the text) back into {"text": ...}.')
    ] = False,
    skip_special_tokens: Annotated[
        bool, typer.Option("--skip-special-tokens", help="With --decode: leave special tokens out.")
    ] = False,
    lang: Lang = None,
    max_length: MaxLength = None,
    truncation: Annotated[
        Optional[TruncationName],
        typer.Option(
            "--truncation",
            case_sensitive=False,
            help="Which text of a pair to cut first (default with --max-length: longest_first).",
            show_default=False,
        ),
    ] = None,
    field: Field = "text",
    pair_field: Annotated[
        str, typer.Option("--pair-field", metavar="NAME", help="The record field that holds the second text of a pair.")
    ] = "text_pair",
    input: Input = None,
    input_format: InputFormat = InputFormatName.auto,
    output: Output = None,
    output_format: OutputFormat = OutputFormatName.jsonl,
    force: Force = False,
    keep: Keep = None,
    on_error: OnError = OnErrorName.continue_,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Split texts into tokens and ids, or decode ids back to text.

    Output: {"tokens": [...], "ids": [...]} per record; pairs via the "text_pair" field.

    Examples:

      xcli tokenize -m xlnet/xlnet-base-cased "Hello world"

      xcli tokenize -m xlnet-base-cased --count -O text < texts.txt

      echo '{"ids": [17, 11368, 4, 3]}' | xcli tokenize -m xlnet-base-cased --decode
    """
    from .. import io
    from ..console import console
    from ..errors import UsageError
    from ..models import resolve_model

    if count and decode:
        raise UsageError("--count and --decode do not go together")
    chosen = io.parse_field_list(fields)
    unknown = [name for name in chosen if name not in FIELDS]
    if unknown:
        raise UsageError(f"--fields: unknown field(s) {', '.join(unknown)}", f"choose from {', '.join(FIELDS)}")
    if offsets and "offsets" not in chosen:
        chosen.append("offsets")
    if not chosen:
        raise UsageError("--fields names no field", f"choose from {', '.join(FIELDS)}")
    columns = ["text"] if decode else ["count"] if count else chosen

    records = io.read_records(texts, input, input_format=input_format, field=field)
    with io.open_writer(output, force=force, fmt=output_format, keep=keep, columns=columns) as writer:
        tokenizer = _load_tokenizer(resolve_model(model).path, lang)
        strategy = (truncation.value if truncation else "longest_first") if (max_length or truncation) else False
        hint = "pick the text field with --field"

        def prepare(record: io.Record) -> dict[str, Any]:
            if decode:
                ids = record.int_list("ids") if "ids" in record.data else record.int_list(field)
                return {"text": tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)}
            encoding = tokenizer.encode_plus(
                record.text(field, hint),
                record.optional_text(pair_field),
                add_special_tokens=special_tokens,
                truncation=strategy,
                max_length=max_length,
                return_offsets="offsets" in chosen and not count,
            )
            if encoding.overflowing:
                limit = max_length or tokenizer.model_max_length
                message = f"{record.where}: truncated to {limit} tokens (--max-length)"
                console.counted_warning("truncated to --max-length", message)
            if count:
                return {"count": len(encoding.input_ids)}
            return {name: _field(tokenizer, encoding, name) for name in chosen}

        summary = io.run_records(
            records, lambda results: results, writer, prepare=prepare, batch_size=64, on_error=on_error
        )
    io.finish(summary)


def _field(tokenizer: Any, encoding: Any, name: str) -> Any:
    if name == "tokens":
        return tokenizer.convert_ids_to_tokens(encoding.input_ids)
    if name == "ids":
        return encoding.input_ids
    if name == "offsets":
        return [list(span) for span in encoding.offsets] if encoding.offsets is not None else None
    return getattr(encoding, name)


def _load_tokenizer(path: Any, lang: str | None) -> Any:
    from xcli_models.tokenization import AutoTokenizer, TokenizerError

    from ..errors import UsageError

    tokenizer = AutoTokenizer.from_pretrained(path)
    if lang is not None:
        if not hasattr(tokenizer, "lang"):
            name = type(tokenizer).__name__
            raise UsageError(f"--lang applies to XLM models; this model's tokenizer ({name}) has no languages")
        if getattr(tokenizer, "lang2id", None):
            try:
                tokenizer.lang_id(lang)
            except TokenizerError as exc:
                raise UsageError(f"--lang {lang}: {exc}") from None
        tokenizer.lang = lang
    return tokenizer
