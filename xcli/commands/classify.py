"""``xcli classify``: labels for texts or pairs, entities in texts, or the best of several choices."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Optional

import typer

from ..options import (
    BatchSize, Debug, Device, DeviceName, Dtype, DtypeName, Field, Force, Input, InputFormat, InputFormatName, Keep,
    Lang, MaxLength, Model, OnError, OnErrorName, Output, OutputFormat, OutputFormatName, Quiet, Texts, Threads,
)


class FunctionName(str, Enum):
    softmax = "softmax"
    sigmoid = "sigmoid"
    none = "none"


class AggregationName(str, Enum):
    none = "none"
    simple = "simple"
    first = "first"
    average = "average"
    max = "max"


def classify(
    texts: Texts = None,
    model: Model = None,
    top_k: Annotated[
        Optional[int],
        typer.Option("--top-k", "-k", min=1, help="Sequence heads: list only the K best labels in \"scores\" "
                     "(default: all).", show_default=False),
    ] = None,
    function: Annotated[
        Optional[FunctionName],
        typer.Option("--function", case_sensitive=False, help="Sequence heads: how logits become scores "
                     "(default as the reference: none for regression, sigmoid for one label or multi-label, "
                     "else softmax).", show_default=False),
    ] = None,
    aggregation: Annotated[
        Optional[AggregationName],
        typer.Option("--aggregation", case_sensitive=False, help="Token heads: none (each token), simple (adjacent "
                     "tokens of one entity), or first/average/max (words agree on one label first). [default: none]",
                     show_default=False),
    ] = None,
    pair_field: Annotated[
        str, typer.Option("--pair-field", metavar="NAME", help="The record field that holds the second text of a pair.")
    ] = "text_pair",
    choices_field: Annotated[
        str, typer.Option("--choices-field", metavar="NAME", help="Multiple-choice heads: the field with the choices.")
    ] = "choices",
    lang: Lang = None,
    max_length: MaxLength = None,
    batch_size: BatchSize = 32,
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
    """Classify with the checkpoint's head; labels come from its id2label.

    Sequence heads (XLM, XLNet, MVP): {"label", "score", "scores": {label: score}}; pairs via
    the "text_pair" field. Token heads (XLM, XLNet): {"entities": [{"entity", "score", "word",
    "start", "end"}]} with character offsets. Multiple-choice heads (XLM, XLNet): records carry
    "choices"; {"choice": index, "scores": [...]}. --output-format text prints the label, the
    entities (word/ENTITY) or the choice.

    Examples:

      xcli classify -m ./xlnet-sst2 "A gripping, beautifully shot film."

      xcli classify -m ./xlm-ner --aggregation simple -O text < sentences.txt

      echo '{"text": "The cat sat on the", "choices": ["mat", "moon"]}' | xcli classify -m ./xlnet-swag
    """
    from .. import io
    from ..console import console
    from ..errors import RecordError
    from ..model_commands import check_length, load_task_model, usage_errors, warn_truncated, window

    records = io.read_records(texts, input, input_format=input_format, field=field)
    with io.open_writer(output, force=force, fmt=output_format, keep=keep, text_of=_main_result) as writer:
        from xcli_models.tasks.classify import CHOICE_HEADS, SEQUENCE_HEADS, TOKEN_HEADS, classifier_for

        heads = SEQUENCE_HEADS + TOKEN_HEADS + CHOICE_HEADS
        task = load_task_model(
            model, device, dtype, threads, accept=heads,
            what="classify: it needs a sequence, token or multiple-choice classification head",
        )
        check_length(task, max_length)
        with usage_errors():
            classifier = classifier_for(
                task.model, task.tokenizer, top_k=top_k, function=function.value if function else None,
                aggregation=aggregation.value if aggregation else "none", lang=lang, batch_size=batch_size,
                max_length=max_length,
            )
        unused = {
            "--top-k": top_k is not None and classifier.kind != "sequence",
            "--function": function is not None and classifier.kind != "sequence",
            "--aggregation": aggregation is not None and classifier.kind != "token",
        }
        for option, given in unused.items():
            if given:
                console.warning(f"{option} does not apply to {task.class_name}: ignored")
        hint = "pick the text field with --field"

        def prepare(record: io.Record) -> Any:
            text = record.text(field, hint)
            if classifier.kind == "choice":
                if record.get(choices_field) is None:
                    raise RecordError(
                        "missing_field", f'no "{choices_field}" field: {task.class_name} picks among choices'
                    )
                item = classifier.prepare(text, record.get(choices_field))
            elif classifier.kind == "token":
                item = classifier.prepare(text)
            else:
                item = classifier.prepare(text, record.optional_text(pair_field))
            warn_truncated(record, item, classifier.limit, given=max_length is not None)
            return item

        summary = io.run_records(
            records, classifier.run, writer, prepare=prepare, batch_size=window(batch_size), on_error=on_error
        )
    io.finish(summary)


def _main_result(result: dict[str, Any]) -> Any:
    """The label, the entities as word/ENTITY, or the chosen index."""
    if "label" in result:
        return result["label"]
    if "entities" in result:
        return " ".join(f"{e['word']}/{e['entity']}" for e in result["entities"])
    return result.get("choice")
