"""``xcli fill-mask``: the most likely tokens for each ``<mask>`` of a text (XLM, XLNet, MVP)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ..console import console
from ..options import Lang
from ..record_command import FIELD_HINT, Job, ModelOptions, RecordIO, command_line, run_record_command

TopK = Annotated[int, typer.Option("--top-k", "-k", min=1, help="Predictions per blank.")]
Targets = Annotated[
    Optional[str],
    typer.Option(
        "--targets",
        metavar="W1,W2",
        help="Score only these words (vocabulary tokens; another word is replaced by its first piece, "
        "with a warning).",
        show_default=False,
    ),
]


@command_line(batch_size=8)
def fill_mask(
    top_k: TopK = 5,
    targets: Targets = None,
    lang: Lang = None,
    *,
    streams: RecordIO,
    run: ModelOptions,
    server: bool,
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
    run_record_command(streams, lambda writer: _start(run, streams.field, top_k, targets, lang), text_of=_best_fills,
                       columns=["predictions"], server=server)


def _start(run: ModelOptions, field: str, top_k: int, targets: str | None, lang: str | None) -> Job:
    """Load the masked-LM model and its filler; a record's text becomes an item with its blanks."""
    from .. import io
    from ..model_commands import usage_errors, warn_truncated
    from xcli_models.registry import heads_for
    from xcli_models.tasks.fill_mask import FillMask

    heads = heads_for("fill-mask")
    task = run.load(heads, f"fill-mask: it needs a masked-LM head ({', '.join(heads)})",
                    command="fill-mask")
    with usage_errors():
        target_list = io.parse_field_list(targets) if targets is not None else None
        filler = FillMask(
            task.model, task.tokenizer, top_k=top_k, targets=target_list, lang=lang,
            batch_size=run.batch_size, max_length=run.max_length,
        )
    for warning in filler.warnings:
        console.warning(f"--targets: {warning}")

    def prepare(record: io.Record) -> Any:
        item = filler.prepare(record.text(field, FIELD_HINT))
        warn_truncated(record, item, filler.limit, given=run.max_length is not None)
        return item

    def process(items: list[Any]) -> list[dict[str, Any]]:
        return [{"predictions": predictions} for predictions in filler.run(items)]

    return Job(prepare, process, run.window)


def _best_fills(result: dict[str, Any]) -> str:
    """The best token of each blank, stripped, joined by spaces."""
    return " ".join(blank[0]["token"].strip() for blank in result["predictions"] if blank)
