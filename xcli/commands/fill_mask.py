"""``xcli fill-mask``: the most likely tokens for each ``<mask>`` of a text (XLM, XLNet, MVP)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ..options import (
    BatchSize, Debug, Device, DeviceName, Dtype, DtypeName, Field, Force, Input, InputFormat, InputFormatName, Keep,
    Lang, MaxLength, Model, OnError, OnErrorName, Output, OutputFormat, OutputFormatName, Quiet, Texts, Threads,
)


def fill_mask(
    texts: Texts = None,
    model: Model = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Predictions per blank.")] = 5,
    targets: Annotated[
        Optional[str],
        typer.Option(
            "--targets",
            metavar="W1,W2",
            help="Score only these words (vocabulary tokens; another word is replaced by its first piece, "
            "with a warning).",
            show_default=False,
        ),
    ] = None,
    lang: Lang = None,
    max_length: MaxLength = None,
    batch_size: BatchSize = 8,
    device: Device = DeviceName.auto,
    dtype: Dtype = DtypeName.float32,
    threads: Threads = None,
    field: Field = "text",
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
    """Fill the blanks of texts: mark each with <mask> (or the model's own mask token).

    Output: {"predictions": [[{"token_id", "token", "score", "sequence"}, ...], ...]}, one list
    per blank, best first; --output-format text prints the best token of each blank.
    Models: XLMWithLMHeadModel (mask <special1>; --lang for language embeddings),
    XLNetLMHeadModel (blanks hidden through perm_mask, one target per blank) and
    MvpForConditionalGeneration.

    Examples:

      xcli fill-mask -m ./xlm-mlm-enfr "Paris is the <mask> of France."

      xcli fill-mask -m ./mvp --top-k 3 --targets capital,city "Paris is the <mask> of France."
    """
    from .. import io
    from ..console import console
    from ..model_commands import check_length, load_task_model, usage_errors, warn_truncated, window

    records = io.read_records(texts, input, input_format=input_format, field=field)
    with io.open_writer(output, force=force, fmt=output_format, keep=keep, text_of=_best_fills,
                        columns=["predictions"]) as writer:
        from xcli_models.tasks.fill_mask import FILL_MASK_CLASSES, FillMask

        task = load_task_model(
            model, device, dtype, threads, accept=FILL_MASK_CLASSES,
            what=f"fill-mask: it needs a masked-LM head ({', '.join(FILL_MASK_CLASSES)})",
        )
        check_length(task, max_length)
        with usage_errors():
            target_list = io.parse_field_list(targets) if targets is not None else None
            filler = FillMask(
                task.model, task.tokenizer, top_k=top_k, targets=target_list, lang=lang,
                batch_size=batch_size, max_length=max_length,
            )
        for warning in filler.warnings:
            console.warning(f"--targets: {warning}")
        hint = "pick the text field with --field"

        def prepare(record: io.Record) -> Any:
            item = filler.prepare(record.text(field, hint))
            warn_truncated(record, item, filler.limit, given=max_length is not None)
            return item

        def process(items: list[Any]) -> list[dict[str, Any]]:
            return [{"predictions": predictions} for predictions in filler.run(items)]

        summary = io.run_records(
            records, process, writer, prepare=prepare, batch_size=window(batch_size), on_error=on_error
        )
    io.finish(summary)


def _best_fills(result: dict[str, Any]) -> str:
    """The best token of each blank, stripped, joined by spaces."""
    return " ".join(blank[0]["token"].strip() for blank in result["predictions"] if blank)
