"""``xcli generate``: continue prompts (causal models) or write texts from inputs (encoder-decoder models)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer

from ..console import console
from ..options import Lang, OutputFormatName, choices
from ..record_command import FIELD_HINT, Job, ModelOptions, Option, RecordIO, command_line, run_record_command


EarlyStopping = choices("EarlyStopping", "true", "false", "never")
MvpTask = choices(
    "MvpTask", "summarize", "data-to-text", "qa", "question-generation", "story", "open-dialog", "task-dialog"
)


def _opt(*names: str, help: str, **kwargs: Any) -> Any:
    return typer.Option(*names, help=help, show_default=False, **kwargs)


MaxNewTokens = Annotated[
    Optional[int], _opt("--max-new-tokens", "-N", min=1, metavar="N", help="Generate at most N new tokens "
                        "(default: the checkpoint's generation settings, else 20).")
]
MinNewTokens = Annotated[
    Optional[int], _opt("--min-new-tokens", min=0, metavar="N", help="No end of sequence before N new tokens.")
]
MaxTotalLength = Annotated[
    Optional[int], _opt("--max-total-length", min=1, metavar="N", help="Total length limit as the reference's "
                        "max_length counts it: prompt + new tokens (causal models), output tokens with the start "
                        "token (encoder-decoder). --max-new-tokens wins.")
]
DoSample = Annotated[
    Optional[bool], _opt("--do-sample/--greedy", "--sample", help="Sample the next token instead of taking "
                         "the most likely (greedy or beam search). Default: the checkpoint's setting, else greedy.")
]
NumBeams = Annotated[
    Optional[int], _opt("--num-beams", min=1, metavar="K", help="Beam search with K beams.")
]
NumReturnSequences = Annotated[
    Optional[int], _opt("--num-return-sequences", "-n", min=1, metavar="N", help="Return N sequences per "
                        "record (needs beams or sampling): a \"sequences\" list with texts and scores.")
]
LengthPenalty = Annotated[
    Optional[float], _opt("--length-penalty", metavar="X", help="Beam scores are divided by length**X "
                          "(> 0 favours longer sequences).")
]
EarlyStoppingOption = Annotated[
    Optional[EarlyStopping], _opt("--early-stopping", case_sensitive=False, help="Beam search ends: true, as "
                                  "soon as K sequences are done; false, when no better one is likely; never, "
                                  "when none can be better.")
]
Temperature = Annotated[
    Optional[float], _opt("--temperature", "-t", metavar="T", help="Sampling: divide the logits by T.")
]
TopK = Annotated[
    Optional[int], _opt("--top-k", min=0, metavar="K", help="Sampling: keep the K most likely tokens (0: all; "
                        "reference default 50).")
]
TopP = Annotated[
    Optional[float], _opt("--top-p", min=0.0, max=1.0, metavar="P", help="Sampling: keep the most likely tokens "
                          "up to probability mass P.")
]
TypicalP = Annotated[
    Optional[float], _opt("--typical-p", min=0.0, max=1.0, metavar="P", help="Sampling: locally typical "
                          "sampling with mass P.")
]
Seed = Annotated[
    Optional[int], _opt("--seed", metavar="S", help="Make sampling reproducible: the same prompt and seed give "
                        "the same text in any run and any batch.")
]
RepetitionPenalty = Annotated[
    Optional[float], _opt("--repetition-penalty", min=0.0, metavar="X", help="Tokens already in the sequence "
                          "become less likely (> 1) or more (< 1).")
]
NoRepeatNgramSize = Annotated[
    Optional[int], _opt("--no-repeat-ngram-size", min=0, metavar="N", help="No N-gram occurs twice.")
]
BadWords = Annotated[
    Optional[list[str]], _opt("--bad-words", metavar="WORD", help="Never generate WORD (repeatable; tokenised "
                              "as the reference builds bad_words_ids).")
]
Stop = Annotated[
    Optional[list[str]], _opt("--stop", metavar="TEXT", help="Stop a sequence when its text contains TEXT, and "
                              "cut the text before it (repeatable; \\n and \\t are understood).")
]
Stream = Annotated[
    bool, typer.Option("--stream", help="Print each text as it is generated (text output, one record at a "
                       "time; implies -O text).")
]
ReturnFullText = Annotated[
    Optional[bool], _opt("--return-full-text/--new-text", help="Causal models: the prompt followed by its "
                         "continuation (default, as the reference pipeline) or the continuation only.")
]
Scores = Annotated[bool, typer.Option("--scores", help="Add each sequence's \"score\" to its output.")]
Task = Annotated[
    Optional[MvpTask], _opt("--task", case_sensitive=False, help="MVP: put the task's instruction in front of "
                            "each input, as MVP was trained (the list is below).")
]
XlnetPrefix = Annotated[
    bool, typer.Option("--xlnet-prefix", help="XLNet: give the model the reference pipeline's long context "
                       "passage before each prompt (never shown in the output).")
]
GenerateOutputFormat = Annotated[
    Optional[OutputFormatName], _opt("--output-format", "-O", case_sensitive=False, help="jsonl: one object "
                                     "per record (default); text: the generated text only (default with "
                                     "--stream); tsv: a header row, then one row per record.")
]


@dataclass(frozen=True)
class Search:
    """How the next tokens are chosen and when a sequence ends: the generation settings."""

    max_new_tokens: int | None
    min_new_tokens: int | None
    max_length: int | None
    do_sample: bool | None
    num_beams: int | None
    num_return_sequences: int | None
    length_penalty: float | None
    early_stopping: EarlyStopping | None
    temperature: float | None
    top_k: int | None
    top_p: float | None
    typical_p: float | None
    seed: int | None  # sampling: the same prompt and seed give the same text
    repetition_penalty: float | None
    no_repeat_ngram_size: int | None
    bad_words: list[str] | None
    stop: list[str] | None

    def settings(self) -> dict[str, Any]:
        """As the model core's generation settings name them (None: the checkpoint's own); the seed goes apart."""
        names = ("max_new_tokens", "min_new_tokens", "max_length", "do_sample", "num_beams", "num_return_sequences",
                 "length_penalty", "temperature", "top_k", "top_p", "typical_p", "repetition_penalty",
                 "no_repeat_ngram_size", "bad_words")
        early = self.early_stopping
        return {
            **{name: getattr(self, name) for name in names},
            "stop_strings": [_unescape(s) for s in self.stop] if self.stop else None,
            "early_stopping": None if early is None else {"true": True, "false": False}.get(early.value, early.value),
        }


@dataclass(frozen=True)
class Shape:
    """What goes in and comes out around the search: the input field and prompt, the text kept, scores, streaming."""

    field: str
    task: MvpTask | None
    lang: str | None
    xlnet_prefix: bool
    return_full_text: bool | None
    scores: bool
    stream: bool


class _Shown:
    """What the current record has printed so far under --stream: its line then prints only the rest."""

    def __init__(self) -> None:
        self.text = ""

    def show(self, writer: Any, piece: str | None) -> None:
        """Print a piece of the record's text now (``None``: a new record's text begins)."""
        from .. import io

        if piece is None:
            self.text = ""
        elif piece:
            self.text += piece
            _write_now(writer, io.cell(piece))

    def rest(self, result: dict[str, Any]) -> str:
        text, shown = result["generated_text"], self.text
        self.text = ""
        return text[len(shown):] if shown and text.startswith(shown) else text


@command_line(output_format=Option(GenerateOutputFormat, None))
def generate(
    max_new_tokens: MaxNewTokens = None,
    min_new_tokens: MinNewTokens = None,
    max_total_length: MaxTotalLength = None,
    do_sample: DoSample = None,
    num_beams: NumBeams = None,
    num_return_sequences: NumReturnSequences = None,
    length_penalty: LengthPenalty = None,
    early_stopping: EarlyStoppingOption = None,
    temperature: Temperature = None,
    top_k: TopK = None,
    top_p: TopP = None,
    typical_p: TypicalP = None,
    seed: Seed = None,
    repetition_penalty: RepetitionPenalty = None,
    no_repeat_ngram_size: NoRepeatNgramSize = None,
    bad_words: BadWords = None,
    stop: Stop = None,
    stream: Stream = False,
    return_full_text: ReturnFullText = None,
    scores: Scores = False,
    task: Task = None,
    lang: Lang = None,
    xlnet_prefix: XlnetPrefix = False,
    *,
    streams: RecordIO,
    run: ModelOptions,
    server: bool,
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
    the same bytes as -O text without --stream. It implies -O text; -O jsonl/tsv, --output and
    --shard are refused (a JSON line cannot be printed before it is complete).

    Examples:

    \b
      xcli generate -m ./xglm-564M "The capital of France is"
      xcli generate -m ./xglm-564M --sample --top-p 0.9 --seed 1 -n 3 "Once upon a time"
      xcli generate -m RUCAIBox/mvp --task summarize --num-beams 4 < articles.txt
      xcli generate -m ./xglm-564M --stream --stop '\\n' "Q: Why is the sky blue? A:"
    """
    streams = dataclasses.replace(streams, output_format=_output_format(streams, stream))
    search = Search(max_new_tokens, min_new_tokens, max_total_length, do_sample, num_beams, num_return_sequences,
                    length_penalty, early_stopping, temperature, top_k, top_p, typical_p, seed, repetition_penalty,
                    no_repeat_ngram_size, bad_words, stop)
    shape = Shape(streams.field, task, lang, xlnet_prefix, return_full_text, scores, stream)
    shown = _Shown()
    several = (num_return_sequences or 1) > 1
    columns = ["generated_text", *(["score"] if scores else []), *(["sequences"] if several else [])]
    run_record_command(streams, lambda emit: _start(emit, run, search, shape), text_of=shown.rest,
                       columns=columns, on_piece=shown.show, server=server)


