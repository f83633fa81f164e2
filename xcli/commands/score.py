"""``xcli score``: the log-probability of each record's text under a language model, or its choices ranked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer

from ..options import Lang, choices
from ..record_command import FIELD_HINT, Job, ModelOptions, Option, RecordIO, command_line, run_record_command


RankBy = choices("RankBy", "sum", "mean")


Pll = Annotated[
    bool,
    typer.Option("--pll", help="Pseudo-log-likelihood, for masked LMs (XLM with causal: false, XLNet, MVP): each "
                 "token of the text masked in turn and scored from all the others (one model row per token)."),
]
By = Annotated[
    RankBy,
    typer.Option("--by", case_sensitive=False, help="Records with choices: rank them by the sum of their tokens' "
                 "log-probabilities, or by the mean per token (favours no length)."),
]
TargetField = Annotated[
    str, typer.Option("--target-field", metavar="NAME", help="Encoder-decoder models: the field with the text to score "
                      "given the record's text.")
]
ChoicesField = Annotated[
    str, typer.Option("--choices-field", metavar="NAME", help="The field with the choices to rank.")
]
ScoreMaxLength = Annotated[
    Optional[int],
    typer.Option("--max-length", min=1, metavar="N", help="The longest sequence scored, special tokens included "
                 "(default and most: what the model's positions take; 512 for XLNet). A longer one is an error "
                 "record: a text is never truncated.", show_default=False),
]


@dataclass(frozen=True)
class ScoreOptions:
    pll: bool
    by: RankBy
    target_field: str
    choices_field: str
    lang: str | None


@command_line(max_length=Option(ScoreMaxLength, None))
def score(
    pll: Pll = False,
    by: By = RankBy.sum,
    target_field: TargetField = "target",
    choices_field: ChoicesField = "choices",
    lang: Lang = None,
    *,
    streams: RecordIO,
    run: ModelOptions,
    server: bool,
) -> None:
    """Score texts under a language model: the log-probability of each record's text.

    Output: {"logprob": sum, "mean_logprob": per token, "tokens": n, "perplexity":
    exp(-mean_logprob)}, natural logarithms of the model's softmax. A record with "choices"
    ranks them: {"choice": best index, "scores": [what was ranked, per choice], "logprobs":
    [sums], "tokens": [counts]}. --output-format text prints the logprob or the choice.

    What is scored: causal models (XGLM, XLM with causal: true, MVP and (XLM-)ProphetNet
    *ForCausalLM) score every token of the tokenised text after the first, special tokens
    included, each from the ones before it: all text tokens after XGLM's leading </s>; the text
    and the closing </s> for XLM and MVP; for (XLM-)ProphetNet, which adds no start token, the
    text but its first token, and [SEP]. XLNet goes left to right the same way (a causal
    perm_mask: each token seen only by those after it), over the text and its <sep> <cls>.
    Encoder-decoder models (MVP, (XLM-)ProphetNet *ForConditionalGeneration) score every token
    of the record's "target" (end token included) given its text. --pll scores a masked LM by
    pseudo-log-likelihood: every non-special token masked in turn.

    Choices continue the text after a space (none is added when the text ends with whitespace
    or the choice starts with it) and only the choice's own tokens are scored; for an
    encoder-decoder model each choice is a target for the text.

    A sequence longer than the model takes (--max-length) is an error record: score never
    truncates. Batching and padding never change a score.

    Examples:

    \b
      xcli score -m ./xglm-564M "The capital of France is Paris."
      echo '{"text": "The cat sat on the", "choices": ["mat", "moon"]}' | xcli score -m ./xglm-564M
      echo '{"text": "Summarize: ...", "target": "A summary."}' | xcli score -m RUCAIBox/mvp
      xcli score -m ./xlm-mlm-enfr-1024 --pll --lang en -O text < sentences.txt
    """
    options = ScoreOptions(pll, by, target_field, choices_field, lang)
    run_record_command(streams, lambda emit: _start(run, streams.field, options), text_of=_main_result,
                       server=server)


def _start(run: ModelOptions, field: str, options: ScoreOptions) -> Job:
    """Load the model and the scorer its head calls for."""
    from xcli_models.registry import heads_for
    from xcli_models.tasks.score import Scorer

    from ..model_commands import usage_errors

    heads = heads_for("score")
    task = run.load(heads, f"score: it needs a language-modelling head ({', '.join(heads)})",
                    command="score")
    with usage_errors():
        scorer = Scorer(task.model, task.tokenizer, pll=options.pll, by=options.by.value, lang=options.lang,
                        batch_size=run.batch_size, max_length=run.max_length)

    def prepare(record: Any) -> Any:
        text = record.text(field, FIELD_HINT)
        choices = record.get(options.choices_field)
        target = None
        if scorer.needs_target and choices is None:
            target = record.text(options.target_field, f"{task.class_name} scores a target given the text: pick its "
                                 "field with --target-field, or give choices")
        return scorer.prepare(text, target=target, choices=choices)

    return Job(prepare, scorer.run, run.window)


def _main_result(result: dict[str, Any]) -> Any:
    """The log-probability, or the chosen index."""
    return result["logprob"] if "logprob" in result else result.get("choice")
