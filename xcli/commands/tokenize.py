"""``xcli tokenize``: texts to tokens and ids (or ids back to text) with a model's tokenizer.

Needs only the tokenizer files, never torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer

from ..console import console
from ..options import Lang, MaxLength, Model, choices
from ..record_command import FIELD_HINT, Job, RecordIO, command_line, run_record_command

#: what --fields may name, from the tokenizer's encoding
FIELDS = ("tokens", "ids", "offsets", "attention_mask", "token_type_ids", "special_tokens_mask")


TruncationName = choices("TruncationName", "longest_first", "only_first", "only_second")


Fields = Annotated[
    str, typer.Option("--fields", metavar="F1,F2", help=f"Output fields, from: {', '.join(FIELDS)}.")
]
Offsets = Annotated[bool, typer.Option("--offsets", help="Add character offsets: [[start, end], ...].")]
Count = Annotated[bool, typer.Option("--count", help='Output only {"count": number of tokens}.')]
SpecialTokens = Annotated[
    bool, typer.Option("--special-tokens/--no-special-tokens", help="Add the model's special tokens.")
]
Decode = Annotated[
    bool, typer.Option("--decode", help='Turn "ids" (an array, or integers in the text) back into {"text": ...}.')
]
SkipSpecialTokens = Annotated[
    bool, typer.Option("--skip-special-tokens", help="With --decode: leave special tokens out.")
]
Truncation = Annotated[
    Optional[TruncationName],
    typer.Option(
        "--truncation",
        case_sensitive=False,
        help="Which text of a pair to cut first (default with --max-length: longest_first).",
        show_default=False,
    ),
]
PairField = Annotated[
    str, typer.Option("--pair-field", metavar="NAME", help="The record field that holds the second text of a pair.")
]


@dataclass(frozen=True)
class TokenizeOptions:
    """What tokenize writes for a record, and how it encodes (or decodes) it."""

    chosen: list[str]  # the output fields
    count: bool
    special_tokens: bool
    decode: bool
    skip_special_tokens: bool
    max_length: int | None
    truncation: TruncationName | None
    field: str
    pair_field: str

    @property
    def columns(self) -> list[str]:
        return ["text"] if self.decode else ["count"] if self.count else self.chosen


@command_line()
def tokenize(
    model: Model = None,
    fields: Fields = "tokens,ids",
    offsets: Offsets = False,
    count: Count = False,
    special_tokens: SpecialTokens = True,
    decode: Decode = False,
    skip_special_tokens: SkipSpecialTokens = False,
    lang: Lang = None,
    max_length: MaxLength = None,
    truncation: Truncation = None,
    pair_field: PairField = "text_pair",
    *,
    streams: RecordIO,
    server: bool,
) -> None:
    """Split texts into tokens and ids, or decode ids back to text.

    Output: {"tokens": [...], "ids": [...]} per record; pairs via the "text_pair" field.

    Examples:

      xcli tokenize -m xlnet/xlnet-base-cased "Hello world"

      xcli tokenize -m xlnet-base-cased --count -O text < texts.txt

      echo '{"ids": [17, 11368, 4, 3]}' | xcli tokenize -m xlnet-base-cased --decode
    """
    options = TokenizeOptions(_chosen(fields, offsets, count, decode), count, special_tokens, decode,
                              skip_special_tokens, max_length, truncation, streams.field, pair_field)
    run_record_command(streams, lambda writer: _start(model, lang, options), columns=options.columns,
                       server=server)


def _chosen(fields: str, offsets: bool, count: bool, decode: bool) -> list[str]:
    """The output fields --fields (and --offsets) name; usage errors for what does not go together."""
    from .. import io
    from ..errors import UsageError

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
    return chosen


def _start(model: str | None, lang: str | None, options: TokenizeOptions) -> Job:
    """Load the tokenizer only (never torch); each record is done in ``prepare``."""
    from ..models import resolve_model

    tokenizer = _load_tokenizer(resolve_model(model).path, lang)
    return Job(lambda record: _tokenized(record, tokenizer, options), lambda results: results, 64)


def _tokenized(record: Any, tokenizer: Any, options: TokenizeOptions) -> dict[str, Any]:
    """One record's output: its decoded text, its token count, or the chosen fields."""
    if options.decode:
        ids = record.int_list("ids") if "ids" in record.data else record.int_list(options.field)
        return {"text": tokenizer.decode(ids, skip_special_tokens=options.skip_special_tokens)}
    max_length, truncation = options.max_length, options.truncation
    strategy = (truncation.value if truncation else "longest_first") if (max_length or truncation) else False
    encoding = tokenizer.encode_plus(
        record.text(options.field, FIELD_HINT),
        record.optional_text(options.pair_field),
        add_special_tokens=options.special_tokens,
        truncation=strategy,
        max_length=max_length,
        return_offsets="offsets" in options.chosen and not options.count,
    )
    if encoding.overflowing:
        limit = max_length or tokenizer.model_max_length
        message = f"{record.where}: truncated to {limit} tokens (--max-length)"
        console.counted_warning("truncated to --max-length", message)
    if options.count:
        return {"count": len(encoding.input_ids)}
    return {name: _field(tokenizer, encoding, name) for name in options.chosen}


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