def _output_format(streams: RecordIO, stream: bool) -> str:
    """-O, else text with --stream and jsonl without; --stream writes text to stdout only, unsharded."""
    from ..errors import UsageError

    output_format, output, shard = streams.output_format, streams.output, streams.shard
    fmt = output_format.value if output_format is not None else ("text" if stream else "jsonl")
    if stream and fmt != "text":
        raise UsageError(f"--stream prints text as it is generated: it cannot write -O {fmt}", "leave -O out")
    if stream and output is not None and str(output) != "-":
        raise UsageError("--stream prints to stdout as text is generated: it cannot write --output",
                         "redirect stdout instead")
    if stream and shard is not None:
        raise UsageError("--stream prints text as it is generated: it cannot number the lines of a --shard",
                         "leave --stream out")
    return fmt


def _start(emit: Any, run: ModelOptions, search: Search, shape: Shape) -> Job:
    """Load the model and its generator; warn about options it ignores; stream or batch."""
    from xcli_models.registry import heads_for

    heads = heads_for("generate")
    loaded = run.load(heads, f"generate: it needs a language-modelling head ({', '.join(heads)})",
                      command="generate")
    generator = _generator(loaded, run, search, shape)
    unused = {
        "--xlnet-prefix": shape.xlnet_prefix and not generator.capabilities.permutation,
        "--return-full-text": bool(shape.return_full_text) and not generator.causal,
    }
    for option, given in unused.items():
        if given:
            console.warning(f"{option} does not apply to {loaded.class_name}: ignored")
    for warning in generator.warnings:
        console.warning(warning)
    stored = getattr(loaded.model.config, "quantization", None)
    if run.quantize is not None or stored is not None:
        what = f"--quantize {run.quantize.value}" if stored is None else f"an int{stored['bits']} checkpoint"
        console.warning(f"{what}: the generated text may differ from float32's")

    def prepare(record: Any) -> Any:
        return _prepare(record, generator, shape.field)

    if shape.stream:
        return Job(prepare, _streaming(emit, generator), 1)
    return Job(prepare, generator.run, run.window)


