"""``xcli classify``: labels for texts or pairs, entities in texts, or the best of several choices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer

from ..console import console
from ..options import Lang, choices
from ..record_command import FIELD_HINT, Job, ModelOptions, RecordIO, command_line, run_record_command


FunctionName = choices("FunctionName", "softmax", "sigmoid", "none")
AggregationName = choices("AggregationName", "none", "simple", "first", "average", "max")


TopK = Annotated[
    Optional[int],
    typer.Option("--top-k", "-k", min=1, help="Sequence heads: list only the K best labels in \"scores\" "
                 "(default: all).", show_default=False),
]
Function = Annotated[
    Optional[FunctionName],
    typer.Option("--function", case_sensitive=False, help="Sequence heads: how logits become scores "
                 "(default as the reference: none for regression, sigmoid for one label or multi-label, "
                 "else softmax).", show_default=False),
]
Aggregation = Annotated[
    Optional[AggregationName],
    typer.Option("--aggregation", case_sensitive=False, help="Token heads: none (each token), simple (adjacent "
                 "tokens of one entity), or first/average/max (words agree on one label first). [default: none]",
                 show_default=False),
]
PairField = Annotated[
    str, typer.Option("--pair-field", metavar="NAME", help="The record field that holds the second text of a pair.")
]
ChoicesField = Annotated[
    str, typer.Option("--choices-field", metavar="NAME", help="Multiple-choice heads: the field with the choices.")
]


@dataclass(frozen=True)
class ClassifyOptions:
    """classify's own options (each head kind takes some of them; the others are warned about)."""

    top_k: int | None
    function: FunctionName | None
    aggregation: AggregationName | None
    pair_field: str
    choices_field: str
    lang: str | None


@command_line(batch_size=32)
def classify(
    top_k: TopK = None,
    function: Function = None,
    aggregation: Aggregation = None,
    pair_field: PairField = "text_pair",
    choices_field: ChoicesField = "choices",
    lang: Lang = None,
    *,
    streams: RecordIO,
    run: ModelOptions,
    server: bool,
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
    options = ClassifyOptions(top_k, function, aggregation, pair_field, choices_field, lang)
    run_record_command(streams, lambda emit: _start(run, streams.field, options), text_of=_main_result,
                       server=server)


def _start(run: ModelOptions, field: str, options: ClassifyOptions) -> Job:
    """Load the model and the classifier its head calls for; warn about options that head ignores."""
    from xcli_models.registry import heads_for
    from xcli_models.tasks.classify import classifier_for

    from ..model_commands import usage_errors

    task = run.load(heads_for("classify"),
                    "classify: it needs a sequence, token or multiple-choice classification head", command="classify")
    with usage_errors():
        classifier = classifier_for(
            task.model, task.tokenizer, top_k=options.top_k,
            function=options.function.value if options.function else None,
            aggregation=options.aggregation.value if options.aggregation else "none", lang=options.lang,
            batch_size=run.batch_size, max_length=run.max_length,
        )
    unused = {
        "--top-k": options.top_k is not None and classifier.kind != "sequence",
        "--function": options.function is not None and classifier.kind != "sequence",
        "--aggregation": options.aggregation is not None and classifier.kind != "token",
    }
    for option, given in unused.items():
        if given:
            console.warning(f"{option} does not apply to {task.class_name}: ignored")
    return Job(lambda record: _prepare(record, classifier, task.class_name, field, options, run), classifier.run,
               run.window)


def _prepare(record: Any, classifier: Any, class_name: str, field: str, options: ClassifyOptions,
             run: ModelOptions) -> Any:
    """One record's item for the head's kind: a text, a pair, or a text with its choices."""
    from ..errors import RecordError
    from ..model_commands import warn_truncated

    text = record.text(field, FIELD_HINT)
    if classifier.kind == "choice":
        if record.get(options.choices_field) is None:
            raise RecordError(
                "missing_field", f'no "{options.choices_field}" field: {class_name} picks among choices'
            )
        item = classifier.prepare(text, record.get(options.choices_field))
    elif classifier.kind == "token":
        item = classifier.prepare(text)
    else:
        item = classifier.prepare(text, record.optional_text(options.pair_field))
    warn_truncated(record, item, classifier.limit, given=run.max_length is not None)
    return item


def _main_result(result: dict[str, Any]) -> Any:
    """The label, the entities as word/ENTITY, or the chosen index."""
    if "label" in result:
        return result["label"]
    if "entities" in result:
        return " ".join(f"{e['word']}/{e['entity']}" for e in result["entities"])
    return result.get("choice")
