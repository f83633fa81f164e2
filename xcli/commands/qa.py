"""``xcli qa``: the span of a context that answers a question."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer

from ..options import Lang
from ..record_command import DROP, Job, ModelOptions, RecordIO, command_line, run_record_command

Context = Annotated[
    Optional[str],
    typer.Option(
        "--context", "-c", metavar="TEXT",
        help="The context of records that have none; TEXT arguments and plain-text lines are then questions.",
        show_default=False,
    ),
]
TopK = Annotated[int, typer.Option("--top-k", "-k", min=1, help='Also list the K best answers in "answers".')]
DocStride = Annotated[
    Optional[int],
    typer.Option(
        "--doc-stride", min=0, metavar="N",
        help="Tokens shared by consecutive windows of a long context (XLM: the step between windows). "
        "[default: min(max-seq-len / 2, 128)]",
        show_default=False,
    ),
]
MaxAnswerLen = Annotated[int, typer.Option("--max-answer-len", min=1, metavar="N", help="Longest answer, in tokens.")]
MaxSeqLen = Annotated[
    Optional[int],
    typer.Option(
        "--max-seq-len", min=1, metavar="N",
        help="Tokens per window, question and special tokens included. More than the model's positions "
        "take is a usage error. [default: min(model limit, 384)]",
        show_default=False,
    ),
]
MaxQuestionLen = Annotated[
    int, typer.Option("--max-question-len", min=1, metavar="N", help="Cut questions to N tokens.")
]
HandleImpossible = Annotated[
    bool,
    typer.Option(
        "--handle-impossible",
        help='Let "no answer" (answer "", start 0, end 0) compete, scored by the model\'s null score.',
    ),
]
AlignToWords = Annotated[
    Optional[bool],
    typer.Option(
        "--align-to-words/--no-align-to-words",
        help="Widen answers to whole words. [default: on, off for contexts in scripts written without spaces]",
        show_default=False,
    ),
]
QuestionField = Annotated[
    str, typer.Option("--question-field", metavar="NAME", help="The record field that holds the question.")
]
ContextField = Annotated[
    str, typer.Option("--context-field", metavar="NAME", help="The record field that holds the context.")
]


@dataclass(frozen=True)
class Fields:
    """Where a record's question and context are (and the context of records without one)."""

    question: str
    context: str
    text: str
    default_context: str | None


@command_line(batch_size=32, max_length=DROP)
def qa(
    context: Context = None,
    top_k: TopK = 1,
    doc_stride: DocStride = None,
    max_answer_len: MaxAnswerLen = 15,
    max_seq_len: MaxSeqLen = None,
    max_question_len: MaxQuestionLen = 64,
    handle_impossible: HandleImpossible = False,
    align_to_words: AlignToWords = None,
    question_field: QuestionField = "question",
    context_field: ContextField = "context",
    lang: Lang = None,
    *,
    streams: RecordIO,
    run: ModelOptions,
    server: bool,
) -> None:
    """Answer questions with a span of their context (extractive QA).

    Records carry "question" and "context"; output: {"answer", "score", "start", "end"} with
    character offsets into the context, plus "answers": [...] with --top-k > 1. Long contexts
    are read in overlapping windows. Works with span heads (XLM, XLNet, MVP) and the
    beam-search heads of XLM and XLNet. --output-format text prints the answer.

    Examples:

      xcli qa -m ./mvp-squad -i questions.jsonl -o answers.jsonl

      xcli qa -m ./xlnet-squad2 --handle-impossible --top-k 3 < questions.jsonl

      xcli qa -m ./mvp-squad --context "$(cat article.txt)" "Who wrote it?" "When?"
    """
    settings = dict(  # QAOptions, built when the model core is imported
        top_k=top_k, doc_stride=doc_stride, max_answer_len=max_answer_len, max_seq_len=max_seq_len,
        max_question_len=max_question_len, handle_impossible=handle_impossible, align_to_words=align_to_words,
    )
    fields = Fields(question_field, context_field, streams.field, context)
    run_record_command(streams, lambda emit: _start(run, settings, fields, lang), text_of=_answer, server=server)


def _start(run: ModelOptions, settings: dict[str, Any], fields: Fields, lang: str | None) -> Job:
    """Check the options (before the weights are read), load the model and its answerer."""
    from xcli_models.registry import heads_for
    from xcli_models.tasks.qa import QAOptions, QuestionAnswerer

    from ..errors import UsageError
    from ..model_commands import check_length, usage_errors

    options = QAOptions(**settings)
    with usage_errors():
        options.check()  # before the weights are read
        doc_stride, max_seq_len = options.doc_stride, options.max_seq_len
        if doc_stride is not None and max_seq_len is not None and doc_stride > max_seq_len:
            options_error = f"--doc-stride ({doc_stride}) is larger than --max-seq-len ({max_seq_len})"
            raise UsageError(options_error)
    task = run.load(heads_for("qa"), "qa: it needs a question-answering head (span or beam search)")
    check_length(task, options.max_seq_len, "--max-seq-len")
    with usage_errors():
        answerer = QuestionAnswerer(task.model, task.tokenizer, options, lang=lang)
    return Job(lambda record: _prepare(record, answerer, fields), lambda items: answerer.answer(items, run.batch_size),
               run.window)


def _prepare(record: Any, answerer: Any, fields: Fields) -> Any:
    """A record's question (its question field, else its text) and context (else --context)."""
    from xcli_models.tasks.qa import QAError

    from ..errors import RecordError

    question = record.optional_text(fields.question)
    if question is None:
        if fields.text not in record.data:
            raise RecordError("missing_field", f'no "{fields.question}" field in the record')
        question = record.text(fields.text)
    passage = record.optional_text(fields.context)
    if passage is None:
        if fields.default_context is None:
            raise RecordError(
                "missing_field", f'no "{fields.context}" field in the record (or pass --context)'
            )
        passage = fields.default_context
    try:
        return answerer.prepare(question, passage)
    except QAError as exc:
        raise RecordError(exc.kind, str(exc)) from None


def _answer(result: dict[str, Any]) -> Any:
    return result["answer"]
