"""``xcli fill-mask``: the most likely tokens for each ``<mask>`` of a text (XLM, XLNet, MVP).

The helpers at the end (loading a task model, usage errors, truncation warnings, the batch
window) are shared with the other model-running commands (classify, qa).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Annotated, Any, Iterator, Optional, Sequence

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

    records = io.read_records(texts, input, input_format=input_format, field=field)
    with io.open_writer(output, force=force, fmt=output_format, keep=keep, text_of=_best_fills,
                        columns=["predictions"]) as writer:
        from xcli_models.tasks.fill_mask import FILL_MASK_CLASSES, FillMask

        task = load_task_model(
            model, device, dtype, threads, accept=FILL_MASK_CLASSES,
            what=f"fill-mask: it needs a masked-LM head ({', '.join(FILL_MASK_CLASSES)})",
        )
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
            warn_truncated(record, item, filler.limit)
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


# ------------------------------------------------------- shared by the task commands
def load_task_model(
    spec: str | None, device: Any, dtype: Any, threads: int | None, *, accept: Sequence[str], what: str
) -> Any:
    """Resolve ``--model`` and load it (class from its config.json) with its tokenizer.

    A checkpoint whose head is not in ``accept`` is a usage error naming its class, raised before
    any weight is read; so is an unavailable ``--device``.
    """
    from ..models import resolve_model

    resolved = resolve_model(spec)
    from xcli_models.tasks import common

    from xcli_models.auto import AutoModel, family_of

    common.set_threads(threads)
    device_name = str(getattr(device, "value", device))
    with usage_errors():
        common.pick_device(device_name)
        family, _ = family_of(resolved.path)
        common.require_head(AutoModel.class_for(resolved.path).__name__, lambda name: name in accept, what, family.name)
    return common.load(resolved.path, device=device_name, dtype=str(getattr(dtype, "value", dtype)))


@contextmanager
def usage_errors() -> Iterator[None]:
    """Options the model cannot honour (wrong head, unknown language or target) are usage errors."""
    from xcli_models.tasks.common import UnsupportedModel
    from xcli_models.tokenization import TokenizerError

    from ..errors import UsageError

    try:
        yield
    except (UnsupportedModel, TokenizerError) as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        if type(exc).__module__.startswith("xcli_models"):  # the task's own option checks
            raise UsageError(str(exc)) from None
        raise


def warn_truncated(record: Any, item: Any, limit: int | None) -> None:
    """A counted warning when a record's input was cut to the length limit."""
    if getattr(item, "truncated", False):
        from ..console import console

        console.counted_warning("truncated", f"{record.where}: truncated to {limit} tokens (--max-length)")


def window(batch_size: int) -> int:
    """Records read per round: many batches' worth, so that batches of similar lengths can be formed.

    Sorting 32 batches' worth by length leaves about 5% padding on SST-2 sentences, where input
    order pads 96% (8 batches' worth: 17%). Fewer are taken whenever no more input is ready (see
    ``xcli.io.batches``), so a slow producer still gets each answer at once; memory stays bounded
    by this number of records.
    """
    return batch_size * 32
