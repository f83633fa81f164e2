"""``xcli qa``: the span of a context that answers a question."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from ..options import (
    BatchSize, Debug, Device, DeviceName, Dtype, DtypeName, Field, Force, Input, InputFormat, InputFormatName, Keep,
    Lang, Model, OnError, OnErrorName, Output, OutputFormat, OutputFormatName, Quiet, Texts, Threads,
)


def qa(
    texts: Texts = None,
    model: Model = None,
    context: Annotated[
        Optional[str],
        typer.Option(
            "--context", "-c", metavar="TEXT",
            help="The context of records that have none; TEXT arguments and plain-text lines are then questions.",
            show_default=False,
        ),
    ] = None,
    top_k: Annotated[
        int, typer.Option("--top-k", "-k", min=1, help='Also list the K best answers in "answers".')
    ] = 1,
    doc_stride: Annotated[
        Optional[int],
        typer.Option(
            "--doc-stride", min=0, metavar="N",
            help="Tokens shared by consecutive windows of a long context (XLM: the step between windows). "
            "[default: min(max-seq-len / 2, 128)]",
            show_default=False,
        ),
    ] = None,
    max_answer_len: Annotated[
        int, typer.Option("--max-answer-len", min=1, metavar="N", help="Longest answer, in tokens.")
    ] = 15,
    max_seq_len: Annotated[
        Optional[int],
        typer.Option(
            "--max-seq-len", min=1, metavar="N",
            help="Tokens per window, question and special tokens included. More than the model's positions "
            "take is a usage error. [default: min(model limit, 384)]",
            show_default=False,
        ),
    ] = None,
    max_question_len: Annotated[
        int, typer.Option("--max-question-len", min=1, metavar="N", help="Cut questions to N tokens.")
    ] = 64,
    handle_impossible: Annotated[
        bool,
        typer.Option(
            "--handle-impossible",
            help='Let "no answer" (answer "", start 0, end 0) compete, scored by the model\'s null score.',
        ),
    ] = False,
    align_to_words: Annotated[
        Optional[bool],
        typer.Option(
            "--align-to-words/--no-align-to-words",
            help="Widen answers to whole words. [default: on, off for contexts in scripts written without spaces]",
            show_default=False,
        ),
    ] = None,
    question_field: Annotated[
        str, typer.Option("--question-field", metavar="NAME", help="The record field that holds the question.")
    ] = "question",
    context_field: Annotated[
        str, typer.Option("--context-field", metavar="NAME", help="The record field that holds the context.")
    ] = "context",
    lang: Lang = None,
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
    from .. import io
    from ..errors import RecordError, UsageError
    from ..model_commands import check_length, load_task_model, usage_errors, window

    records = io.read_records(texts, input, input_format=input_format, field=field)
    with io.open_writer(output, force=force, fmt=output_format, keep=keep, text_of=_answer) as writer:
        from xcli_models.tasks.qa import BEAM_HEADS, SPAN_HEADS, QAError, QAOptions, QuestionAnswerer

        options = QAOptions(
            top_k=top_k, doc_stride=doc_stride, max_answer_len=max_answer_len, max_seq_len=max_seq_len,
            max_question_len=max_question_len, handle_impossible=handle_impossible, align_to_words=align_to_words,
        )
        with usage_errors():
            options.check()  # before the weights are read
            if doc_stride is not None and max_seq_len is not None and doc_stride > max_seq_len:
                options_error = f"--doc-stride ({doc_stride}) is larger than --max-seq-len ({max_seq_len})"
                raise UsageError(options_error)
        task = load_task_model(
            model, device, dtype, threads, accept=SPAN_HEADS + BEAM_HEADS,
            what="qa: it needs a question-answering head (span or beam search)",
        )
        check_length(task, max_seq_len, "--max-seq-len")
        with usage_errors():
            answerer = QuestionAnswerer(task.model, task.tokenizer, options, lang=lang)

        def prepare(record: io.Record) -> Any:
            question = record.optional_text(question_field)
            if question is None:
                if field not in record.data:
                    raise RecordError("missing_field", f'no "{question_field}" field in the record')
                question = record.text(field)
            passage = record.optional_text(context_field)
            if passage is None:
                if context is None:
                    raise RecordError(
                        "missing_field", f'no "{context_field}" field in the record (or pass --context)'
                    )
                passage = context
            try:
                return answerer.prepare(question, passage)
            except QAError as exc:
                raise RecordError(exc.kind, str(exc)) from None

        summary = io.run_records(
            records, lambda items: answerer.answer(items, batch_size), writer, prepare=prepare,
            batch_size=window(batch_size), on_error=on_error,
        )
    io.finish(summary)


def _answer(result: dict[str, Any]) -> Any:
    return result["answer"]
