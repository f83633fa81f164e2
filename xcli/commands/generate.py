"""``xcli generate``: continue prompts (causal models) or write texts from inputs (encoder-decoder models)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Optional

import typer

from ..options import (
    BatchSize, Debug, Device, DeviceName, Dtype, DtypeName, Field, Force, Input, InputFormat, InputFormatName, Keep,
    Lang, MaxLength, Model, OnError, OnErrorName, Output, OutputFormatName, Quiet, Texts, Threads,
)


class EarlyStopping(str, Enum):
    true = "true"
    false = "false"
    never = "never"


class MvpTask(str, Enum):
    summarize = "summarize"
    data_to_text = "data-to-text"
    qa = "qa"
    question_generation = "question-generation"
    story = "story"
    open_dialog = "open-dialog"
    task_dialog = "task-dialog"


def _opt(*names: str, help: str, **kwargs: Any) -> Any:
    return typer.Option(*names, help=help, show_default=False, **kwargs)


def generate(
    texts: Texts = None,
    model: Model = None,
    max_new_tokens: Annotated[
        Optional[int], _opt("--max-new-tokens", "-N", min=1, metavar="N", help="Generate at most N new tokens "
                            "(default: the checkpoint's generation settings, else 20).")
    ] = None,
    min_new_tokens: Annotated[
        Optional[int], _opt("--min-new-tokens", min=0, metavar="N", help="No end of sequence before N new tokens.")
    ] = None,
    max_length: Annotated[
        Optional[int], _opt("--max-total-length", min=1, metavar="N", help="Total length limit as the reference's max_length counts "
                            "it: prompt + new tokens (causal models), output tokens with the start token "
                            "(encoder-decoder). --max-new-tokens wins.")
    ] = None,
    do_sample: Annotated[
        Optional[bool], _opt("--do-sample/--greedy", "--sample", help="Sample the next token instead of taking "
                             "the most likely (greedy or beam search). Default: the checkpoint's setting, else greedy.")
    ] = None,
    num_beams: Annotated[
        Optional[int], _opt("--num-beams", min=1, metavar="K", help="Beam search with K beams.")
    ] = None,
    num_return_sequences: Annotated[
        Optional[int], _opt("--num-return-sequences", "-n", min=1, metavar="N", help="Return N sequences per "
                            "record (needs beams or sampling): a \"sequences\" list with texts and scores.")
    ] = None,
    length_penalty: Annotated[
        Optional[float], _opt("--length-penalty", metavar="X", help="Beam scores are divided by length**X "
                              "(> 0 favours longer sequences).")
    ] = None,
    early_stopping: Annotated[
        Optional[EarlyStopping], _opt("--early-stopping", case_sensitive=False, help="Beam search ends: true, as "
                                      "soon as K sequences are done; false, when no better one is likely; never, "
                                      "when none can be better.")
    ] = None,
    temperature: Annotated[
        Optional[float], _opt("--temperature", "-t", metavar="T", help="Sampling: divide the logits by T.")
    ] = None,
    top_k: Annotated[
        Optional[int], _opt("--top-k", min=0, metavar="K", help="Sampling: keep the K most likely tokens (0: all; "
                            "reference default 50).")
    ] = None,
    top_p: Annotated[
        Optional[float], _opt("--top-p", min=0.0, max=1.0, metavar="P", help="Sampling: keep the most likely tokens "
                              "up to probability mass P.")
    ] = None,
    typical_p: Annotated[
        Optional[float], _opt("--typical-p", min=0.0, max=1.0, metavar="P", help="Sampling: locally typical "
                              "sampling with mass P.")
    ] = None,
    seed: Annotated[
        Optional[int], _opt("--seed", metavar="S", help="Make sampling reproducible: the same prompt and seed give "
                            "the same text in any run and any batch.")
    ] = None,
    repetition_penalty: Annotated[
        Optional[float], _opt("--repetition-penalty", min=0.0, metavar="X", help="Tokens already in the sequence "
                              "become less likely (> 1) or more (< 1).")
    ] = None,
    no_repeat_ngram_size: Annotated[
        Optional[int], _opt("--no-repeat-ngram-size", min=0, metavar="N", help="No N-gram occurs twice.")
    ] = None,
    bad_words: Annotated[
        Optional[list[str]], _opt("--bad-words", metavar="WORD", help="Never generate WORD (repeatable; tokenised "
                                  "as the reference builds bad_words_ids).")
    ] = None,
    stop: Annotated[
        Optional[list[str]], _opt("--stop", metavar="TEXT", help="Stop a sequence when its text contains TEXT, and "
                                  "cut the text before it (repeatable; \\n and \\t are understood).")
    ] = None,
    stream: Annotated[
        bool, typer.Option("--stream", help="Print each text as it is generated (text output, one record at a "
                           "time; implies -O text).")
    ] = False,
    return_full_text: Annotated[
        Optional[bool], _opt("--return-full-text/--new-text", help="Causal models: the prompt followed by its "
                             "continuation (default, as the reference pipeline) or the continuation only.")
    ] = None,
    scores: Annotated[bool, typer.Option("--scores", help="Add each sequence's \"score\" to its output.")] = False,
    task: Annotated[
        Optional[MvpTask], _opt("--task", case_sensitive=False, help="MVP: put the task's instruction in front of "
                                "each input, as MVP was trained (the list is below).")
    ] = None,
    lang: Lang = None,
    xlnet_prefix: Annotated[
        bool, typer.Option("--xlnet-prefix", help="XLNet: give the model the reference pipeline's long context "
                           "passage before each prompt (never shown in the output).")
    ] = False,
    max_input_length: MaxLength = None,
    batch_size: BatchSize = 8,
    device: Device = DeviceName.auto,
    dtype: Dtype = DtypeName.float32,
    threads: Threads = None,
    field: Field = "text",
    input: Input = None,
    input_format: InputFormat = InputFormatName.auto,
    output: Output = None,
    output_format: Annotated[
        Optional[OutputFormatName], _opt("--output-format", "-O", case_sensitive=False, help="jsonl: one object "
                                         "per record (default); text: the generated text only (default with "
                                         "--stream); tsv: a header row, then one row per record.")
    ] = None,
    force: Force = False,
    keep: Keep = None,
    on_error: OnError = OnErrorName.continue_,
    quiet: Quiet = False,
    debug: Debug = False,
) -> None:
    """Generate text: continue prompts (causal models) or write outputs from inputs (encoder-decoder).

    Output: {"generated_text": ...}; with -n N > 1 also "sequences": [{"generated_text",
    "score"}, ...] best first; --scores adds "score". Causal models (XGLM, XLM causal LM, XLNet,
    MVP and (XLM-)ProphetNet *ForCausalLM) give the prompt and its continuation unless
    --new-text; encoder-decoder models (MVP, (XLM-)ProphetNet *ForConditionalGeneration) give
    the new text. The texts are those of the reference text-generation / text2text-generation
    pipelines with the same settings; the defaults are the checkpoint's generation settings
    (else greedy, 20 new tokens), not the pipelines' (sampling / 4 beams, 256 tokens).
    ProphetNet's [X_SEP] shows as a newline.

    --task puts MVP's instruction (from the RUCAIBox/mvp model cards) in front of each input:

    \b
      summarize            "Summarize: " + text
      data-to-text         "Describe the following data: " + "a | rel | b [SEP] c | rel | d"
      qa                   "Answer the following question: " + question [+ " [X_SEP] " + context]
      question-generation  "Generate the question based on the answer: " + answer " [X_SEP] " context
      story                "Given the story title: " + text
      open-dialog          "Given the dialog: " + turns joined by " [SEP] " (a "dialog" list)
      task-dialog          "Given the task dialog: " + "System response [X_SEP] " + text

    (the "question", "context", "answer", "dialog" and "knowledge" fields are read when present).

    --stream prints each text as its tokens come, one record at a time, one line per record:
    the same bytes as -O text without --stream. It implies -O text; -O jsonl/tsv and --output
    are refused (a JSON line cannot be printed before it is complete).

    Examples:

    \b
      xcli generate -m ./xglm-564M "The capital of France is"
      xcli generate -m ./xglm-564M --sample --top-p 0.9 --seed 1 -n 3 "Once upon a time"
      xcli generate -m RUCAIBox/mvp --task summarize --num-beams 4 < articles.txt
      xcli generate -m ./xglm-564M --stream --stop '\\n' "Q: Why is the sky blue? A:"
    """
    from .. import io
    from ..console import console
    from ..errors import UsageError

    fmt = output_format.value if output_format is not None else ("text" if stream else "jsonl")
    if stream and fmt != "text":
        raise UsageError(f"--stream prints text as it is generated: it cannot write -O {fmt}", "leave -O out")
    if stream and output is not None and str(output) != "-":
        raise UsageError("--stream prints to stdout as text is generated: it cannot write --output",
                         "redirect stdout instead")
    streamed = {"text": ""}  # what the current record has shown so far (--stream)

    def main_text(result: dict[str, Any]) -> str:
        text, shown = result["generated_text"], streamed["text"]
        streamed["text"] = ""
        return text[len(shown):] if shown and text.startswith(shown) else text

    records = io.read_records(texts, input, input_format=input_format, field=field)
    several = (num_return_sequences or 1) > 1
    columns = ["generated_text", *(["score"] if scores else []), *(["sequences"] if several else [])]
    with io.open_writer(output, force=force, fmt=fmt, keep=keep, text_of=main_text, columns=columns) as writer:
        from xcli_models.tasks.generate import GENERATE_CLASSES, Generator
        from ..model_commands import check_length, load_task_model, usage_errors, window

        loaded = load_task_model(
            model, device, dtype, threads, accept=GENERATE_CLASSES,
            what=f"generate: it needs a language-modelling head ({', '.join(GENERATE_CLASSES)})",
        )
        check_length(loaded, max_input_length)
        settings = {
            "max_new_tokens": max_new_tokens, "min_new_tokens": min_new_tokens, "max_length": max_length,
            "do_sample": do_sample, "num_beams": num_beams, "num_return_sequences": num_return_sequences,
            "length_penalty": length_penalty, "temperature": temperature, "top_k": top_k, "top_p": top_p,
            "typical_p": typical_p, "repetition_penalty": repetition_penalty,
            "no_repeat_ngram_size": no_repeat_ngram_size, "bad_words": bad_words,
            "stop_strings": [_unescape(s) for s in stop] if stop else None,
            "early_stopping": None if early_stopping is None else {"true": True, "false": False}.get(
                early_stopping.value, early_stopping.value),
        }
        with usage_errors():
            generator = Generator(
                loaded.model, loaded.tokenizer, settings=settings, return_full_text=return_full_text,
                task=task.value if task is not None else None, lang=lang, xlnet_prefix=xlnet_prefix,
                max_input_length=max_input_length, batch_size=batch_size, seed=seed, scores=scores,
            )
            if stream and not generator.streams:
                raise UsageError(
                    "--stream shows one sequence as it grows: it needs --num-beams 1 and --num-return-sequences 1"
                    f" (this run has {generator.config.num_beams} beam(s), "
                    f"{generator.config.num_return_sequences} sequence(s))"
                )
        unused = {
            "--xlnet-prefix": xlnet_prefix and loaded.class_name != "XLNetLMHeadModel",
            "--return-full-text": bool(return_full_text) and not generator.causal,
        }
        for option, given in unused.items():
            if given:
                console.warning(f"{option} does not apply to {loaded.class_name}: ignored")
        for warning in generator.warnings:
            console.warning(warning)
        hint = "pick the text field with --field"

        def prepare(record: io.Record) -> Any:
            text = record.optional_text(field) if generator.task else record.text(field, hint)
            item = generator.prepare(text, record.data)
            if item.truncated:
                kept = "its last" if generator.causal else "its first"
                console.counted_warning(
                    "truncated", f"{record.where}: input cut to {kept} {generator.limit} tokens (the model's limit, "
                    "room for the new tokens, or --max-length)"
                )
            return item

        if stream:
            def write(piece: str) -> None:
                if piece:
                    streamed["text"] += piece
                    _write_now(writer, io._cell(piece))

            def process(items: list[Any]) -> list[dict[str, Any]]:
                streamed["text"] = ""
                return [generator.stream(item, write) for item in items]

            size = 1
        else:
            process, size = generator.run, window(batch_size)
        summary = io.run_records(records, process, writer, prepare=prepare, batch_size=size, on_error=on_error)
    io.finish(summary)


def _write_now(writer: Any, text: str) -> None:
    """Text straight to the output, flushed (between the record lines the writer keeps in order)."""
    from ..errors import OutputClosed

    try:
        writer.sink.write(text.encode("utf-8", "replace"))
        writer.sink.flush()
    except BrokenPipeError:
        raise OutputClosed() from None


_ESCAPES = {"\\n": "\n", "\\t": "\t", "\\r": "\r", "\\\\": "\\"}


def _unescape(text: str) -> str:
    """``\\n``, ``\\t``, ``\\r`` and ``\\\\`` in a --stop value as the characters they name."""
    out, i = [], 0
    while i < len(text):
        pair = text[i: i + 2]
        if pair in _ESCAPES:
            out.append(_ESCAPES[pair])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