def _generator(loaded: Any, run: ModelOptions, search: Search, shape: Shape) -> Any:
    """The model core's generator for these options (a usage error for what the model cannot do)."""
    from xcli_models.tasks.generate import Generator

    from ..errors import UsageError
    from ..model_commands import usage_errors

    with usage_errors():
        generator = Generator(
            loaded.model, loaded.tokenizer, settings=search.settings(), return_full_text=shape.return_full_text,
            task=shape.task.value if shape.task is not None else None, lang=shape.lang,
            xlnet_prefix=shape.xlnet_prefix, max_input_length=run.max_length, batch_size=run.batch_size,
            seed=search.seed, scores=shape.scores,
        )
        if shape.stream and not generator.streams:
            raise UsageError(
                "--stream shows one sequence as it grows: it needs --num-beams 1 and --num-return-sequences 1"
                f" (this run has {generator.config.num_beams} beam(s), "
                f"{generator.config.num_return_sequences} sequence(s))"
            )
    return generator


def _prepare(record: Any, generator: Any, field: str) -> Any:
    """A record's input (with --task, the fields the task's instruction reads), cut to the limit."""
    text = record.optional_text(field) if generator.task else record.text(field, FIELD_HINT)
    item = generator.prepare(text, record.data)
    if item.truncated:
        kept = "its last" if generator.causal else "its first"
        console.counted_warning(
            "truncated", f"{record.where}: input cut to {kept} {generator.limit} tokens (the model's limit, "
            "room for the new tokens, or --max-length)"
        )
    return item


def _streaming(emit: Any, generator: Any) -> Any:
    """--stream: one record at a time, each piece of text handed to ``emit`` (printed and flushed
    by ``_Shown.show``, here or in the client of ``xcli serve``) as it comes."""

    def process(items: list[Any]) -> list[dict[str, Any]]:
        results = []
        for item in items:
            emit(None)
            results.append(generator.stream(item, emit))
        return results

    return process


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
